//! A named set of segments that may refer to each other with `in_segment`.
//!
//! Segments are checked and compiled together because references cross them: names must
//! resolve, cycles must be rejected (with the path, `a → b → a`), and evaluation must run each
//! segment once, after the segments it uses. Every error of every segment is collected before
//! failing, so a config with three broken segments reports three errors, not the first one.
//!
//! A compiled set borrows the table it was compiled against: its constants (dictionary codes,
//! resolved dates) are only meaningful for that table, and the borrow makes evaluating it
//! against another table impossible rather than silently wrong.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::ast::Expr;
use super::check::check;
use super::compile::{Plan, compile};
use super::diagnostic::{Diagnostic, did_you_mean};
use super::eval::eval;
use super::explain::{Explainer, Explanation};
use super::parser::parse;
use crate::bitset::Bitset;
use crate::features::{FeatureTable, FieldInfo};

/// A segment as configured: a name and an expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentDef {
    /// Unique name, used by `in_segment('…')` and by destinations.
    pub name: String,
    /// The expression source.
    pub expr: String,
}

impl SegmentDef {
    /// A definition.
    pub fn new(name: impl Into<String>, expr: impl Into<String>) -> Self {
        SegmentDef {
            name: name.into(),
            expr: expr.into(),
        }
    }
}

/// An error in one segment of a set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment `{segment}`: {diagnostic}")]
pub struct SegmentError {
    /// The segment's name.
    pub segment: String,
    /// The segment's expression source, which the diagnostic's span points into.
    pub expr: String,
    /// What is wrong, and where.
    pub diagnostic: Diagnostic,
}

impl SegmentError {
    /// The error with the segment's name, the expression and a caret line.
    pub fn render(&self) -> String {
        format!(
            "in segment `{}`:\n{}",
            self.segment,
            self.diagnostic.render(&self.expr)
        )
    }
}

/// The members of one segment, as produced by [`SegmentSet::run`].
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentResult<'s> {
    /// Position of the segment in the definitions.
    pub index: usize,
    /// The segment's name.
    pub name: &'s str,
    /// Member rows of the table.
    pub members: Bitset,
}

/// Segments compiled against one feature table, ready to evaluate and explain.
#[derive(Debug)]
pub struct SegmentSet<'t> {
    table: &'t FeatureTable,
    segments: Vec<Compiled<'t>>,
    /// Indices in an order where every segment comes after the segments it uses.
    order: Vec<usize>,
    /// Whether some segment uses this one (so its members must be kept during a run).
    used: Vec<bool>,
}

#[derive(Debug)]
struct Compiled<'t> {
    name: String,
    expr: Expr,
    plan: Plan<'t>,
}

/// What checking a set of definitions found.
struct Analysis {
    exprs: Vec<Option<Expr>>,
    order: Vec<usize>,
    used: Vec<bool>,
    errors: Vec<SegmentError>,
}

impl<'t> SegmentSet<'t> {
    /// Checks definitions against field names and types, without data: syntax, types, unique
    /// names, `in_segment` references and cycles. Every error of every segment is returned.
    pub fn check(defs: &[SegmentDef], fields: &[FieldInfo]) -> Result<(), Vec<SegmentError>> {
        let analysis = analyze(defs, fields);
        if analysis.errors.is_empty() {
            Ok(())
        } else {
            Err(analysis.errors)
        }
    }

