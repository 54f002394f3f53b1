//! Validate-time check of the names a template uses.
//!
//! Strict mode finds a misspelt field only when a customer is rendered; this walk finds it
//! when the config is validated, for every branch, including `{{#if}}` branches no test
//! customer would take.
//!
//! Scope is tracked the way handlebars resolves names: only `{{#each}}` and `{{#with}}` move
//! the context, so inside them a bare name belongs to the item and is left alone. `@root.x`
//! is checked anywhere; `../x` is checked when it climbs exactly back to the top. Partials
//! and decorators are not walked (campaign templates do not use them).

use std::collections::BTreeSet;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

use crate::context::subfields;
use crate::error::TemplateError;
use crate::helpers::{BUILTIN_HELPERS, HELPERS};
use crate::renderer::TemplateSpec;

/// Helpers that change what bare names refer to inside their block.
const CONTEXT_HELPERS: &[&str] = &["each", "with"];

/// Helpers that, used bare (`{{title}}`), look up the field of their name instead: product
/// items have a `title`.
const FIELD_LIKE_HELPERS: &[&str] = &["upper", "lower", "capitalize", "title"];

pub(crate) fn check(
    template: &Template,
    spec: &TemplateSpec,
    known: &BTreeSet<&'static str>,
) -> Vec<TemplateError> {
    let mut walker = Walker {
        spec,
        known,
        errors: Vec::new(),
    };
    walker.template(template, 0);
    walker.errors
}

/// Whether `template` refers to `name` anywhere, as a helper or as a field, in any branch.
/// The run asks this to know whether to compute what an expensive helper needs
/// (`top_products` needs every order's line items).
pub(crate) fn mentions(template: &Template, name: &str) -> bool {
    fn in_param(p: &Parameter, name: &str) -> bool {
        match p {
            Parameter::Subexpression(sub) => match sub.as_element() {
                TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                    in_helper(ht, name)
                }
                _ => false,
            },
            other => name_of(other).is_some_and(|n| {
                let n = n.trim_start_matches("@root.").trim_start_matches("this.");
                n == name
                    || n.starts_with(&format!("{name}."))
                    || n.trim_start_matches("../") == name
            }),
        }
    }
    fn in_helper(ht: &HelperTemplate, name: &str) -> bool {
        in_param(&ht.name, name)
            || ht.params.iter().any(|p| in_param(p, name))
            || ht.hash.values().any(|p| in_param(p, name))
            || ht.template.as_ref().is_some_and(|t| mentions(t, name))
            || ht.inverse.as_ref().is_some_and(|t| mentions(t, name))
    }
    template.elements.iter().any(|element| match element {
        TemplateElement::Expression(ht)
        | TemplateElement::HtmlExpression(ht)
        | TemplateElement::HelperBlock(ht) => in_helper(ht, name),
        _ => false,
    })
}

struct Walker<'a> {
    spec: &'a TemplateSpec,
    known: &'a BTreeSet<&'static str>,
    errors: Vec<TemplateError>,
}

fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name) || BUILTIN_HELPERS.contains(&name)
}

fn name_of(p: &Parameter) -> Option<&str> {
    match p {
        Parameter::Name(n) => Some(n),
        Parameter::Path(handlebars::Path::Relative((_, raw))) => Some(raw),
        _ => None,
    }
}

