//! `cargo xtask bench store`: how fast the store loads a shop into SQLite and PostgreSQL.
//!
//! The measuring program is `crates/cohort-store/examples/load_bench.rs`, built in release: it
//! reads the generated shop's CSVs with cohort-csv (on a thread of its own), ingests them in
//! batches the way a source's pages arrive (one transaction per batch, cursor included), reads
//! the orders back once, and prints JSON lines that this module turns into a table. The data is
//! the generated shop shared with `bench segments` (cached under `target/bench-data/`).
//! PostgreSQL is `COHORT_TEST_POSTGRES_URL` or the local test database; the benchmark uses a
//! schema of its own and drops it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::Value;

use crate::bench::{ensure_data, thousands};
use crate::paths;

/// Loads a generated shop into SQLite and PostgreSQL through cohort-store and times it.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask bench store")]
struct Args {
    /// Customers to generate
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    /// Orders to generate
    #[arg(long, default_value_t = 10_000_000)]
    orders: u64,
    /// A quick run: 10,000 customers and 100,000 orders
    #[arg(long, conflicts_with_all = ["customers", "orders"])]
    small: bool,
    /// Which database: sqlite, postgres or both
    #[arg(long, default_value = "both", value_parser = ["sqlite", "postgres", "both"])]
    backend: String,
    /// Records per ingest call (one transaction each)
    #[arg(long, default_value_t = 50_000)]
    batch: u64,
    /// PostgreSQL URL (default: COHORT_TEST_POSTGRES_URL, else postgres://postgres@127.0.0.1:5432/test)
    #[arg(long)]
    postgres_url: Option<String>,
    /// Use this folder's customers.csv and orders.csv instead of generated data
    #[arg(long)]
    data: Option<PathBuf>,
}

pub(crate) fn run(args: Vec<String>) -> Result<()> {
    let args = Args::parse_from(std::iter::once("cargo xtask bench store".to_owned()).chain(args));
    let (customers, orders) = if args.small {
        (10_000, 100_000)
    } else {
        (args.customers, args.orders)
    };
    let data = match &args.data {
        Some(dir) => dir.clone(),
        None => ensure_data(customers, orders)?,
    };
    let bench = build()?;
    println!("loading {} with {}", data.display(), bench.display());
    let mut cmd = Command::new(&bench);
    cmd.arg("--data").arg(&data).args([
        "--backend",
        &args.backend,
        "--batch",
        &args.batch.to_string(),
    ]);
    if let Some(url) = &args.postgres_url {
        cmd.args(["--postgres-url", url]);
    }
    let output = cmd
        .output()
        .with_context(|| format!("running {}", bench.display()))?;
    ensure!(
        output.status.success(),
        "the store benchmark failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("reading the benchmark's JSON lines")?;
    print_table(&rows, args.batch);
    Ok(())
}

fn build() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building the store benchmark (release)");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "cohort-store",
            "--example",
            "load_bench",
        ])
        .current_dir(paths::repo_root())
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "`cargo build --release -p cohort-store --example load_bench` failed ({status})"
    );
    Ok(paths::target_dir()
        .join("release")
        .join("examples")
        .join("load_bench"))
}

fn print_table(rows: &[Value], batch: u64) {
    println!();
    println!(
        "{:<10} {:<17} {:>12} {:>9} {:>12} {:>10}",
        "backend", "table", "rows", "seconds", "rows/s", "db size"
    );
    let mut last_backend = "";
    for row in rows {
        let backend = row["backend"].as_str().unwrap_or("?");
        let table = row["table"].as_str().unwrap_or("?");
        let count = row["rows"].as_u64().unwrap_or(0);
        let seconds = row["seconds"].as_f64().unwrap_or(0.0);
        let rate = if seconds > 0.0 {
            (count as f64 / seconds) as u64
        } else {
            0
        };
        // The size is the database's after the whole load: shown once per backend.
        let size = if backend == last_backend {
            String::new()
        } else {
            format!(
                "{:.0} MiB",
                row["bytes"].as_f64().unwrap_or(0.0) / 1024.0 / 1024.0
            )
        };
        last_backend = backend;
        println!(
            "{backend:<10} {table:<17} {:>12} {seconds:>9.2} {:>12} {size:>10}",
            thousands(count),
            thousands(rate)
        );
    }
    println!();
    println!(
        "each ingest call: {} records upserted and the cursor saved in one transaction",
        thousands(batch)
    );
}
