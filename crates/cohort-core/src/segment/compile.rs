//! Lowers a checked expression to a plan bound to one table's columns.
//!
//! Everything that depends on the literal but not on the row is done here, once, so the
//! evaluation loops only compare machine integers:
//!
//! - integer, money and date-time tests become sets of inclusive `i64` ranges over the column's
//!   raw representation (units, ten-thousandths, seconds). A decimal against an integer column
//!   is resolved exactly with `i128` floor/ceiling (`orders_count > 2.5` is `>= 3`;
//!   `orders_count = 2.5` is empty). A calendar day becomes the range from its local midnight
//!   to the next one; a relative date or `today` is resolved with the table's [`AsOf`];
//! - a text test against a dictionary-encoded column becomes a bitset over dictionary codes
//!   (the case-insensitive comparison runs once per distinct value, not once per customer);
//! - a tag becomes its code, or a constant when no customer has it.
//!
//! The plan mirrors the tree node for node (no reordering or folding across nodes), so an
//! explanation can walk both side by side.

use super::ast::{CmpOp, Decimal, Expr, Lit, Literal, Predicate, Test};
use super::diagnostic::Diagnostic;
use crate::bitset::Bitset;
use crate::features::{
    BoolColumn, CategoryColumn, Column, FeatureTable, Nullable, TagsColumn, TextColumn,
};
use crate::money::{Money, SCALE_DIGITS};
use crate::time::{AsOf, Timestamp};

