//! `cargo xtask bench rerun`: what `cohort run` costs when nothing changed, at scale.
//!
//! A generated shop (default 1M customers and 10M orders: the data `bench segments` uses)
//! behind the csv source, four segments and a mirror campaign to the outbox, on SQLite and
//! optionally PostgreSQL. Four runs of the release binary, timed from outside:
//!
//! 1. the first run: loads everything, computes, pushes;
//! 2. a run with nothing new: the csv source checks its files and finds them as they were,
//!    and the run reuses the first one's result (the issue's target: under 1 s);
//! 3. the same with `--recompute`: every customer's features from the per-customer totals and
//!    every segment evaluated, and nothing to push;
//! 4. a run after one order was appended to the CSV: it computes.
//!
//! The orders file is copied, so that appending to it leaves the cached data alone.
//! PostgreSQL (`--backend postgres|both`) gets a database of its own, `bench_rerun`, on the
//! server at `--postgres` (default `postgres://postgres@127.0.0.1:5432`).

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::bench::daemon::{build, reset_database};
use crate::bench::{arg, ensure_data, thousands};
use crate::paths;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let customers: u64 = arg(args, "--customers", "1000000").parse()?;
    let orders: u64 = arg(args, "--orders", "10000000").parse()?;
    let backend = arg(args, "--backend", "sqlite");
    let postgres = arg(args, "--postgres", "postgres://postgres@127.0.0.1:5432");
    let backends: Vec<&str> = match backend.as_str() {
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        "both" => vec!["sqlite", "postgres"],
        other => bail!("--backend is sqlite, postgres or both, not `{other}`"),
    };
    let data = ensure_data(customers, orders)?;
    let bin = build()?;
    println!(
        "\n{} customers, {} orders\n",
        thousands(customers),
        thousands(orders)
    );
    println!("| backend | run | wall s | pull ms | segments ms | campaigns ms | reused | pushed |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |");
    for backend in backends {
        let root = paths::target_dir().join("bench-rerun").join(backend);
        if root.exists() {
            fs::remove_dir_all(&root).context("clearing the last run's folder")?;
        }
        fs::create_dir_all(root.join("data"))?;
        fs::copy(data.join("orders.csv"), root.join("data/orders.csv"))
            .context("copying orders.csv")?;
        let url = match backend {
            "sqlite" => format!("sqlite://{}/cohort.db?mode=rwc", root.display()),
            _ => {
                reset_database(&postgres, "bench_rerun")?;
                format!("{postgres}/bench_rerun")
            }
        };
        write_config(&root, &data.join("customers.csv"), &url)?;
        for (label, extra) in [
            ("first", &[][..]),
            ("nothing new", &[][..]),
            ("nothing new, --recompute", &["--recompute"][..]),
            ("one order appended", &[][..]),
        ] {
            if label == "one order appended" {
                let mut orders = fs::OpenOptions::new()
                    .append(true)
                    .open(root.join("data/orders.csv"))?;
                std::io::Write::write_all(
                    &mut orders,
                    b"bench-extra-1,2,2024-12-30 12:00:00,5000.00,2\n",
                )?;
            }
            let (seconds, summary) = cohort_run(&bin, &root, extra)?;
            let stage = |name: &str| {
                summary["timings_ms"]
                    .as_array()
                    .and_then(|t| t.iter().find(|s| s[0] == name))
                    .map_or("-".to_owned(), |s| s[1].to_string())
            };
            let pushed: u64 = summary["campaigns"]
                .as_array()
                .map_or(0, |c| c.iter().filter_map(|c| c["pushed"].as_u64()).sum());
            println!(
                "| {backend} | {label} | {seconds:.2} | {} | {} | {} | {} | {} |",
                stage("pull"),
                stage("segments"),
                stage("campaigns"),
                if summary.get("reused").is_some() {
                    "yes"
                } else {
                    "no"
                },
                thousands(pushed),
            );
        }
    }
    Ok(())
}

/// Runs `cohort run --json` once; its wall time and summary.
fn cohort_run(bin: &Path, root: &Path, extra: &[&str]) -> Result<(f64, Value)> {
    let started = Instant::now();
    let out = Command::new(bin)
        .current_dir(root)
        .args(["run", "--config", "cohort.toml", "--json"])
        .args(extra)
        .output()
        .context("running cohort")?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        out.status.success(),
        "cohort run failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).context("reading cohort run --json")?;
    Ok((seconds, v["runs"][0]["summary"].clone()))
}

fn write_config(root: &Path, customers: &Path, url: &str) -> Result<()> {
    let mut text = String::new();
    writeln!(
        text,
        r#"[store]
url = "{url}"

[workspace]
id = "bench"
timezone = "UTC"
unsubscribe_url = "https://shop.example/u/{{{{customer_id}}}}"

[[sources]]
name = "shop"
plugin = "csv"
config = {{ customers = {{ paths = ["{}"] }}, orders = {{ paths = ["data/orders.csv"] }} }}

[[segments]]
name = "buyers"
where = "orders_count >= 1"

[[segments]]
name = "big_spenders"
where = "total_spent > 3000"

[[segments]]
name = "lapsed"
where = "orders_count >= 2 and last_order_at < -365d"

[[segments]]
name = "recent"
where = "last_order_at > -3m"

[[destinations]]
name = "out"
plugin = "outbox"
config = {{ dir = "outbox", fsync = false }}

[[campaigns]]
name = "vip_audience"
segments = ["big_spenders"]
destination = "out"
mode = "mirror"
[campaigns.fields]
email = "{{{{email}}}}""#,
        customers.display()
    )?;
    fs::write(root.join("cohort.toml"), text)?;
    Ok(())
}
