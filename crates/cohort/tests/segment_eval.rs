//! End-to-end tests of `cohort segment …` on real files.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod util;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use util::{Dir, demo, repo, shared};

/// Per CDNOW customer: (YYYYMMDD, dollars) of each purchase.
type Purchases = BTreeMap<u32, Vec<(u32, String)>>;

/// CDNOW's master file as CSVs in the folder: customers with ids only, and orders.
fn cdnow(dir: &Dir) -> (String, String, Purchases) {
    let raw = std::fs::read_to_string(shared().join("data/cdnow/CDNOW_master.txt")).unwrap();
    let mut per_customer: BTreeMap<u32, Vec<(u32, String)>> = BTreeMap::new();
    let mut orders = String::from("id,customer_id,created_at,total_price,items\n");
    for (i, line) in raw.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (id, date, cds, dollars) = (f[0].parse::<u32>().unwrap(), f[1], f[2], f[3]);
        writeln!(orders, "{},{id},{date},{dollars},{cds}", i + 1).unwrap();
        per_customer
            .entry(id)
            .or_default()
            .push((date.parse().unwrap(), dollars.to_owned()));
    }
    let mut customers = String::from("id\n");
    for id in per_customer.keys() {
        writeln!(customers, "{id}").unwrap();
    }
    let c = dir.write("customers.csv", &customers).display().to_string();
    let o = dir.write("orders.csv", &orders).display().to_string();
    (c, o, per_customer)
}

/// `cohort segment eval` of `segments` over the files, as of 1998-07-01, expecting success.
fn eval_as_of_1998(
    dir: &Dir,
    customers: &str,
    orders: &str,
    segments: &str,
    extra: &[&str],
) -> util::Run {
    let segs = dir.write("segments.toml", segments);
    let mut args = vec![
        "segment",
        "eval",
        "--customers",
        customers,
        "--orders",
        orders,
    ];
    args.extend([
        "--segments",
        segs.to_str().unwrap(),
        "--as-of",
        "1998-07-01",
    ]);
    args.extend(extra);
    dir.run(&args).ok()
}

/// Cents from a dollar amount with two decimals, for the reference computation.
fn cents(d: &str) -> i64 {
    let (whole, frac) = d.split_once('.').unwrap_or((d, "0"));
    whole.parse::<i64>().unwrap() * 100 + format!("{frac:0<2}")[..2].parse::<i64>().unwrap()
}

/// Days since 0000-03-01 of a YYYYMMDD date, enough to subtract dates.
fn day_number(yyyymmdd: u32) -> i64 {
    let (y, m, d) = (
        i64::from(yyyymmdd / 10000),
        i64::from(yyyymmdd / 100 % 100),
        i64::from(yyyymmdd % 100),
    );
    let (y, m) = if m <= 2 { (y - 1, m + 12) } else { (y, m) };
    365 * y + y / 4 - y / 100 + y / 400 + (153 * (m - 3) + 2) / 5 + d
}

#[test]
fn rfm_on_cdnow_splits_23570_customers_into_quintiles_of_4714() {
    let dir = Dir::new();
    let (customers, orders, _) = cdnow(&dir);
    let mut segments = String::new();
    for letter in ["r", "f", "m"] {
        for score in 1..=5 {
            write!(
                segments,
                "[[segment]]\nname = \"{letter}{score}\"\nwhere = \"{letter}_score = {score}\"\n\n"
            )
            .unwrap();
        }
    }
    let run = eval_as_of_1998(&dir, &customers, &orders, &segments, &[]);
    let counts = run.counts();
    assert_eq!(counts.len(), 15, "{}", run.stdout);
    for (name, members) in counts {
        assert_eq!(members, 4714, "segment {name}");
    }
    assert!(
        run.stderr.contains("23570 customers, 69659 orders"),
        "{}",
        run.stderr
    );
}

