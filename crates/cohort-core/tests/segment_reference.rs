//! The columnar segment evaluator against a naive reference.
//!
//! The reference below walks the syntax tree one customer at a time, reading values through
//! `FeatureTable::value` and applying the documented semantics directly (no ranges, no
//! dictionaries, no masks). Random tables with every column type, missing values and small
//! vocabularies, and random well-typed expressions over them, must give the same members.
#![allow(missing_docs)]

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use cohort_core::features::{
    BoolColumn, CategoryBuilder, Column, FeatureTable, FieldInfo, Nullable, TagsBuilder,
    TextColumn, Value,
};
use cohort_core::segment::{
    CmpOp, Decimal, Expr, Lit, Literal, Predicate, RelativeDate, RelativeUnit, SegmentDef,
    SegmentRef, SegmentSet, Test, parse,
};
use cohort_core::time::{AsOf, CalendarOffset, Timestamp};
use cohort_core::{CustomerId, Money};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The reference evaluator.

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn apply<T: PartialOrd + Copy>(a: T, op: CmpOp, b: T) -> bool {
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    }
}

fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

/// `value op literal` for a present value.
fn compare(value: &Value, op: CmpOp, lit: &Lit, as_of: &AsOf) -> bool {
    match (value, lit) {
        // value = v, literal = mantissa / 10^scale: cross-multiply to stay exact.
        (Value::Int(v), Lit::Number(d)) => apply(i128::from(*v) * pow10(d.scale), op, d.mantissa),
        (Value::Money(m), Lit::Number(d)) => apply(
            i128::from(m.raw()) * pow10(d.scale),
            op,
            d.mantissa * pow10(4),
        ),
        (Value::Float(v), Lit::Number(d)) => {
            let x: f64 = d.to_string().parse().expect("decimal text is a float");
            apply(*v, op, x)
        }
        (Value::Time(t), Lit::Date(_) | Lit::Today) => {
            let day = match lit {
                Lit::Date(d) => *d,
                _ => as_of.today(),
            };
            let (start, next) = (as_of.start_of(day), as_of.start_of_next(day));
            let within = start <= *t && *t < next;
            match op {
                CmpOp::Eq => within,
                CmpOp::Ne => !within,
                CmpOp::Lt => *t < start,
                CmpOp::Le => *t < next,
                CmpOp::Gt => *t >= next,
                CmpOp::Ge => *t >= start,
            }
        }
        (Value::Time(t), Lit::DateTime(x)) => apply(*t, op, *x),
        (Value::Time(t), Lit::Relative(r)) => {
            let offset = match r.unit {
                RelativeUnit::Days => CalendarOffset::Days(r.amount),
                RelativeUnit::Weeks => CalendarOffset::Days(r.amount * 7),
                RelativeUnit::Months => CalendarOffset::Months(r.amount),
                RelativeUnit::Years => CalendarOffset::Months(r.amount * 12),
            };
            apply(*t, op, as_of.shift(offset))
        }
        (Value::Bool(b), Lit::Bool(l)) => apply(*b, op, *l),
        (Value::Str(s), Lit::String(l)) => {
            assert!(!op.is_ordering(), "text is never ordered");
            apply(lower(s).as_str(), op, lower(l).as_str())
        }
        (v, l) => panic!("ill-typed comparison {v:?} {op:?} {l:?}"),
    }
}

fn predicate(p: &Predicate, value: &Value, as_of: &AsOf) -> bool {
    if let Test::IsNull { negated } = p.test {
        return (*value == Value::Null) != negated;
    }
    if *value == Value::Null {
        return false;
    }
    let text = |lit: &Literal| match &lit.lit {
        Lit::String(s) => lower(s),
        other => panic!("not text: {other:?}"),
    };
    match &p.test {
        Test::IsNull { .. } => unreachable!(),
        Test::IsTrue => *value == Value::Bool(true),
        Test::Compare(op, lit) => compare(value, *op, &lit.lit, as_of),
        Test::In { negated, values } => {
            values
                .iter()
                .any(|l| compare(value, CmpOp::Eq, &l.lit, as_of))
                != *negated
        }
        Test::Between(low, high) => {
            compare(value, CmpOp::Ge, &low.lit, as_of)
                && compare(value, CmpOp::Le, &high.lit, as_of)
        }
        Test::Contains {
            negated,
            value: lit,
        } => {
            let found = match value {
                Value::Tags(tags) => tags.iter().any(|t| lower(t) == text(lit)),
                Value::Str(s) => lower(s).contains(&text(lit)),
                other => panic!("contains on {other:?}"),
            };
            found != *negated
        }
        Test::StartsWith(lit) | Test::EndsWith(lit) => {
            let Value::Str(s) = value else {
                panic!("starts/ends with on {value:?}")
            };
            if matches!(p.test, Test::StartsWith(_)) {
                lower(s).starts_with(&text(lit))
            } else {
                lower(s).ends_with(&text(lit))
            }
        }
    }
}

