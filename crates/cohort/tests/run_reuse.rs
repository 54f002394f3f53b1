//! A run with nothing new reuses its job's last clean result (see `cohort_engine::reuse`):
//! the real binary, csv and outbox plugins, a SQLite store. What a reused run reports must be
//! what computing would have reported, and anything that could change the result (a record, a
//! config edit, a run that died halfway) must make the next run compute.
#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use std::collections::BTreeSet;

use serde_json::Value;
use util::shop::{CONFIG, customers_in, outbox, run, setup};

/// The one run `cohort run --json` printed.
fn json_run(out: &str) -> Value {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let runs = v["runs"].as_array().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(runs.len(), 1, "{out}");
    runs[0].clone()
}

fn summary(dir: &util::Dir, extra: &[&str]) -> Value {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    json_run(&run(dir, &args).ok().stdout)["summary"].clone()
}

#[test]
fn a_run_with_nothing_new_reuses_the_last_result_and_reports_what_computing_would() {
    let dir = setup(30);
    let first = summary(&dir, &[]);
    assert!(first.get("reused").is_none(), "{first}");
    let files = outbox(dir.tmp.path());

    let second = summary(&dir, &[]);
    assert_eq!(second["reused"]["run"], 1, "{second}");
    assert_eq!(outbox(dir.tmp.path()), files, "nothing was pushed");

    // What a run that computes says: the reused run reported the same segments and
    // campaigns, counts of members, skips and what was already current included.
    let third = summary(&dir, &["--recompute"]);
    assert!(third.get("reused").is_none(), "{third}");
    assert_eq!(second["segments"], third["segments"]);
    assert_eq!(second["campaigns"], third["campaigns"]);
    assert_eq!(second["customers"], third["customers"]);

    // The text output says so, below its tables.
    let fourth = run(&dir, &[]).ok();
    assert!(
        fourth.stdout.contains("nothing changed since run 3"),
        "{}",
        fourth.stdout
    );
    assert!(fourth.stdout.contains("thanks → out"), "{}", fourth.stdout);
}

#[test]
fn a_changed_record_or_config_makes_the_next_run_compute() {
    let dir = setup(30);
    run(&dir, &[]).ok();

    // Customer 2 spends more: a record changed.
    let orders = std::fs::read_to_string(dir.path("data/orders.csv")).unwrap();
    let orders = orders.replace(
        "2,2,2024-03-01 12:00:00,20.00,1",
        "2,2,2024-03-01 12:00:00,220.00,1",
    );
    dir.write("data/orders.csv", &orders);
    let changed = summary(&dir, &[]);
    assert!(changed.get("reused").is_none(), "{changed}");
    let vip = |s: &Value| {
        s["segments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "big_spenders")
            .unwrap()["added"]
            .clone()
    };
    assert_eq!(vip(&changed), 1, "{changed}");
    let audience = customers_in(&outbox(dir.tmp.path())["audiences/vip_audience"]);
    assert!(audience.contains(&2), "{audience:?}");

    // Nothing new again: reused.
    assert_eq!(summary(&dir, &[])["reused"]["run"], 2);

    // The segment's threshold is edited: the config changed.
    dir.write(
        "cohort.toml",
        &CONFIG.replace("total_spent > 100", "total_spent > 200"),
    );
    let edited = summary(&dir, &[]);
    assert!(edited.get("reused").is_none(), "{edited}");
    let removed: BTreeSet<String> = outbox(dir.tmp.path())["audiences/vip_audience"]
        .iter()
        .filter(|f| f.contains("-remove-"))
        .cloned()
        .collect();
    assert_eq!(
        customers_in(&removed),
        [5, 10, 20, 25].into(),
        "all but customer 2 spent $200 or less"
    );
}

#[test]
fn a_run_that_died_after_changing_memberships_leaves_nothing_to_reuse() {
    let dir = setup(30);
    run(&dir, &[]).ok();
    let clean = outbox(dir.tmp.path());

    // A config edit computes; the run dies after recording memberships, before pushing.
    dir.write(
        "cohort.toml",
        &CONFIG.replace("total_spent > 100", "total_spent > 200"),
    );
    let killed = dir
        .command()
        .args(["run", "--config", "cohort.toml"])
        .env("COHORT_FAILPOINT", "after-segments")
        .output()
        .unwrap();
    assert!(!killed.status.success());

    // The edit is undone: the config and the records are those of the first run's clean
    // result again, but the memberships are not. The run must compute, and mirror them back.
    dir.write("cohort.toml", CONFIG);
    let after = summary(&dir, &[]);
    assert!(after.get("reused").is_none(), "{after}");
    assert_eq!(outbox(dir.tmp.path()), clean);
}

#[test]
fn dry_runs_compute_and_leave_the_result_to_reuse_alone() {
    let dir = setup(30);
    run(&dir, &[]).ok();
    let dry = summary(&dir, &["--dry-run"]);
    assert!(dry.get("reused").is_none(), "{dry}");
    assert_eq!(summary(&dir, &[])["reused"]["run"], 1);
}
