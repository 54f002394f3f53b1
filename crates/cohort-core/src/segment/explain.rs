//! Why one customer is in or out of a segment.
//!
//! An explanation evaluates every sub-expression for one row, with no short-circuit, so the
//! reader sees each condition's outcome and the field value behind it, and marks the node
//! that decided each `and`/`or`/`not`: the first false child of a false `and`, the first true
//! child of a true `or`, the child of a `not`. A true `and` or a false `or` has no single
//! decisive child (every child mattered), so none is marked.
//!
//! Predicates are evaluated by the same columnar code as whole segments, under a one-row mask,
//! so an explanation can never disagree with the membership it explains.

use std::fmt;

use serde::Serialize;

use super::ast::Expr;
use super::compile::Plan;
use super::eval::eval;
use crate::bitset::Bitset;
use crate::features::{FeatureTable, Value};
use crate::record::CustomerId;

/// Why one customer is or is not a member of one segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    /// The segment.
    pub segment: String,
    /// The customer.
    pub customer: CustomerId,
    /// The customer's row in the feature table.
    pub row: usize,
    /// Whether the customer is a member.
    pub member: bool,
    /// The segment's expression, evaluated node by node.
    pub tree: ExplainNode,
}

/// One sub-expression's outcome for one customer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainNode {
    /// The sub-expression, in canonical source form.
    pub expr: String,
    /// Whether it holds for the customer.
    pub result: bool,
    /// Whether this node decided its parent's outcome (always false at the root).
    pub decided: bool,
    /// For a predicate: the field it tests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a predicate: the customer's value of the field (`null` when missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Sub-expressions; for `in_segment`, the referenced segment's own tree.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ExplainNode>,
}

/// Builds explanation trees for one row of a table.
pub(crate) struct Explainer<'a, 't> {
    pub(crate) table: &'t FeatureTable,
    pub(crate) row: usize,
    /// The one-row mask.
    pub(crate) mask: Bitset,
    /// The expression and plan of each segment of the set, by index.
    pub(crate) segments: &'a dyn Fn(usize) -> (&'a Expr, &'a Plan<'t>),
}

impl Explainer<'_, '_> {
    pub(crate) fn node(&self, expr: &Expr, plan: &Plan<'_>) -> ExplainNode {
        let mut node = ExplainNode {
            expr: expr.to_string(),
            result: false,
            decided: false,
            field: None,
            value: None,
            children: Vec::new(),
        };
        match (expr, plan) {
            (Expr::And(exprs), Plan::And(plans)) | (Expr::Or(exprs), Plan::Or(plans)) => {
                let is_and = matches!(expr, Expr::And(_));
                node.children = exprs
                    .iter()
                    .zip(plans)
                    .map(|(e, p)| self.node(e, p))
                    .collect();
                node.result = if is_and {
                    node.children.iter().all(|c| c.result)
                } else {
                    node.children.iter().any(|c| c.result)
                };
                // A false `and` is decided by its first false child, a true `or` by its first
                // true one; the other outcome needed every child.
                if is_and != node.result
                    && let Some(c) = node.children.iter_mut().find(|c| c.result == node.result)
                {
                    c.decided = true;
                }
            }
            (Expr::Not(e), Plan::Not(p)) => {
                let mut child = self.node(e, p);
                child.decided = true;
                node.result = !child.result;
                node.children.push(child);
            }
            (Expr::InSegment(_), Plan::Segment(i)) => {
                let (e, p) = (self.segments)(*i);
                let mut child = self.node(e, p);
                child.decided = true;
                node.result = child.result;
                node.children.push(child);
            }
            (Expr::Predicate(pred), Plan::Leaf(_)) => {
                node.result = eval(plan, &[], &self.mask).contains(self.row);
                node.value = Some(self.table.value(self.row, &pred.field.name));
                node.field = Some(pred.field.name.clone());
            }
            // The plan is compiled from the expression node for node; a mismatch is a bug,
            // shown rather than hidden.
            _ => node.expr = format!("{expr} (internal error: plan does not match)"),
        }
        node
    }
}

impl fmt::Display for Explanation {
    /// An indented tree:
    ///
    /// ```text
    /// customer 7 is not in segment `big_spenders`
    /// ✗ orders_count >= 3 and total_spent > 500
    ///   ✓ orders_count >= 3    orders_count: 5
    ///   ✗ total_spent > 500    total_spent: 120.00    ← decided
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.member { "is in" } else { "is not in" };
        writeln!(
            f,
            "customer {} {verdict} segment `{}`",
            self.customer, self.segment
        )?;
        write_node(f, &self.tree, 0)
    }
}

fn write_node(f: &mut fmt::Formatter<'_>, node: &ExplainNode, depth: usize) -> fmt::Result {
    let mark = if node.result { '✓' } else { '✗' };
    write!(f, "{:indent$}{mark} {}", "", node.expr, indent = depth * 2)?;
    if let (Some(field), Some(value)) = (&node.field, &node.value) {
        write!(f, "    {field}: {value}")?;
    }
    if node.decided {
        f.write_str("    ← decided")?;
    }
    for child in &node.children {
        f.write_str("\n")?;
        write_node(f, child, depth + 1)?;
    }
    Ok(())
}
