//! One workspace's templates: two strict handlebars registries and the helpers bound to the
//! workspace's time zone and currency.
//!
//! Why two registries: handlebars has one escape function per registry, and escaping is a
//! property of the output, not of an expression. HTML bodies escape (`&` → `&amp;`); subjects,
//! text bodies and audience fields must not (a subject reading `Tom &amp; Jerry` is a bug).
//! Each template goes to the registry of its [`Kind`]; names are unique across both.

use std::collections::HashMap;

use handlebars::{Handlebars, RenderErrorReason};
use serde_json::Value;

use crate::check;
use crate::context::{Context, WorkspaceInfo, known_fields};
use crate::error::{RenderError, TemplateError};
use crate::helpers;

/// How a template's output is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Plain text: subjects, text bodies, audience fields, URLs. Nothing is escaped.
    Text,
    /// HTML: every `{{value}}` is HTML-escaped; `{{{value}}}` writes it raw.
    Html,
}

/// A template to compile, and where its text lives so errors can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    /// Unique name within the workspace (`winback.subject`, `winback.fields.email`).
    pub name: String,
    /// The handlebars source.
    pub source: String,
    /// The file the template is written in (`templates/winback.html`, `config/demo.toml`);
    /// the name when there is no file.
    pub origin: String,
    /// Lines in `origin` before the template's first line: template line `n` is file line
    /// `n + line_offset`.
    pub line_offset: usize,
    /// Columns in `origin` before the template's first character, on its first line only.
    pub column_offset: usize,
    /// Escaping.
    pub kind: Kind,
}

impl TemplateSpec {
    /// A template with no file: errors name the template itself, lines count from 1.
    pub fn new(name: impl Into<String>, source: impl Into<String>, kind: Kind) -> TemplateSpec {
        let name = name.into();
        TemplateSpec {
            origin: name.clone(),
            name,
            source: source.into(),
            line_offset: 0,
            column_offset: 0,
            kind,
        }
    }

    /// The template is the whole of `path` (an `html_file`).
    pub fn file(mut self, path: impl Into<String>) -> TemplateSpec {
        self.origin = path.into();
        self.line_offset = 0;
        self.column_offset = 0;
        self
    }

    /// The template's text starts at 1-based `line`:`column` of `file` (an inline TOML string:
    /// the position just after its opening quote).
    ///
    /// Exact for single-line strings without escapes; within a multi-line string, lines are
    /// exact and columns are counted from the start of each line.
    pub fn inline(mut self, file: impl Into<String>, line: usize, column: usize) -> TemplateSpec {
        self.origin = file.into();
        self.line_offset = line.saturating_sub(1);
        self.column_offset = column.saturating_sub(1);
        self
    }

    /// A template position as a position in `origin`.
    pub(crate) fn position(&self, line: usize, column: usize) -> (usize, usize) {
        let column = if line <= 1 {
            column + self.column_offset
        } else {
            column
        };
        (line + self.line_offset, column)
    }
}

/// One workspace's compiled templates and helpers.
///
/// Build it once per workspace and run; rendering borrows it immutably, so threads can share it.
#[derive(Debug)]
pub struct Renderer {
    workspace: WorkspaceInfo,
    workspace_json: Value,
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    specs: HashMap<String, TemplateSpec>,
}

impl Renderer {
    /// A renderer with no templates yet.
    pub fn new(workspace: WorkspaceInfo) -> Renderer {
        let registry = |escape: bool| {
            let mut r = Handlebars::new();
            r.set_strict_mode(true);
            if !escape {
                r.register_escape_fn(handlebars::no_escape);
            }
            helpers::register(&mut r, workspace.timezone, &workspace.currency);
            r
        };
        Renderer {
            workspace_json: workspace.to_json(),
            html: registry(true),
            text: registry(false),
            specs: HashMap::new(),
            workspace,
        }
    }

    /// The workspace this renderer renders for.
    pub fn workspace(&self) -> &WorkspaceInfo {
        &self.workspace
    }

