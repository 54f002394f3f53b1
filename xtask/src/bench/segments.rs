//! `cargo xtask bench segments`: `cohort segment eval` against DuckDB on the same CSV files.
//!
//! Both sides run end to end as separate processes (read the CSVs, compute the per-customer
//! features, count the ten segments of `xtask/bench/segments.toml`), alternately, `--runs` times
//! each. The counts must agree segment by segment, or the benchmark fails with the differences:
//! a fast wrong answer is not a result. Reported: the best and the first run's wall time, the
//! peak resident memory (`wait4`'s `ru_maxrss`), and the phase timings cohort prints itself.
//!
//! cohort's output contract: stdout is a table, a header line `segment members share time`, then
//! one row per segment `NAME MEMBERS SHARE% TIME ms`; the last `timings:` line of stderr reads
//! `timings: read_ms=… features_ms=… segments_ms=… total_ms=…`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;

use super::measure::{self, Measured};
use crate::paths;

/// cohort segment eval vs DuckDB on a generated shop; fails unless the counts agree.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask bench segments")]
struct Args {
    /// Customers to generate
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    /// Orders to generate
    #[arg(long, default_value_t = 10_000_000)]
    orders: u64,
    /// Runs of each side; the best and the first are reported
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Benchmark this cohort binary instead of building target/release/cohort
    #[arg(long)]
    cohort: Option<PathBuf>,
}

/// The generator's clock; its orders all fall before it.
const AS_OF: &str = "2025-01-01";
/// DuckDB's threads: the machine the targets are set on has two cores.
const DUCKDB_THREADS: u32 = 2;
const PYTHON: &str = "python3";

pub(crate) fn run(args: Vec<String>) -> Result<()> {
    let args =
        Args::parse_from(std::iter::once("cargo xtask bench segments".to_owned()).chain(args));
    let root = paths::repo_root();
    let segments_file = root.join("xtask/bench/segments.toml");
    let duckdb_script = root.join("xtask/bench/duckdb_segments.py");
    let names = segment_names(&segments_file)?;

    ensure_python_deps()?;
    let data = ensure_data(args.customers, args.orders)?;
    let cohort = match args.cohort {
        Some(path) => path,
        None => build_cohort()?,
    };
    check_cohort_has_segment_eval(&cohort)?;

    let customers_csv = data.join("customers.csv");
    let orders_csv = data.join("orders.csv");
    let mut cohort_cmd = Command::new(&cohort);
    cohort_cmd
        .args(["segment", "eval", "--customers"])
        .arg(&customers_csv)
        .arg("--orders")
        .arg(&orders_csv)
        .arg("--segments")
        .arg(&segments_file)
        .args(["--as-of", AS_OF, "--output", "counts"])
        .current_dir(&root);
    let mut duckdb_cmd = Command::new(PYTHON);
    duckdb_cmd
        .arg(&duckdb_script)
        .arg("--customers")
        .arg(&customers_csv)
        .arg("--orders")
        .arg(&orders_csv)
        .args([
            "--as-of",
            &format!("{AS_OF} 00:00:00"),
            "--threads",
            &DUCKDB_THREADS.to_string(),
        ])
        .current_dir(&root);

    if let Some(load) = load_average() {
        // Both sides want both cores: a compile running beside the benchmark skews it.
        let note = if load > 0.5 {
            " (busy machine: expect noisy timings)"
        } else {
            ""
        };
        println!("load average before the runs: {load:.2}{note}");
    }
    let mut cohort_runs = Vec::new();
    let mut duckdb_runs = Vec::new();
    for i in 1..=args.runs {
        let c = measure::run(&mut cohort_cmd)?;
        let c = parse_cohort_run(&c).context("running cohort segment eval")?;
        let d = measure::run(&mut duckdb_cmd)?;
        let d = parse_duckdb_run(&d).context("running the DuckDB reference")?;
        println!(
            "run {i}/{}: cohort {:.2} s {:.0} MiB (segments {:.1} ms), duckdb {:.2} s {:.0} MiB",
            args.runs,
            secs(c.wall),
            mib(c.max_rss_bytes),
            c.timings.segments_ms,
            secs(d.wall),
            mib(d.max_rss_bytes),
        );
        cohort_runs.push(c);
        duckdb_runs.push(d);
    }

    println!();
    println!(
        "segments over {} customers and {} orders, as of {AS_OF}; {} runs each",
        thousands(args.customers),
        thousands(args.orders),
        args.runs
    );
    println!();
    compare_counts(&names, &cohort_runs, &duckdb_runs)?;
    println!();
    print_performance(&cohort_runs, &duckdb_runs);
    Ok(())
}