/// A compiled expression.
#[derive(Debug)]
pub(crate) enum Plan<'t> {
    And(Vec<Plan<'t>>),
    Or(Vec<Plan<'t>>),
    Not(Box<Plan<'t>>),
    /// Members of the segment at this index of the set.
    Segment(usize),
    Leaf(Leaf<'t>),
}

/// A compiled predicate.
#[derive(Debug)]
pub(crate) enum Leaf<'t> {
    /// Every row (`true`) or none.
    Const(bool),
    Int(Ranges<'t, i64>),
    Money(Ranges<'t, Money>),
    Time(Ranges<'t, Timestamp>),
    Float {
        col: &'t Nullable<f64>,
        test: FloatTest,
    },
    /// Valid rows whose value is accepted.
    Bool {
        col: &'t BoolColumn,
        accept_true: bool,
        accept_false: bool,
    },
    /// Valid rows whose code is in `codes` (a bitset over dictionary codes, negation folded in).
    Category {
        col: &'t CategoryColumn,
        codes: Vec<u64>,
    },
    Text {
        col: &'t TextColumn,
        test: TextTest,
        negated: bool,
    },
    /// Rows whose tags include `code` (or do not, when negated).
    Tags {
        col: &'t TagsColumn,
        code: u32,
        negated: bool,
    },
    /// Rows without a value (`is null`), or with one when negated.
    Null {
        valid: Validity<'t>,
        negated: bool,
    },
}

/// Valid rows whose raw value lies in one of the ranges, or in none of them when negated.
#[derive(Debug)]
pub(crate) struct Ranges<'t, T> {
    pub(crate) col: &'t Nullable<T>,
    pub(crate) set: RangeSet,
    pub(crate) negated: bool,
}

/// Inclusive ranges of raw values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RangeSet {
    Empty,
    /// `lo..=lo + width`, tested as one unsigned comparison.
    One {
        lo: i64,
        width: u64,
    },
    Many(Vec<(i64, i64)>),
}

/// A float test; NaN compares as IEEE says (unequal to everything).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FloatTest {
    Cmp(CmpOp, f64),
    In { values: Vec<f64>, negated: bool },
    Between(f64, f64),
}

/// A test on lower-cased text; needles are lower-cased already.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TextTest {
    Equals(Vec<String>),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
}

impl TextTest {
    /// The test on an ASCII value, compared case-insensitively in place instead of copied.
    ///
    /// Only for ASCII values: lower-casing other text can change its length or even produce
    /// ASCII (the Kelvin sign becomes `k`), so those go through [`TextTest::matches`].
    pub(crate) fn matches_ascii(&self, v: &[u8]) -> bool {
        let same = |a: &[u8], n: &str| a.eq_ignore_ascii_case(n.as_bytes());
        match self {
            TextTest::Equals(values) => values.iter().any(|n| same(v, n)),
            TextTest::StartsWith(n) => v.len() >= n.len() && same(&v[..n.len()], n),
            TextTest::EndsWith(n) => v.len() >= n.len() && same(&v[v.len() - n.len()..], n),
            TextTest::Contains(n) => n.is_empty() || v.windows(n.len()).any(|w| same(w, n)),
        }
    }

    /// The test on an already lower-cased value.
    pub(crate) fn matches(&self, lower: &str) -> bool {
        match self {
            TextTest::Equals(values) => values.iter().any(|v| v == lower),
            TextTest::Contains(n) => lower.contains(n.as_str()),
            TextTest::StartsWith(n) => lower.starts_with(n.as_str()),
            TextTest::EndsWith(n) => lower.ends_with(n.as_str()),
        }
    }
}

/// Where a column keeps its validity.
#[derive(Debug)]
pub(crate) enum Validity<'t> {
    Bits(&'t Bitset),
    Bools(&'t [bool]),
    /// Tags: never missing.
    Always,
}

/// Raw `i64` view of the values of ordered columns.
pub(crate) trait Raw: Copy {
    fn raw(self) -> i64;
}

impl Raw for i64 {
    #[inline(always)]
    fn raw(self) -> i64 {
        self
    }
}

impl Raw for Money {
    #[inline(always)]
    fn raw(self) -> i64 {
        Money::raw(self)
    }
}

impl Raw for Timestamp {
    #[inline(always)]
    fn raw(self) -> i64 {
        self.secs()
    }
}

/// Compiles `expr` against `table`; `segment` maps an `in_segment` name to its index.
///
/// The expression must have passed [`super::check`] against the table's fields; a mismatch
/// found here is reported, not panicked on.
pub(crate) fn compile<'t>(
    expr: &Expr,
    table: &'t FeatureTable,
    segment: &dyn Fn(&str) -> Option<usize>,
) -> Result<Plan<'t>, Diagnostic> {
    let all = |children: &[Expr]| {
        children
            .iter()
            .map(|c| compile(c, table, segment))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(match expr {
        Expr::And(children) => Plan::And(all(children)?),
        Expr::Or(children) => Plan::Or(all(children)?),
        Expr::Not(child) => Plan::Not(Box::new(compile(child, table, segment)?)),
        Expr::InSegment(r) => Plan::Segment(segment(&r.name).ok_or_else(|| {
            Diagnostic::new(format!("unknown segment `{}`", r.name), r.span.clone())
        })?),
        Expr::Predicate(p) => Plan::Leaf(leaf(p, table)?),
    })
}

fn leaf<'t>(pred: &Predicate, table: &'t FeatureTable) -> Result<Leaf<'t>, Diagnostic> {
    let mismatch = || {
        Diagnostic::new(
            format!(
                "`{pred}` does not fit the type of `{}` (the expression was not checked)",
                pred.field.name
            ),
            pred.op_span.clone(),
        )
    };
    let Some((_, column)) = table.field(&pred.field.name) else {
        return Err(Diagnostic::new(
            format!("unknown field `{}`", pred.field.name),
            pred.field.span.clone(),
        ));
    };
    if !consistent(column, table.len()) {
        return Err(Diagnostic::new(
            format!(
                "column `{}` is malformed: its parts disagree on the number of rows",
                pred.field.name
            ),
            pred.field.span.clone(),
        ));
    }
    if let Test::IsNull { negated } = pred.test {
        let valid = match column {
            Column::Int(c) => Validity::Bits(&c.valid),
            Column::Float(c) => Validity::Bits(&c.valid),
            Column::Money(c) => Validity::Bits(&c.valid),
            Column::Time(c) => Validity::Bits(&c.valid),
            Column::Bool(c) => Validity::Bits(&c.valid),
            Column::Category(c) => Validity::Bits(&c.valid),
            Column::Text(c) => Validity::Bools(&c.valid),
            Column::Tags(_) => Validity::Always,
        };
        return Ok(Leaf::Null { valid, negated });
    }
    let as_of = table.as_of();
    Ok(match column {
        Column::Int(col) => {
            let (set, negated) =
                ranges(&pred.test, |l| number_bounds(l, 0)).ok_or_else(mismatch)?;
            Leaf::Int(Ranges { col, set, negated })
        }
        Column::Money(col) => {
            let (set, negated) =
                ranges(&pred.test, |l| number_bounds(l, SCALE_DIGITS)).ok_or_else(mismatch)?;
            Leaf::Money(Ranges { col, set, negated })
        }
        Column::Time(col) => {
            let (set, negated) =
                ranges(&pred.test, |l| time_bounds(l, &as_of)).ok_or_else(mismatch)?;
            Leaf::Time(Ranges { col, set, negated })
        }
        Column::Float(col) => Leaf::Float {
            col,
            test: float_test(&pred.test).ok_or_else(mismatch)?,
        },
        Column::Bool(col) => {
            let (accept_true, accept_false) = bool_test(&pred.test).ok_or_else(mismatch)?;
            Leaf::Bool {
                col,
                accept_true,
                accept_false,
            }
        }
        Column::Category(col) => {
            let (test, negated) = text_test(&pred.test).ok_or_else(mismatch)?;
            let mut codes = vec![0u64; col.dict.len().div_ceil(64)];
            for (code, value) in col.dict.iter().enumerate() {
                if test.matches(&value.to_lowercase()) != negated {
                    codes[code / 64] |= 1 << (code % 64);
                }
            }
            Leaf::Category { col, codes }
        }
        Column::Text(col) => {
            let (test, negated) = text_test(&pred.test).ok_or_else(mismatch)?;
            Leaf::Text { col, test, negated }
        }
        Column::Tags(col) => {
            let Test::Contains {
                negated,
                value:
                    Literal {
                        lit: Lit::String(tag),
                        ..
                    },
            } = &pred.test
            else {
                return Err(mismatch());
            };
            match col.code_of(tag) {
                Some(code) => Leaf::Tags {
                    col,
                    code,
                    negated: *negated,
                },
                // No customer has the tag: `contains` holds for nobody, `not contains` for all.
                None => Leaf::Const(*negated),
            }
        }
    })
}

