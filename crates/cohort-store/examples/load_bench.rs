//! Loads a generated shop (customers.csv, orders.csv) into the store and times it.
//!
//! Run by `cargo xtask bench store`, which builds it in release and prints the table; it can
//! also run alone:
//!
//! ```text
//! load_bench --data DIR [--backend sqlite|postgres|both] [--postgres-url URL] [--batch N]
//!            [--sqlite-file PATH] [--no-read-back]
//! ```
//!
//! CSV is parsed on a thread of its own (cohort-csv) and handed over in batches of `--batch`
//! records, each ingested in one call (one transaction, cursor included), as a source plugin's
//! pages would be. SQLite writes a file in a temp dir (or at `--sqlite-file`, replaced first
//! and kept afterwards, for looking into); PostgreSQL a schema of its own, dropped
//! at the end. After loading, the orders are read back once with `for_each_order`. Prints one
//! JSON object per line: `{"backend","table","rows","seconds","bytes"}`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use cohort_core::record::{Customer, Order};
use cohort_csv::{CsvReader, Kind, Overrides};
use cohort_store::{Store, StoreError, Upserted, WorkspaceInfo, WorkspaceStore};
use serde_json::json;
use tokio::sync::mpsc;

/// The allocator the `cohort` binary runs with: the load allocates millions of short strings,
/// and the benchmark should pay for them what the product pays.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "load_bench --data DIR [--backend sqlite|postgres|both] [--postgres-url URL] \
                     [--batch N] [--sqlite-file PATH] [--no-read-back]";

struct Args {
    data: PathBuf,
    backends: Vec<String>,
    postgres_url: String,
    batch: usize,
    sqlite_file: Option<PathBuf>,
    read_back: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: PathBuf::new(),
        backends: vec!["sqlite".into(), "postgres".into()],
        postgres_url: std::env::var("COHORT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        batch: 50_000,
        sqlite_file: None,
        read_back: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = PathBuf::from(value()?),
            "--backend" => {
                args.backends = match value()?.as_str() {
                    "both" => vec!["sqlite".into(), "postgres".into()],
                    b @ ("sqlite" | "postgres") => vec![b.to_owned()],
                    other => return Err(format!("unknown backend `{other}`")),
                }
            }
            "--postgres-url" => args.postgres_url = value()?,
            "--no-read-back" => args.read_back = false,
            "--sqlite-file" => args.sqlite_file = Some(PathBuf::from(value()?)),
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown option `{other}`\n{USAGE}")),
        }
    }
    if args.data.as_os_str().is_empty() {
        return Err(format!("--data is required\n{USAGE}"));
    }
    Ok(args)
}

/// Streams `path` in batches from a reader thread; bad rows are counted and skipped.
fn read_batches<T: Send + 'static>(
    path: &Path,
    kind: Kind,
    batch: usize,
    next: fn(&mut CsvReader) -> Option<Result<T, cohort_csv::RowError>>,
) -> Result<mpsc::Receiver<Vec<T>>, String> {
    let mut reader = CsvReader::open(path, kind, &Overrides::default())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (tx, rx) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(batch);
        let mut bad = 0u64;
        while let Some(row) = next(&mut reader) {
            match row {
                Ok(r) => buf.push(r),
                Err(_) => bad += 1,
            }
            if buf.len() == batch {
                let full = std::mem::replace(&mut buf, Vec::with_capacity(batch));
                if tx.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        if !buf.is_empty() {
            let _ = tx.blocking_send(buf);
        }
        if bad > 0 {
            eprintln!("{bad} bad rows skipped");
        }
    });
    Ok(rx)
}

/// Streams `file` through `ingest` in calls of `batch` records, each with a cursor naming its
/// page, as a source's pages arrive; returns the records counted and the seconds taken.
async fn load_file<T: Send + 'static>(
    path: &Path,
    kind: Kind,
    batch: usize,
    next: fn(&mut CsvReader) -> Option<Result<T, cohort_csv::RowError>>,
    ingest: impl AsyncFn(&[T], &serde_json::Value) -> Result<Upserted, StoreError>,
) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let mut rx = read_batches(path, kind, batch, next)?;
    let mut rows = 0u64;
    let mut pages = 0u64;
    while let Some(records) = rx.recv().await {
        pages += 1;
        let got = ingest(&records, &json!({ "page": pages }))
            .await
            .map_err(|e| e.to_string())?;
        rows += got.total();
    }
    Ok((rows, start.elapsed().as_secs_f64()))
}

