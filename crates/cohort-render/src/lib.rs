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

mod check;
mod context;
mod error;
mod format;
mod helpers;
mod renderer;
mod text;

pub use context::{Context, Product, WorkspaceInfo, feature_map, known_fields};
pub use error::{RenderError, TemplateError};
pub use renderer::{Kind, Renderer, TemplateSpec};
pub use text::html_to_text;