/// Whether every part of `column` has one entry per row, so evaluation can index without
/// checking. (`FeatureTable::from_columns` checks the values, not the validity.)
fn consistent(column: &Column, rows: usize) -> bool {
    match column {
        Column::Int(c) => c.values.len() == rows && c.valid.len() == rows,
        Column::Float(c) => c.values.len() == rows && c.valid.len() == rows,
        Column::Money(c) => c.values.len() == rows && c.valid.len() == rows,
        Column::Time(c) => c.values.len() == rows && c.valid.len() == rows,
        Column::Bool(c) => c.values.len() == rows && c.valid.len() == rows,
        Column::Category(c) => c.codes.len() == rows && c.valid.len() == rows,
        Column::Text(c) => {
            c.valid.len() == rows
                && c.offsets.len() == rows + 1
                && c.offsets
                    .last()
                    .is_some_and(|&end| end as usize == c.bytes.len())
        }
        Column::Tags(c) => {
            c.offsets.len() == rows + 1
                && c.offsets
                    .last()
                    .is_some_and(|&end| end as usize == c.codes.len())
        }
    }
}

/// Lowers an ordered test given how each literal maps to the inclusive range of raw values it
/// denotes (`[ceil(x), floor(x)]` for a number `x`: empty unless `x` is whole in raw units;
/// the whole day for a date; one second for an instant). `None` when a literal does not fit.
fn ranges(test: &Test, bounds: impl Fn(&Lit) -> Option<(i128, i128)>) -> Option<(RangeSet, bool)> {
    const MIN: i128 = i64::MIN as i128;
    const MAX: i128 = i64::MAX as i128;
    let (list, negated): (Vec<(i128, i128)>, bool) = match test {
        Test::Compare(op, lit) => {
            let (s, e) = bounds(&lit.lit)?;
            match op {
                CmpOp::Eq => (vec![(s, e)], false),
                CmpOp::Ne => (vec![(s, e)], true),
                CmpOp::Lt => (vec![(MIN, s - 1)], false),
                CmpOp::Le => (vec![(MIN, e)], false),
                CmpOp::Gt => (vec![(e + 1, MAX)], false),
                CmpOp::Ge => (vec![(s, MAX)], false),
            }
        }
        Test::In { negated, values } => (
            values
                .iter()
                .map(|l| bounds(&l.lit))
                .collect::<Option<Vec<_>>>()?,
            *negated,
        ),
        Test::Between(low, high) => (vec![(bounds(&low.lit)?.0, bounds(&high.lit)?.1)], false),
        _ => return None,
    };
    let mut clamped: Vec<(i64, i64)> = list
        .into_iter()
        .filter_map(|(lo, hi)| {
            let (lo, hi) = (lo.max(MIN), hi.min(MAX));
            Some((i64::try_from(lo).ok()?, i64::try_from(hi).ok()?)).filter(|(lo, hi)| lo <= hi)
        })
        .collect();
    clamped.sort_unstable();
    let set = match clamped.as_slice() {
        [] => RangeSet::Empty,
        [(lo, hi)] => RangeSet::One {
            lo: *lo,
            width: hi.abs_diff(*lo),
        },
        _ => RangeSet::Many(clamped),
    };
    Some((set, negated))
}

