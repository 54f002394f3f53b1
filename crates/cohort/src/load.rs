//! Loading CSV inputs into a feature table.
//!
//! Rows stream from `cohort-csv` straight into the core's [`FeatureBuilder`]: customers become
//! columns, orders and events become running aggregates, and nothing else is kept. Bad rows
//! are printed (up to a limit), counted and skipped; only an unusable file stops the load.

use std::collections::HashMap;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cohort_core::features::{BuildError, BuildStats, FeatureBuilder, FeatureTable, FoldedOrders};
use cohort_core::{AsOf, Customer};
use cohort_csv::{BadRow, CsvReader, Kind, Overrides, RowError, SeenIds, read_in_chunks};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Where the inputs are.
#[derive(Debug)]
pub(crate) struct Inputs {
    pub(crate) customers: PathBuf,
    pub(crate) orders: Option<PathBuf>,
    pub(crate) events: Option<PathBuf>,
    pub(crate) overrides: Overrides,
}

/// When to draw a progress bar.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ShowProgress {
    Auto,
    Always,
    Never,
}

/// Files at least this large get a progress bar in `Auto` mode.
const LARGE_INPUT: u64 = 32 * 1024 * 1024;

/// Rows read and rejected per file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileCounts {
    pub(crate) path: PathBuf,
    pub(crate) rows: u64,
    pub(crate) bad: u64,
}

/// What a load did.
#[derive(Debug, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) files: Vec<FileCounts>,
    pub(crate) stats: BuildStats,
    /// The first bad rows, as printed.
    pub(crate) bad_rows: Vec<String>,
    pub(crate) bad_total: u64,
    #[serde(skip)]
    pub(crate) read: Duration,
    #[serde(skip)]
    pub(crate) features: Duration,
}

struct BadRows {
    shown: Vec<String>,
    total: u64,
    limit: usize,
}

impl BadRows {
    fn report(&mut self, bad: &BadRow, progress: &ProgressBar) {
        self.total += 1;
        if self.shown.len() < self.limit {
            let line = bad.to_string();
            progress.suspend(|| eprintln!("warning: skipped {line}"));
            self.shown.push(line);
        }
    }
}

/// Reads every input and computes features as of `as_of`: all of them, or only those in
/// `keep`.
pub(crate) fn load(
    inputs: &Inputs,
    as_of: AsOf,
    keep: Option<&[String]>,
    show: ShowProgress,
    max_bad_rows: usize,
) -> Result<(FeatureTable, LoadReport)> {
    let started = Instant::now();
    let mut builder = FeatureBuilder::new(as_of);
    let mut bad = BadRows {
        shown: Vec::new(),
        total: 0,
        limit: max_bad_rows,
    };
    let mut files = Vec::new();

    let total_bytes: u64 = [
        Some(&inputs.customers),
        inputs.orders.as_ref(),
        inputs.events.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|p| fs::metadata(p).ok())
    .map(|m| m.len())
    .sum();
    let progress = progress_bar(show, total_bytes);
    let mut done_bytes = 0;

    let counts = load_customers(
        &mut builder,
        &inputs.customers,
        &inputs.overrides,
        &mut bad,
        &progress,
    )?;
    done_bytes += fs::metadata(&inputs.customers)
        .map(|m| m.len())
        .unwrap_or(0);
    files.push(counts);

    if let Some(path) = &inputs.orders {
        let counts = load_orders(
            &mut builder,
            path,
            &inputs.overrides,
            &mut bad,
            &progress,
            done_bytes,
        )?;
        done_bytes += fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        files.push(counts);
    }

    if let Some(path) = &inputs.events {
        let mut reader = open(path, Kind::Events, &inputs.overrides)?;
        let mut counts = FileCounts {
            path: path.clone(),
            rows: 0,
            bad: 0,
        };
        while let Some(row) = reader.next_event() {
            counts.rows += 1;
            let result = match row {
                Ok(event) => builder
                    .add_event(event.customer_id.as_str(), &event.kind, event.occurred_at)
                    .map_err(|e| reader.bad_row(Some("customer_id"), e.to_string())),
                Err(RowError::Bad(b)) => Err(b),
                Err(RowError::Fatal(e)) => return Err(e).context("reading events"),
            };
            if let Err(b) = result {
                counts.bad += 1;
                bad.report(&b, &progress);
            }
            tick(&progress, &reader, done_bytes, counts.rows);
        }
        files.push(counts);
    }
    progress.finish_and_clear();

    let stats = builder.stats().clone();
    let read = started.elapsed();
    let started = Instant::now();
    let table = match keep {
        Some(names) => builder.finish_only(|name| names.iter().any(|n| n == name)),
        None => builder.finish(),
    };
    let features = started.elapsed();
    if bad.total > bad.shown.len() as u64 {
        eprintln!(
            "warning: {} more bad rows not shown (--max-bad-rows)",
            bad.total - bad.shown.len() as u64
        );
    }
    Ok((
        table,
        LoadReport {
            files,
            stats,
            bad_rows: bad.shown,
            bad_total: bad.total,
            read,
            features,
        },
    ))
}