#[test]
fn rfm_scores_match_an_independent_reference_customer_by_customer() {
    let dir = Dir::new();
    let (customers, orders, per_customer) = cdnow(&dir);
    let all = "[[segment]]\nname = \"all\"\nwhere = \"orders_count >= 0\"\n";
    let run = eval_as_of_1998(&dir, &customers, &orders, all, &["--output", "features"]);

    // The reference: the definition in issue #2, written out naively.
    let as_of = day_number(19980701);
    let ids: Vec<u32> = per_customer.keys().copied().collect();
    let n = ids.len() as i64;
    let score = |k: i64| 1.max((5 * (k - 1) + n - 2) / (n - 1));
    let rank = |key: &dyn Fn(u32) -> i64| -> BTreeMap<u32, i64> {
        let mut sorted = ids.clone();
        sorted.sort_by_key(|&id| (key(id), id));
        sorted
            .iter()
            .enumerate()
            .map(|(k, &id)| (id, score(k as i64 + 1)))
            .collect()
    };
    let recency = |id: u32| {
        as_of
            - per_customer[&id]
                .iter()
                .map(|(d, _)| day_number(*d))
                .max()
                .unwrap()
    };
    let r = rank(&|id| -recency(id));
    let f = rank(&|id| per_customer[&id].len() as i64);
    let m = rank(&|id| per_customer[&id].iter().map(|(_, v)| cents(v)).sum());

    let mut lines = run.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (id_col, r_col, f_col, m_col) = (
        col("customer_id"),
        col("r_score"),
        col("f_score"),
        col("m_score"),
    );
    let mut checked = 0;
    for line in lines {
        let v: Vec<&str> = line.split(',').collect();
        let id: u32 = v[id_col].parse().unwrap();
        let got: (i64, i64, i64) = (
            v[r_col].parse().unwrap(),
            v[f_col].parse().unwrap(),
            v[m_col].parse().unwrap(),
        );
        assert_eq!(got, (r[&id], f[&id], m[&id]), "customer {id}");
        checked += 1;
    }
    assert_eq!(checked, 23_570);
}

#[test]
fn bad_rows_are_reported_by_file_line_and_column_skipped_and_counted() {
    let dir = Dir::new();
    let customers = dir.write(
        "customers.csv",
        "id,email,country,accepts_marketing,created_at\n\
         1,a@x.com,US,yes,2020-01-01\n\
         2,b@x.com,GB,perhaps,2020-01-01\n\
         3,c@x.com,US,no,2020-02-30\n\
         1,dup@x.com,US,no,2020-01-01\n\
         4,d@x.com,CA,true,2020-01-01\n",
    );
    let orders = dir.write(
        "orders.csv",
        "id,customer_id,created_at,total_price,items\n\
         1,1,2024-01-01,10.00,1\n\
         2,4,2024-01-02,twelve,1\n\
         3,99,2024-01-03,5.00,1\n\
         4,4,2024-01-04,7.50,1\n",
    );
    let segs = dir.write(
        "s.toml",
        "[[segment]]\nname = \"buyers\"\nwhere = \"orders_count >= 1\"\n",
    );
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "customers.csv",
            "--orders",
            "orders.csv",
            "--segments",
            "s.toml",
            "--as-of",
            "2024-06-01",
        ])
        .ok();
    let _ = (customers, orders, segs);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: skipped"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: skipped customers.csv:3:4: accepts_marketing: `perhaps` is not a boolean (expected true/false, yes/no or 1/0)",
            "warning: skipped customers.csv:4:5: created_at: `2020-02-30` is not a date or date-time (expected e.g. 2024-03-01, 2024-03-01T12:00:00, 2024-03-01 12:00:00+02:00 or 03/01/2024)",
            "warning: skipped customers.csv:5:1: id: duplicate customer id 1 (first at line 2); skipped",
            "warning: skipped orders.csv:3:4: total_price: `twelve` is not an amount (expected e.g. 12.50 or $1,234.50)",
            "warning: skipped orders.csv:4:2: customer_id: unknown customer `99`",
        ],
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("2 customers, 2 orders as of 2024-06-01T00:00:00Z (UTC); 5 bad rows skipped"),
        "{}",
        run.stderr
    );
    assert_eq!(run.counts(), [("buyers".to_owned(), 2)]);
}