const fn pow10(n: u32) -> i128 {
    let mut v: i128 = 1;
    let mut i = 0;
    while i < n {
        v *= 10;
        i += 1;
    }
    v
}

/// The raw values equal to `lit` in a column with `scale` decimal digits, as `[ceil, floor]`.
fn number_bounds(lit: &Lit, scale: u32) -> Option<(i128, i128)> {
    let Lit::Number(Decimal {
        mantissa,
        scale: digits,
    }) = *lit
    else {
        return None;
    };
    // The lexer caps literals at 30 digits on each side of the point, so this stays in i128.
    let num = mantissa.checked_mul(pow10(scale))?;
    let den = pow10(digits);
    let floor = num.div_euclid(den);
    let ceil = -(-num).div_euclid(den);
    Some((ceil, floor))
}

/// The instants `lit` denotes, in seconds: a whole local day for dates and `today`, one second
/// for date-times and relative dates.
fn time_bounds(lit: &Lit, as_of: &AsOf) -> Option<(i128, i128)> {
    let day = |d| {
        let start = i128::from(as_of.start_of(d).secs());
        let next = i128::from(as_of.start_of_next(d).secs());
        (start, next - 1)
    };
    let instant = |t: Timestamp| (i128::from(t.secs()), i128::from(t.secs()));
    match lit {
        Lit::Date(d) => Some(day(*d)),
        Lit::Today => Some(day(as_of.today())),
        Lit::DateTime(t) => Some(instant(*t)),
        Lit::Relative(r) => Some(instant(as_of.shift(r.offset()))),
        _ => None,
    }
}

fn float_of(lit: &Literal) -> Option<f64> {
    match lit.lit {
        Lit::Number(d) => Some(d.to_f64()),
        _ => None,
    }
}

fn float_test(test: &Test) -> Option<FloatTest> {
    Some(match test {
        Test::Compare(op, lit) => FloatTest::Cmp(*op, float_of(lit)?),
        Test::In { negated, values } => FloatTest::In {
            values: values.iter().map(float_of).collect::<Option<_>>()?,
            negated: *negated,
        },
        Test::Between(low, high) => FloatTest::Between(float_of(low)?, float_of(high)?),
        _ => return None,
    })
}

fn bool_of(lit: &Literal) -> Option<bool> {
    match lit.lit {
        Lit::Bool(b) => Some(b),
        _ => None,
    }
}

/// Which values a boolean test accepts: `(true?, false?)`.
fn bool_test(test: &Test) -> Option<(bool, bool)> {
    Some(match test {
        Test::IsTrue => (true, false),
        Test::Compare(CmpOp::Eq, lit) => {
            let b = bool_of(lit)?;
            (b, !b)
        }
        Test::Compare(CmpOp::Ne, lit) => {
            let b = bool_of(lit)?;
            (!b, b)
        }
        Test::In { negated, values } => {
            let list: Vec<bool> = values.iter().map(bool_of).collect::<Option<_>>()?;
            (
                list.contains(&true) != *negated,
                list.contains(&false) != *negated,
            )
        }
        _ => return None,
    })
}

fn str_of(lit: &Literal) -> Option<String> {
    match &lit.lit {
        Lit::String(s) => Some(s.to_lowercase()),
        _ => None,
    }
}