/// Rows handed from the parsing thread to the building thread at a time.
const CUSTOMER_BATCH: usize = 4096;

/// Parsed customers with the line each started on, and where the reader stood after them.
struct CustomerBatch {
    rows: Vec<(u64, Result<Customer, RowError>)>,
    byte: u64,
}

/// Adds every customer of the file to the builder.
///
/// Parsing (CSV, coercion, allocation) runs on a thread of its own and hands batches over a
/// bounded channel, so it overlaps with building the columns; rows keep their file order.
fn load_customers(
    builder: &mut FeatureBuilder,
    path: &Path,
    overrides: &Overrides,
    bad: &mut BadRows,
    progress: &ProgressBar,
) -> Result<FileCounts> {
    let mut reader = open(path, Kind::Customers, overrides)?;
    let id_column = reader.resolved().column("id");
    let id_header = id_column.and_then(|c| reader.resolved().headers.get(c).cloned());
    let duplicate = |line: u64, reason: String| BadRow {
        path: path.to_owned(),
        line,
        column: id_column.map(|c| c + 1),
        header: id_header.clone(),
        reason,
    };
    let mut counts = FileCounts {
        path: path.to_owned(),
        rows: 0,
        bad: 0,
    };
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<CustomerBatch>(4);
        scope.spawn(move || {
            let mut rows = Vec::with_capacity(CUSTOMER_BATCH);
            let mut seen = SeenIds::new();
            while let Some(mut row) = reader.next_customer() {
                let line = reader.line();
                if let Ok(customer) = &row
                    && let Err(first) = seen.insert(customer.id.as_str(), line)
                {
                    let reason = format!(
                        "duplicate customer id {} (first at line {first}); skipped",
                        customer.id.as_str()
                    );
                    row = Err(RowError::Bad(reader.bad_row(Some("id"), reason)));
                }
                rows.push((line, row));
                if rows.len() == CUSTOMER_BATCH {
                    let batch = CustomerBatch {
                        rows: std::mem::take(&mut rows),
                        byte: reader.position().byte,
                    };
                    if tx.send(batch).is_err() {
                        return; // The builder gave up (a fatal error); stop reading.
                    }
                }
            }
            let _ = tx.send(CustomerBatch {
                rows,
                byte: reader.position().byte,
            });
        });
        for batch in rx {
            for (line, row) in batch.rows {
                counts.rows += 1;
                let result = match row {
                    // Duplicates were caught with their lines above; this is a backstop.
                    Ok(customer) => builder
                        .add_customer(&customer)
                        .map_err(|e| duplicate(line, e.to_string())),
                    Err(RowError::Bad(b)) => Err(b),
                    Err(RowError::Fatal(e)) => {
                        return Err(anyhow::Error::new(e).context("reading customers"));
                    }
                };
                if let Err(b) = result {
                    counts.bad += 1;
                    bad.report(&b, progress);
                }
            }
            if !progress.is_hidden() {
                progress.set_position(batch.byte);
            }
        }
        Ok(())
    })?;
    Ok(counts)
}

/// Order files at least this large are read on several threads.
const PARALLEL_ORDERS: u64 = 16 * 1024 * 1024;

/// What one part of the orders file folded into.
struct OrdersPart {
    folded: FoldedOrders,
    rows: u64,
    bad_rows: Vec<BadRow>,
    /// Order ids of the part and the line of each, to find ids the parts share.
    seen: SeenIds,
}