#[test]
fn a_bad_segment_fails_before_reading_with_file_line_column_and_a_suggestion() {
    let dir = Dir::new();
    dir.write("s.toml", "[[segment]]\nname = \"vip\"\nwhere = \"total_spend > 500 and country = 'US'\"\n\n[[segment]]\nname = \"x\"\nwhere = \"orders_count >\"\n");
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "missing.csv",
            "--segments",
            "s.toml",
        ])
        .failed();
    assert!(
        run.stderr
            .contains("s.toml:3:10: in segment `vip`: unknown field `total_spend`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("help: did you mean `total_spent`?"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("s.toml:7:24: in segment `x`: expected a value after `>`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("2 errors in s.toml"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("missing.csv"),
        "segments are checked before inputs are read"
    );
}

#[test]
fn an_unusable_input_fails_with_what_to_do() {
    let dir = Dir::new();
    dir.write("c.csv", "name,email\nann,a@x.com\n");
    dir.write(
        "s.toml",
        "[[segment]]\nname = \"all\"\nwhere = \"orders_count = 0\"\n",
    );
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "c.csv",
            "--segments",
            "s.toml",
        ])
        .failed();
    assert!(
        run.stderr
            .contains("c.csv: no column for required field `id` of customers"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--map customers.id=COLUMN"),
        "{}",
        run.stderr
    );
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "c.csv",
            "--segments",
            "s.toml",
            "--map",
            "customers.id=name",
        ])
        .ok();
    assert_eq!(run.counts(), [("all".to_owned(), 1)]);
}

