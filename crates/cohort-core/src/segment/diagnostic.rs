//! Errors in segment expressions, rendered for people.
//!
//! Segments are written by marketers in a form field or a config file, so every error points at
//! the bad token (a byte span, shown as a 1-based character column) and, where it can, says
//! what would have been right. Rendering is plain text with a caret line, because it has to
//! read the same in a terminal, a log line and an HTTP response; colour is the caller's job.
//!
//! Name suggestions use the optimal-string-alignment distance (Levenshtein plus adjacent
//! transpositions), computed here on lower-cased characters: field lists are a few hundred
//! names at most, so a plain dynamic programme is plenty.

use std::fmt::Write as _;
use std::ops::Range;

/// One error in one expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Diagnostic {
    /// What is wrong, in one sentence without a trailing period.
    pub message: String,
    /// Byte offsets of the offending text in the expression (empty at the end of input).
    pub span: Range<usize>,
    /// What to do about it, when there is something useful to say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn new(message: impl Into<String>, span: Range<usize>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            help: None,
        }
    }

    /// The same error with a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line of the span's start in `source` (expressions may span lines in config files).
    pub fn line(&self, source: &str) -> usize {
        let start = floor_char_boundary(source, self.span.start);
        source[..start].matches('\n').count() + 1
    }

    /// 1-based character column of the span's start on its line of `source`.
    pub fn column(&self, source: &str) -> usize {
        let start = floor_char_boundary(source, self.span.start);
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        source[line_start..start].chars().count() + 1
    }

    /// The error, the line of `source` it is on, carets under the offending text, and the help.
    ///
    /// ```text
    /// error: unknown field `total_spend` (column 1)
    ///   total_spend > 500
    ///   ^^^^^^^^^^^
    ///   help: did you mean `total_spent`?
    /// ```
    pub fn render(&self, source: &str) -> String {
        let start = floor_char_boundary(source, self.span.start);
        let end = floor_char_boundary(source, self.span.end.max(self.span.start));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_text = &source[line_start..line_end];
        let (line, column) = (self.line(source), self.column(source));
        let caret_chars = source[start..end.min(line_end)].chars().count().max(1);

        let mut out = String::new();
        let place = if source.contains('\n') {
            format!("line {line}, column {column}")
        } else {
            format!("column {column}")
        };
        let _ = writeln!(out, "error: {} ({place})", self.message);
        // Tabs would shift the carets by a terminal-dependent amount; one space each keeps
        // the columns aligned.
        let _ = writeln!(out, "  {}", line_text.replace('\t', " "));
        let _ = write!(
            out,
            "  {}{}",
            " ".repeat(column - 1),
            "^".repeat(caret_chars)
        );
        if let Some(help) = &self.help {
            let _ = write!(out, "\n  help: {help}");
        }
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

pub use crate::text::did_you_mean;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_plausible_name() {
        let fields = ["total_spent", "orders_count", "country", "city"];
        assert_eq!(did_you_mean("total_spend", fields), Some("total_spent"));
        assert_eq!(did_you_mean("Country", fields), Some("country"));
        assert_eq!(did_you_mean("citi", fields), Some("city"));
        assert_eq!(did_you_mean("birthday", fields), None);
        assert_eq!(did_you_mean("zz", fields), None);
    }

    #[test]
    fn renders_a_caret_under_the_span() {
        let d = Diagnostic::new("unknown field `total_spend`", 0..11)
            .with_help("did you mean `total_spent`?");
        assert_eq!(
            d.render("total_spend > 500"),
            "error: unknown field `total_spend` (column 1)\n  total_spend > 500\n  ^^^^^^^^^^^\n  help: did you mean `total_spent`?"
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let src = "city = 'Zürich' and x";
        let at = src.find(" and").expect("present") + 1;
        let d = Diagnostic::new("here", at..at + 3);
        assert_eq!(d.column(src), 17);
        assert!(
            d.render(src)
                .ends_with(&format!("\n  {}^^^", " ".repeat(16)))
        );
    }

    #[test]
    fn an_empty_span_at_the_end_still_gets_one_caret() {
        let d = Diagnostic::new("expected a value", 3..3);
        assert_eq!(d.column("a ="), 4);
        assert!(d.render("a =").ends_with("\n  a =\n     ^"));
    }

    #[test]
    fn multi_line_sources_show_the_offending_line() {
        let src = "country = 'US'\n  and totl > 3";
        let d = Diagnostic::new("unknown field `totl`", 21..25);
        assert_eq!((d.line(src), d.column(src)), (2, 7));
        assert_eq!(
            d.render(src),
            "error: unknown field `totl` (line 2, column 7)\n    and totl > 3\n        ^^^^"
        );
    }
}