impl Walker<'_> {
    fn template(&mut self, t: &Template, depth: usize) {
        for (i, element) in t.elements.iter().enumerate() {
            let at = t.mapping.get(i).map_or((1, 1), |m| (m.0, m.1));
            match element {
                TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                    self.expression(ht, at, depth);
                }
                TemplateElement::HelperBlock(ht) => self.block(ht, at, depth),
                _ => {}
            }
        }
    }

    fn expression(&mut self, ht: &HelperTemplate, at: (usize, usize), depth: usize) {
        if ht.params.is_empty() && ht.hash.is_empty() {
            match &ht.name {
                Parameter::Subexpression(_) | Parameter::Literal(_) => {
                    self.param(&ht.name, at, depth);
                }
                name => {
                    let Some(n) = name_of(name) else { return };
                    if !is_helper(n) || FIELD_LIKE_HELPERS.contains(&n) {
                        self.path(n, at, depth);
                    }
                }
            }
            return;
        }
        self.helper_call(&ht.name, &ht.params, ht.hash.values(), at, depth);
    }

    fn block(&mut self, ht: &HelperTemplate, at: (usize, usize), depth: usize) {
        self.helper_call(&ht.name, &ht.params, ht.hash.values(), at, depth);
        let moves = name_of(&ht.name).is_some_and(|n| CONTEXT_HELPERS.contains(&n));
        if let Some(body) = &ht.template {
            self.template(body, depth + usize::from(moves));
        }
        // `{{else}}` renders in the block's outer context.
        if let Some(inverse) = &ht.inverse {
            self.template(inverse, depth);
        }
    }

    fn helper_call<'p>(
        &mut self,
        name: &Parameter,
        params: &[Parameter],
        hash: impl Iterator<Item = &'p Parameter>,
        at: (usize, usize),
        depth: usize,
    ) {
        if let Some(n) = name_of(name)
            && !is_helper(n)
        {
            let help = suggest(n, HELPERS.iter().chain(BUILTIN_HELPERS).copied())
                .map(|s| format!("did you mean `{s}`?"));
            self.report(at, format!("unknown helper `{n}`"), help);
        }
        for p in params {
            self.param(p, at, depth);
        }
        for p in hash {
            self.param(p, at, depth);
        }
    }

    fn param(&mut self, p: &Parameter, at: (usize, usize), depth: usize) {
        match p {
            Parameter::Path(handlebars::Path::Relative((_, raw))) => self.path(raw, at, depth),
            Parameter::Subexpression(sub) => {
                // `(money total_spent)` is a helper call, `(first_name)` a lookup: the same
                // rules as a `{{...}}` expression.
                if let TemplateElement::Expression(ht) = sub.as_element() {
                    self.expression(ht, at, depth);
                }
            }
            _ => {}
        }
    }

    /// Checks a path as written (`first_name`, `segment.name`, `@root.now`, `../email`).
    fn path(&mut self, raw: &str, at: (usize, usize), depth: usize) {
        let mut rest = raw;
        let at_root = if let Some(r) = rest.strip_prefix("@root") {
            rest = r.trim_start_matches(['.', '/']);
            true
        } else {
            let mut ups = 0;
            while let Some(r) = rest.strip_prefix("../") {
                rest = r;
                ups += 1;
            }
            ups > 0 && ups == depth || ups == 0 && depth == 0
        };
        if !at_root {
            return;
        }
        for prefix in ["this.", "this/", "./"] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r;
            }
        }
        if rest.is_empty() || rest == "this" || rest == "." || rest.starts_with('@') {
            return;
        }
        let segments: Vec<&str> = rest
            .split(['.', '/'])
            .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
            .collect();
        let first = segments[0];
        if !self.known.contains(first) {
            let help =
                suggest(first, self.known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
            self.report(at, format!("unknown field `{first}`"), help);
            return;
        }
        if let (Some(fields), Some(second)) = (subfields(first), segments.get(1))
            && !fields.contains(second)
        {
            let help = suggest(second, fields.iter().copied())
                .map(|s| format!("did you mean `{first}.{s}`?"));
            self.report(
                at,
                format!(
                    "unknown field `{first}.{second}` (`{first}` has {})",
                    fields.join(", ")
                ),
                help,
            );
        }
    }

    fn report(&mut self, at: (usize, usize), message: String, help: Option<String>) {
        let (line, column) = self.spec.position(at.0, at.1);
        self.errors.push(TemplateError {
            template: self.spec.name.clone(),
            origin: self.spec.origin.clone(),
            line,
            column,
            message,
            help,
        });
    }
}

