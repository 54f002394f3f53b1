//! End-to-end tests of the language over small hand-made tables: each pins one documented rule.

use chrono_tz::Tz;

use super::*;
use crate::bitset::Bitset;
use crate::features::{
    BoolColumn, CategoryBuilder, Column, FeatureTable, FieldInfo, Nullable, TagsBuilder, TextColumn,
};
use crate::money::Money;
use crate::record::CustomerId;
use crate::time::{AsOf, Timestamp};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("timestamp")
}

fn table_at(now: &str, tz: Tz, columns: Vec<(&str, Column)>) -> FeatureTable {
    let rows = match &columns[0].1 {
        Column::Int(c) => c.values.len(),
        Column::Money(c) => c.values.len(),
        Column::Float(c) => c.values.len(),
        Column::Time(c) => c.values.len(),
        Column::Bool(c) => c.values.len(),
        Column::Category(c) => c.codes.len(),
        Column::Text(c) => c.valid.len(),
        Column::Tags(c) => c.offsets.len() - 1,
    };
    let ids = (0..rows)
        .map(|i| CustomerId::new(format!("c{i}")))
        .collect();
    let columns = columns
        .into_iter()
        .map(|(name, c)| {
            let info = FieldInfo {
                name: name.into(),
                ty: c.field_type(),
                doc: String::new(),
            };
            (info, c)
        })
        .collect();
    FeatureTable::from_columns(AsOf { now: ts(now), tz }, ids, columns).expect("table")
}

fn table(columns: Vec<(&str, Column)>) -> FeatureTable {
    table_at("2024-03-15T12:00:00Z", Tz::UTC, columns)
}

fn ints(values: &[Option<i64>]) -> Column {
    Column::Int(Nullable::from_options(values.iter().copied()))
}

fn money(values: &[Option<&str>]) -> Column {
    Column::Money(Nullable::from_options(
        values
            .iter()
            .map(|v| v.map(|s| Money::parse(s).expect("money"))),
    ))
}

fn times(values: &[Option<&str>]) -> Column {
    Column::Time(Nullable::from_options(values.iter().map(|v| v.map(ts))))
}

fn bools(values: &[Option<bool>]) -> Column {
    Column::Bool(BoolColumn {
        values: values.iter().map(|v| *v == Some(true)).collect(),
        valid: values.iter().map(Option::is_some).collect(),
    })
}

fn category(values: &[Option<&str>]) -> Column {
    let mut b = CategoryBuilder::default();
    for v in values {
        b.push(*v);
    }
    Column::Category(b.finish())
}

fn text(values: &[Option<&str>]) -> Column {
    let mut c = TextColumn::new();
    for v in values {
        c.push(*v);
    }
    Column::Text(c)
}

fn tags(values: &[&[&str]]) -> Column {
    let mut b = TagsBuilder::default();
    for v in values {
        b.push(v.iter().copied());
    }
    Column::Tags(b.finish())
}

fn members(table: &FeatureTable, expr: &str) -> Vec<usize> {
    let set = SegmentSet::compile(&[SegmentDef::new("s", expr)], table)
        .unwrap_or_else(|e| panic!("{}", e[0].render()));
    set.evaluate()[0].1.iter().collect()
}

fn compile_errors(table: &FeatureTable, defs: &[(&str, &str)]) -> Vec<SegmentError> {
    let defs: Vec<SegmentDef> = defs.iter().map(|(n, e)| SegmentDef::new(*n, *e)).collect();
    SegmentSet::compile(&defs, table).expect_err("should not compile")
}

#[test]
fn the_documented_examples_select_the_right_customers() {
    let t = table(vec![
        ("orders_count", ints(&[Some(3), Some(5), Some(1), Some(4)])),
        (
            "total_spent",
            money(&[Some("500.01"), Some("900"), Some("2000"), Some("500")]),
        ),
        (
            "last_order_at",
            times(&[
                Some("2024-01-01T00:00:00Z"),
                Some("2023-12-01T00:00:00Z"),
                Some("2024-03-01T00:00:00Z"),
                Some("2024-03-01T00:00:00Z"),
            ]),
        ),
        (
            "country",
            category(&[Some("US"), Some("CA"), Some("US"), Some("GB")]),
        ),
        (
            "tags",
            tags(&[&["Wholesale"], &["b2b", "x"], &[], &["retail"]]),
        ),
        (
            "accepts_email_marketing",
            bools(&[Some(true), Some(true), Some(false), None]),
        ),
        ("r_score", ints(&[Some(1), Some(2), Some(3), Some(2)])),
        ("f_score", ints(&[Some(3), Some(3), Some(5), Some(2)])),
        ("m_score", ints(&[Some(4), Some(3), Some(5), Some(5)])),
    ]);
    // -90d from 2024-03-15T12:00Z is 2023-12-16T12:00Z.
    assert_eq!(
        members(
            &t,
            "orders_count >= 3 and total_spent > 500 and last_order_at >= -90d and country in ('US','CA','GB')"
        ),
        vec![0]
    );
    assert_eq!(
        members(
            &t,
            "(tags contains 'wholesale' or tags contains 'b2b') and accepts_email_marketing = true"
        ),
        vec![0, 1]
    );
    assert_eq!(
        members(&t, "r_score <= 2 and f_score >= 3 and m_score >= 3"),
        vec![0, 1]
    );
    assert_eq!(members(&t, "accepts_email_marketing"), vec![0, 1]);
    assert_eq!(members(&t, "not accepts_email_marketing"), vec![2, 3]);
}