#[test]
fn the_demo_runs_and_every_output_format_agrees() {
    let dir = Dir::new();
    let args = |output: &'static str| {
        vec![
            "segment".to_owned(),
            "eval".into(),
            "--customers".into(),
            demo("customers.csv"),
            "--orders".into(),
            demo("orders.csv"),
            "--events".into(),
            demo("events.csv"),
            "--segments".into(),
            demo("segments.toml"),
            "--as-of".into(),
            "1998-07-01".into(),
            "--output".into(),
            output.into(),
        ]
    };
    let run = |output| {
        let a = args(output);
        dir.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
            .ok()
    };
    let counts_run = run("counts");
    // vip_at_risk_subscribers is in_segment('at_risk') plus consent: a refinement, not a
    // mistake, so it draws no overlap warning.
    assert!(
        !counts_run
            .stderr
            .contains("vip_at_risk_subscribers` is also in"),
        "{}",
        counts_run.stderr
    );
    let counts: BTreeMap<String, u64> = counts_run.counts().into_iter().collect();
    assert!(counts.len() >= 5, "{counts:?}");
    assert!(
        counts.values().all(|&n| n > 0),
        "every demo segment has members: {counts:?}"
    );

    let members = run("members").stdout;
    let mut from_members: BTreeMap<String, u64> = BTreeMap::new();
    for line in members.lines().skip(1) {
        *from_members
            .entry(line.split(',').next().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(from_members, counts);

    let json: serde_json::Value = serde_json::from_str(&run("json").stdout).unwrap();
    for seg in json["segments"].as_array().unwrap() {
        let name = seg["name"].as_str().unwrap();
        assert_eq!(seg["members"].as_u64(), Some(counts[name]), "{name}");
        assert_eq!(
            seg["customer_ids"].as_array().unwrap().len() as u64,
            counts[name]
        );
    }
    assert_eq!(
        json["customers"], 24_050,
        "CDNOW's 23,570 and 480 newcomers"
    );
}

#[test]
fn explain_shows_the_deciding_condition() {
    let dir = Dir::new();
    dir.write(
        "c.csv",
        "id,country,accepts_marketing\n1,US,yes\n2,DE,yes\n",
    );
    dir.write(
        "o.csv",
        "customer_id,created_at,total_price\n1,2024-01-01,600\n2,2024-01-01,50\n",
    );
    dir.write(
        "s.toml",
        "[[segment]]\nname = \"big_us\"\nwhere = \"total_spent > 500 and country = 'US'\"\n",
    );
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "c.csv",
            "--orders",
            "o.csv",
            "--segments",
            "s.toml",
            "--as-of",
            "2024-02-01",
            "--explain",
            "2",
        ])
        .ok();
    assert!(
        run.stdout.contains("customer 2 is not in segment `big_us`"),
        "{}",
        run.stdout
    );
    let decided: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("← decided"))
        .collect();
    assert_eq!(decided.len(), 1, "{}", run.stdout);
    assert!(
        decided[0].contains("total_spent > 500") && decided[0].contains("50.00"),
        "{}",
        decided[0]
    );
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "c.csv",
            "--segments",
            "s.toml",
            "--explain",
            "7",
        ])
        .failed();
    assert!(
        run.stderr.contains("no customer with id `7`"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_validates_a_segments_file_without_data() {
    let dir = Dir::new();
    dir.write("ok.toml", "[[segment]]\nname = \"a\"\nwhere = \"r_score >= 4\"\n[[segment]]\nname = \"b\"\nwhere = \"in_segment('a') and tags contains 'vip'\"\n");
    let run = dir.run(&["segment", "check", "--segments", "ok.toml"]).ok();
    assert!(run.stdout.contains("2 segments OK"));
    dir.write("cycle.toml", "[[segment]]\nname = \"a\"\nwhere = \"in_segment('b')\"\n[[segment]]\nname = \"b\"\nwhere = \"in_segment('a')\"\n");
    let run = dir
        .run(&["segment", "check", "--segments", "cycle.toml"])
        .failed();
    assert!(
        run.stderr.contains("a → b → a") || run.stderr.contains("b → a → b"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_features_page_is_generated_from_the_catalogue() {
    let dir = Dir::new();
    let run = dir.run(&["segment", "fields", "--markdown"]).ok();
    let page = std::fs::read_to_string(repo().join("docs/features.md")).unwrap();
    assert_eq!(
        run.stdout, page,
        "docs/features.md is stale: run `cargo run -p cohort -- segment fields --markdown > docs/features.md`"
    );
}

/// The `caused by:` lines of a failure, each checked to add something the lines above it do
/// not already say.
fn assert_each_cause_said_once(stderr: &str) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: ") || l.starts_with("  caused by: "))
        .collect();
    assert!(!lines.is_empty(), "{stderr}");
    for (i, line) in lines.iter().enumerate().skip(1) {
        let text = line.trim_start_matches("  caused by: ");
        assert!(
            !lines[..i].iter().any(|above| above.contains(text)),
            "`{text}` is said twice:\n{stderr}"
        );
    }
}

#[test]
fn every_cause_of_a_failure_is_printed_once() {
    let dir = Dir::new();
    dir.write("c.csv", "name,email\nann,a@x.com\n");
    dir.write(
        "s.toml",
        "[[segment]]\nname = \"all\"\nwhere = \"orders_count = 0\"\n",
    );
    for customers in ["c.csv", "missing.csv", "."] {
        let run = dir
            .run(&[
                "segment",
                "eval",
                "--customers",
                customers,
                "--segments",
                "s.toml",
            ])
            .failed();
        assert_each_cause_said_once(&run.stderr);
        assert!(run.stderr.contains(customers), "{}", run.stderr);
    }
}

#[test]
fn an_empty_customers_file_is_called_empty_and_a_header_alone_is_no_customers() {
    let dir = Dir::new();
    dir.write("empty.csv", "");
    dir.write("header.csv", "id,email\n");
    dir.write(
        "s.toml",
        "[[segment]]\nname = \"all\"\nwhere = \"orders_count = 0\"\n",
    );
    let eval = |customers: &str| {
        dir.run(&[
            "segment",
            "eval",
            "--customers",
            customers,
            "--segments",
            "s.toml",
        ])
    };
    let run = eval("empty.csv").failed();
    assert!(
        run.stderr
            .contains("empty.csv: the file is empty; expected a header line naming the columns"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("columns found"), "{}", run.stderr);
    let run = eval("header.csv").ok();
    assert_eq!(run.counts(), [("all".to_owned(), 0)]);
}

/// `segment eval` of one segment over the files in `dir`, as of 2024-06-01.
fn eval_in(dir: &Dir, orders: Option<&str>) -> util::Run {
    dir.write(
        "s.toml",
        "[[segment]]\nname = \"buyers\"\nwhere = \"orders_count >= 1\"\n",
    );
    let mut args = vec!["segment", "eval", "--customers", "customers.csv"];
    if let Some(o) = orders {
        args.extend(["--orders", o]);
    }
    args.extend(["--segments", "s.toml", "--as-of", "2024-06-01"]);
    dir.run(&args).ok()
}

fn skipped(run: &util::Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: skipped "))
        .collect()
}

#[test]
fn an_unclosed_quote_is_one_bad_row_and_the_rows_after_it_still_load() {
    let dir = Dir::new();
    dir.write(
        "customers.csv",
        "id,email,first_name,accepts_marketing\n\
         1,a@example.com,\"Ann,true\n\
         2,b@example.com,Bob,true\n\
         3,c@example.com,Cy,true\n",
    );
    let run = eval_in(&dir, None);
    assert_eq!(
        skipped(&run),
        [
            "customers.csv:2: the quote opened at line 2 is never closed; row skipped, reading resumes at line 3"
        ]
    );
    assert!(
        run.stderr.contains("2 customers, 0 orders"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_repeated_order_id_keeps_the_first_order_and_names_both_lines() {
    let dir = Dir::new();
    dir.write("customers.csv", "id\n1\n2\n");
    dir.write(
        "orders.csv",
        "id,customer_id,created_at,total_price\n\
         A1,1,2024-01-01,10.00\n\
         A2,2,2024-01-02,20.00\n\
         A1,2,2024-01-03,99.00\n",
    );
    let run = eval_in(&dir, Some("orders.csv"));
    assert_eq!(
        skipped(&run),
        ["orders.csv:4:1: id: duplicate order id A1 (first at line 2); skipped"]
    );
    assert!(
        run.stderr.contains("2 customers, 2 orders"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_large_orders_file_read_in_parallel_gives_what_one_reader_gives() {
    // Over the size read in parallel chunks (16 MiB); an unclosed quote early on misleads
    // the guess of where the later chunks start, and an order id repeats across chunks.
    let dir = Dir::new();
    let mut customers = String::from("id\n");
    for c in 1..=1000 {
        writeln!(customers, "{c}").unwrap();
    }
    dir.write("customers.csv", &customers);
    let pad = "x".repeat(120);
    let rows = 150_000;
    let mut orders = String::with_capacity(rows * 160);
    orders.push_str("id,customer_id,created_at,total_price,note\n");
    for i in 1..=rows {
        let id = if i == 140_000 { 5 } else { i };
        let note = if i == 1000 {
            format!("\"{pad}")
        } else {
            pad.clone()
        };
        writeln!(orders, "{id},{},2024-01-01,1.00,{note}", i % 1000 + 1).unwrap();
    }
    assert!(orders.len() > 16 * 1024 * 1024);
    dir.write("orders.csv", &orders);
    let run = eval_in(&dir, Some("orders.csv"));
    assert_eq!(
        skipped(&run),
        [
            "orders.csv:1001: the quote opened at line 1001 is not closed within 65536 bytes (max_field_bytes); row skipped, reading resumes at line 1002",
            "orders.csv:140001:1: id: duplicate order id 5 (first at line 6); skipped",
        ],
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("1000 customers, {} orders", rows - 2)),
        "{}",
        run.stderr
    );
}

#[test]
fn a_refund_row_lowers_spend_without_counting_as_an_order_and_an_unmarked_negative_is_bad() {
    let dir = Dir::new();
    dir.write("customers.csv", "id\n1\n2\n");
    dir.write(
        "orders.csv",
        "id,customer_id,created_at,total_price,kind\n\
         A1,1,2024-01-01,100.00,\n\
         R1,1,2024-02-01,-30.00,refund\n\
         A2,2,2024-01-02,20.00,order\n\
         A3,2,2024-01-03,-5.00,\n",
    );
    dir.write(
        "s.toml",
        "[[segment]]\nname = \"net_70_one_order\"\nwhere = \"total_spent = 70 and orders_count = 1 and last_order_at < 2024-01-02\"\n\n\
         [[segment]]\nname = \"twenty\"\nwhere = \"total_spent = 20\"\n",
    );
    let run = dir
        .run(&[
            "segment",
            "eval",
            "--customers",
            "customers.csv",
            "--orders",
            "orders.csv",
            "--segments",
            "s.toml",
            "--as-of",
            "2024-06-01",
        ])
        .ok();
    assert_eq!(
        run.counts(),
        [("net_70_one_order".to_owned(), 1), ("twenty".to_owned(), 1)]
    );
    assert_eq!(
        skipped(&run),
        [
            "orders.csv:5:4: total_price: `-5.00` is negative; if the row is a refund, write refund in its kind column"
        ]
    );
    assert!(
        run.stderr.contains("2 customers, 2 orders, 1 refunds"),
        "{}",
        run.stderr
    );
}