fn reference(
    expr: &Expr,
    table: &FeatureTable,
    row: usize,
    done: &HashMap<String, Vec<bool>>,
) -> bool {
    match expr {
        Expr::And(children) => children.iter().all(|c| reference(c, table, row, done)),
        Expr::Or(children) => children.iter().any(|c| reference(c, table, row, done)),
        Expr::Not(child) => !reference(child, table, row, done),
        Expr::InSegment(r) => done[&r.name][row],
        Expr::Predicate(p) => predicate(p, &table.value(row, &p.field.name), &table.as_of()),
    }
}

// ---------------------------------------------------------------------------------------------
// Random tables.

const COUNTRIES: [&str; 6] = ["US", "us", "CA", "Gb", "Zürich", "ZÜRICH"];
const EMAILS: [&str; 6] = [
    "Ann@Example.com",
    "bob@x.io",
    "ZOË@zürich.ch",
    "",
    "o'neil@x.io",
    "US",
];
const TAGS: [&str; 5] = ["vip", "VIP", "b2b", "wholesale", " Whole Sale "];
const TIERS: [&str; 3] = ["gold", "Silver", "bronze"];
const WORDS: [&str; 16] = [
    "us",
    "US",
    "ca",
    "gb",
    "zürich",
    "ÜR",
    "u",
    "",
    "x.io",
    "@",
    "ann",
    "O'NEIL",
    "vip",
    "VIP",
    "whole sale",
    "nope",
];

/// 2024-03-01T00:00:00Z: New York changes to summer time ten days later.
const BASE: i64 = 1_709_251_200;
const ZONES: [Tz; 4] = [
    Tz::UTC,
    Tz::America__New_York,
    Tz::Asia__Kolkata,
    Tz::Pacific__Auckland,
];

#[derive(Debug, Clone)]
struct Row {
    orders: Option<i64>,
    spent: Option<i64>,
    rate: Option<f64>,
    seen: Option<i64>,
    opted_in: Option<bool>,
    country: Option<&'static str>,
    email: Option<&'static str>,
    tags: Vec<&'static str>,
    tier: Option<&'static str>,
}

/// Instants on a 3-hour grid (so literals hit them) or a 30-minute one (so local midnights in
/// half-hour zones do), within a few months of `BASE`.
fn instant() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-480i64..640).prop_map(|k| BASE + k * 10_800),
        (-2880i64..3840).prop_map(|k| BASE + k * 1_800),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        (
            proptest::option::weighted(0.8, -5i64..20),
            proptest::option::weighted(
                0.8,
                prop_oneof![(-40i64..40).prop_map(|k| k * 2_500), -100_000i64..100_000],
            ),
            proptest::option::weighted(
                0.8,
                prop_oneof![
                    Just(0.0),
                    Just(0.5),
                    Just(-2.25),
                    Just(3.0),
                    Just(f64::NAN),
                    -10.0..10.0f64
                ],
            ),
            proptest::option::weighted(0.8, instant()),
            proptest::option::weighted(0.8, any::<bool>()),
        ),
        (
            proptest::option::weighted(0.8, proptest::sample::select(&COUNTRIES[..])),
            proptest::option::weighted(0.8, proptest::sample::select(&EMAILS[..])),
            proptest::collection::vec(proptest::sample::select(&TAGS[..]), 0..3),
            proptest::option::weighted(0.7, proptest::sample::select(&TIERS[..])),
        ),
    )
        .prop_map(
            |((orders, spent, rate, seen, opted_in), (country, email, tags, tier))| Row {
                orders,
                spent,
                rate,
                seen,
                opted_in,
                country,
                email,
                tags,
                tier,
            },
        )
}