#[test]
fn a_date_is_a_whole_day_in_the_workspace_zone() {
    // New York is UTC-5 in early March 2024: the local day 2024-03-01 runs from 05:00Z to
    // 05:00Z the next day.
    let t = table_at(
        "2024-03-15T12:00:00Z",
        chrono_tz::America::New_York,
        vec![(
            "at",
            times(&[
                Some("2024-03-01T04:59:59Z"), // Feb 29, local
                Some("2024-03-01T05:00:00Z"), // Mar 1, 00:00 local
                Some("2024-03-02T04:59:59Z"), // Mar 1, 23:59:59 local
                Some("2024-03-02T05:00:00Z"), // Mar 2, 00:00 local
                None,
            ]),
        )],
    );
    assert_eq!(members(&t, "at = 2024-03-01"), vec![1, 2]);
    assert_eq!(members(&t, "at != 2024-03-01"), vec![0, 3]);
    assert_eq!(members(&t, "at < 2024-03-01"), vec![0]);
    assert_eq!(members(&t, "at <= 2024-03-01"), vec![0, 1, 2]);
    assert_eq!(members(&t, "at > 2024-03-01"), vec![3]);
    assert_eq!(members(&t, "at >= 2024-03-01"), vec![1, 2, 3]);
    assert_eq!(
        members(&t, "at between 2024-02-29 and 2024-03-01"),
        vec![0, 1, 2]
    );
    assert_eq!(members(&t, "at in (2024-02-29, 2024-03-02)"), vec![0, 3]);
    assert_eq!(members(&t, "at not in (2024-03-01)"), vec![0, 3]);
    // A date-time is one instant, in UTC unless an offset says otherwise.
    assert_eq!(members(&t, "at = 2024-03-01T05:00:00"), vec![1]);
    assert_eq!(members(&t, "at = 2024-03-01T00:00:00-05:00"), vec![1]);
    assert_eq!(members(&t, "at >= 2024-03-02T04:59:59Z"), vec![2, 3]);
    assert_eq!(
        members(&t, "at between 2024-03-01 and 2024-03-02T04:59:59Z"),
        vec![1, 2]
    );
}

#[test]
fn relative_dates_are_instants_and_today_is_a_day() {
    let t = table(vec![(
        "at",
        times(&[
            Some("2024-03-01T11:59:59Z"),
            Some("2024-03-01T12:00:00Z"),
            Some("2024-03-15T00:00:00Z"),
            Some("2024-03-15T23:59:59Z"),
            Some("2024-03-16T00:00:00Z"),
            Some("2023-03-15T12:00:00Z"),
        ]),
    )]);
    // Now is 2024-03-15T12:00:00Z.
    assert_eq!(members(&t, "at >= -14d"), vec![1, 2, 3, 4]);
    assert_eq!(members(&t, "at >= -2w"), vec![1, 2, 3, 4]);
    assert_eq!(members(&t, "at < -14d"), vec![0, 5]);
    assert_eq!(members(&t, "at = -1y"), vec![5]);
    assert_eq!(members(&t, "at <= -12m"), vec![5]);
    assert_eq!(members(&t, "at = today"), vec![2, 3]);
    assert_eq!(members(&t, "at > today"), vec![4]);
    assert_eq!(members(&t, "at < +1d and at > today"), vec![4]);
}