    /// A context for `customer` with the workspace fields already set (saves a copy per
    /// render compared with [`Context::new`]).
    pub fn context(
        &self,
        customer: &cohort_core::Customer,
        now: cohort_core::Timestamp,
    ) -> Context {
        Context::new(customer, now).workspace(&self.workspace)
    }

    /// Compiles and registers a template, replacing any template of the same name.
    ///
    /// Only syntax is checked here; [`Renderer::check_fields`] checks the names it uses.
    pub fn add(&mut self, spec: &TemplateSpec) -> Result<(), TemplateError> {
        let template = handlebars::Template::compile_with_name(&spec.source, spec.name.clone())
            .map_err(|e| {
                let (mut line, mut column) = e.pos().unwrap_or((1, 1));
                let mut message = compile_message(e.reason(), &spec.source, e.pos());
                // A block left open shows up as an error at the end of the template; the place
                // to fix is where it opened.
                if ends_too_early(e.reason(), &spec.source, e.pos())
                    && let Some(open) = unclosed_block(&spec.source)
                {
                    (line, column) = (open.line, open.column);
                    message = format!(
                        "`{{{{#{0}}}}}` is never closed: add `{{{{/{0}}}}}` where its block ends",
                        open.name
                    );
                }
                let (line, column) = spec.position(line, column);
                TemplateError {
                    template: spec.name.clone(),
                    origin: spec.origin.clone(),
                    line,
                    column,
                    message,
                    help: None,
                }
            })?;
        self.html.unregister_template(&spec.name);
        self.text.unregister_template(&spec.name);
        self.registry_mut(spec.kind)
            .register_template(&spec.name, template);
        self.specs.insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    /// Whether a template of that name was added.
    pub fn has(&self, name: &str) -> bool {
        self.specs.contains_key(name)
    }

    /// Every use of a field the context will not have and every call of a helper that does
    /// not exist, with positions and a did-you-mean; empty when the template is fine or
    /// unknown (see [`Renderer::has`]).
    ///
    /// Names inside `{{#each}}` and `{{#with}}` refer to the block's item and are not
    /// checked (except `@root.x` and `../x` that climb back to the top).
    pub fn check_fields(&self, name: &str) -> Vec<TemplateError> {
        let Some(spec) = self.specs.get(name) else {
            return Vec::new();
        };
        let Some(template) = self.registry(spec.kind).get_template(name) else {
            return Vec::new();
        };
        check::check(template, spec, &known_fields())
    }

    /// Whether template `name` uses `helper_or_field` anywhere (in any branch); false for a
    /// template that was not added.
    pub fn uses(&self, name: &str, helper_or_field: &str) -> bool {
        let Some(spec) = self.specs.get(name) else {
            return false;
        };
        self.registry(spec.kind)
            .get_template(name)
            .is_some_and(|t| check::mentions(t, helper_or_field))
    }

    /// Renders template `name` for the customer of `ctx`.
    #[expect(
        clippy::result_large_err,
        reason = "a render error is rare and carries the strings a user needs; boxing buys nothing"
    )]
    pub fn render(&self, name: &str, ctx: &Context) -> Result<String, RenderError> {
        let Some(spec) = self.specs.get(name) else {
            return Err(RenderError {
                template: name.to_owned(),
                origin: name.to_owned(),
                line: None,
                column: None,
                customer_id: ctx.customer_id.clone(),
                message: "no template of that name was added to the renderer".into(),
            });
        };
        let registry = self.registry(spec.kind);
        let result = if ctx.has_workspace {
            registry.render_with_context(name, &ctx.data)
        } else {
            let mut data = ctx.data.clone();
            if let Value::Object(map) = data.data_mut() {
                map.insert("workspace".into(), self.workspace_json.clone());
            }
            registry.render_with_context(name, &data)
        };
        result.map_err(|e| {
            let position = match (e.line_no, e.column_no) {
                (Some(line), Some(column)) => Some(spec.position(line, column)),
                _ => None,
            };
            RenderError {
                template: name.to_owned(),
                origin: spec.origin.clone(),
                line: position.map(|p| p.0),
                column: position.map(|p| p.1),
                customer_id: ctx.customer_id.clone(),
                message: render_message(e.reason()),
            }
        })
    }

    /// A readable plain-text version of an HTML body, for emails without a text template.
    pub fn html_to_text(html: &str) -> String {
        crate::text::html_to_text(html)
    }

    fn registry(&self, kind: Kind) -> &Handlebars<'static> {
        match kind {
            Kind::Html => &self.html,
            Kind::Text => &self.text,
        }
    }

    fn registry_mut(&mut self, kind: Kind) -> &mut Handlebars<'static> {
        match kind {
            Kind::Html => &mut self.html,
            Kind::Text => &mut self.text,
        }
    }
}