    /// Checks and compiles definitions against `table`. Every error of every segment is
    /// returned.
    pub fn compile(
        defs: &[SegmentDef],
        table: &'t FeatureTable,
    ) -> Result<Self, Vec<SegmentError>> {
        // Types come from the columns themselves, which are what compilation binds to.
        let fields: Vec<FieldInfo> = table
            .fields()
            .iter()
            .map(|f| FieldInfo {
                ty: table.column(&f.name).map_or(f.ty, |c| c.field_type()),
                ..f.clone()
            })
            .collect();
        let Analysis {
            exprs,
            order,
            used,
            mut errors,
        } = analyze(defs, &fields);
        if !errors.is_empty() {
            return Err(errors);
        }
        let index_of = |name: &str| defs.iter().position(|d| d.name == name);
        let mut segments = Vec::with_capacity(defs.len());
        for (def, expr) in defs.iter().zip(exprs) {
            let Some(expr) = expr else { continue };
            match compile(&expr, table, &index_of) {
                Ok(plan) => segments.push(Compiled {
                    name: def.name.clone(),
                    expr,
                    plan,
                }),
                Err(diagnostic) => errors.push(SegmentError {
                    segment: def.name.clone(),
                    expr: def.expr.clone(),
                    diagnostic,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SegmentSet {
            table,
            segments,
            order,
            used,
        })
    }

    /// The table the set was compiled against.
    pub fn table(&self) -> &'t FeatureTable {
        self.table
    }

    /// Number of segments.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether the set has no segments.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Segment names, in definition order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|s| s.name.as_str())
    }

    /// A segment's parsed expression.
    pub fn expr(&self, name: &str) -> Option<&Expr> {
        self.segments
            .iter()
            .find(|s| s.name == name)
            .map(|s| &s.expr)
    }

    /// Members of every segment, in definition order.
    pub fn evaluate(&self) -> Vec<(String, Bitset)> {
        let mut by_index: Vec<Option<Bitset>> = vec![None; self.segments.len()];
        for result in self.run() {
            by_index[result.index] = Some(result.members);
        }
        self.segments
            .iter()
            .zip(by_index)
            .map(|(s, m)| {
                (
                    s.name.clone(),
                    m.unwrap_or_else(|| Bitset::new(self.table.len())),
                )
            })
            .collect()
    }

    /// Evaluates one segment per step, dependencies first, so a caller can time, stream or
    /// stop between segments. Each segment is evaluated exactly once.
    pub fn run(&self) -> Run<'_, 't> {
        Run {
            set: self,
            all: Bitset::full(self.table.len()),
            done: vec![None; self.segments.len()],
            step: 0,
        }
    }

    /// Why the customer at `row` is or is not in `segment`; `None` for an unknown segment or
    /// a row past the end of the table.
    pub fn explain(&self, segment: &str, row: usize) -> Option<Explanation> {
        let index = self.segments.iter().position(|s| s.name == segment)?;
        if row >= self.table.len() {
            return None;
        }
        let mut mask = Bitset::new(self.table.len());
        mask.set(row, true);
        let lookup = |i: usize| (&self.segments[i].expr, &self.segments[i].plan);
        let explainer = Explainer {
            table: self.table,
            row,
            mask,
            segments: &lookup,
        };
        let target = &self.segments[index];
        let tree = explainer.node(&target.expr, &target.plan);
        Some(Explanation {
            segment: target.name.clone(),
            customer: self.table.ids()[row].clone(),
            row,
            member: tree.result,
            tree,
        })
    }
}

/// A run over a [`SegmentSet`], yielding each segment's members in dependency order.
#[derive(Debug)]
pub struct Run<'s, 't> {
    set: &'s SegmentSet<'t>,
    all: Bitset,
    /// Members of evaluated segments that later segments use.
    done: Vec<Option<Bitset>>,
    step: usize,
}

impl<'s> Iterator for Run<'s, '_> {
    type Item = SegmentResult<'s>;

