//! `cargo xtask bench NAME`: benchmarks that compare Cohort with a reference, end to end.
//!
//! They are measurements, not tests: they fail only when the two sides disagree on the answer,
//! never because a number is slower than hoped.

mod ads;
mod daemon;
mod email;
mod hubspot;
mod measure;
mod rerun;
mod segments;
mod shopify;
mod store;

pub(crate) use segments::{ensure_data, thousands};

use anyhow::{Result, bail};

/// Every benchmark: its name and what it measures. (`abi` is dispatched from main.rs to
/// `bench_abi`; it is listed here so `cargo xtask bench` shows every benchmark.)
const BENCHES: &[(&str, &str)] = &[
    (
        "segments",
        "cohort segment eval vs DuckDB: 10 segments over a generated shop \
         (default 1M customers, 10M orders)",
    ),
    (
        "store",
        "cohort-store load into SQLite and PostgreSQL: rows/s and size \
         (default 1M customers, 10M orders; --small for 10k/100k)",
    ),
    (
        "hubspot",
        "the hubspot source against the fake HubSpot: 100,000 contacts, full and 1% incremental, \
         records/s and share of the 10-second budget",
    ),
    (
        "shopify",
        "the shopify source against the fake Shopify: 100,000 customers and 200,000 orders, \
         bulk and a timed paged sync on the standard plan, records/s and share of the budget",
    ),
    (
        "ads",
        "meta-ads and google-ads: hashing 1M customers (6 keys), then 1M members to each fake \
         vendor: members/s, requests and how full they are",
    ),
    (
        "email",
        "the email destinations against local servers: 50,000 messages through the smtp \
         plugin to a real SMTP server (messages/s), then 100,000 members to each vendor fake \
         at its published limits (members/s, share of the limit)",
    ),
    (
        "daemon",
        "cohort daemon on PostgreSQL: 1,000 workspaces on one-minute schedules, one daemon \
         then two, for 10 minutes each: tick-to-start latency, missed ticks, runs/min, RSS",
    ),
    (
        "rerun",
        "cohort run on a generated shop (default 1M customers, 10M orders): the first run, \
         a run with nothing new (reused), one with --recompute, one after an order was added",
    ),
    (
        "abi",
        "records/s through the plugin ABI vs reading CSV directly",
    ),
];

/// The value after `name` in a benchmark's arguments (`--orders 1000`), or `default`.
pub(crate) fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

pub(crate) fn run(args: Vec<String>) -> Result<()> {
    let mut args = args.into_iter();
    let name = args.next();
    match name.as_deref() {
        Some("segments") => segments::run(args.collect()),
        Some("store") => store::run(args.collect()),
        Some("hubspot") => hubspot::run(&args.collect::<Vec<_>>()),
        Some("shopify") => shopify::run(&args.collect::<Vec<_>>()),
        Some("ads") => ads::run(&args.collect::<Vec<_>>()),
        Some("email") => email::run(&args.collect::<Vec<_>>()),
        Some("daemon") => daemon::run(&args.collect::<Vec<_>>()),
        Some("rerun") => rerun::run(&args.collect::<Vec<_>>()),
        None | Some("list" | "-h" | "--help") => {
            println!("Usage: cargo xtask bench NAME [OPTIONS]   (NAME --help for its options)\n");
            println!("Benchmarks:");
            for (name, what) in BENCHES {
                println!("  {name:<12} {what}");
            }
            Ok(())
        }
        Some(other) => {
            let names: Vec<&str> = BENCHES.iter().map(|b| b.0).collect();
            bail!(
                "no benchmark named `{other}`; there are: {}",
                names.join(", ")
            )
        }
    }
}