fn text_test(test: &Test) -> Option<(TextTest, bool)> {
    Some(match test {
        Test::Compare(CmpOp::Eq, lit) => (TextTest::Equals(vec![str_of(lit)?]), false),
        Test::Compare(CmpOp::Ne, lit) => (TextTest::Equals(vec![str_of(lit)?]), true),
        Test::In { negated, values } => (
            TextTest::Equals(values.iter().map(str_of).collect::<Option<_>>()?),
            *negated,
        ),
        Test::Contains { negated, value } => (TextTest::Contains(str_of(value)?), *negated),
        Test::StartsWith(v) => (TextTest::StartsWith(str_of(v)?), false),
        Test::EndsWith(v) => (TextTest::EndsWith(str_of(v)?), false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::ast::{Literal, RelativeDate, RelativeUnit};

    fn n(text: &str) -> Lit {
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        let mantissa: i128 = format!("{whole}{frac}").parse().expect("digits");
        Lit::Number(Decimal {
            mantissa,
            scale: frac.len() as u32,
        })
    }

    fn int_ranges(op: CmpOp, x: &str) -> (RangeSet, bool) {
        ranges(&Test::Compare(op, Literal::new(n(x))), |l| {
            number_bounds(l, 0)
        })
        .expect("numeric")
    }

    fn one(lo: i64, hi: i64) -> RangeSet {
        RangeSet::One {
            lo,
            width: hi.abs_diff(lo),
        }
    }

    #[test]
    fn decimals_against_integers_round_the_right_way() {
        use CmpOp::*;
        assert_eq!(int_ranges(Gt, "2.5"), (one(3, i64::MAX), false));
        assert_eq!(int_ranges(Ge, "2.5"), (one(3, i64::MAX), false));
        assert_eq!(int_ranges(Lt, "2.5"), (one(i64::MIN, 2), false));
        assert_eq!(int_ranges(Le, "2.5"), (one(i64::MIN, 2), false));
        assert_eq!(int_ranges(Eq, "2.5"), (RangeSet::Empty, false));
        assert_eq!(int_ranges(Ne, "2.5"), (RangeSet::Empty, true));
        assert_eq!(int_ranges(Eq, "3.00"), (one(3, 3), false));
        assert_eq!(int_ranges(Gt, "-2.5"), (one(-2, i64::MAX), false));
        assert_eq!(int_ranges(Lt, "-2.5"), (one(i64::MIN, -3), false));
        assert_eq!(
            int_ranges(Gt, "99999999999999999999"),
            (RangeSet::Empty, false)
        );
        assert_eq!(
            int_ranges(Lt, "99999999999999999999"),
            (one(i64::MIN, i64::MAX), false)
        );
    }

    #[test]
    fn money_literals_are_exact_in_ten_thousandths() {
        assert_eq!(
            number_bounds(&n("49.99"), SCALE_DIGITS),
            Some((499_900, 499_900))
        );
        assert_eq!(
            number_bounds(&n("0.00005"), SCALE_DIGITS),
            Some((1, 0)),
            "between two representable amounts"
        );
    }

    #[test]
    fn dates_cover_whole_local_days_and_relative_dates_are_instants() {
        let as_of = AsOf {
            now: Timestamp::parse("2024-03-10T15:00:00Z").expect("ts"),
            tz: chrono_tz::America::New_York,
        };
        let d = chrono::NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
        let start = Timestamp::parse("2024-03-01T05:00:00Z").expect("ts").secs();
        let next = Timestamp::parse("2024-03-02T05:00:00Z").expect("ts").secs();
        assert_eq!(
            time_bounds(&Lit::Date(d), &as_of),
            Some((start.into(), (next - 1).into()))
        );
        let rel = Lit::Relative(RelativeDate {
            amount: -9,
            unit: RelativeUnit::Days,
        });
        let nine_days_ago =
            i128::from(Timestamp::parse("2024-03-01T15:00:00Z").expect("ts").secs());
        assert_eq!(
            time_bounds(&rel, &as_of),
            Some((nine_days_ago, nine_days_ago))
        );
        // 2024-03-10 is the day New York springs forward: 23 hours long.
        let (s, e) = time_bounds(&Lit::Today, &as_of).expect("bounds");
        assert_eq!(e - s + 1, 23 * 3600);
    }

    #[test]
    fn in_lists_keep_every_range_sorted() {
        let test = Test::In {
            negated: true,
            values: vec![
                Literal::new(n("5")),
                Literal::new(n("1")),
                Literal::new(n("1.5")),
            ],
        };
        assert_eq!(
            ranges(&test, |l| number_bounds(l, 0)),
            Some((RangeSet::Many(vec![(1, 1), (5, 5)]), true))
        );
    }

    #[test]
    fn boolean_tests_accept_the_right_values() {
        let b = |v| Literal::new(Lit::Bool(v));
        assert_eq!(bool_test(&Test::IsTrue), Some((true, false)));
        assert_eq!(
            bool_test(&Test::Compare(CmpOp::Ne, b(true))),
            Some((false, true))
        );
        assert_eq!(
            bool_test(&Test::In {
                negated: true,
                values: vec![b(false)]
            }),
            Some((true, false))
        );
        assert_eq!(
            bool_test(&Test::In {
                negated: false,
                values: vec![b(false), b(true)]
            }),
            Some((true, true))
        );
    }
}
