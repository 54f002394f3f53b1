//! Cohort's development tasks, run as `cargo xtask TASK` (the alias lives in .cargo/config.toml).
//!
//! - `cargo xtask demo` builds Cohort in release and runs it on the demo shop (the README's
//!   first command).
//! - `cargo xtask demo-data` writes `config/demo/{customers,orders,events}.csv`, the shipped demo
//!   shop, from the real CDNOW purchase history in `../shared/data/cdnow/CDNOW_master.txt`: one
//!   customer per CDNOW customer with invented but plausible details, one order per CDNOW
//!   transaction (date, CDs and dollar value exactly as recorded), and engagement events in the
//!   120 days before the demo's as-of date, 1998-07-01. Deterministic: a fixed seed, no clock.
//! - `cargo xtask bench` lists the benchmarks; `cargo xtask bench segments [--customers N]
//!   [--orders M] [--runs R]` generates (and caches under `target/bench-data/`) a synthetic shop
//!   with `../shared/tools/gen_merchant_data.py`, evaluates `xtask/bench/segments.toml` with a
//!   release `cohort segment eval` and the same ten segments with DuckDB
//!   (`xtask/bench/duckdb_segments.py`), fails unless every count agrees, and prints wall time,
//!   peak memory and cohort's own phase timings for both.
//! - `cargo xtask bench store [--small] [--backend sqlite|postgres|both]` loads the same
//!   generated shop into SQLite and PostgreSQL through cohort-store and prints rows/s and size.
//!
//! `../shared` is found beside the repository, or wherever `COHORT_SHARED_DIR` points.
// Printing progress and tables is this binary's whole job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod bench_abi;
mod demo;
mod demo_data;
mod new_plugin;
mod paths;
mod rng;

use std::process::ExitCode;

const USAGE: &str = "\
Usage: cargo xtask TASK [ARGS]

Tasks:
  demo              build Cohort and run it on the demo shop
  demo-data         regenerate config/demo/*.csv from the CDNOW data
  bench [NAME]      run a benchmark; without NAME, list them
  bench abi         records/s through the plugin ABI vs reading CSV directly
  bench store       load 1M customers and 10M orders into SQLite and PostgreSQL
  new-plugin NAME --kind source|destination [--http]
                    scaffold plugins/NAME, a plugin crate that passes the conformance kit
                    (--http: a connector to an HTTP API on the SDK's toolkit)
  help              show this

Run `cargo xtask TASK --help` for a task's options.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    let result = match task.as_deref() {
        Some("demo") => demo::run(&rest),
        Some("demo-data") => demo_data::run(rest),
        Some("bench") if rest.first().is_some_and(|b| b == "abi") => bench_abi::run(&rest[1..]),
        Some("new-plugin") => new_plugin::run(&rest),
        Some("bench") => bench::run(rest),
        None | Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
