//! The syntax tree of a segment expression, and its canonical source form.
//!
//! The tree keeps the shape the user wrote (no flattening of nested parentheses, no constant
//! folding) because explanations walk it to show every sub-expression. `and`/`or` are n-ary so
//! `a and b and c` explains as one list of three conditions, not a lopsided binary tree.
//!
//! Every node that can be blamed for an error carries the byte span it came from. Spans say
//! where the source was, not what it means, so equality ignores them: a tree printed with
//! [`Display`](fmt::Display) and parsed back compares equal to the original.

use std::fmt;
use std::ops::Range;

use chrono::NaiveDate;

use crate::time::{CalendarOffset, Timestamp};

/// A segment expression.
///
/// Invariant kept by the parser (and expected of hand-built trees): `And` and `Or` have at
/// least two children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Every child holds.
    And(Vec<Expr>),
    /// At least one child holds.
    Or(Vec<Expr>),
    /// The child does not hold (plain complement: rows with missing values included).
    Not(Box<Expr>),
    /// A test on one field.
    Predicate(Predicate),
    /// Membership in another segment of the same set: `in_segment('vip')`.
    InSegment(SegmentRef),
}

/// A test of one field: `total_spent > 500`, `country in ('US', 'CA')`, `accepts_email_marketing`.
#[derive(Debug, Clone, Eq)]
pub struct Predicate {
    /// The field tested.
    pub field: FieldRef,
    /// What is tested.
    pub test: Test,
    /// The operator's span (the field's, for a bare boolean field), for type errors.
    pub op_span: Range<usize>,
}

/// A field name as written.
#[derive(Debug, Clone, Eq)]
pub struct FieldRef {
    /// Name, dotted parts included (`attributes.tier`).
    pub name: String,
    /// Where it was written.
    pub span: Range<usize>,
}

/// A reference to another segment.
#[derive(Debug, Clone, Eq)]
pub struct SegmentRef {
    /// The segment's name.
    pub name: String,
    /// The span of the whole `in_segment('…')` call.
    pub span: Range<usize>,
}

/// The test a predicate applies to its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    /// `FIELD op VALUE`.
    Compare(CmpOp, Literal),
    /// `FIELD in (…)`, or `FIELD not in (…)` when `negated`.
    In {
        /// `not in`.
        negated: bool,
        /// The values, at least one.
        values: Vec<Literal>,
    },
    /// `FIELD between LOW and HIGH`, inclusive at both ends.
    Between(Literal, Literal),
    /// `FIELD contains V`, or `FIELD not contains V` when `negated`.
    Contains {
        /// `not contains`.
        negated: bool,
        /// The tag or substring.
        value: Literal,
    },
    /// `FIELD starts with V`.
    StartsWith(Literal),
    /// `FIELD ends with V`.
    EndsWith(Literal),
    /// `FIELD is null`, or `FIELD is not null` when `negated`.
    IsNull {
        /// `is not null`.
        negated: bool,
    },
    /// A bare boolean field: `accepts_email_marketing` means `accepts_email_marketing = true`.
    IsTrue,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` (also written `<>`)
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// The operator as written in canonical source.
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// Whether the operator orders values (`<`, `<=`, `>`, `>=`) rather than testing equality.
    pub fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A constant in an expression, with where it was written.
#[derive(Debug, Clone, Eq)]
pub struct Literal {
    /// The value.
    pub lit: Lit,
    /// Where it was written.
    pub span: Range<usize>,
}

impl Literal {
    /// A literal with no source position (for trees built in code).
    pub fn new(lit: Lit) -> Self {
        Literal { lit, span: 0..0 }
    }
}

/// The value of a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    /// `500`, `49.99`, `-3`: kept exact, never as a float.
    Number(Decimal),
    /// `'US'` or `"US"`.
    String(String),
    /// `true` / `false`.
    Bool(bool),
    /// `2024-01-01`: a whole calendar day in the workspace's zone.
    Date(NaiveDate),
    /// `2024-01-01T10:00:00` (UTC unless an offset is given): one instant.
    DateTime(Timestamp),
    /// `-90d`, `+7d`: an instant relative to the run's clock.
    Relative(RelativeDate),
    /// `today`: the run's calendar day in the workspace's zone.
    Today,
}

/// An exact decimal number: `mantissa / 10^scale`.
///
/// `1.50` keeps its scale of 2 so it prints back as written; comparisons never depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The digits, with the sign.
    pub mantissa: i128,
    /// Digits after the decimal point.
    pub scale: u32,
}

impl Decimal {
    /// The number as a float (for `Float` fields, which compare as `f64`).
    pub fn to_f64(self) -> f64 {
        // Through the text, so `49.99` becomes the same f64 that parsing "49.99" gives.
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{frac}")
    }
}

/// The unit of a relative date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelativeUnit {
    /// `d`: 24 hours.
    Days,
    /// `w`: 7 days.
    Weeks,
    /// `m`: calendar months (end of month clamps).
    Months,
    /// `y`: 12 calendar months.
    Years,
}

/// A relative instant such as `-90d` (ninety days before the run's clock) or `+7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RelativeDate {
    /// Signed count of units; negative is in the past.
    pub amount: i64,
    /// The unit.
    pub unit: RelativeUnit,
}

impl RelativeDate {
    /// The calendar offset this denotes, for [`crate::time::AsOf::shift`].
    pub fn offset(self) -> CalendarOffset {
        match self.unit {
            RelativeUnit::Days => CalendarOffset::Days(self.amount),
            RelativeUnit::Weeks => CalendarOffset::Days(self.amount.saturating_mul(7)),
            RelativeUnit::Months => CalendarOffset::Months(self.amount),
            RelativeUnit::Years => CalendarOffset::Months(self.amount.saturating_mul(12)),
        }
    }
}