/// The source from the error's position to the end of its line, if the position is in it.
fn rest_of_line(source: &str, pos: Option<(usize, usize)>) -> Option<&str> {
    pos.and_then(|(line, column)| {
        let text = source.split('\n').nth(line.checked_sub(1)?)?;
        let start = text
            .char_indices()
            .nth(column.checked_sub(1)?)
            .map(|(i, _)| i);
        Some(start.map_or("", |i| &text[i..]))
    })
}

/// Whether a syntax error is the parser running out of template.
fn ends_too_early(
    reason: &handlebars::TemplateErrorReason,
    source: &str,
    pos: Option<(usize, usize)>,
) -> bool {
    if !matches!(reason, handlebars::TemplateErrorReason::InvalidSyntax(_)) {
        return false;
    }
    let rest = rest_of_line(source, pos);
    let at_end = pos.is_some_and(|(line, _)| line >= source.split('\n').count())
        && rest.is_some_and(|r| r.trim().is_empty());
    at_end || rest.is_none()
}

/// A `{{#block}}` that is never closed: the innermost one, where it opens.
#[derive(Debug, PartialEq, Eq)]
struct OpenBlock {
    name: String,
    line: usize,
    column: usize,
}

/// Finds the innermost block opened and not closed, by scanning the tags (comments skipped).
fn unclosed_block(source: &str) -> Option<OpenBlock> {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut at = 0;
    while let Some(i) = source[at..].find("{{") {
        let start = at + i;
        let body_start = start + 2;
        if source[body_start..].starts_with("!--") {
            at = source[body_start..]
                .find("--}}")
                .map_or(source.len(), |j| body_start + j + 4);
            continue;
        }
        let Some(len) = source[body_start..].find("}}") else {
            break;
        };
        let tag = source[body_start..body_start + len]
            .trim_start_matches(['~', '{'])
            .trim_start();
        at = body_start + len + 2;
        if let Some(rest) = tag.strip_prefix('#') {
            let name: String = rest
                .trim_start_matches(['>', '*'])
                .split(|c: char| c.is_whitespace() || c == '~' || c == '}')
                .next()
                .unwrap_or("")
                .to_owned();
            open.push((name, start));
        } else if let Some(rest) = tag.strip_prefix('/') {
            let name = rest.trim().trim_end_matches('~').trim();
            if let Some(i) = open.iter().rposition(|(n, _)| n == name) {
                open.truncate(i);
            }
        }
    }
    let (name, offset) = open.pop()?;
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some(OpenBlock { name, line, column })
}

fn compile_message(
    reason: &handlebars::TemplateErrorReason,
    source: &str,
    pos: Option<(usize, usize)>,
) -> String {
    use handlebars::TemplateErrorReason as R;
    match reason {
        // pest lists grammar rule names; the text at the position says more to a user.
        R::InvalidSyntax(_) => {
            let rest = rest_of_line(source, pos);
            if ends_too_early(reason, source, pos) {
                "the template ends too early: a `{{` is not closed by `}}`, or a `{{#block}}` \
                 has no `{{/block}}`"
                    .to_owned()
            } else {
                let snippet: String = rest.unwrap_or_default().chars().take(24).collect();
                format!("invalid handlebars syntax at `{snippet}`")
            }
        }
        R::MismatchingClosedHelper(open, close) => {
            format!("`{{{{#{open}}}}}` is closed by `{{{{/{close}}}}}`")
        }
        other => other.to_string(),
    }
}