/// Prints the counts side by side; fails unless every segment agrees.
fn compare_counts(
    names: &[String],
    cohort_runs: &[CohortRun],
    duckdb_runs: &[DuckdbRun],
) -> Result<()> {
    let cohort = same_counts_every_run("cohort", cohort_runs, |r| &r.counts)?;
    let duckdb = same_counts_every_run("duckdb", duckdb_runs, |r| &r.counts)?;
    check_names("cohort's output", names, cohort.keys())?;
    check_names("duckdb_segments.py", names, duckdb.keys())?;
    let fastest = best(cohort_runs, |r| r.wall);
    println!(
        "{:<22} {:>11} {:>11} {:>10}  {:>10}",
        "segment", "cohort", "duckdb", "diff", "cohort ms"
    );
    let mut disagreements = Vec::new();
    for name in names {
        let (c, d) = (cohort[name], duckdb[name]);
        let diff = c as i64 - d as i64;
        let verdict = if diff == 0 {
            "ok".to_owned()
        } else {
            format!("{diff:+}")
        };
        let time = fastest
            .segment_ms
            .get(name)
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}"));
        println!(
            "{name:<22} {:>11} {:>11} {verdict:>10}  {time:>10}",
            thousands(c),
            thousands(d)
        );
        if diff != 0 {
            disagreements.push(format!(
                "{name}: cohort {} vs duckdb {} ({diff:+})",
                thousands(c),
                thousands(d)
            ));
        }
    }
    ensure!(
        disagreements.is_empty(),
        "cohort and DuckDB disagree on {} of {} segments:\n  {}",
        disagreements.len(),
        names.len(),
        disagreements.join("\n  ")
    );
    println!("all {} segments agree", names.len());
    Ok(())
}

