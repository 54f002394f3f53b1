//! Errors that name where the template lives and, when rendering, whom it was rendered for.
//!
//! Positions are in the template's file: a template written inline in TOML reports the TOML
//! file's line and column, not "line 1" of a string the user never sees as a file (see
//! [`crate::TemplateSpec::inline`]).

use std::fmt;

/// A template that does not compile, or uses a field or helper that does not exist.
///
/// The user must fix the template; nothing is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// Template name (`winback.subject`).
    pub template: String,
    /// The file the template is written in (or its name when it has no file).
    pub origin: String,
    /// 1-based line in `origin`.
    pub line: usize,
    /// 1-based column in `origin`.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do instead, when there is a good guess (`did you mean `first_name`?`).
    pub help: Option<String>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: template \"{}\": {}",
            self.origin, self.line, self.column, self.template, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// A template that compiled but failed for one customer: a field that customer's context
/// lacks, a value a helper cannot format.
///
/// Usually the template must be fixed (a strict-mode miss hits every customer alike); a bad
/// value fails only the customers that carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RenderError {
    /// Template name (`winback.html`).
    pub template: String,
    /// The file the template is written in (or its name when it has no file).
    pub origin: String,
    /// 1-based line in `origin` of the expression that failed, when handlebars knows it.
    pub line: Option<usize>,
    /// 1-based column in `origin` of that expression.
    pub column: Option<usize>,
    /// The customer the template was rendered for.
    pub customer_id: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{}:{line}:{column}: ", self.origin)?,
            (Some(line), None) => write!(f, "{}:{line}: ", self.origin)?,
            _ => write!(f, "{}: ", self.origin)?,
        }
        write!(
            f,
            "template \"{}\" failed for customer {}: {}",
            self.template, self.customer_id, self.message
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_errors_read_like_compiler_errors() {
        let e = TemplateError {
            template: "winback.subject".into(),
            origin: "config/demo.toml".into(),
            line: 40,
            column: 15,
            message: "unknown field `frist_name`".into(),
            help: Some("did you mean `first_name`?".into()),
        };
        assert_eq!(
            e.to_string(),
            "config/demo.toml:40:15: template \"winback.subject\": unknown field `frist_name` (did you mean `first_name`?)"
        );
    }

    #[test]
    fn render_errors_name_template_position_and_customer() {
        let mut e = RenderError {
            template: "winback.html".into(),
            origin: "templates/winback.html".into(),
            line: Some(3),
            column: Some(7),
            customer_id: "42".into(),
            message: "`x` is missing".into(),
        };
        assert_eq!(
            e.to_string(),
            "templates/winback.html:3:7: template \"winback.html\" failed for customer 42: `x` is missing"
        );
        e.line = None;
        e.column = None;
        assert_eq!(
            e.to_string(),
            "templates/winback.html: template \"winback.html\" failed for customer 42: `x` is missing"
        );
    }
}