#[test]
fn numbers_compare_exactly_with_integers_and_money() {
    let t = table(vec![
        ("n", ints(&[Some(2), Some(3), Some(-3), None])),
        (
            "m",
            money(&[Some("49.99"), Some("50"), Some("0.0001"), None]),
        ),
        (
            "f",
            Column::Float(Nullable::from_options([
                Some(0.1),
                Some(0.5),
                Some(f64::NAN),
                None,
            ])),
        ),
    ]);
    assert_eq!(members(&t, "n > 2.5"), vec![1]);
    assert_eq!(members(&t, "n = 3.0"), vec![1]);
    assert_eq!(members(&t, "n = 2.5"), Vec::<usize>::new());
    assert_eq!(members(&t, "n != 2.5"), vec![0, 1, 2]);
    assert_eq!(members(&t, "n < -2.5"), vec![2]);
    assert_eq!(members(&t, "n between 2 and 3"), vec![0, 1]);
    assert_eq!(members(&t, "n in (3, -3, 7)"), vec![1, 2]);
    assert_eq!(members(&t, "m = 49.99"), vec![0]);
    assert_eq!(members(&t, "m > 49.989999"), vec![0, 1]);
    assert_eq!(members(&t, "m < 0.00015"), vec![2]);
    assert_eq!(members(&t, "m >= 50"), vec![1]);
    assert_eq!(members(&t, "f > 0.1"), vec![1]);
    assert_eq!(members(&t, "f = 0.1"), vec![0]);
    assert_eq!(members(&t, "f between 0 and 1"), vec![0, 1]);
}

#[test]
fn missing_values_fail_every_comparison_but_is_null() {
    let t = table(vec![
        ("country", category(&[Some("US"), Some("CA"), None])),
        ("email", text(&[Some("a@x.com"), Some("b@y.com"), None])),
        ("n", ints(&[Some(1), Some(2), None])),
        ("b", bools(&[Some(true), Some(false), None])),
    ]);
    assert_eq!(members(&t, "country != 'US'"), vec![1]);
    assert_eq!(members(&t, "country not in ('US')"), vec![1]);
    assert_eq!(members(&t, "country not contains 'u'"), vec![1]);
    assert_eq!(members(&t, "email not contains 'x'"), vec![1]);
    assert_eq!(members(&t, "email != 'a@x.com'"), vec![1]);
    assert_eq!(members(&t, "email starts with ''"), vec![0, 1]);
    assert_eq!(members(&t, "n != 1"), vec![1]);
    assert_eq!(members(&t, "n not in (1)"), vec![1]);
    assert_eq!(members(&t, "b != true"), vec![1]);
    assert_eq!(members(&t, "b not in (true)"), vec![1]);
    for field in ["country", "email", "n", "b"] {
        assert_eq!(members(&t, &format!("{field} is null")), vec![2], "{field}");
        assert_eq!(
            members(&t, &format!("{field} is not null")),
            vec![0, 1],
            "{field}"
        );
    }
    // `not` is the plain complement: unknowns come back in.
    assert_eq!(members(&t, "not (country = 'US')"), vec![1, 2]);
    assert_eq!(members(&t, "not (n != 1)"), vec![0, 2]);
}

#[test]
fn text_tests_ignore_case() {
    let values = [
        Some("US"),
        Some("us"),
        Some("Us"),
        Some("ZÜRICH"),
        Some("Zürich"),
        Some("gb"),
    ];
    for column in [category(&values), text(&values)] {
        let t = table(vec![("v", column)]);
        assert_eq!(members(&t, "v = 'uS'"), vec![0, 1, 2]);
        assert_eq!(members(&t, "v != 'us'"), vec![3, 4, 5]);
        assert_eq!(members(&t, "v in ('GB', 'zürich')"), vec![3, 4, 5]);
        assert_eq!(members(&t, "v not in ('GB', 'zürich')"), vec![0, 1, 2]);
        assert_eq!(members(&t, "v contains 'ÜR'"), vec![3, 4]);
        assert_eq!(members(&t, "v starts with 'u'"), vec![0, 1, 2]);
        assert_eq!(members(&t, "v ends with 'ICH'"), vec![3, 4]);
    }
}

#[test]
fn tags_are_sets_that_are_never_missing() {
    let t = table(vec![(
        "tags",
        tags(&[&["VIP", "b2b"], &[], &["wholesale"]]),
    )]);
    assert_eq!(members(&t, "tags contains 'vip'"), vec![0]);
    assert_eq!(members(&t, "tags contains 'Vip'"), vec![0]);
    assert_eq!(members(&t, "tags not contains 'vip'"), vec![1, 2]);
    assert_eq!(
        members(&t, "tags contains 'nobody-has-this'"),
        Vec::<usize>::new()
    );
    assert_eq!(
        members(&t, "tags not contains 'nobody-has-this'"),
        vec![0, 1, 2]
    );
    assert_eq!(members(&t, "tags is null"), Vec::<usize>::new());
    assert_eq!(members(&t, "tags is not null"), vec![0, 1, 2]);
}