fn build_table(rows: &[Row], now: i64, tz: Tz) -> FeatureTable {
    let info = |name: &str, c: &Column| FieldInfo {
        name: name.into(),
        ty: c.field_type(),
        doc: String::new(),
    };
    let mut country = CategoryBuilder::default();
    let mut tier = CategoryBuilder::default();
    let mut email = TextColumn::new();
    let mut tags = TagsBuilder::default();
    for r in rows {
        country.push(r.country);
        tier.push(r.tier);
        email.push(r.email);
        tags.push(r.tags.iter().copied());
    }
    let columns = vec![
        Column::Int(Nullable::from_options(rows.iter().map(|r| r.orders))),
        Column::Money(Nullable::from_options(
            rows.iter().map(|r| r.spent.map(Money::from_raw)),
        )),
        Column::Float(Nullable::from_options(rows.iter().map(|r| r.rate))),
        Column::Time(Nullable::from_options(
            rows.iter().map(|r| r.seen.map(Timestamp::from_secs)),
        )),
        Column::Bool(BoolColumn {
            values: rows.iter().map(|r| r.opted_in == Some(true)).collect(),
            valid: rows.iter().map(|r| r.opted_in.is_some()).collect(),
        }),
        Column::Category(country.finish()),
        Column::Text(email),
        Column::Tags(tags.finish()),
        Column::Category(tier.finish()),
    ];
    let columns = FIELDS
        .iter()
        .zip(columns)
        .map(|((name, _), c)| (info(name, &c), c))
        .collect();
    let ids = (0..rows.len())
        .map(|i| CustomerId::new(format!("c{i}")))
        .collect();
    FeatureTable::from_columns(
        AsOf {
            now: Timestamp::from_secs(now),
            tz,
        },
        ids,
        columns,
    )
    .expect("valid table")
}

// ---------------------------------------------------------------------------------------------
// Random expressions.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Money,
    Float,
    Time,
    Bool,
    Text,
    Tags,
}

const FIELDS: [(&str, Kind); 9] = [
    ("orders", Kind::Int),
    ("spent", Kind::Money),
    ("rate", Kind::Float),
    ("seen_at", Kind::Time),
    ("opted_in", Kind::Bool),
    ("country", Kind::Text),
    ("email", Kind::Text),
    ("tags", Kind::Tags),
    ("attributes.tier", Kind::Text),
];

fn lit(l: Lit) -> Literal {
    Literal::new(l)
}

fn number() -> BoxedStrategy<Literal> {
    prop_oneof![
        (-6i128..21).prop_map(|n| Decimal {
            mantissa: n,
            scale: 0
        }),
        (-1200i128..1200, 0u32..4).prop_map(|(mantissa, scale)| Decimal { mantissa, scale }),
        Just(Decimal {
            mantissa: 225,
            scale: 2
        }),
        Just(Decimal {
            mantissa: -225,
            scale: 2
        }),
    ]
    .prop_map(|d| lit(Lit::Number(d)))
    .boxed()
}

fn time() -> BoxedStrategy<Literal> {
    let base_day = NaiveDate::from_ymd_opt(2024, 3, 1).expect("date");
    prop_oneof![
        (-60i64..80).prop_map(move |d| Lit::Date(base_day + Duration::days(d))),
        instant().prop_map(|s| Lit::DateTime(Timestamp::from_secs(s))),
        (
            -40i64..40,
            prop_oneof![
                Just(RelativeUnit::Days),
                Just(RelativeUnit::Weeks),
                Just(RelativeUnit::Months),
                Just(RelativeUnit::Years)
            ]
        )
            .prop_map(|(amount, unit)| Lit::Relative(RelativeDate { amount, unit })),
        Just(Lit::Today),
    ]
    .prop_map(lit)
    .boxed()
}

fn word() -> impl Strategy<Value = Literal> {
    proptest::sample::select(&WORDS[..]).prop_map(|w| lit(Lit::String(w.to_owned())))
}

fn boolean() -> impl Strategy<Value = Literal> {
    any::<bool>().prop_map(|b| lit(Lit::Bool(b)))
}

fn op() -> impl Strategy<Value = CmpOp> {
    proptest::sample::select(
        &[
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
        ][..],
    )
}

fn equality() -> impl Strategy<Value = CmpOp> {
    proptest::sample::select(&[CmpOp::Eq, CmpOp::Ne][..])
}

/// Tests that are well typed for an ordered field whose literals come from `value`.
fn ordered_test(value: BoxedStrategy<Literal>) -> BoxedStrategy<Test> {
    prop_oneof![
        (op(), value.clone()).prop_map(|(op, v)| Test::Compare(op, v)),
        (
            any::<bool>(),
            proptest::collection::vec(value.clone(), 1..4)
        )
            .prop_map(|(negated, values)| Test::In { negated, values }),
        (value.clone(), value).prop_map(|(a, b)| Test::Between(a, b)),
        any::<bool>().prop_map(|negated| Test::IsNull { negated }),
    ]
    .boxed()
}

