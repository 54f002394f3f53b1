//! `cargo xtask bench daemon`: the daemon under an agency's load.
//!
//! 1,000 workspaces (by default), each a small job: a CSV source of 100 customers, two segments
//! and the outbox, on a one-minute schedule, against one PostgreSQL database. One daemon runs
//! them for `--minutes`, then two daemons share a fresh database for as long.
//!
//! What it reads, and from where, so that the figures are the daemon's own:
//! - tick-to-start latency: the `tick_lag_seconds` of each "Run starting" log line (the daemon
//!   computes it when the run starts; first attempts of scheduled ticks only);
//! - ticks, missed ticks and duplicates: the `job_runs` rows, through `psql`, against the ticks
//!   that fell due in the window (one per workspace and minute);
//! - runs per minute: runs finished inside the window;
//! - RSS: `/proc/PID/status` sampled twice a second. "Idle" is after the daemon is ready and
//!   before its first tick; "load" is the peak.
//!
//! The test servers run PostgreSQL without autovacuum: [`Analyzer`] stands in for it.
//!
//! Like every benchmark here it measures and prints; it fails only when the daemon does
//! something wrong (a tick run twice), never because a number is slower than hoped.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::paths;

const DATABASE: &str = "cohort_bench_daemon";

struct Args {
    workspaces: usize,
    minutes: u64,
    daemons: Vec<usize>,
    workers: usize,
    jitter: u64,
    postgres: String,
    analyze: bool,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args> {
        let arg = |name: &str, default: &str| -> String {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
                .unwrap_or_else(|| default.to_owned())
        };
        let number = |name: &str, default: &str| -> Result<u64> {
            arg(name, default)
                .parse()
                .with_context(|| format!("{name} takes a whole number"))
        };
        let daemons = arg("--daemons", "1,2")
            .split(',')
            .map(|n| n.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("--daemons takes a list such as 1,2")?;
        ensure!(
            daemons.iter().all(|&n| n > 0),
            "--daemons: each count is at least 1"
        );
        let jitter = number("--jitter", "0")?;
        // A start jittered past the minute would fall after the window the bench reads.
        ensure!(jitter < 60, "--jitter: seconds, under 60");
        Ok(Args {
            workspaces: usize::try_from(number("--workspaces", "1000")?)?,
            minutes: number("--minutes", "10")?.max(1),
            daemons,
            workers: usize::try_from(number("--workers", "4")?)?,
            jitter,
            postgres: arg("--postgres", "postgres://postgres@127.0.0.1:5432"),
            analyze: !args.iter().any(|a| a == "--no-analyze"),
        })
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let bin = build()?;
    let root = paths::target_dir().join("bench-daemon");
    let conf = write_workspaces(&root, &args)?;
    println!(
        "{} workspaces, one job each every minute (jitter {} s), {} min per scenario, {} workers per daemon",
        args.workspaces, args.jitter, args.minutes, args.workers
    );
    println!();
    println!(
        "| daemons | ticks due | runs started | missed | run twice | tick→start p50 | p99 | max | runs/min | RSS idle | RSS peak | RSS idle after |"
    );
    println!(
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for &n in &args.daemons {
        let r = scenario(&bin, &root, &conf, &args, n)?;
        println!(
            "| {n} | {} | {} | {} | {} | {:.3} s | {:.3} s | {:.3} s | {:.0} | {} | {} | {} |",
            r.ticks_due,
            r.started,
            r.missed,
            r.twice,
            r.lag_p50,
            r.lag_p99,
            r.lag_max,
            r.runs_per_minute,
            mib(r.rss_idle),
            mib(r.rss_peak),
            mib(r.rss_after),
        );
        ensure!(
            r.twice == 0,
            "{} ticks ran more than once with {n} daemons: the unique tick row must prevent that",
            r.twice
        );
    }
    println!();
    println!(
        "targets: tick→start p99 under 1 s, no missed tick, idle RSS under 50 MB (`RSS idle`: at ready; `RSS idle after`: once the last minute's runs are over)"
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// Builds the release binary and the two plugins it loads from beside itself (`bench rerun`
/// uses them too).
pub(crate) fn build() -> Result<PathBuf> {
    println!("building cohort and its csv and outbox plugins (release)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args(["build", "--release", "--quiet", "-p", "cohort"])
        .args(["-p", "cohort-plugin-csv", "-p", "cohort-plugin-outbox"])
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building cohort failed ({status})");
    Ok(paths::target_dir().join("release").join("cohort"))
}

/// One shared CSV shop and a config folder with a file per workspace.
fn write_workspaces(root: &Path, args: &Args) -> Result<PathBuf> {
    let data = root.join("data");
    let conf = root.join("conf");
    if conf.exists() {
        std::fs::remove_dir_all(&conf).context("clearing the old config folder")?;
    }
    std::fs::create_dir_all(&data)?;
    std::fs::create_dir_all(&conf)?;
    let mut customers = String::from("id,email,first_name,accepts_marketing,created_at\n");
    let mut orders = String::from("id,customer_id,created_at,total_price,items\n");
    for i in 1..=100 {
        writeln!(
            customers,
            "{i},c{i}@example.com,Ann,{},2026-01-01 10:00:00",
            i % 4 != 0
        )?;
        for k in 0..(i % 4) {
            let total = 15 + (i * 7 + k * 13) % 200;
            writeln!(
                orders,
                "{i}-{k},{i},2026-0{}-1{} 12:00:00,{total}.00,1",
                1 + k % 9,
                k % 10
            )?;
        }
    }
    std::fs::write(data.join("customers.csv"), customers)?;
    std::fs::write(data.join("orders.csv"), orders)?;
    let jitter = match args.jitter {
        0 => String::new(),
        s => format!("jitter = \"{s}s\"\n"),
    };
    for w in 0..args.workspaces {
        let server = if w == 0 {
            format!(
                "[server]\nworkers = {}\nshutdown_grace = \"10s\"\n\n",
                args.workers
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"{server}[workspace]
id = "ws-{w:04}"
timezone = "UTC"
unsubscribe_url = "https://shop.example/u/{{{{customer_id}}}}"

[[sources]]
name = "files"
plugin = "csv"
config = {{ base_dir = "../data", customers = {{ paths = ["customers.csv"] }}, orders = {{ paths = ["orders.csv"] }} }}

[[segments]]
name = "buyers"
where = "orders_count >= 1"

[[segments]]
name = "big_spenders"
where = "total_spent > 150"

[[destinations]]
name = "out"
plugin = "outbox"
config = {{ dir = "../out/ws-{w:04}", fsync = false }}

[[campaigns]]
name = "vip_audience"
segments = ["big_spenders"]
destination = "out"
mode = "mirror"
[campaigns.fields]
email = "{{{{email}}}}"

[[jobs]]
name = "sync"
schedule = "* * * * *"
{jitter}"#
        );
        std::fs::write(conf.join(format!("ws-{w:04}.toml")), text)?;
    }
    Ok(conf)
}

#[derive(Debug, Default)]
struct Outcome {
    ticks_due: u64,
    started: u64,
    missed: u64,
    twice: u64,
    lag_p50: f64,
    lag_p99: f64,
    lag_max: f64,
    runs_per_minute: f64,
    /// At ready, before any run.
    rss_idle: u64,
    rss_peak: u64,
    /// A second before the window closes: the last minute's runs are over, and the
    /// daemons are idle again after the load.
    rss_after: u64,
}

fn scenario(bin: &Path, root: &Path, conf: &Path, args: &Args, daemons: usize) -> Result<Outcome> {
    reset_database(&args.postgres, DATABASE)?;
    let out = root.join("out");
    if out.exists() {
        std::fs::remove_dir_all(&out).context("clearing the old outboxes")?;
    }
    let url = format!("{}/{DATABASE}", args.postgres);
    let logs: Vec<PathBuf> = (0..daemons)
        .map(|i| root.join(format!("daemon-{daemons}-{i}.log")))
        .collect();
    let mut children = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let port = 18_600 + i;
        let child = Command::new(bin)
            .args(["daemon", "--config"])
            .arg(conf)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .env("COHORT_DATABASE_URL", &url)
            .env("COHORT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        children.push(Daemon { child, port });
        // The first daemon migrates the fresh database; the others start on it.
        wait_ready(children.last().map(|d| d.port).unwrap_or(port), log)?;
    }
    let ready = now_secs();
    // The window: whole minutes, starting with the first tick at least 5 s away, so that the
    // daemons are idle before it and the idle RSS is a true reading.
    let first_tick = (ready + 5).div_ceil(60) * 60;
    let last_tick = first_tick + 60 * (args.minutes - 1);
    let stop_at = last_tick + 60;
    let sampler = Sampler::start(children.iter().map(|d| d.child.id()).collect());
    // Sampled at once: with `jitter`, the ticks of the minute the daemons became ready in may
    // still fall before the window, and memory a run used is not all given back.
    thread::sleep(Duration::from_millis(600));
    let rss_idle = sampler.current();
    let analyzer = args.analyze.then(|| Analyzer::start(url.clone()));
    sleep_until(first_tick.saturating_sub(1));
    eprintln!(
        "{daemons} daemon(s): ready; ticks from {} for {} min (idle RSS {})",
        clock(first_tick),
        args.minutes,
        mib(rss_idle)
    );
    sleep_until(stop_at.saturating_sub(1));
    let rss_after = sampler.current();
    sleep_until(stop_at);
    let rss_peak = sampler.stop();
    if let Some(a) = analyzer {
        a.stop();
    }
    for d in &mut children {
        terminate(d)?;
    }
    let mut lags = Vec::new();
    for log in &logs {
        lags.extend(tick_lags(log, first_tick, last_tick)?);
    }
    lags.sort_by(f64::total_cmp);
    let rows = psql(
        &url,
        &format!(
            "SELECT count(*), count(DISTINCT (workspace_id, scheduled_for)), \
             sum(CASE WHEN status <> 'queued' THEN 1 ELSE 0 END) FROM job_runs \
             WHERE scheduled_for BETWEEN to_timestamp({first_tick}) AND to_timestamp({last_tick})"
        ),
    )?;
    let finished = psql(
        &url,
        &format!(
            "SELECT count(*) FROM job_runs WHERE finished_at \
             BETWEEN to_timestamp({first_tick}) AND to_timestamp({stop_at})"
        ),
    )?;
    let counts: Vec<u64> = rows
        .first()
        .map(|r| r.iter().map(|c| c.parse().unwrap_or(0)).collect())
        .unwrap_or_default();
    let [queued, distinct, started] = counts[..] else {
        bail!("unexpected answer from psql: {rows:?}");
    };
    let ticks_due = args.workspaces as u64 * args.minutes;
    let finished: u64 = finished
        .first()
        .and_then(|r| r.first())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(Outcome {
        ticks_due,
        started,
        missed: ticks_due.saturating_sub(distinct),
        twice: queued - distinct,
        lag_p50: quantile(&lags, 0.50),
        lag_p99: quantile(&lags, 0.99),
        lag_max: lags.last().copied().unwrap_or(0.0),
        runs_per_minute: finished as f64 / args.minutes as f64,
        rss_idle,
        rss_peak,
        rss_after,
    })
}

struct Daemon {
    child: Child,
    port: usize,
}

/// Waits for `/readyz` (the store migrated and the config loaded), or fails with the log.
fn wait_ready(port: usize, log: &Path) -> Result<()> {
    for _ in 0..600 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port as u16)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /readyz HTTP/1.0\r\nHost: bench\r\n\r\n")?;
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
                return Ok(());
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    bail!("the daemon did not become ready in 60 s; its log:\n{tail}")
}

fn terminate(d: &mut Daemon) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &d.child.id().to_string()])
        .status()?;
    for _ in 0..300 {
        if d.child.try_wait()?.is_some() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    d.child.kill()?;
    d.child.wait()?;
    Ok(())
}

/// The tick lags of the scheduled first starts logged in `[first, last]` (Unix seconds).
fn tick_lags(log: &Path, first: u64, last: u64) -> Result<Vec<f64>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut lags = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let fields = v.get("fields").unwrap_or(&v);
        if fields["message"] != "Run starting" {
            continue;
        }
        let (Some(lag), Some(tick)) = (
            fields["tick_lag_seconds"].as_f64(),
            fields["scheduled_for"].as_str(),
        ) else {
            continue;
        };
        let tick = chrono::DateTime::parse_from_rfc3339(tick)
            .with_context(|| format!("a tick in {}: {tick}", log.display()))?
            .timestamp();
        if (first as i64..=last as i64).contains(&tick) {
            lags.push(lag);
        }
    }
    Ok(lags)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Stands in for PostgreSQL's autovacuum, which the development and CI servers run without:
/// an `ANALYZE` of the bench database once a minute (autovacuum's default naptime). Without
/// statistics the planner takes every table for empty, and reads a workspace's customers by
/// scanning every workspace's (100,000 rows, three times a run): the runs then measure that,
/// not the daemon. `--no-analyze` measures it anyway.
struct Analyzer {
    done: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Analyzer {
    fn start(url: String) -> Analyzer {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let thread = thread::spawn(move || {
            let mut next = now_secs() + 60;
            while !d.load(Ordering::Relaxed) {
                if now_secs() >= next {
                    if let Err(e) = psql(&url, "ANALYZE") {
                        eprintln!("ANALYZE failed: {e:#}");
                    }
                    next += 60;
                }
                thread::sleep(Duration::from_millis(500));
            }
        });
        Analyzer { done, thread }
    }

    fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Samples the summed RSS of the daemons twice a second, keeping the peak.
struct Sampler {
    latest: Arc<Mutex<u64>>,
    peak: Arc<Mutex<u64>>,
    done: Arc<AtomicBool>,
    thread: thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pids: Vec<u32>) -> Sampler {
        let latest = Arc::new(Mutex::new(0));
        let peak = Arc::new(Mutex::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (l, p, d) = (latest.clone(), peak.clone(), done.clone());
        let thread = thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                let rss: u64 = pids.iter().map(|&pid| rss_bytes(pid)).sum();
                *l.lock().unwrap_or_else(|e| e.into_inner()) = rss;
                let mut peak = p.lock().unwrap_or_else(|e| e.into_inner());
                *peak = (*peak).max(rss);
                drop(peak);
                thread::sleep(Duration::from_millis(500));
            }
        });
        Sampler {
            latest,
            peak,
            done,
            thread,
        }
    }

    fn current(&self) -> u64 {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        *self.peak.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// An empty database `name` on the server at `postgres` (a URL naming no database); `bench
/// rerun` uses it too.
pub(crate) fn reset_database(postgres: &str, name: &str) -> Result<()> {
    let admin = format!("{postgres}/postgres");
    psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )?;
    psql(&admin, &format!("CREATE DATABASE {name}"))?;
    Ok(())
}

/// Runs one statement with `psql` and returns its rows, split on `|`.
fn psql(url: &str, sql: &str) -> Result<Vec<Vec<String>>> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .context("running psql (the PostgreSQL client)")?;
    if !out.status.success() {
        bail!(
            "psql failed on `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect::<Vec<_>>())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sleep_until(at: u64) {
    let now = now_secs();
    if at > now {
        thread::sleep(Duration::from_secs(at - now));
    }
}

fn clock(secs: u64) -> String {
    let day = secs % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}