fn print_performance(cohort_runs: &[CohortRun], duckdb_runs: &[DuckdbRun]) {
    let (best_cohort, best_duckdb) = (best(cohort_runs, |r| r.wall), best(duckdb_runs, |r| r.wall));
    let (first_cohort, first_duckdb) = (&cohort_runs[0], &duckdb_runs[0]);
    let peak_cohort = cohort_runs
        .iter()
        .map(|r| r.max_rss_bytes)
        .max()
        .unwrap_or(0);
    let peak_duckdb = duckdb_runs
        .iter()
        .map(|r| r.max_rss_bytes)
        .max()
        .unwrap_or(0);
    let wall_ratio = secs(best_cohort.wall) / secs(best_duckdb.wall);
    let mem_ratio = peak_cohort as f64 / peak_duckdb as f64;
    println!(
        "{:<24} {:>12} {:>12} {:>14}",
        "", "cohort", "duckdb", "cohort/duckdb"
    );
    println!(
        "{:<24} {:>10.3} s {:>10.3} s {:>13.2}x",
        "wall time, best",
        secs(best_cohort.wall),
        secs(best_duckdb.wall),
        wall_ratio
    );
    println!(
        "{:<24} {:>10.3} s {:>10.3} s {:>13.2}x",
        "wall time, first run",
        secs(first_cohort.wall),
        secs(first_duckdb.wall),
        secs(first_cohort.wall) / secs(first_duckdb.wall)
    );
    println!(
        "{:<24} {:>8.1} MiB {:>8.1} MiB {:>13.2}x",
        "peak RSS, max of runs",
        mib(peak_cohort),
        mib(peak_duckdb),
        mem_ratio
    );
    let duckdb_query_ms = min_of(duckdb_runs.iter().map(|r| r.query_ms));
    println!(
        "{:<24} {:>12} {duckdb_query_ms:>10.0} ms",
        "duckdb query, best", ""
    );
    println!();

    let phase = |f: fn(&Timings) -> f64| {
        let min = min_of(cohort_runs.iter().map(|r| f(&r.timings)));
        format!("{min:>9.1} ms {:>9.1} ms", f(&first_cohort.timings))
    };
    println!(
        "{:<24} {:>12} {:>12}",
        "cohort phases", "min of runs", "first run"
    );
    println!("{:<24} {}", "  read_ms", phase(|t| t.read_ms));
    println!("{:<24} {}", "  features_ms", phase(|t| t.features_ms));
    println!("{:<24} {}", "  segments_ms", phase(|t| t.segments_ms));
    println!("{:<24} {}", "  total_ms", phase(|t| t.total_ms));
    println!();

    let segments_ms = min_of(cohort_runs.iter().map(|r| r.timings.segments_ms));
    let targets = [
        (
            "wall time no slower than DuckDB (aim: half)",
            wall_ratio <= 1.0,
            format!("{wall_ratio:.2}x"),
        ),
        (
            "10 segments over computed customers < 50 ms",
            segments_ms < 50.0,
            format!("{segments_ms:.1} ms"),
        ),
        (
            "peak memory below DuckDB's",
            peak_cohort < peak_duckdb,
            format!("{mem_ratio:.2}x"),
        ),
    ];
    println!("targets:");
    for (target, ok, value) in targets {
        println!(
            "  {target:<46} {:<6} ({value})",
            if ok { "met" } else { "MISSED" }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Preparation

fn ensure_python_deps() -> Result<()> {
    let import = || {
        Command::new(PYTHON)
            .args(["-c", "import numpy, pyarrow, duckdb"])
            .output()
            .map(|out| out.status.success())
            .with_context(|| format!("running {PYTHON}; is Python 3 installed?"))
    };
    if import()? {
        return Ok(());
    }
    println!("installing numpy, pyarrow and duckdb for {PYTHON}");
    let status = Command::new(PYTHON)
        .args([
            "-m", "pip", "install", "--quiet", "numpy", "pyarrow", "duckdb",
        ])
        .status()
        .context("running pip")?;
    ensure!(
        status.success(),
        "`{PYTHON} -m pip install numpy pyarrow duckdb` failed ({status})"
    );
    ensure!(
        import()?,
        "numpy, pyarrow and duckdb still do not import after pip install"
    );
    Ok(())
}

/// The generated shop for this size, generating it on first use (shared with
/// `cargo xtask bench abi`).
pub(crate) fn ensure_data(customers: u64, orders: u64) -> Result<PathBuf> {
    let dir = paths::target_dir()
        .join("bench-data")
        .join(format!("c{customers}-o{orders}"));
    let done = dir.join(".done");
    if done.is_file() && dir.join("customers.csv").is_file() && dir.join("orders.csv").is_file() {
        println!("using cached data in {}", dir.display());
        return Ok(dir);
    }
    let imports = Command::new(PYTHON)
        .args(["-c", "import numpy, pyarrow"])
        .status();
    if !imports.is_ok_and(|s| s.success()) {
        bail!("the data generator needs numpy and pyarrow: run `pip install numpy pyarrow`");
    }
    if dir.exists() {
        // Left half-written by an interrupted run.
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let generator = paths::shared_dir()?.join("tools/gen_merchant_data.py");
    println!(
        "generating {customers} customers and {orders} orders into {}",
        dir.display()
    );
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&generator)
        .args([
            "--customers",
            &customers.to_string(),
            "--orders",
            &orders.to_string(),
        ])
        .arg("--out")
        .arg(&dir)
        .args(["--formats", "csv"]);
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        status.success(),
        "the data generator failed ({status}): {cmd:?}"
    );
    fs::write(&done, format!("{cmd:?}\n"))
        .with_context(|| format!("writing {}", done.display()))?;
    Ok(dir)
}

fn build_cohort() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building cohort (release)");
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "cohort"])
        .current_dir(paths::repo_root())
        .status()
        .context("running cargo build")?;
    ensure!(
        status.success(),
        "`cargo build --release -p cohort` failed ({status})"
    );
    Ok(paths::target_dir().join("release").join("cohort"))
}

