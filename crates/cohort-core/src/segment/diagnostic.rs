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

/// The candidate nearest to `name`, if one is near enough to be a plausible typo.
///
/// Case differences cost nothing (`Total_Spent` finds `total_spent`); otherwise up to a third
/// of the name's length may differ, at least one edit. Ties go to the earlier candidate.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let target: Vec<char> = name.to_lowercase().chars().collect();
    let limit = (target.len() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let other: Vec<char> = candidate.to_lowercase().chars().collect();
        let d = edit_distance(&target, &other);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// adjacent characters each cost one.
pub(crate) fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    // Three rolling rows: two back is needed for transpositions.
    let mut prev2 = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(a: &str, b: &str) -> usize {
        edit_distance(
            &a.chars().collect::<Vec<_>>(),
            &b.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn distance_counts_edits_and_adjacent_swaps() {
        assert_eq!(dist("", ""), 0);
        assert_eq!(dist("abc", ""), 3);
        assert_eq!(dist("", "ab"), 2);
        assert_eq!(dist("kitten", "sitting"), 3);
        assert_eq!(dist("total_spend", "total_spent"), 1);
        assert_eq!(dist("contry", "country"), 1);
        assert_eq!(dist("ab", "ba"), 1);
        assert_eq!(dist("orders_cuont", "orders_count"), 1);
    }

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