async fn load(
    ws: &WorkspaceStore,
    data: &Path,
    batch: usize,
    read_back: bool,
) -> Result<Vec<(&'static str, u64, f64)>, String> {
    let mut out = Vec::new();
    let (rows, seconds) = load_file(
        &data.join("customers.csv"),
        Kind::Customers,
        batch,
        CsvReader::next_customer,
        async |records: &[Customer], cursor| ws.ingest_customers("bench", records, cursor).await,
    )
    .await?;
    out.push(("customers", rows, seconds));
    let (rows, seconds) = load_file(
        &data.join("orders.csv"),
        Kind::Orders,
        batch,
        CsvReader::next_order,
        async |records: &[Order], cursor| ws.ingest_orders("bench", records, cursor).await,
    )
    .await?;
    out.push(("orders", rows, seconds));
    if !read_back {
        return Ok(out);
    }

    let start = Instant::now();
    let mut spent = 0i64;
    let read = ws
        .for_each_order(|o| spent = spent.wrapping_add(o.total.raw()))
        .await
        .map_err(|e| e.to_string())?;
    out.push(("orders read back", read, start.elapsed().as_secs_f64()));

    // The per-customer totals: a bulk load sets them aside, the first read rebuilds them in
    // one pass, later reads only read them.
    let start = Instant::now();
    let rows = ws
        .for_each_order_totals(|_, _, t| spent = spent.wrapping_add(t.orders as i64))
        .await
        .map_err(|e| e.to_string())?;
    out.push(("order totals rebuilt", rows, start.elapsed().as_secs_f64()));
    let start = Instant::now();
    let rows = ws
        .for_each_order_totals(|_, _, t| spent = spent.wrapping_add(t.orders as i64))
        .await
        .map_err(|e| e.to_string())?;
    out.push(("order totals read", rows, start.elapsed().as_secs_f64()));

    // A sync after the load: 10,000 orders change (a refund each, the last one of some
    // customers among them), in calls of 1,000, with the totals kept as they go.
    let mut changed = Vec::with_capacity(10_000);
    ws.for_each_order(|mut o| {
        if changed.len() < 10_000 {
            o.refunded = cohort_core::money::Money::from_whole(1);
            changed.push(o);
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut rows = 0;
    for (page, records) in changed.chunks(1_000).enumerate() {
        let got = ws
            .ingest_orders("bench", records, &json!({ "sync": page }))
            .await
            .map_err(|e| e.to_string())?;
        rows += got.updated;
    }
    out.push((
        "orders changed, totals kept",
        rows,
        start.elapsed().as_secs_f64(),
    ));
    std::hint::black_box(spent);
    Ok(out)
}

async fn bench(args: &Args, backend: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let schema = format!("cohort_bench_{}", std::process::id());
    let store = match backend {
        "sqlite" => {
            let file = match &args.sqlite_file {
                Some(file) => {
                    for suffix in ["", "-wal", "-shm"] {
                        let mut path = file.clone().into_os_string();
                        path.push(suffix);
                        let _ = std::fs::remove_file(path);
                    }
                    file.clone()
                }
                None => dir.path().join("bench.db"),
            };
            let url = format!("sqlite://{}?mode=rwc", file.display());
            Store::connect(&url).await
        }
        _ => Store::connect_in_schema(&args.postgres_url, &schema).await,
    }
    .map_err(|e| e.to_string())?;
    store
        .ensure_workspace(&WorkspaceInfo {
            id: "bench".into(),
            name: "Bench".into(),
            timezone: "UTC".into(),
            currency: "USD".into(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let ws = store.workspace("bench");
    let result = load(&ws, &args.data, args.batch, args.read_back).await;
    let bytes = store.size_bytes().await.unwrap_or(0);
    store.close().await;
    if backend == "postgres" {
        let _ = Store::drop_schema(&args.postgres_url, &schema).await;
    }
    for (table, rows, seconds) in result? {
        println!(
            "{}",
            json!({"backend": backend, "table": table, "rows": rows, "seconds": seconds, "bytes": bytes})
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    for backend in &args.backends {
        if let Err(msg) = rt.block_on(bench(&args, backend)) {
            eprintln!("{backend}: {msg}");
            return std::process::ExitCode::FAILURE;
        }
    }
    std::process::ExitCode::SUCCESS
}