fn render_message(reason: &RenderErrorReason) -> String {
    match reason {
        RenderErrorReason::MissingVariable(Some(path)) => {
            let first = path.split(['.', '/']).next().unwrap_or(path);
            let hint = crate::check::suggest(first, known_fields().iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            format!(
                "`{path}` is not in the context (strict mode: a missing field is an error; \
                 for a value that may be absent use {{{{default {path} \"...\"}}}}){hint}"
            )
        }
        RenderErrorReason::MissingVariable(None) => {
            "an expression produced no value (strict mode)".to_owned()
        }
        RenderErrorReason::HelperNotFound(name) => format!("no helper named `{name}`"),
        RenderErrorReason::Other(message) => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn an_unclosed_block_is_reported_where_it_opens_not_at_the_end() {
        let mut r = Renderer::new(workspace());
        let spec = TemplateSpec::new(
            "winback",
            "<p>Hi</p>\n{{#if vip}}\n<b>VIP</b>\n{{#each (top_products 2)}}{{title}}{{/each}}\n<p>Bye</p>\n",
            Kind::Html,
        )
        .file("templates/winback.html");
        let err = r.add(&spec).unwrap_err();
        assert_eq!((err.line, err.column), (2, 1), "{err}");
        assert!(err.message.contains("`{{#if}}` is never closed"), "{err}");
        assert_eq!(
            unclosed_block("{{!-- {{#each x}} --}}{{#with a}}{{#if b}}{{/if}}"),
            Some(OpenBlock {
                name: "with".into(),
                line: 1,
                column: 23
            })
        );
        assert_eq!(unclosed_block("{{#if a}}x{{else}}y{{/if}}"), None);
    }
    use cohort_core::{Customer, Money, Timestamp};
    use serde_json::{Map, json};

    use crate::context::Product;

    pub(crate) fn workspace() -> WorkspaceInfo {
        WorkspaceInfo {
            id: "demo".into(),
            name: "Demo & Co".into(),
            timezone: chrono_tz::America::New_York,
            currency: "USD".into(),
        }
    }

    pub(crate) fn customer() -> Customer {
        let mut c = Customer::new("42");
        c.email = Some("ann@example.com".into());
        c.first_name = Some("ann".into());
        c
    }

    pub(crate) fn now() -> Timestamp {
        Timestamp::parse("2024-03-01T03:00:00Z").unwrap()
    }

    pub(crate) fn context() -> Context {
        let mut features = Map::new();
        features.insert("total_spent".into(), json!("1234.5"));
        features.insert("avg_order_value".into(), json!(null));
        features.insert("orders_count".into(), json!(3));
        features.insert("last_order_at".into(), json!("2024-02-01T04:30:00Z"));
        Context::new(&customer(), now())
            .features(features)
            .segment("champions", Some("Bought recently & often"))
            .campaign("winback")
            .unsubscribe_url("https://shop.example/u?c=42&t=x".into())
            .top_products(vec![
                Product {
                    title: "Blue <Train>".into(),
                    quantity: 1,
                    revenue: Money::parse("10").unwrap(),
                },
                Product {
                    title: "Kind of Blue".into(),
                    quantity: 3,
                    revenue: Money::parse("30").unwrap(),
                },
                Product {
                    title: "Giant Steps".into(),
                    quantity: 3,
                    revenue: Money::parse("45").unwrap(),
                },
            ])
            .cart(Some(&crate::Cart {
                abandoned_at: Timestamp::parse("2024-02-28T15:00:00Z").unwrap(),
                properties: serde_json::from_value(json!({
                    "recovery_url": "https://shop.example/cart/recover/abc",
                    "total": "59.90",
                    "currency": "USD",
                    "line_items": [
                        {"title": "Blue Train", "quantity": 1, "price": "19.90"},
                        {"title": "Giant Steps", "quantity": 2, "price": "20.00"},
                    ],
                }))
                .unwrap(),
            }))
    }

    /// Renders `source` as a one-off template of `kind` with the test context.
    #[expect(clippy::result_large_err, reason = "mirrors Renderer::render")]
    pub(crate) fn render_as(kind: Kind, source: &str) -> Result<String, RenderError> {
        let mut r = Renderer::new(workspace());
        r.add(&TemplateSpec::new("t", source, kind))
            .map_err(|e| panic!("{e}"))
            .ok();
        r.render("t", &context())
    }

    pub(crate) fn text(source: &str) -> String {
        render_as(Kind::Text, source).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn text_err(source: &str) -> RenderError {
        match render_as(Kind::Text, source) {
            Ok(out) => panic!("expected an error, rendered {out:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn renders_customer_features_and_campaign_fields() {
        assert_eq!(
            text(
                "{{first_name}} {{customer_id}} {{orders_count}} {{segment.name}} {{campaign.name}} {{workspace.id}} {{workspace.timezone}} {{now}}"
            ),
            "ann 42 3 champions winback demo America/New_York 2024-03-01T03:00:00Z"
        );
    }

    #[test]
    fn strict_mode_fails_on_a_missing_field_and_names_it() {
        let e = text_err("Hi {{frist_name}}");
        assert_eq!(e.template, "t");
        assert_eq!(e.customer_id, "42");
        assert_eq!((e.line, e.column), (Some(1), Some(4)));
        assert!(
            e.message.contains("`frist_name` is not in the context"),
            "{e}"
        );
        assert!(e.message.contains("did you mean `first_name`?"), "{e}");
    }

    #[test]
    fn null_fields_render_empty_in_strict_mode() {
        assert_eq!(text("[{{last_name}}]"), "[]");
    }

    #[test]
    fn html_templates_escape_and_text_templates_do_not() {
        assert_eq!(
            render_as(Kind::Html, "{{workspace.name}} {{{workspace.name}}}").unwrap(),
            "Demo &amp; Co Demo & Co"
        );
        assert_eq!(text("{{workspace.name}}"), "Demo & Co");
        assert_eq!(
            render_as(Kind::Html, "{{upper segment.description}}").unwrap(),
            "BOUGHT RECENTLY &amp; OFTEN"
        );
        assert_eq!(
            text("{{upper segment.description}}"),
            "BOUGHT RECENTLY & OFTEN"
        );
    }

    #[test]
    fn workspace_is_added_when_the_context_lacks_it() {
        let r = Renderer::new(workspace());
        let with = r.context(&customer(), now());
        let without = Context::new(&customer(), now());
        let mut r = r;
        r.add(&TemplateSpec::new(
            "t",
            "{{workspace.currency}}",
            Kind::Text,
        ))
        .unwrap();
        assert_eq!(r.render("t", &with).unwrap(), "USD");
        assert_eq!(r.render("t", &without).unwrap(), "USD");
    }

    #[test]
    fn unknown_template_is_a_render_error() {
        let r = Renderer::new(workspace());
        let e = r.render("nope", &context()).unwrap_err();
        assert!(e.to_string().contains("customer 42"), "{e}");
    }

    #[test]
    fn compile_errors_report_file_positions_for_inline_templates() {
        let mut r = Renderer::new(workspace());
        let spec = TemplateSpec::new("winback.subject", "Hi {{#if x}}", Kind::Text).inline(
            "config/demo.toml",
            40,
            11,
        );
        let e = r.add(&spec).unwrap_err();
        assert_eq!(e.origin, "config/demo.toml");
        assert_eq!(e.template, "winback.subject");
        assert_eq!(e.line, 40);
        assert_eq!(
            e.column, 14,
            "at the `{{{{#if`, 3 characters into the string: {e}"
        );
        assert!(e.message.contains("`{{#if}}` is never closed"), "{e}");
    }

    fn compile_error(source: &str) -> TemplateError {
        let mut r = Renderer::new(workspace());
        match r.add(&TemplateSpec::new("t", source, Kind::Text)) {
            Ok(()) => panic!("{source:?} compiled"),
            Err(e) => e,
        }
    }

    #[test]
    fn compile_errors_say_what_is_wrong_in_words() {
        let e = compile_error("{{first_name");
        assert!(e.message.contains("ends too early"), "{e}");
        let e = compile_error("{{#if a}}x{{/each}}");
        assert_eq!(e.message, "`{{#if}}` is closed by `{{/each}}`");
        assert_eq!((e.line, e.column), (1, 11));
        let e = compile_error("a\n{{foo bar=}} tail");
        assert_eq!(e.message, "invalid handlebars syntax at `}} tail`");
        assert_eq!((e.line, e.column), (2, 11));
        assert_eq!(
            e.to_string(),
            "t:2:11: template \"t\": invalid handlebars syntax at `}} tail`"
        );
    }

    #[test]
    fn render_errors_report_file_positions_for_inline_templates() {
        let mut r = Renderer::new(workspace());
        let spec = TemplateSpec::new("t", "line one\n  {{nope}}", Kind::Text).inline(
            "config/demo.toml",
            40,
            11,
        );
        r.add(&spec).unwrap();
        let e = r.render("t", &context()).unwrap_err();
        assert_eq!((e.line, e.column), (Some(41), Some(3)));
        let spec =
            TemplateSpec::new("t", "ab{{nope}}", Kind::Text).inline("config/demo.toml", 40, 11);
        r.add(&spec).unwrap();
        let e = r.render("t", &context()).unwrap_err();
        assert_eq!((e.line, e.column), (Some(40), Some(13)));
        assert!(
            e.to_string()
                .starts_with("config/demo.toml:40:13: template \"t\" failed for customer 42:"),
            "{e}"
        );
    }

    #[test]
    fn renderer_is_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Renderer>();
        assert_send_sync::<Context>();
    }

    #[test]
    fn a_campaign_renders_subject_html_and_derived_text() {
        let mut r = Renderer::new(workspace());
        let html = "<p>Hi {{default (capitalize first_name) \"there\"}},</p>\n\
                    <p>You spent {{money total_spent}} over {{pluralize orders_count \"order\"}}.</p>\n\
                    <ul>{{#each (top_products 2)}}<li>{{title}}</li>{{/each}}</ul>\n\
                    <p><a href=\"{{unsubscribe_url}}\">Unsubscribe</a></p>";
        r.add(&TemplateSpec::new(
            "winback.subject",
            "{{workspace.name}} misses you, {{default (capitalize first_name) \"there\"}}",
            Kind::Text,
        ))
        .unwrap();
        r.add(&TemplateSpec::new("winback.html", html, Kind::Html).file("templates/winback.html"))
            .unwrap();
        for name in ["winback.subject", "winback.html"] {
            assert_eq!(r.check_fields(name), Vec::new(), "{name}");
        }
        let ctx = context();
        assert_eq!(
            r.render("winback.subject", &ctx).unwrap(),
            "Demo & Co misses you, Ann"
        );
        let body = r.render("winback.html", &ctx).unwrap();
        assert!(
            body.contains("href=\"https://shop.example/u?c&#x3D;42&amp;t&#x3D;x\""),
            "{body}"
        );
        assert_eq!(
            Renderer::html_to_text(&body),
            "Hi Ann,\n\nYou spent $1,234.50 over 3 orders.\n\n- Giant Steps\n- Kind of Blue\n\n\
             Unsubscribe (https://shop.example/u?c=42&t=x)"
        );
    }

    #[test]
    fn a_template_keeps_one_kind_when_replaced() {
        let mut r = Renderer::new(workspace());
        r.add(&TemplateSpec::new("t", "{{workspace.name}}", Kind::Html))
            .unwrap();
        r.add(&TemplateSpec::new("t", "{{workspace.name}}", Kind::Text))
            .unwrap();
        assert_eq!(r.render("t", &context()).unwrap(), "Demo & Co");
    }
}