/// The candidate nearest to `name`, if one is near enough to be a plausible typo: the segment
/// language's rule, so users meet one behaviour for every suggestion.
pub(crate) use cohort_core::segment::did_you_mean as suggest;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::renderer::tests::workspace;
    use crate::renderer::{Kind, Renderer};

    fn check_spec(spec: &TemplateSpec) -> Vec<TemplateError> {
        let mut r = Renderer::new(workspace());
        r.add(spec).unwrap_or_else(|e| panic!("{e}"));
        r.check_fields(&spec.name)
    }

    fn check_src(source: &str) -> Vec<String> {
        check_spec(&TemplateSpec::new("t", source, Kind::Html))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn known_fields_and_helpers_pass() {
        let source = "Hi {{default first_name \"there\"}}, {{money total_spent}} over \
            {{pluralize orders_count \"order\"}} since {{date first_order_at \"%Y\"}}. \
            {{#if (gt orders_count 2)}}{{upper segment.name}}{{else}}{{campaign.name}}{{/if}} \
            {{{unsubscribe_url}}} {{workspace.currency}} {{attributes.shoe_size}} {{now}} \
            {{#unless accepts_email_marketing}}{{email}}{{/unless}} {{this.city}} {{./tags}} \
            {{!-- {{not_checked_in_comments}} --}}";
        assert_eq!(check_src(source), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_reported_with_position_and_suggestion() {
        let errors = check_spec(&TemplateSpec::new(
            "winback.html",
            "<p>Hi {{frist_name}},</p>\n<p>{{money totl_spent}} {{banana}}</p>",
            Kind::Html,
        ));
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "winback.html:1:7: template \"winback.html\": unknown field `frist_name` (did you mean `first_name`?)",
                "winback.html:2:4: template \"winback.html\": unknown field `totl_spent` (did you mean `total_spent`?)",
                "winback.html:2:25: template \"winback.html\": unknown field `banana`",
            ]
        );
        assert_eq!(
            errors[0].help.as_deref(),
            Some("did you mean `first_name`?")
        );
    }

    #[test]
    fn positions_of_inline_templates_are_file_positions() {
        let errors = check_spec(
            &TemplateSpec::new("winback.subject", "We miss you, {{frist_name}}", Kind::Text)
                .inline("config/demo.toml", 40, 11),
        );
        assert_eq!((errors[0].line, errors[0].column), (40, 24));
        assert_eq!(errors[0].origin, "config/demo.toml");
        let errors = check_spec(
            &TemplateSpec::new("t", "one\n  {{frist_name}}", Kind::Text).inline(
                "config/demo.toml",
                40,
                11,
            ),
        );
        assert_eq!((errors[0].line, errors[0].column), (41, 3));
    }

    #[test]
    fn names_inside_each_and_with_belong_to_the_block() {
        assert_eq!(
            check_src("{{#each (top_products 3)}}{{title}} {{quantity}} {{anything}}{{/each}}"),
            Vec::<String>::new()
        );
        assert_eq!(
            check_src("{{#with segment}}{{name}} {{description}}{{/with}}"),
            Vec::<String>::new()
        );
        assert_eq!(
            check_src("{{#each tags as |tag|}}{{tag}}{{/each}}"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn block_parameters_and_paths_back_to_the_top_are_checked() {
        let errors = check_src(
            "{{#each top_product}}{{/each}}\
             {{#each tags}}{{@root.frist_name}} {{../emial}} {{../first_name}}{{/each}}\
             {{#each tags}}{{else}}{{lastname}}{{/each}}\
             {{#if x}}{{y}}{{/if}}",
        );
        let messages: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").nth(2).unwrap_or(e))
            .collect();
        assert_eq!(
            messages,
            [
                "unknown field `top_product` (did you mean `top_products`?)",
                "unknown field `frist_name` (did you mean `first_name`?)",
                "unknown field `emial` (did you mean `email`?)",
                "unknown field `lastname` (did you mean `last_name`?)",
                "unknown field `x`",
                "unknown field `y`",
            ]
        );
    }

    #[test]
    fn subfields_of_segment_campaign_and_workspace_are_checked() {
        let errors = check_src("{{segment.nmae}} {{campaign.name}} {{workspace.zone}}");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("unknown field `segment.nmae`"),
            "{}",
            errors[0]
        );
        assert!(
            errors[0].contains("did you mean `segment.name`?"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains("`workspace` has id, name, currency, timezone"),
            "{}",
            errors[1]
        );
    }

    #[test]
    fn cart_fields_are_checked_and_render_empty_without_a_cart() {
        let errors = check_src("{{cart.ulr}} {{#each cart.line_items}}{{title}}{{/each}}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("unknown field `cart.ulr`")
                && errors[0].contains("did you mean `cart.url`?"),
            "{}",
            errors[0]
        );
        let source = "[{{cart.url}}|{{money cart.total}}|{{date cart.abandoned_at}}|\
            {{#each cart.line_items}}{{title}}{{else}}none{{/each}}|{{cart.properties.x}}]";
        assert_eq!(check_src(source), Vec::<String>::new());
        let mut r = Renderer::new(workspace());
        r.add(&TemplateSpec::new("t", source, Kind::Text)).unwrap();
        let ctx = crate::Context::new(
            &cohort_core::Customer::new("1"),
            cohort_core::Timestamp::from_secs(0),
        );
        assert!(
            r.render("t", &ctx).is_err(),
            "a property the source did not write is missing, as in strict mode anywhere"
        );
        let source = "[{{cart.url}}|{{money cart.total}}|{{date cart.abandoned_at}}|\
            {{#each cart.line_items}}{{title}}{{else}}none{{/each}}]";
        r.add(&TemplateSpec::new("t", source, Kind::Text)).unwrap();
        assert_eq!(r.render("t", &ctx).unwrap(), "[|||none]");
    }

    #[test]
    fn unknown_helpers_are_reported_and_helper_names_are_not_fields() {
        let errors =
            check_src("{{mony total_spent}} {{#foreach tags}}{{/foreach}} {{upper (lowr email)}}");
        let messages: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").nth(2).unwrap_or(e))
            .collect();
        assert_eq!(
            messages,
            [
                "unknown helper `mony` (did you mean `money`?)",
                "unknown helper `foreach`",
                "unknown helper `lowr` (did you mean `lower`?)",
            ]
        );
        assert_eq!(
            check_src("{{top_products}} {{len tags}}"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_bare_case_helper_name_is_a_field_at_the_top() {
        assert_eq!(check_src("{{title}}").len(), 1);
    }

    #[test]
    fn every_known_field_renders_for_a_plain_customer() {
        // check_fields and the context agree: nothing check_fields accepts is missing at
        // render time (features are filled from a full row in a run).
        let known = crate::known_fields();
        let features: serde_json::Map<String, serde_json::Value> =
            cohort_core::features::catalog::FEATURES
                .iter()
                .map(|f| (f.name.to_owned(), serde_json::Value::Null))
                .collect();
        let ctx = crate::Context::new(
            &cohort_core::Customer::new("1"),
            cohort_core::Timestamp::from_secs(0),
        )
        .features(features)
        .segment("s", None)
        .campaign("c")
        .unsubscribe_url("u".into());
        let mut r = Renderer::new(workspace());
        for name in known {
            r.add(&TemplateSpec::new(
                "t",
                format!("{{{{{name}}}}}"),
                Kind::Text,
            ))
            .unwrap();
            assert!(r.check_fields("t").is_empty(), "{name}");
            r.render("t", &ctx)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn suggestions_catch_typos_and_ignore_strangers() {
        let names = ["first_name", "last_name", "total_spent"];
        assert_eq!(suggest("frist_name", names), Some("first_name"));
        assert_eq!(suggest("First_Name", names), Some("first_name"));
        assert_eq!(suggest("total_spend", names), Some("total_spent"));
        assert_eq!(suggest("banana", names), None);
    }

    #[test]
    fn a_helper_is_found_wherever_it_is_used_and_not_in_plain_text() {
        let uses = |src: &str| {
            let t = Template::compile(src).unwrap();
            mentions(&t, "top_products")
        };
        assert!(uses("{{#each (top_products 3)}}{{title}}{{/each}}"));
        assert!(uses("{{#if vip}}x{{else}}{{len (top_products)}}{{/if}}"));
        assert!(uses("{{top_products}}"));
        assert!(!uses("We love top_products: {{first_name}}"));
        assert!(!uses("{{#each tags}}{{this}}{{/each}}"));
        let cart = |src: &str| mentions(&Template::compile(src).unwrap(), "cart");
        assert!(cart("<a href=\"{{cart.url}}\">back</a>"));
        assert!(cart("{{#each cart.line_items}}{{title}}{{/each}}"));
        assert!(cart("{{money cart.total}}"));
        assert!(!cart("{{cart_abandonments_30d}} carts"));
    }
}
