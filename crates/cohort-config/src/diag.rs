//! Places in config files, and the problems found there.
//!
//! Every check pushes a [`Diagnostic`] and carries on, so one `cohort validate` lists every
//! mistake; they are sorted by file and position before anyone sees them.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A place in a file: 1-based line and character column. Displays as `file:line:col`.
///
/// A loaded config keeps a location for every value it may later report on (a daemon with a
/// thousand workspaces holds tens of thousands), so the places in one file share its path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The file.
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` of `text`, the contents of `file`.
    pub fn at_offset(file: &Arc<Path>, text: &str, offset: usize) -> Location {
        let (line, column) = line_col(text, offset);
        Location {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// The place `prefix` further on: for an offset inside a string that starts here and is
    /// written without escapes (a segment's `where`, an inline template).
    #[must_use]
    pub fn advanced(&self, prefix: &str) -> Location {
        match prefix.rfind('\n') {
            None => Location {
                file: self.file.clone(),
                line: self.line,
                column: self.column + prefix.chars().count(),
            },
            Some(i) => Location {
                file: self.file.clone(),
                line: self.line + prefix.matches('\n').count(),
                column: prefix[i + 1..].chars().count() + 1,
            },
        }
    }

    /// Line 1, column 1 of `file`: a whole file, such as a template read from disk.
    pub fn start_of(file: &Path) -> Location {
        Location {
            file: file.into(),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// 1-based line and character column of a byte offset (clamped to the text).
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// One problem: where, what, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where, when it is known.
    pub at: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// What to do next, such as "did you mean `where`?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at a place.
    pub fn new(at: Option<Location>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            at,
            message: message.into(),
            help: None,
        }
    }

    /// The same problem, with advice.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// With advice when there is some.
    #[must_use]
    pub fn maybe_help(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

/// Every problem found, in file order. Displays one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// No problems yet.
    pub fn new() -> Diagnostics {
        Diagnostics(Vec::new())
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// Adds several.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(more);
    }

    /// Iterates over them.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Sorts by file, line and column (diagnostics without a place last), keeping the order of
    /// problems found at the same place, and drops exact repeats.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| match (&a.at, &b.at) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A JSON pointer into a plugin's config as people write the path: `/api/hosts/0` is
/// `.api.hosts[0]`. Used after `config` in messages (`config.api.hosts[0]: …`).
pub fn dotted_pointer(pointer: &str) -> String {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.parse::<usize>().is_ok() {
                format!("[{s}]")
            } else {
                format!(".{s}")
            }
        })
        .collect()
}

/// The closest of `candidates` to a name, when close enough to be a likely typo: the one rule
/// of the whole of Cohort (`cohort_core::text`).
pub use cohort_core::text::did_you_mean;

/// "did you mean `x`?" when some candidate is close.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    did_you_mean(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers_read_as_dotted_paths() {
        assert_eq!(dotted_pointer("/api/hosts/0/port"), ".api.hosts[0].port");
        assert_eq!(dotted_pointer(""), "");
    }

    #[test]
    fn line_and_column_count_characters_not_bytes() {
        let text = "a = 1\nné = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        let eq = text.rfind('=').unwrap();
        assert_eq!(line_col(text, eq), (2, 4));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }

    #[test]
    fn advancing_counts_lines_and_characters() {
        let at = Location {
            file: std::path::Path::new("c.toml").into(),
            line: 4,
            column: 10,
        };
        assert_eq!(at.advanced("ab").to_string(), "c.toml:4:12");
        assert_eq!(at.advanced("é\nxy").to_string(), "c.toml:5:3");
        assert_eq!(at.advanced(""), at);
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        let keys = ["name", "where", "description", "min_size"];
        assert_eq!(did_you_mean("wher", keys), Some("where"));
        assert_eq!(did_you_mean("descripton", keys), Some("description"));
        assert_eq!(did_you_mean("minsize", keys), Some("min_size"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("Name", keys), Some("name"));
        assert_eq!(
            did_you_mean("sned", ["upsert", "mirror", "send"]),
            Some("send")
        );
    }

    #[test]
    fn diagnostics_sort_by_place_and_print_one_per_line() {
        let at = |line| {
            Some(Location {
                file: std::path::Path::new("c.toml").into(),
                line,
                column: 1,
            })
        };
        let mut d = Diagnostics::new();
        d.push(Diagnostic::new(at(9), "second"));
        d.push(Diagnostic::new(None, "last"));
        d.push(Diagnostic::new(at(2), "first").help("did you mean `x`?"));
        d.sort();
        assert_eq!(
            d.to_string(),
            "c.toml:2:1: first; did you mean `x`?\nc.toml:9:1: second\nlast"
        );
    }
}