/// Folds the orders file into the builder, in parallel chunks when it is large.
///
/// Each chunk folds into aggregates of its own that merge exactly afterwards, so the result
/// does not depend on how the file was split: [`cohort_csv::read_in_chunks`] makes the chunks
/// read what one reader would, and an order id that two chunks share is kept in the first
/// (the later chunk is folded again without it, which only happens when ids repeat). Bad rows
/// are collected per chunk and reported in file order.
fn load_orders(
    builder: &mut FeatureBuilder,
    path: &Path,
    overrides: &Overrides,
    bad: &mut BadRows,
    progress: &ProgressBar,
    done_bytes: u64,
) -> Result<FileCounts> {
    let size = fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let threads = if size >= PARALLEL_ORDERS {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) as u64
    } else {
        1
    };
    let builder_ref = &*builder;
    let no_skip = HashMap::new();
    let mut parts = read_in_chunks(path, Kind::Orders, overrides, threads, |reader| {
        fold_orders(builder_ref, reader, &no_skip, progress)
    })
    .context("reading orders")?;
    for k in 1..parts.len() {
        // Line in this part → line of the same id in an earlier part.
        let mut skip: HashMap<u64, u64> = HashMap::new();
        for earlier in &parts[..k] {
            for (here, first) in parts[k].value.seen.also_in(&earlier.value.seen) {
                let kept = skip.entry(here).or_insert(first);
                *kept = (*kept).min(first);
            }
        }
        if !skip.is_empty() {
            let mut reader = CsvReader::open_at(path, Kind::Orders, overrides, parts[k].start)
                .context("opening orders file")?
                .until(parts[k].end);
            parts[k].value = fold_orders(builder_ref, &mut reader, &skip, &ProgressBar::hidden())?;
        }
    }
    let mut counts = FileCounts {
        path: path.to_owned(),
        rows: 0,
        bad: 0,
    };
    for part in parts {
        let OrdersPart {
            folded,
            rows,
            bad_rows,
            ..
        } = part.value;
        builder
            .merge_orders(folded)
            .context("merging order aggregates")?;
        counts.rows += rows;
        counts.bad += bad_rows.len() as u64;
        for b in &bad_rows {
            bad.report(b, progress);
        }
    }
    progress.set_position(done_bytes + size);
    Ok(counts)
}

/// Folds the rows of `reader` (one chunk of the orders file); rows whose line is in `skip`
/// repeat an order id first seen on the line it maps to, in an earlier chunk.
fn fold_orders(
    builder: &FeatureBuilder,
    reader: &mut CsvReader,
    skip: &HashMap<u64, u64>,
    progress: &ProgressBar,
) -> Result<OrdersPart> {
    let mut fold = builder.order_fold();
    let (mut rows, mut bad_rows) = (0u64, Vec::new());
    let mut seen = SeenIds::new();
    // Chunks start part-way into the file: count only what each one reads.
    let mut reported = reader.position().byte;
    loop {
        let outcome = match reader.next_order_line() {
            None => break,
            Some(Ok(order)) => {
                let first = if order.id.is_empty() {
                    Ok(())
                } else if let Some(&first) = skip.get(&order.line) {
                    // Recorded with the earlier line, for later repeats in this chunk.
                    let _ = seen.insert(order.id, first);
                    Err(first)
                } else {
                    seen.insert(order.id, order.line)
                };
                match first {
                    Err(first) => {
                        let reason = format!(
                            "duplicate order id {} (first at line {first}); skipped",
                            order.id
                        );
                        Err(reader.bad_row(Some("id"), reason))
                    }
                    Ok(()) => fold
                        .add_order_tagged(order.customer_id, order.facts, order.line)
                        .map_err(|e| {
                            let field = match e {
                                BuildError::UnknownCustomer(_) => "customer_id",
                                _ => "total",
                            };
                            reader.bad_row(Some(field), e.to_string())
                        }),
                }
            }
            Some(Err(RowError::Bad(b))) => Err(b),
            Some(Err(RowError::Fatal(e))) => {
                return Err(anyhow::Error::new(e).context("reading orders"));
            }
        };
        rows += 1;
        if let Err(b) = outcome {
            bad_rows.push(b);
        }
        if rows.is_multiple_of(65_536) && !progress.is_hidden() {
            let at = reader.position().byte;
            progress.inc(at.saturating_sub(reported));
            reported = at;
        }
    }
    let folded = fold.finish().context("folding orders")?;
    for (at, id) in folded.unknown() {
        let reason = BuildError::UnknownCustomer(id.clone()).to_string();
        bad_rows.push(reader.bad_row_at(*at, Some("customer_id"), reason));
    }
    bad_rows.sort_by_key(|b| b.line);
    Ok(OrdersPart {
        folded,
        rows,
        bad_rows,
        seen,
    })
}

fn open(path: &Path, kind: Kind, overrides: &Overrides) -> Result<CsvReader> {
    CsvReader::open(path, kind, overrides).with_context(|| format!("opening {kind} file"))
}

fn progress_bar(show: ShowProgress, total_bytes: u64) -> ProgressBar {
    let visible = match show {
        ShowProgress::Always => true,
        ShowProgress::Never => false,
        ShowProgress::Auto => std::io::stderr().is_terminal() && total_bytes >= LARGE_INPUT,
    };
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total_bytes);
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} reading {bytes}/{total_bytes} [{wide_bar}] {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn tick(progress: &ProgressBar, reader: &CsvReader, done_bytes: u64, rows: u64) {
    if rows.is_multiple_of(65_536) && !progress.is_hidden() {
        progress.set_position(done_bytes + reader.position().byte);
    }
}