fn test_for(kind: Kind) -> BoxedStrategy<Test> {
    match kind {
        Kind::Int | Kind::Money | Kind::Float => ordered_test(number()),
        Kind::Time => ordered_test(time()),
        Kind::Bool => prop_oneof![
            (equality(), boolean()).prop_map(|(op, v)| Test::Compare(op, v)),
            (any::<bool>(), proptest::collection::vec(boolean(), 1..3))
                .prop_map(|(negated, values)| Test::In { negated, values }),
            Just(Test::IsTrue),
            any::<bool>().prop_map(|negated| Test::IsNull { negated }),
        ]
        .boxed(),
        Kind::Text => prop_oneof![
            (equality(), word()).prop_map(|(op, v)| Test::Compare(op, v)),
            (any::<bool>(), proptest::collection::vec(word(), 1..4))
                .prop_map(|(negated, values)| Test::In { negated, values }),
            (any::<bool>(), word()).prop_map(|(negated, value)| Test::Contains { negated, value }),
            word().prop_map(Test::StartsWith),
            word().prop_map(Test::EndsWith),
            any::<bool>().prop_map(|negated| Test::IsNull { negated }),
        ]
        .boxed(),
        Kind::Tags => prop_oneof![
            3 => (any::<bool>(), word()).prop_map(|(negated, value)| Test::Contains { negated, value }),
            1 => any::<bool>().prop_map(|negated| Test::IsNull { negated }),
        ]
        .boxed(),
    }
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        12 => proptest::sample::select(&FIELDS[..])
            .prop_flat_map(|(name, kind)| test_for(kind).prop_map(move |t| Expr::predicate(name, t))),
        1 => (0usize..4).prop_map(|j| Expr::InSegment(SegmentRef { name: format!("s{j}"), span: 0..0 })),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

/// Segment `k` may only use segments defined before it; later references become a predicate.
fn only_earlier(expr: Expr, k: usize) -> Expr {
    match expr {
        Expr::And(c) => Expr::And(c.into_iter().map(|e| only_earlier(e, k)).collect()),
        Expr::Or(c) => Expr::Or(c.into_iter().map(|e| only_earlier(e, k)).collect()),
        Expr::Not(c) => Expr::Not(Box::new(only_earlier(*c, k))),
        Expr::InSegment(r) if r.name[1..].parse::<usize>().expect("s{j}") >= k => {
            Expr::predicate("opted_in", Test::IsTrue)
        }
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// The properties.

proptest! {
    // 400 cases unless PROPTEST_CASES asks for another number.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn columnar_evaluation_matches_the_reference(
        rows in proptest::collection::vec(row(), 0..200),
        now in (0i64..2_400).prop_map(|k| BASE + k * 1_800),
        zone in proptest::sample::select(&ZONES[..]),
        exprs in proptest::collection::vec(expr(), 1..5),
    ) {
        let table = build_table(&rows, now, zone);
        let exprs: Vec<Expr> = exprs.into_iter().enumerate().map(|(k, e)| only_earlier(e, k)).collect();
        let defs: Vec<SegmentDef> = exprs
            .iter()
            .enumerate()
            .map(|(k, e)| SegmentDef::new(format!("s{k}"), e.to_string()))
            .collect();
        let set = match SegmentSet::compile(&defs, &table) {
            Ok(set) => set,
            Err(errors) => panic!("{}", errors[0].render()),
        };
        let got = set.evaluate();
        let mut done: HashMap<String, Vec<bool>> = HashMap::new();
        for (k, expr) in exprs.iter().enumerate() {
            let want: Vec<bool> = (0..table.len()).map(|row| reference(expr, &table, row, &done)).collect();
            let (name, members) = &got[k];
            prop_assert_eq!(name, &defs[k].name);
            prop_assert_eq!(members.len(), table.len());
            for (row, &w) in want.iter().enumerate() {
                prop_assert_eq!(
                    members.contains(row), w,
                    "segment {} = `{}`, row {}: {:?}", name, defs[k].expr, row, table.row_values(row)
                );
                let explained = set.explain(name, row).expect("row exists");
                prop_assert_eq!(explained.member, w, "explanation of {} row {}", name, row);
            }
            done.insert(name.clone(), want);
        }
    }

    #[test]
    fn printed_expressions_parse_back_the_same(e in expr()) {
        let printed = e.to_string();
        match parse(&printed) {
            Ok(back) => {
                prop_assert_eq!(&back, &e, "{}", printed);
                prop_assert_eq!(back.to_string(), printed);
            }
            Err(d) => prop_assert!(false, "{}", d.render(&printed)),
        }
    }

    #[test]
    fn any_string_literal_survives_printing(s in "[a-zA-Z'\" ü\\n]{0,8}") {
        let e = Expr::predicate("country", Test::Compare(CmpOp::Eq, lit(Lit::String(s))));
        prop_assert_eq!(parse(&e.to_string()).expect("parses"), e);
    }

    #[test]
    fn the_parser_never_panics(src in "[a-z_ .()'<>=!,0-9TZ:+-]{0,40}") {
        let _ = parse(&src);
    }
}