#[test]
fn conditions_after_an_and_see_only_the_surviving_words() {
    // 300 rows spread over five words; the first condition empties some words entirely.
    let n: Vec<Option<i64>> = (0..300).map(Some).collect();
    let m: Vec<Option<i64>> = (0..300).map(|i| (i % 5 != 0).then_some(i % 7)).collect();
    let t = table(vec![("n", ints(&n)), ("m", ints(&m))]);
    let want = |f: &dyn Fn(i64, Option<i64>) -> bool| -> Vec<usize> {
        (0..300).filter(|&i| f(i as i64, m[i])).collect()
    };
    assert_eq!(
        members(&t, "n >= 130 and n < 200 and m = 3"),
        want(&|n, m| (130..200).contains(&n) && m == Some(3))
    );
    assert_eq!(
        members(&t, "n < 10 or m = 3 or n > 290"),
        want(&|n, m| n < 10 || m == Some(3) || n > 290)
    );
    assert_eq!(
        members(&t, "not (n < 64 or m is null) and (m = 1 or n = 299)"),
        want(&|n, m| !(n < 64 || m.is_none()) && (m == Some(1) || n == 299))
    );
}

#[test]
fn segments_use_each_other_in_dependency_order() {
    let t = table(vec![("n", ints(&[Some(1), Some(5), Some(10), None]))]);
    // `big` is defined before the segment it uses.
    let defs = [
        SegmentDef::new("big", "in_segment('some') and n >= 5"),
        SegmentDef::new("some", "n is not null"),
        SegmentDef::new("small", "in_segment('some') and not in_segment('big')"),
    ];
    let set = SegmentSet::compile(&defs, &t).expect("compiles");
    let result = set.evaluate();
    let got: Vec<(&str, Vec<usize>)> = result
        .iter()
        .map(|(name, m)| (name.as_str(), m.iter().collect()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("big", vec![1, 2]),
            ("some", vec![0, 1, 2]),
            ("small", vec![0])
        ]
    );
    let order: Vec<&str> = set.run().map(|r| r.name).collect();
    assert_eq!(
        order,
        vec!["some", "big", "small"],
        "each once, dependencies first"
    );
}

#[test]
fn cycles_are_rejected_with_their_path() {
    let t = table(vec![("n", ints(&[Some(1)]))]);
    let e = compile_errors(
        &t,
        &[
            ("a", "in_segment('b') or n = 1"),
            ("b", "n > 0 and in_segment('a')"),
        ],
    );
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].segment, "a");
    assert_eq!(
        e[0].diagnostic.message,
        "segments refer to each other in a cycle: a → b → a"
    );
    assert_eq!(e[0].diagnostic.span, 0..15);
    let e = compile_errors(&t, &[("self", "in_segment('self')")]);
    assert_eq!(
        e[0].diagnostic.message,
        "segments refer to each other in a cycle: self → self"
    );
}

#[test]
fn every_error_of_every_segment_is_reported() {
    let t = table(vec![
        ("total_spent", money(&[Some("1")])),
        ("country", category(&[Some("US")])),
    ]);
    let e = compile_errors(
        &t,
        &[
            ("ok", "total_spent > 5"),
            ("typo", "total_spend > 5 and country > 5"),
            ("syntax", "country = 'US"),
            ("ref", "in_segment('oks')"),
            ("ok", "country = 'US'"),
        ],
    );
    let got: Vec<(&str, &str)> = e
        .iter()
        .map(|e| (e.segment.as_str(), e.diagnostic.message.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ok", "segment `ok` is defined more than once"),
            ("syntax", "unterminated string"),
            ("typo", "unknown field `total_spend`"),
            (
                "typo",
                "`>` compares numbers, money and dates, but `country` is text"
            ),
            ("ref", "unknown segment `oks`"),
        ]
    );
    assert_eq!(e[4].diagnostic.help.as_deref(), Some("did you mean `ok`?"));
    assert_eq!(
        e[2].render(),
        "in segment `typo`:\nerror: unknown field `total_spend` (column 1)\n  total_spend > 5 and country > 5\n  ^^^^^^^^^^^\n  help: did you mean `total_spent`?"
    );
    assert_eq!(
        e[2].to_string(),
        "segment `typo`: unknown field `total_spend`"
    );
}

#[test]
fn checking_needs_no_data() {
    let fields = vec![FieldInfo {
        name: "orders_count".into(),
        ty: crate::features::FieldType::Int,
        doc: String::new(),
    }];
    assert!(SegmentSet::check(&[SegmentDef::new("a", "orders_count > 1")], &fields).is_ok());
    let e =
        SegmentSet::check(&[SegmentDef::new("a", "orders_cuont > 1")], &fields).expect_err("typo");
    assert_eq!(
        e[0].diagnostic.help.as_deref(),
        Some("did you mean `orders_count`?")
    );
}

