//! Records per second through the plugin ABI (CSV source → host) against reading the same
//! files directly with `cohort-csv`. Run by `cargo xtask bench abi`, which builds this example
//! and the plugin in release mode; it can also be run by hand:
//!
//! ```text
//! cargo build --release -p cohort-plugin-csv
//! cargo run --release -p cohort-plugin-csv --example abi_bench -- \
//!     --plugin target/release/libcohort_plugin_csv.so --data target/bench-data/c1000000-o10000000
//! ```
//!
//! Every side builds the same canonical records (`Customer`, `Order`) and the host side parses
//! them back from the page JSON, so the difference is the cost of the boundary: serializing on
//! the plugin's side, parsing on the host's, and the calls.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cohort_csv::{CsvReader, Kind, Overrides};
use cohort_plugin_api::wire::{Page, StreamRecord};
use cohort_plugin_api::{Customer, Order};
use cohort_plugin_host::{CallError, HostServices, LoadedPlugin, pull, pull_prefetched};
use serde_json::{Value, json};

/// The allocator of the real host process, `cohort` (see crates/cohort/src/main.rs), so that
/// both the direct reading and the host side of the ABI allocate records as `cohort` does. The
/// plugin, a separate library, keeps its own (the system's).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    plugin: PathBuf,
    data: PathBuf,
    page: usize,
    runs: usize,
    json: bool,
    /// Only these streams (`customers`, `orders`), for profiling one.
    streams: Vec<String>,
    /// Only this measurement (`direct`, `abi`, `prefetch`, `split`), for profiling it.
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        plugin: PathBuf::new(),
        data: PathBuf::new(),
        page: 10_000,
        runs: 1,
        json: false,
        streams: vec!["customers".into(), "orders".into()],
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--plugin" => a.plugin = it.next().unwrap().into(),
            "--data" => a.data = it.next().unwrap().into(),
            "--page" => a.page = it.next().unwrap().parse().unwrap(),
            "--runs" => a.runs = it.next().unwrap().parse().unwrap(),
            "--json" => a.json = true,
            "--only" => a.only = Some(it.next().unwrap()),
            "--streams" => {
                a.streams = it.next().unwrap().split(',').map(str::to_owned).collect();
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// A cheap fold over each record so no side can skip building it.
trait Touch {
    fn touch(&self) -> u64;
}
impl Touch for Customer {
    fn touch(&self) -> u64 {
        self.id.as_str().len() as u64 + u64::from(self.accepts_email_marketing)
    }
}
impl Touch for Order {
    fn touch(&self) -> u64 {
        self.total.raw() as u64 ^ u64::from(self.item_count)
    }
}

fn direct<R: Touch>(
    path: &Path,
    kind: Kind,
    next: fn(&mut CsvReader) -> Option<Result<R, cohort_csv::RowError>>,
) -> (u64, u64) {
    let mut reader = CsvReader::open(path, kind, &Overrides::new()).unwrap();
    let (mut n, mut check) = (0, 0u64);
    while let Some(r) = next(&mut reader) {
        if let Ok(r) = r {
            n += 1;
            check = check.wrapping_add(r.touch());
        }
    }
    (n, check)
}

fn through_abi<R: StreamRecord + Touch>(
    plugin: &LoadedPlugin,
    config: &Value,
    page: usize,
    prefetch: bool,
) -> (u64, u64) {
    let mut instance = plugin.open(config, HostServices::default()).unwrap();
    let (mut n, mut check) = (0, 0u64);
    let on_page = |p: Page<R>| {
        for r in &p.records {
            n += 1;
            check = check.wrapping_add(r.touch());
        }
        Ok::<(), CallError>(())
    };
    if prefetch {
        pull_prefetched::<R, CallError>(&mut instance, Value::Null, page, on_page).unwrap();
    } else {
        pull::<R, CallError>(&mut instance, Value::Null, page, on_page).unwrap();
    }
    (n, check)
}

/// Runs the three readings `runs` times, interleaved (direct, ABI, ABI prefetched, then again),
/// so that a change in the machine's load between rounds touches all three alike, and keeps the
/// best time of each with its record count and checksum.
fn best3(runs: usize, mut fs: [&mut dyn FnMut() -> (u64, u64); 3]) -> [(Duration, u64, u64); 3] {
    let mut best: [Option<(Duration, u64, u64)>; 3] = [None; 3];
    for _ in 0..runs.max(1) {
        let mut cpu = CPU.lock().unwrap();
        for ((f, best), cpu) in fs.iter_mut().zip(&mut best).zip(cpu.iter_mut()) {
            let (started, cpu_started) = (Instant::now(), cpu_time());
            let (n, check) = f();
            let took = started.elapsed();
            let cpu_took = cpu_time().saturating_sub(cpu_started);
            if best.is_none_or(|b| took < b.0) {
                *best = Some((took, n, check));
            }
            if cpu.is_none_or(|c| cpu_took < c) {
                *cpu = Some(cpu_took);
            }
        }
    }
    best.map(Option::unwrap)
}

/// The least CPU time (user + system, all threads) each of the three readings took, over the
/// runs of the stream being measured: unlike wall time, hardly moved by other work on the machine
/// (a prefetched pull spends about as much CPU as a sequential one, spread over two threads).
static CPU: std::sync::Mutex<[Option<Duration>; 3]> = std::sync::Mutex::new([None; 3]);

/// CPU time of this process so far (Linux; zero elsewhere).
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // The fields after the command name (which may hold spaces) and its closing `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime, fields 14 and 15 of the line (11 and 12 after the name), in clock ticks
    // of 1/100 s on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn main() {
    let a = args();
    let plugin = LoadedPlugin::load(&a.plugin).unwrap();
    let mut rows = Vec::new();
    for (stream, file) in [("customers", "customers.csv"), ("orders", "orders.csv")] {
        if !a.streams.iter().any(|s| s == stream) {
            continue;
        }
        let path = a.data.join(file);
        let config = json!({ stream: {"paths": [path]} });
        if let Some(only) = &a.only {
            profile(only, stream, &path, &plugin, &config, a.page);
            continue;
        }
        *CPU.lock().unwrap() = [None; 3];
        let [(d, dn, dc), (s, sn, sc), (p, pn, pc)] = if stream == "customers" {
            best3(
                a.runs,
                [
                    &mut || direct(&path, Kind::Customers, CsvReader::next_customer),
                    &mut || through_abi::<Customer>(&plugin, &config, a.page, false),
                    &mut || through_abi::<Customer>(&plugin, &config, a.page, true),
                ],
            )
        } else {
            best3(
                a.runs,
                [
                    &mut || direct(&path, Kind::Orders, CsvReader::next_order),
                    &mut || through_abi::<Order>(&plugin, &config, a.page, false),
                    &mut || through_abi::<Order>(&plugin, &config, a.page, true),
                ],
            )
        };
        assert!(
            dn == sn && sn == pn && dc == sc && sc == pc,
            "{stream}: the three readings disagree ({dn}/{sn}/{pn} records)"
        );
        let (plugin_s, parse_s) = if stream == "customers" {
            split::<Customer>(&plugin, &config, a.page)
        } else {
            split::<Order>(&plugin, &config, a.page)
        };
        let cpu = CPU
            .lock()
            .unwrap()
            .map(|c| c.unwrap_or_default().as_secs_f64());
        rows.push(json!({
            "stream": stream, "records": dn,
            "direct_s": d.as_secs_f64(), "abi_s": s.as_secs_f64(), "abi_prefetch_s": p.as_secs_f64(),
            "plugin_s": plugin_s.as_secs_f64(), "host_parse_s": parse_s.as_secs_f64(),
            "direct_cpu_s": cpu[0], "abi_cpu_s": cpu[1], "abi_prefetch_cpu_s": cpu[2],
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string(&rows).unwrap());
    } else {
        println!("{}", serde_json::to_string_pretty(&rows).unwrap());
    }
}

/// Runs one measurement once, for a profiler.
fn profile(
    only: &str,
    stream: &str,
    path: &Path,
    plugin: &LoadedPlugin,
    config: &Value,
    page: usize,
) {
    let started = Instant::now();
    let n = match (only, stream) {
        ("direct", "customers") => direct(path, Kind::Customers, CsvReader::next_customer).0,
        ("direct", _) => direct(path, Kind::Orders, CsvReader::next_order).0,
        ("abi", "customers") => through_abi::<Customer>(plugin, config, page, false).0,
        ("abi", _) => through_abi::<Order>(plugin, config, page, false).0,
        ("prefetch", "customers") => through_abi::<Customer>(plugin, config, page, true).0,
        ("prefetch", _) => through_abi::<Order>(plugin, config, page, true).0,
        ("split", "customers") => {
            let (a, b) = split::<Customer>(plugin, config, page);
            eprintln!("plugin {a:?} host parse {b:?}");
            0
        }
        ("split", _) => {
            let (a, b) = split::<Order>(plugin, config, page);
            eprintln!("plugin {a:?} host parse {b:?}");
            0
        }
        (other, _) => panic!("unknown measurement {other}"),
    };
    eprintln!("{only} {stream}: {n} records in {:?}", started.elapsed());
}

/// Time inside the plugin (read + serialize) and in the host's parse, for one sequential pull.
fn split<R: StreamRecord>(
    plugin: &LoadedPlugin,
    config: &Value,
    page: usize,
) -> (Duration, Duration) {
    let mut instance = plugin.open(config, HostServices::default()).unwrap();
    let mut cursor = Value::Null;
    let (mut in_plugin, mut parsing) = (Duration::ZERO, Duration::ZERO);
    loop {
        let t = Instant::now();
        let raw = instance.next_page_raw(R::STREAM, &cursor, page).unwrap();
        in_plugin += t.elapsed();
        let t = Instant::now();
        let p: Page<R> = raw.parse().unwrap();
        parsing += t.elapsed();
        cursor = p.next_cursor;
        if p.done {
            return (in_plugin, parsing);
        }
    }
}
