//! The segment language: parse, check, compile, evaluate and explain.
//!
//! Modelled on Shopify's customer segment queries. A segment is one expression over the
//! features of a [`FeatureTable`](crate::features::FeatureTable):
//!
//! ```text
//! orders_count >= 3 and total_spent > 500 and last_order_at >= -90d and country in ('US','CA','GB')
//! ```
//!
//! The pipeline is [`parse`] (source → [`Expr`], which prints back as canonical source),
//! [`check`] (names and types, no data needed), then [`SegmentSet::compile`] (a set of named
//! segments bound to one table's columns), [`SegmentSet::evaluate`] (a [`Bitset`](crate::Bitset) of members
//! per segment, columnar) and [`SegmentSet::explain`] (one customer, node by node). Every
//! error is a [`Diagnostic`] with a span, a caret rendering and, where possible, a suggestion.
//!
//! # Semantics
//!
//! - **Precedence**: `not` > `and` > `or`; the `and` of `between A and B` belongs to `between`.
//!   Keywords are case-insensitive, field names are not.
//! - **Numbers** compare with integer, number and money fields. Integer and money comparisons
//!   are exact (`orders_count > 2.5` is `orders_count >= 3`, `total_spent = 49.99` is exact to
//!   the ten-thousandth); number (float) fields compare as `f64`.
//! - **Time**: a relative date (`-90d`, `-12w`, `-6m`, `-1y`, `+7d`) or a date-time
//!   (`2024-01-01T10:00:00`, UTC unless `Z`/`±HH:MM` says otherwise) is one instant. A date
//!   (`2024-01-01`) or `today` is a whole calendar day in the workspace's zone: `= D` is within
//!   the day, `< D` before it starts, `<= D` before the next day starts, `> D` from the next
//!   day on, `>= D` from its start, `!= D` outside it; `between D1 and D2` covers both days
//!   entirely. Months and years move the calendar (clamping to the end of the month).
//! - **Text**: every test (`=`, `!=`, `in`, `not in`, `contains`, `starts with`, `ends with`) is
//!   case-insensitive, by Unicode lower-casing both sides. Text cannot be ordered (`<` is a
//!   type error).
//! - **Tags** take only `contains` / `not contains` (case-insensitive). A customer without
//!   tags has an empty set, never a missing one: `tags not contains 'vip'` includes them.
//! - **Missing values**: a comparison with a missing value is false, whatever the operator,
//!   `!=`, `not in`, `not contains` included; only `is null` matches them. `not (…)` is the
//!   plain complement, so `not (country = 'US')` *does* include customers with no country,
//!   while `country != 'US'` does not.
//! - **`in_segment('name')`** is membership in another segment of the same set. Unknown names
//!   and cycles are errors; each segment is evaluated once, after those it uses.

mod ast;
mod check;
mod compile;
mod diagnostic;
mod eval;
mod explain;
mod lexer;
mod parser;
mod set;
mod stable;

pub use ast::{
    CmpOp, Decimal, Expr, FieldRef, Lit, Literal, Predicate, RelativeDate, RelativeUnit,
    SegmentRef, Test,
};
pub use check::check;
pub use diagnostic::{Diagnostic, did_you_mean};
pub use explain::{ExplainNode, Explanation};
pub use parser::parse;
pub use set::{Run, SegmentDef, SegmentError, SegmentResult, SegmentSet};
pub use stable::Stability;

#[cfg(test)]
mod tests;