fn check_cohort_has_segment_eval(cohort: &Path) -> Result<()> {
    let out = Command::new(cohort)
        .args(["segment", "eval", "--help"])
        .output()
        .with_context(|| format!("running {}", cohort.display()))?;
    ensure!(
        out.status.success(),
        "{} does not support `segment eval` yet ({}):\n{}",
        cohort.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    Ok(())
}

/// The names in a segments file, in order. The file is ours and flat (`[[segment]]` tables of
/// `name` and `where`), so a line scan is enough; it checks that every table has a name.
fn segment_names(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let tables = text.lines().filter(|l| l.trim() == "[[segment]]").count();
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(value) = line.trim().strip_prefix("name") else {
            continue;
        };
        let Some(value) = value.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim();
        let name = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .with_context(|| format!("{}:{}: expected name = \"…\"", path.display(), i + 1))?;
        names.push(name.to_owned());
    }
    ensure!(
        names.len() == tables && tables > 0,
        "{}: found {tables} [[segment]] tables but {} names",
        path.display(),
        names.len()
    );
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Results

/// One row of cohort's counts table.
#[derive(Debug, Clone, PartialEq)]
struct SegmentRow {
    name: String,
    members: u64,
    time_ms: Option<f64>,
}

/// cohort's own phase timings, from its stderr.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timings {
    read_ms: f64,
    features_ms: f64,
    segments_ms: f64,
    total_ms: f64,
}

#[derive(Debug)]
struct CohortRun {
    wall: Duration,
    max_rss_bytes: u64,
    counts: BTreeMap<String, u64>,
    /// Each segment's evaluation time, where cohort's table gives one.
    segment_ms: BTreeMap<String, f64>,
    timings: Timings,
}

#[derive(Debug)]
struct DuckdbRun {
    wall: Duration,
    max_rss_bytes: u64,
    counts: BTreeMap<String, u64>,
    query_ms: f64,
}

fn parse_cohort_run(m: &Measured) -> Result<CohortRun> {
    ensure!(
        m.status.success(),
        "cohort failed ({}):\n{}",
        m.status,
        tail(&m.stderr)
    );
    let rows = parse_counts_table(&m.stdout)?;
    let timings = parse_timings(&m.stderr)?;
    let mut counts = BTreeMap::new();
    let mut segment_ms = BTreeMap::new();
    for row in rows {
        if let Some(ms) = row.time_ms {
            segment_ms.insert(row.name.clone(), ms);
        }
        let name = row.name;
        ensure!(
            counts.insert(name.clone(), row.members).is_none(),
            "cohort's table lists segment `{name}` twice"
        );
    }
    Ok(CohortRun {
        wall: m.wall,
        max_rss_bytes: m.max_rss_bytes,
        counts,
        segment_ms,
        timings,
    })
}

fn parse_duckdb_run(m: &Measured) -> Result<DuckdbRun> {
    ensure!(
        m.status.success(),
        "the DuckDB script failed ({}):\n{}",
        m.status,
        tail(&m.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(m.stdout.trim())
        .with_context(|| format!("reading its JSON output: {:?}", m.stdout))?;
    let counts = json["counts"]
        .as_object()
        .context("no `counts` object in its output")?
        .iter()
        .map(|(name, n)| {
            Ok((
                name.clone(),
                n.as_u64().context("a count is not an integer")?,
            ))
        })
        .collect::<Result<_>>()?;
    let query_ms = json["query_ms"].as_f64().unwrap_or(f64::NAN);
    Ok(DuckdbRun {
        wall: m.wall,
        max_rss_bytes: m.max_rss_bytes,
        counts,
        query_ms,
    })
}

const TABLE_CONTRACT: &str =
    "a header `segment members share time`, then rows `NAME MEMBERS SHARE% TIME ms`";

fn parse_counts_table(stdout: &str) -> Result<Vec<SegmentRow>> {
    let mut rows = Vec::new();
    let mut saw_header = false;
    for (i, line) in stdout.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] => {}
            ["segment", "members", ..] => saw_header = true,
            [name, members, ..] if saw_header => {
                let members = members.parse().with_context(|| {
                    format!(
                        "cohort's stdout line {}: {line:?}: members is not an integer",
                        i + 1
                    )
                })?;
                let time_ms = match fields[2..] {
                    [_, time, "ms", ..] => time.parse().ok(),
                    _ => None,
                };
                rows.push(SegmentRow {
                    name: name.to_owned(),
                    members,
                    time_ms,
                });
            }
            _ => bail!(
                "cohort's stdout line {}: {line:?} is not {TABLE_CONTRACT}",
                i + 1
            ),
        }
    }
    ensure!(
        saw_header && !rows.is_empty(),
        "cohort's stdout is not {TABLE_CONTRACT}:\n{stdout}"
    );
    Ok(rows)
}