    fn next(&mut self) -> Option<Self::Item> {
        let &index = self.set.order.get(self.step)?;
        self.step += 1;
        let segment = &self.set.segments[index];
        let members = eval(&segment.plan, &self.done, &self.all);
        if self.set.used[index] {
            self.done[index] = Some(members.clone());
        }
        Some(SegmentResult {
            index,
            name: &segment.name,
            members,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.set.order.len() - self.step;
        (left, Some(left))
    }
}

fn analyze(defs: &[SegmentDef], fields: &[FieldInfo]) -> Analysis {
    let mut errors = Vec::new();
    let error = |i: usize, diagnostic: Diagnostic| SegmentError {
        segment: defs[i].name.clone(),
        expr: defs[i].expr.clone(),
        diagnostic,
    };

    for (i, def) in defs.iter().enumerate() {
        if let Some(first) = defs[..i].iter().position(|d| d.name == def.name) {
            errors.push(error(
                i,
                Diagnostic::new(
                    format!("segment `{}` is defined more than once", def.name),
                    0..0,
                )
                .with_help(format!(
                    "segment {} has the same name; rename one of them",
                    first + 1
                )),
            ));
        }
    }

    let exprs: Vec<Option<Expr>> = defs
        .iter()
        .enumerate()
        .map(|(i, def)| match parse(&def.expr) {
            Ok(expr) => Some(expr),
            Err(d) => {
                errors.push(error(i, d));
                None
            }
        })
        .collect();

    // Edges `i → j` for `in_segment(j)` in segment `i`, with the reference's span.
    let mut edges: Vec<Vec<(usize, Range<usize>)>> = vec![Vec::new(); defs.len()];
    for (i, expr) in exprs.iter().enumerate() {
        let Some(expr) = expr else { continue };
        if let Err(diagnostics) = check(expr, fields) {
            errors.extend(diagnostics.into_iter().map(|d| error(i, d)));
        }
        for r in expr.segment_refs() {
            match defs.iter().position(|d| d.name == r.name) {
                Some(j) => edges[i].push((j, r.span.clone())),
                None => {
                    let mut d =
                        Diagnostic::new(format!("unknown segment `{}`", r.name), r.span.clone());
                    if let Some(near) = did_you_mean(&r.name, defs.iter().map(|d| d.name.as_str()))
                    {
                        d = d.with_help(format!("did you mean `{near}`?"));
                    }
                    errors.push(error(i, d));
                }
            }
        }
    }

    let (order, cycles) = topological_order(&edges);
    for cycle in cycles {
        let names: Vec<&str> = cycle.iter().map(|&i| defs[i].name.as_str()).collect();
        let (from, to) = (cycle[0], cycle[1]);
        let span = edges[from]
            .iter()
            .find(|(j, _)| *j == to)
            .map_or(0..0, |(_, s)| s.clone());
        errors.push(error(
            from,
            Diagnostic::new(
                format!(
                    "segments refer to each other in a cycle: {}",
                    names.join(" → ")
                ),
                span,
            )
            .with_help(
                "a segment cannot include itself, directly or through others; remove one reference",
            ),
        ));
    }

    let mut used = vec![false; defs.len()];
    for (j, _) in edges.iter().flatten() {
        used[*j] = true;
    }
    Analysis {
        exprs,
        order,
        used,
        errors,
    }
}

/// Segments in dependency order (depth-first, definition order among independent segments),
/// and every cycle found, each as a path that starts and ends at the same segment.
fn topological_order(edges: &[Vec<(usize, Range<usize>)>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    struct Walk<'a> {
        edges: &'a [Vec<(usize, Range<usize>)>],
        marks: Vec<Mark>,
        path: Vec<usize>,
        order: Vec<usize>,
        cycles: Vec<Vec<usize>>,
    }
    impl Walk<'_> {
        fn visit(&mut self, i: usize) {
            self.marks[i] = Mark::Active;
            self.path.push(i);
            for (j, _) in &self.edges[i] {
                match self.marks[*j] {
                    Mark::New => self.visit(*j),
                    Mark::Active => {
                        let start = self.path.iter().position(|p| p == j).unwrap_or(0);
                        let mut cycle = self.path[start..].to_vec();
                        cycle.push(*j);
                        self.cycles.push(cycle);
                    }
                    Mark::Done => {}
                }
            }
            self.path.pop();
            self.marks[i] = Mark::Done;
            self.order.push(i);
        }
    }
    let mut walk = Walk {
        edges,
        marks: vec![Mark::New; edges.len()],
        path: Vec::new(),
        order: Vec::new(),
        cycles: Vec::new(),
    };
    for i in 0..edges.len() {
        if walk.marks[i] == Mark::New {
            walk.visit(i);
        }
    }
    (walk.order, walk.cycles)
}
