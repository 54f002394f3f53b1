//! Cohort's campaign templates: a strict handlebars registry per workspace, the helpers
//! templates call, a validate-time check of the fields they use, and rendering.
//!
//! This crate owns what a template may say and how it is turned into text: the context a
//! customer is rendered with ([`Context`]), the helpers (`money`, `date`, `default`,
//! `pluralize`, case changes, `top_products`), escaping (HTML bodies escape, subjects and
//! audience fields do not), strictness (a missing field is an error, never an empty string),
//! and errors that name the template, the file position and the customer.
//!
//! It must not do I/O: templates arrive as strings with their origin, contexts as values; it
//! knows nothing of the store, of destinations or of HTTP. That keeps rendering a pure
//! function of (template, customer) which `cohort validate`, `cohort campaign preview` and a
//! run all share. The template language is documented in `docs/templates.md`.
//!
//! ```
//! use cohort_core::{Customer, Timestamp};
//! use cohort_render::{Kind, Renderer, TemplateSpec, WorkspaceInfo};
//!
//! let mut renderer = Renderer::new(WorkspaceInfo {
//!     id: "demo".into(),
//!     name: "Demo".into(),
//!     timezone: chrono_tz::UTC,
//!     currency: "USD".into(),
//! });
//! let subject = TemplateSpec::new("winback.subject", "We miss you, {{default first_name \"there\"}}", Kind::Text)
//!     .inline("config/demo.toml", 40, 11);
//! renderer.add(&subject)?;
//! assert!(renderer.check_fields("winback.subject").is_empty());
//!
//! let ctx = renderer.context(&Customer::new("42"), Timestamp::from_secs(0));
//! assert_eq!(renderer.render("winback.subject", &ctx)?, "We miss you, there");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod check;
mod context;
mod error;
mod format;
mod helpers;
mod renderer;
mod text;

pub use context::{Cart, Context, Product, WorkspaceInfo, feature_map, known_fields};
pub use error::{RenderError, TemplateError};
pub use renderer::{Kind, Renderer, TemplateSpec};
pub use text::html_to_text;

#[cfg(test)]
mod docs {
    //! The examples in `docs/templates.md` are tests: every `| `template` | `output` |` row
    //! renders to its output.

    use crate::renderer::tests::text;

    const PAGE: &str = include_str!("../../../docs/templates.md");

    fn examples() -> Vec<(&'static str, &'static str)> {
        PAGE.lines()
            .filter_map(|line| {
                let row = line.strip_prefix("| `")?.strip_suffix("` |")?;
                row.split_once("` | `")
            })
            .collect()
    }

    #[test]
    fn docs_examples_render_as_documented() {
        let examples = examples();
        assert!(
            examples.len() >= 20,
            "only {} examples found",
            examples.len()
        );
        for (template, output) in examples {
            assert_eq!(text(template), output, "docs/templates.md: {template}");
        }
    }

    #[test]
    fn docs_describe_every_helper_and_field() {
        for helper in crate::helpers::HELPERS {
            let documented = PAGE
                .lines()
                .filter_map(|l| l.strip_prefix("### "))
                .any(|heading| heading.split(", ").any(|name| name == *helper));
            assert!(
                documented,
                "docs/templates.md has no section for `{helper}`"
            );
        }
        for field in crate::context::CUSTOMER_FIELDS
            .iter()
            .chain(crate::context::CAMPAIGN_FIELDS)
        {
            assert!(
                PAGE.contains(&format!("`{field}`")),
                "docs/templates.md does not mention `{field}`"
            );
        }
    }
}
