//! A workspace's templates, compiled once for a run, a preview or a validation.

use cohort_config::{Campaign, Template, Workspace};
use cohort_render::{Kind, Renderer, TemplateError, TemplateSpec, WorkspaceInfo};

/// A renderer with every template of `workspace`, and the errors of those that do not compile.
pub fn renderer(workspace: &Workspace) -> (Renderer, Vec<TemplateError>) {
    let mut renderer = Renderer::new(WorkspaceInfo {
        id: workspace.id.clone(),
        name: workspace.name.clone(),
        timezone: workspace.timezone,
        currency: workspace.currency.clone(),
    });
    let mut errors = Vec::new();
    for (template, kind) in all(workspace) {
        if let Err(e) = renderer.add(&spec(template, kind)) {
            errors.push(e);
        }
    }
    (renderer, errors)
}

/// Every template of the workspace with the escaping it is rendered with: HTML bodies escape,
/// everything else (subjects, text bodies, audience fields, URLs) is plain text.
pub fn all(workspace: &Workspace) -> Vec<(&Template, Kind)> {
    let mut out: Vec<(&Template, Kind)> = Vec::new();
    if let Some(url) = &workspace.unsubscribe_url {
        out.push((url, Kind::Text));
    }
    for campaign in &workspace.campaigns {
        out.extend(of_campaign(campaign));
    }
    out
}

/// The templates of one campaign.
pub fn of_campaign(campaign: &Campaign) -> Vec<(&Template, Kind)> {
    let mut out = Vec::new();
    if let Some(email) = &campaign.email {
        out.push((&email.subject, Kind::Text));
        if let Some(html) = &email.html {
            out.push((html, Kind::Html));
        }
        if let Some(text) = &email.text {
            out.push((text, Kind::Text));
        }
    }
    out.extend(campaign.fields.iter().map(|(_, t)| (t, Kind::Text)));
    out
}

/// A template's spec, placed where its text is: a whole file (`html_file`), or inline in the
/// TOML, so that errors point at the file's own lines and columns.
fn spec(template: &Template, kind: Kind) -> TemplateSpec {
    let spec = TemplateSpec::new(&template.name, &template.text, kind);
    let file = template.at.file.display().to_string();
    let whole_file = template.at.line == 1
        && template.at.column == 1
        && template.at.file.extension().is_none_or(|e| e != "toml");
    if whole_file {
        spec.file(file)
    } else {
        spec.inline(file, template.at.line, template.at.column)
    }
}

/// What templates use beyond the customer and their features. Each is costly to gather (every
/// order's line items, every event's properties), so a run gathers only what a template
/// mentions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// `top_products`: the line items of every order.
    pub top_products: bool,
    /// `cart`: the customer's latest open `cart_abandoned` event.
    pub cart: bool,
}

impl Wanted {
    /// What any of `templates` mentions.
    pub fn by<'a>(
        renderer: &Renderer,
        templates: impl IntoIterator<Item = &'a (&'a Template, Kind)>,
    ) -> Wanted {
        templates
            .into_iter()
            .fold(Wanted::default(), |wanted, (t, _)| Wanted {
                top_products: wanted.top_products || renderer.uses(&t.name, "top_products"),
                cart: wanted.cart || renderer.uses(&t.name, "cart"),
            })
    }
}