fn explain_table() -> FeatureTable {
    table(vec![
        ("orders_count", ints(&[Some(5), Some(5)])),
        ("total_spent", money(&[Some("600"), Some("120")])),
        ("country", category(&[Some("US"), None])),
        ("tags", tags(&[&["vip"], &[]])),
    ])
}

#[test]
fn explanations_show_every_value_and_what_decided() {
    let t = explain_table();
    let defs = [
        SegmentDef::new("big", "orders_count >= 3 and total_spent > 500"),
        SegmentDef::new(
            "target",
            "in_segment('big') or tags contains 'vip' or not (country = 'US')",
        ),
    ];
    let set = SegmentSet::compile(&defs, &t).expect("compiles");

    let out = set.explain("big", 1).expect("row exists");
    assert!(!out.member);
    assert_eq!(
        out.to_string(),
        "customer c1 is not in segment `big`\n\
         ✗ orders_count >= 3 and total_spent > 500\n  \
           ✓ orders_count >= 3    orders_count: 5\n  \
           ✗ total_spent > 500    total_spent: 120.00    ← decided"
    );

    let out = set.explain("target", 1).expect("row exists");
    assert!(out.member);
    assert_eq!(
        out.to_string(),
        "customer c1 is in segment `target`\n\
         ✓ in_segment('big') or tags contains 'vip' or not (country = 'US')\n  \
           ✗ in_segment('big')\n    \
             ✗ orders_count >= 3 and total_spent > 500    ← decided\n      \
               ✓ orders_count >= 3    orders_count: 5\n      \
               ✗ total_spent > 500    total_spent: 120.00    ← decided\n  \
           ✗ tags contains 'vip'    tags: []\n  \
           ✓ not (country = 'US')    ← decided\n    \
             ✗ country = 'US'    country: null    ← decided"
    );

    let out = set.explain("target", 0).expect("row exists");
    assert!(out.member);
    assert!(
        out.tree.children[0].decided,
        "the first true child of an `or` decides it"
    );
    assert!(!out.tree.children[1].decided);
}

#[test]
fn explanations_serialise_to_json() {
    let t = explain_table();
    let set = SegmentSet::compile(
        &[SegmentDef::new(
            "big",
            "total_spent > 500 and country = 'US'",
        )],
        &t,
    )
    .expect("compiles");
    let json = serde_json::to_value(set.explain("big", 1).expect("row")).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "segment": "big",
            "customer": "c1",
            "row": 1,
            "member": false,
            "tree": {
                "expr": "total_spent > 500 and country = 'US'",
                "result": false,
                "decided": false,
                "children": [
                    { "expr": "total_spent > 500", "result": false, "decided": true, "field": "total_spent", "value": "120.00" },
                    { "expr": "country = 'US'", "result": false, "decided": false, "field": "country", "value": null }
                ]
            }
        })
    );
    assert!(set.explain("nope", 0).is_none());
    assert!(set.explain("big", 2).is_none());
}

#[test]
fn explanations_agree_with_evaluation() {
    let t = explain_table();
    let defs = [
        SegmentDef::new(
            "a",
            "orders_count >= 3 and (total_spent > 500 or country is null)",
        ),
        SegmentDef::new("b", "not in_segment('a') or tags not contains 'vip'"),
    ];
    let set = SegmentSet::compile(&defs, &t).expect("compiles");
    for (name, members) in set.evaluate() {
        for row in 0..t.len() {
            let e = set.explain(&name, row).expect("row");
            assert_eq!(e.member, members.contains(row), "{name} row {row}");
        }
    }
}

#[test]
fn an_empty_table_has_empty_segments() {
    let t = table(vec![("n", ints(&[]))]);
    let set =
        SegmentSet::compile(&[SegmentDef::new("s", "n > 1 or not (n < 5)")], &t).expect("compiles");
    assert_eq!(set.evaluate(), vec![("s".to_owned(), Bitset::new(0))]);
}

#[test]
fn malformed_columns_are_refused_not_panicked_on() {
    let col = Column::Int(Nullable {
        values: vec![1, 2],
        valid: Bitset::full(1),
    });
    let t = table(vec![("n", col)]);
    let e = compile_errors(&t, &[("s", "n > 1")]);
    assert_eq!(
        e[0].diagnostic.message,
        "column `n` is malformed: its parts disagree on the number of rows"
    );
}
