//! The segments file: TOML with one `[[segment]]` table per segment. `[[segments]]`, the
//! spelling of workspace configs, is accepted too, so a segment can be copied between them.
//!
//! Each `where` keeps its span in the file, so an error inside an expression is reported at
//! the file's own line and column, not just "column 12 of the expression".

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cohort_core::segment::{SegmentDef, SegmentError};
use serde::Deserialize;
use toml::Spanned;

/// One segment as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "where")]
    expr: Spanned<String>,
    #[serde(default)]
    min_size: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    segment: Vec<RawSegment>,
    #[serde(default)]
    segments: Vec<RawSegment>,
}

/// A segment with what the file says about it beyond its expression.
#[derive(Debug, Clone)]
pub(crate) struct FileSegment {
    pub(crate) def: SegmentDef,
    pub(crate) description: Option<String>,
    pub(crate) min_size: usize,
    /// Byte offset in the file of the expression's first character, when the expression is
    /// written without escapes (so offsets inside it map one to one).
    expr_offset: Option<usize>,
    /// Byte offset of the value as a whole.
    value_offset: usize,
}

/// A parsed segments file.
#[derive(Debug)]
pub(crate) struct SegmentsFile {
    pub(crate) path: PathBuf,
    text: String,
    pub(crate) segments: Vec<FileSegment>,
}

impl SegmentsFile {
    pub(crate) fn read(path: &Path) -> Result<SegmentsFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading segments file {}", path.display()))?;
        Self::parse(path, text)
    }

    pub(crate) fn parse(path: &Path, text: String) -> Result<SegmentsFile> {
        let raw: RawFile = toml::from_str(&text).map_err(|e| {
            let place = e
                .span()
                .map(|s| {
                    let (line, col) = line_col(&text, s.start);
                    format!(":{line}:{col}")
                })
                .unwrap_or_default();
            anyhow::anyhow!("{}{place}: {}", path.display(), e.message())
        })?;
        let mut all = raw.segment;
        all.extend(raw.segments);
        // The two spellings are two TOML arrays; put their tables back in file order.
        all.sort_by_key(|s| s.expr.span().start);
        if all.is_empty() {
            anyhow::bail!(
                "{}: no segments; add one as\n\n[[segment]]\nname = \"vip\"\nwhere = \"total_spent > 500\"",
                path.display()
            );
        }
        let segments = all
            .into_iter()
            .map(|s| {
                let span = s.expr.span();
                let value = s.expr.into_inner();
                let written = text.get(span.clone()).unwrap_or("");
                let expr_offset = ["\"", "'"].iter().find_map(|q| {
                    let inner = written.strip_prefix(q)?.strip_suffix(q)?;
                    (inner == value).then_some(span.start + q.len())
                });
                FileSegment {
                    def: SegmentDef::new(s.name, value),
                    description: s.description,
                    min_size: s.min_size.unwrap_or(0),
                    expr_offset,
                    value_offset: span.start,
                }
            })
            .collect();
        Ok(SegmentsFile {
            path: path.to_owned(),
            text,
            segments,
        })
    }

    pub(crate) fn defs(&self) -> Vec<SegmentDef> {
        self.segments.iter().map(|s| s.def.clone()).collect()
    }

    /// An error as `file:line:col: in segment `x`: message`, then the expression with a caret.
    pub(crate) fn render_error(&self, err: &SegmentError) -> String {
        let seg = self.segments.iter().find(|s| s.def.name == err.segment);
        let offset = seg.map_or(0, |s| match s.expr_offset {
            Some(start) => start + err.diagnostic.span.start,
            None => s.value_offset,
        });
        let (line, col) = line_col(&self.text, offset);
        let rendered = err.diagnostic.render(&err.expr);
        let snippet: Vec<&str> = rendered.lines().skip(1).collect();
        format!(
            "{}:{line}:{col}: in segment `{}`: {}\n{}",
            self.path.display(),
            err.segment,
            err.diagnostic.message,
            snippet.join("\n")
        )
    }

    /// Every error, rendered, as one message.
    pub(crate) fn render_errors(&self, errors: &[SegmentError]) -> String {
        // In file order, whatever order the checks found them in.
        let position = |e: &SegmentError| {
            let index = self.segments.iter().position(|s| s.def.name == e.segment);
            (index, e.diagnostic.span.start)
        };
        let mut sorted: Vec<&SegmentError> = errors.iter().collect();
        sorted.sort_by_key(|e| position(e));
        let mut out: Vec<String> = sorted.into_iter().map(|e| self.render_error(e)).collect();
        out.push(format!(
            "{} error{} in {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            self.path.display()
        ));
        out.join("\n\n")
    }
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_core::features::FieldInfo;
    use cohort_core::features::catalog::FEATURES;
    use cohort_core::segment::SegmentSet;

    fn fields() -> Vec<FieldInfo> {
        FEATURES
            .iter()
            .map(|f| FieldInfo {
                name: f.name.into(),
                ty: f.ty,
                doc: f.doc.into(),
            })
            .collect()
    }

    #[test]
    fn expression_errors_point_into_the_file() {
        let text = "# vip\n[[segment]]\nname = \"vip\"\nwhere = \"orders_count >= 3 and total_spend > 500\"\n";
        let file = SegmentsFile::parse(Path::new("segs.toml"), text.into()).expect("parses");
        let errors = SegmentSet::check(&file.defs(), &fields()).expect_err("unknown field");
        let msg = file.render_error(&errors[0]);
        assert!(
            msg.starts_with("segs.toml:4:32: in segment `vip`: unknown field `total_spend`"),
            "{msg}"
        );
        assert!(msg.contains("did you mean `total_spent`?"), "{msg}");
        assert!(
            msg.contains(&format!("\n{}{}\n", " ".repeat(2 + 22), "^".repeat(11))),
            "caret under the field:\n{msg}"
        );
    }

    #[test]
    fn toml_mistakes_name_line_and_column() {
        let err = SegmentsFile::parse(
            Path::new("s.toml"),
            "[[segment]]\nname = \"a\"\nwher = \"x\"\n".into(),
        )
        .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("s.toml:3:1: unknown field `wher`"), "{msg}");
        let err = SegmentsFile::parse(Path::new("s.toml"), "".into()).expect_err("empty");
        assert!(err.to_string().contains("no segments"));
    }

    #[test]
    fn segments_may_be_spelled_segments_as_in_configs() {
        let text = "[[segments]]\nname = \"a\"\nwhere = \"orders_count > 1\"\n\
                    [[segment]]\nname = \"b\"\nwhere = \"orders_count > 2\"\n\
                    [[segments]]\nname = \"c\"\nwhere = \"total_spend > 3\"\n";
        let file = SegmentsFile::parse(Path::new("s.toml"), text.into()).expect("parses");
        let names: Vec<&str> = file.segments.iter().map(|s| s.def.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "both spellings, in file order");
        let errors = SegmentSet::check(&file.defs(), &fields()).expect_err("unknown field");
        assert!(
            file.render_error(&errors[0])
                .starts_with("s.toml:9:10: in segment `c`"),
            "{}",
            file.render_error(&errors[0])
        );
    }
}