fn parse_timings(stderr: &str) -> Result<Timings> {
    let line = stderr
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("timings:"))
        .with_context(|| format!("no `timings:` line on cohort's stderr:\n{}", tail(stderr)))?;
    let mut values = BTreeMap::new();
    for pair in line.split_whitespace() {
        let (key, value) = pair
            .split_once('=')
            .with_context(|| format!("`{pair}` in the timings line is not key=value"))?;
        let value: f64 = value
            .parse()
            .with_context(|| format!("`{pair}` in the timings line is not a number"))?;
        values.insert(key, value);
    }
    let get = |key: &str| {
        values
            .get(key)
            .copied()
            .with_context(|| format!("no {key} in the timings line {line:?}"))
    };
    Ok(Timings {
        read_ms: get("read_ms")?,
        features_ms: get("features_ms")?,
        segments_ms: get("segments_ms")?,
        total_ms: get("total_ms")?,
    })
}

/// The counts of the first run, after checking every run gave the same.
fn same_counts_every_run<'a, R>(
    side: &str,
    runs: &'a [R],
    counts: impl Fn(&'a R) -> &'a BTreeMap<String, u64>,
) -> Result<&'a BTreeMap<String, u64>> {
    let first = counts(&runs[0]);
    for (i, run) in runs.iter().enumerate().skip(1) {
        let other = counts(run);
        if other != first {
            let names: std::collections::BTreeSet<&String> =
                first.keys().chain(other.keys()).collect();
            let diffs: Vec<String> = names
                .into_iter()
                .filter(|n| first.get(*n) != other.get(*n))
                .map(|n| {
                    format!(
                        "{n}: {:?} in run 1, {:?} in run {}",
                        first.get(n),
                        other.get(n),
                        i + 1
                    )
                })
                .collect();
            bail!("{side} is not deterministic:\n  {}", diffs.join("\n  "));
        }
    }
    Ok(first)
}

fn check_names<'a>(
    what: &str,
    expected: &[String],
    got: impl Iterator<Item = &'a String>,
) -> Result<()> {
    let mut got: Vec<&String> = got.collect();
    let mut want: Vec<&String> = expected.iter().collect();
    got.sort();
    want.sort();
    ensure!(
        got == want,
        "{what} names other segments than xtask/bench/segments.toml: {got:?} vs {want:?}"
    );
    Ok(())
}

fn min_of(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}

fn best<R>(runs: &[R], wall: impl Fn(&R) -> Duration) -> &R {
    runs.iter().min_by_key(|r| wall(r)).unwrap_or(&runs[0])
}

/// The 1-minute load average, where /proc has it.
fn load_average() -> Option<f64> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `1234567` as `1,234,567`, for tables (shared with `cargo xtask bench abi`).
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counts_table_and_the_timings_line() {
        let stdout = "segment members share time\n\
                      champions 83442 8.3% 1.25 ms\n\
                      high_aov 74606 7.5% 0.80 ms\n";
        let rows = parse_counts_table(stdout).expect("valid table");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            SegmentRow {
                name: "champions".into(),
                members: 83_442,
                time_ms: Some(1.25)
            }
        );
        let stderr = "read 1000000 customers\ntimings: read_ms=812.5 features_ms=201 segments_ms=11.75 total_ms=1030.2\n";
        let t = parse_timings(stderr).expect("valid timings");
        assert_eq!(t.segments_ms, 11.75);
        assert_eq!(t.total_ms, 1030.2);
    }

    #[test]
    fn rejects_output_outside_the_contract() {
        assert!(
            parse_counts_table("champions 83442 8.3% 1.25 ms\n").is_err(),
            "no header"
        );
        assert!(
            parse_counts_table("segment members share time\nchampions 83,442 8% 1 ms\n").is_err()
        );
        assert!(parse_timings("timings: read_ms=1 features_ms=2 total_ms=3\n").is_err());
    }

    #[test]
    fn the_bench_segments_file_has_ten_named_segments() {
        let names = segment_names(&paths::repo_root().join("xtask/bench/segments.toml"))
            .expect("readable segments file");
        assert_eq!(names.len(), 10);
        assert_eq!(names[0], "champions");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }
}