impl fmt::Display for RelativeDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RelativeUnit::Days => 'd',
            RelativeUnit::Weeks => 'w',
            RelativeUnit::Months => 'm',
            RelativeUnit::Years => 'y',
        };
        let sign = if self.amount < 0 { '-' } else { '+' };
        write!(f, "{sign}{}{unit}", self.amount.unsigned_abs())
    }
}

impl PartialEq for Predicate {
    fn eq(&self, other: &Self) -> bool {
        self.field == other.field && self.test == other.test
    }
}

impl PartialEq for FieldRef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl PartialEq for SegmentRef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        self.lit == other.lit
    }
}

impl Expr {
    /// A predicate with no source positions (for trees built in code).
    pub fn predicate(field: &str, test: Test) -> Expr {
        Expr::Predicate(Predicate {
            field: FieldRef {
                name: field.to_owned(),
                span: 0..0,
            },
            test,
            op_span: 0..0,
        })
    }

    /// Every `in_segment` reference, in source order.
    pub fn segment_refs(&self) -> Vec<&SegmentRef> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::InSegment(r) = e {
                out.push(r);
            }
        });
        out
    }

    /// Every predicate, in source order.
    pub fn predicates(&self) -> Vec<&Predicate> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Predicate(p) = e {
                out.push(p);
            }
        });
        out
    }

    fn walk<'a>(&'a self, visit: &mut impl FnMut(&'a Expr)) {
        visit(self);
        match self {
            Expr::And(children) | Expr::Or(children) => {
                for child in children {
                    child.walk(visit);
                }
            }
            Expr::Not(child) => child.walk(visit),
            Expr::Predicate(_) | Expr::InSegment(_) => {}
        }
    }
}

impl fmt::Display for Expr {
    /// Canonical source: lower-case keywords, single-quoted strings, `!=` for inequality, and
    /// parentheses exactly where the tree needs them to parse back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(children) => {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    match child {
                        Expr::Or(_) => write!(f, "({child})")?,
                        _ => write!(f, "{child}")?,
                    }
                }
                Ok(())
            }
            Expr::And(children) => {
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    match child {
                        Expr::Or(_) | Expr::And(_) => write!(f, "({child})")?,
                        _ => write!(f, "{child}")?,
                    }
                }
                Ok(())
            }
            Expr::Not(child) => match &**child {
                Expr::Not(_) | Expr::InSegment(_) => write!(f, "not {child}"),
                Expr::Predicate(p) if p.test == Test::IsTrue => write!(f, "not {child}"),
                _ => write!(f, "not ({child})"),
            },
            Expr::Predicate(p) => write!(f, "{p}"),
            Expr::InSegment(r) => write!(f, "in_segment({})", Lit::String(r.name.clone())),
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field.name;
        match &self.test {
            Test::Compare(op, value) => write!(f, "{field} {} {value}", op.as_str()),
            Test::In { negated, values } => {
                write!(f, "{field} {}in (", if *negated { "not " } else { "" })?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Test::Between(low, high) => write!(f, "{field} between {low} and {high}"),
            Test::Contains { negated, value } => {
                write!(
                    f,
                    "{field} {}contains {value}",
                    if *negated { "not " } else { "" }
                )
            }
            Test::StartsWith(v) => write!(f, "{field} starts with {v}"),
            Test::EndsWith(v) => write!(f, "{field} ends with {v}"),
            Test::IsNull { negated } => {
                write!(f, "{field} is {}null", if *negated { "not " } else { "" })
            }
            Test::IsTrue => f.write_str(field),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.lit.fmt(f)
    }
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Number(d) => write!(f, "{d}"),
            Lit::String(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Lit::Bool(b) => write!(f, "{b}"),
            Lit::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Lit::DateTime(t) => write!(f, "{t}"),
            Lit::Relative(r) => write!(f, "{r}"),
            Lit::Today => f.write_str("today"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_as_written() {
        let d = |mantissa, scale| Decimal { mantissa, scale }.to_string();
        assert_eq!(d(500, 0), "500");
        assert_eq!(d(4999, 2), "49.99");
        assert_eq!(d(-3, 0), "-3");
        assert_eq!(d(-5, 1), "-0.5");
        assert_eq!(d(150, 2), "1.50");
        assert_eq!(d(7, 3), "0.007");
    }

    #[test]
    fn relative_dates_always_carry_a_sign() {
        let r = |amount, unit| RelativeDate { amount, unit }.to_string();
        assert_eq!(r(-90, RelativeUnit::Days), "-90d");
        assert_eq!(r(7, RelativeUnit::Days), "+7d");
        assert_eq!(r(-1, RelativeUnit::Years), "-1y");
        assert_eq!(
            RelativeDate {
                amount: -1,
                unit: RelativeUnit::Years
            }
            .offset(),
            CalendarOffset::Months(-12)
        );
        assert_eq!(
            RelativeDate {
                amount: -12,
                unit: RelativeUnit::Weeks
            }
            .offset(),
            CalendarOffset::Days(-84)
        );
    }

    #[test]
    fn strings_double_their_quotes() {
        assert_eq!(Lit::String("O'Brien".into()).to_string(), "'O''Brien'");
    }

    #[test]
    fn equality_ignores_spans() {
        let a = Literal {
            lit: Lit::Bool(true),
            span: 3..7,
        };
        assert_eq!(a, Literal::new(Lit::Bool(true)));
    }
}
