//! `csv`: a source of customers, orders and events read from CSV files.
//!
//! Parsing, column mapping (the shared generator's layout and Shopify's exports work as they
//! are; anything else through `columns`), type coercion and bad-row reports all come from
//! `cohort-csv`, so a file means the same here as in `cohort segment eval`. This crate adds what
//! a connector needs on top: paths and globs, paging driven by the host, and an incremental
//! cursor (see [`cursor`]) so that a re-run reads only rows appended since the last one, and
//! reads a file again in full when anything else in it changed.
//!
//! Files are streamed: a page holds at most the host's `max_records` records, and the reader
//! stays open between pages of one run, so a 10-million-row file is read once, front to back.
//! A row that cannot be read is reported as a reject (`file:line:column` and the reason) and
//! skipped; the rest still load. So are an empty file, and a record whose id an earlier row
//! of the same file already had: the first is kept, as `cohort segment eval` does.

pub mod config;
pub mod cursor;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use cohort_csv::{BadRow, CsvError, CsvReader, Position, RowError, SeenIds};
use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::binary::{CustomerRef, OrderRef};
use serde_json::json;

use crate::config::{Config, Deletions, Validated};
use crate::cursor::{Cursor, PrefixHash, Restart};

/// Rejects after which a page ends early, so a file of garbage cannot fill memory.
const MAX_REJECTS_PER_PAGE: usize = 1000;

/// The CSV source.
#[derive(Debug)]
pub struct CsvSource {
    config: Validated,
    host: Host,
    /// The reader left open by the previous page, reused when the host continues from the
    /// cursor that page returned.
    open: Option<OpenReader>,
}

/// A pass over a stream's files, between two pages.
#[derive(Debug)]
struct OpenReader {
    stream: Stream,
    returned: Cursor,
    /// The file being read, by index in `returned`.
    file: usize,
    reader: CsvReader,
    /// The hash of each file's bytes read so far, by index in `returned`.
    hashes: Vec<PrefixHash>,
    /// Ids read from the current file in this pass.
    seen: SeenIds,
}

impl Plugin for CsvSource {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::source("csv", env!("CARGO_PKG_VERSION"))
            .description(
                "Customers, orders and events from CSV files (paths or globs), incremental",
            )
            .streams(Stream::ALL)
            .incremental()
            .config_schema_of::<Config>()
            // What `cohort plugins check` reads: small files it writes to a temporary `{dir}`,
            // in the shared generator's layout (no column mapping needed).
            .example(
                Example::config(json!({
                    "base_dir": "{dir}",
                    "customers": {"paths": ["customers.csv"]},
                    "orders": {"paths": ["orders-*.csv"]},
                    "events": {"paths": ["events.csv"]},
                }))
                .file(
                    "customers.csv",
                    "id,email,country,city,birth_year,tags,accepts_marketing,created_at\n\
                     1,ann@example.com,US,New York,1980,\"vip,newsletter\",True,2019-03-01 10:00:00\n\
                     2,bob@example.com,GB,London,,,False,2020-07-15 08:30:00\n\
                     3,cy@example.com,DE,Berlin,1999,eco,True,2021-01-02 00:00:00\n\
                     4,di@example.com,FR,Paris,1975,,False,2022-05-05 12:00:00\n",
                )
                .file(
                    "orders-2024.csv",
                    "id,customer_id,created_at,total_price,items\n\
                     1,1,2024-01-01 10:00:00,120.50,2\n\
                     2,1,2024-02-01 11:00:00,80.00,1\n\
                     3,2,2024-03-01 12:00:00,15.25,1\n\
                     4,3,2024-04-01 09:00:00,300.00,4\n\
                     5,4,2024-05-01 00:00:00,9.99,1\n",
                )
                .file(
                    "events.csv",
                    "customer_id,kind,occurred_at\n1,email_open,2024-01-01\n\
                     2,page_view,2024-01-02\n1,email_click,2024-01-03\n3,add_to_cart,2024-01-04\n",
                ),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate().map_err(PluginError::Config)?;
        Ok(CsvSource {
            config,
            host,
            open: None,
        })
    }
}

/// A pass over a stream's files, as a page starts it.
struct Pass {
    cursor: Cursor,
    /// The hash of each file's bytes read so far, by index in `cursor`.
    hashes: Vec<PrefixHash>,
    /// The file to go on with.
    first: usize,
    /// Its reader and the ids it has seen, when continuing.
    open: Option<(CsvReader, SeenIds)>,
}

/// Reads the next row into the page: `Some(true)` a record, `Some(false)` a reject, `None` the
/// end of the file. A customer or order whose id the file already had is a reject.
fn read_next(
    reader: &mut CsvReader,
    stream: Stream,
    page: &mut PageWriter,
    seen: &mut SeenIds,
) -> Result<Option<bool>, PluginError> {
    let repeated = |seen: &mut SeenIds, what: &str, id: &str, line: u64| {
        seen.insert(id, line)
            .err()
            .map(|first| format!("duplicate {what} id {id} (first at line {first}); skipped"))
    };
    // Customers and orders go from the reader's buffer straight into the page, without building
    // an owned record first (the page is the same either way).
    let row = match stream {
        Stream::Customers => {
            let mut duplicate = None;
            let row = reader.next_customer_row().map(|row| {
                row.map(|c| {
                    duplicate = repeated(seen, "customer", c.id, c.line);
                    if duplicate.is_some() {
                        return Ok(());
                    }
                    page.push_customer(&CustomerRef {
                        id: c.id,
                        email: c.email,
                        phone: c.phone,
                        first_name: c.first_name,
                        last_name: c.last_name,
                        country: c.country,
                        region: c.region,
                        city: c.city,
                        postal_code: c.postal_code,
                        birth_date: c.birth_date,
                        birth_year: c.birth_year,
                        gender: c.gender,
                        tags: c.tags(),
                        accepts_email_marketing: c.accepts_email_marketing,
                        accepts_sms_marketing: c.accepts_sms_marketing,
                        created_at: c.created_at,
                        updated_at: c.updated_at,
                        attributes: Some(&c.attributes),
                    })
                })
            });
            with_duplicate(reader, row, duplicate)
        }
        Stream::Orders => {
            let mut duplicate = None;
            let row = reader.next_order_row().map(|row| {
                row.map(|o| {
                    // An order without an id is named after its line: unique already.
                    if o.has_id {
                        duplicate = repeated(seen, "order", &o.id, o.line);
                        if duplicate.is_some() {
                            return Ok(());
                        }
                    }
                    page.push_order(&OrderRef {
                        id: &o.id,
                        customer_id: o.customer_id,
                        created_at: Some(o.created_at),
                        total: o.total,
                        currency: o.currency,
                        item_count: o.item_count,
                        line_items: &[],
                        cancelled_at: o.cancelled_at,
                        refunded: o.refunded,
                    })
                })
            });
            with_duplicate(reader, row, duplicate)
        }
        Stream::Events => reader
            .next_event()
            .map(|row| row.map(|event| page.push(&event))),
    };
    match row {
        None => Ok(None),
        Some(Ok(pushed)) => pushed.map(|()| Some(true)),
        Some(Err(RowError::Bad(bad))) => {
            reject(page, &bad);
            Ok(Some(false))
        }
        Some(Err(RowError::Fatal(e))) => Err(PluginError::failed(e.to_string())),
    }
}

/// The row's outcome, or a bad row when its id repeated an earlier one.
fn with_duplicate(
    reader: &CsvReader,
    row: Option<Result<Result<(), PluginError>, RowError>>,
    duplicate: Option<String>,
) -> Option<Result<Result<(), PluginError>, RowError>> {
    match duplicate {
        Some(reason) => Some(Err(RowError::Bad(reader.bad_row(Some("id"), reason)))),
        None => row,
    }
}

fn reject(page: &mut PageWriter, bad: &BadRow) {
    let mut location = format!("{}:{}", bad.path.display(), bad.line);
    if let Some(col) = bad.column {
        location.push_str(&format!(":{col}"));
    }
    let reason = match &bad.header {
        Some(h) => format!("{h}: {}", bad.reason),
        None => bad.reason.clone(),
    };
    page.reject(location, reason);
}

/// Whether the file's last byte ends a line: if not, its last row may be cut short (an export
/// still being written) and is read again next time.
fn ends_with_newline(path: &Path, len: u64) -> std::io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

impl CsvSource {
    /// Opens `path` at `byte`; `Ok(None)` when the file has no header line at all, which is
    /// reported as a reject naming the file.
    fn open_file(
        &self,
        stream: Stream,
        path: &Path,
        byte: u64,
        line: u64,
        page: &mut PageWriter,
    ) -> Result<Option<CsvReader>, PluginError> {
        let files = &self.config.streams[&stream];
        let reader = if byte == 0 {
            CsvReader::open(path, stream, &files.overrides)
        } else {
            CsvReader::open_at(path, stream, &files.overrides, Position { byte, line })
        }
        .and_then(|r| r.max_field_bytes(self.config.max_field_bytes));
        match reader {
            Ok(r) => Ok(Some(r)),
            Err(CsvError::Empty { path }) => {
                page.reject(
                    path.display().to_string(),
                    format!(
                        "{stream}: the file is empty; expected a header line naming the columns"
                    ),
                );
                Ok(None)
            }
            Err(e) => Err(PluginError::failed(format!("reading {stream}: {e}"))),
        }
    }

    /// Where to read from: the open reader's pass when the host continues from the cursor the
    /// previous page returned, else a fresh pass over the stream's files as they are now.
    fn start_pass(&mut self, stream: Stream, cursor: Option<Cursor>) -> Result<Pass, PluginError> {
        if let Some(o) = self.open.take()
            && o.stream == stream
            && cursor.as_ref() == Some(&o.returned)
        {
            return Ok(Pass {
                cursor: o.returned,
                hashes: o.hashes,
                first: o.file,
                open: Some((o.reader, o.seen)),
            });
        }
        let files = &self.config.streams[&stream];
        let paths = files.files().map_err(PluginError::failed)?;
        let mut reconciled = cursor
            .unwrap_or_default()
            .reconcile(&paths)
            .map_err(|e| PluginError::failed(format!("checking {stream} files: {e}")))?;
        // Full exports: a file changed other than by appending, or gone, means records may
        // have gone too; only reading every file again tells which.
        if self.config.deletions == Deletions::Delete
            && (!reconciled.vanished.is_empty()
                || reconciled
                    .restarted
                    .iter()
                    .any(|(_, why)| *why == Restart::Changed))
        {
            reconciled.cursor.start_full_pass();
            reconciled.hashes = vec![PrefixHash::new(); reconciled.cursor.files.len()];
        }
        for (path, why) in &reconciled.restarted {
            let (level, message) = match why {
                Restart::Changed => (
                    Level::Warn,
                    "File changed other than by appending; reading it again from the start",
                ),
                Restart::OldCursor => (
                    Level::Info,
                    "Cursor from an earlier release; reading the file again from the start",
                ),
            };
            self.host
                .log_with(level, message, &json!({"path": path, "stream": stream}));
        }
        Ok(Pass {
            cursor: reconciled.cursor,
            hashes: reconciled.hashes,
            first: 0,
            open: None,
        })
    }
}

impl Source for CsvSource {
    type Cursor = Cursor;

    fn next_page(
        &mut self,
        stream: Stream,
        cursor: Option<Cursor>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<Cursor>, PluginError> {
        if !self.config.streams.contains_key(&stream) {
            // Not configured: nothing to read, ever.
            return Ok(PageEnd {
                next_cursor: Cursor::default(),
                done: true,
            });
        }
        let Pass {
            mut cursor,
            mut hashes,
            first,
            mut open,
        } = self.start_pass(stream, cursor)?;
        let total: u64 = cursor
            .files
            .iter()
            .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
            .sum();
        let failed = |what: &str, path: &Path, e: std::io::Error| {
            PluginError::failed(format!("{what} {}: {e}", path.display()))
        };
        let mut rejects = page.rejects().len();
        for i in first..cursor.files.len() {
            let state = &cursor.files[i];
            let path = state.path.clone();
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            if state.finished(len) {
                continue;
            }
            let (mut reader, mut seen) = match open.take() {
                Some((reader, seen)) => (reader, seen),
                None => match self.open_file(stream, &path, state.byte, state.line, page)? {
                    Some(reader) => (reader, SeenIds::new()),
                    None => {
                        // Reported as a reject; left unread, so every run reports it. Not a
                        // full export: a pass that met it deletes nothing.
                        rejects += 1;
                        cursor.pass_broken = true;
                        continue;
                    }
                },
            };
            loop {
                if page.is_full() || rejects >= MAX_REJECTS_PER_PAGE {
                    let p = reader.position();
                    hashes[i]
                        .extend_to(&path, p.byte)
                        .map_err(|e| failed("hashing", &path, e))?;
                    let state = &mut cursor.files[i];
                    (state.byte, state.line) = (p.byte, p.line);
                    state.prefix_hash = Some(hashes[i].hex());
                    let done_bytes: u64 = cursor.files.iter().map(|f| f.byte).sum();
                    self.host.progress(done_bytes, Some(total));
                    self.mark_pass(&mut cursor, page, false)?;
                    self.open = Some(OpenReader {
                        stream,
                        returned: cursor.clone(),
                        file: i,
                        reader,
                        hashes,
                        seen,
                    });
                    return Ok(PageEnd {
                        next_cursor: cursor,
                        done: false,
                    });
                }
                match read_next(&mut reader, stream, page, &mut seen)? {
                    None => break,
                    Some(true) => {}
                    Some(false) => rejects += 1,
                }
            }
            let mut p = reader.stopped_at().unwrap_or_else(|| reader.position());
            if !ends_with_newline(&path, p.byte).map_err(|e| failed("reading", &path, e))? {
                // Read the last row again next time: it may not be whole yet.
                p = reader.last_row_from().unwrap_or(p);
            }
            hashes[i]
                .extend_to(&path, p.byte)
                .map_err(|e| failed("hashing", &path, e))?;
            let state = &mut cursor.files[i];
            (state.byte, state.line) = (p.byte, p.line.max(1));
            state.prefix_hash = Some(hashes[i].hex());
            self.host.check_cancelled()?;
        }
        self.host.progress(total, Some(total));
        self.mark_pass(&mut cursor, page, true)?;
        Ok(PageEnd {
            next_cursor: cursor,
            done: true,
        })
    }
}

impl CsvSource {
    /// Marks the page as part of the cursor's full pass, if one is under way. The pass's last
    /// page ends it (the host then marks what the pass did not find as deleted), unless a file
    /// of the pass was empty or unreadable: that is not a full export, and nothing is deleted.
    fn mark_pass(
        &self,
        cursor: &mut Cursor,
        page: &mut PageWriter,
        last: bool,
    ) -> Result<(), PluginError> {
        let Some(name) = cursor.pass.clone() else {
            return Ok(());
        };
        if last {
            cursor.pass = None;
            if std::mem::take(&mut cursor.pass_broken) {
                self.host.warn(
                    "A file of this full export was empty or unreadable: records missing from it \
                     were not deleted",
                );
                return Ok(());
            }
        }
        match page.full_pass(name) {
            Ok(()) => Ok(()),
            Err(PluginError::Unsupported(why)) => {
                cursor.pass = None;
                self.host
                    .warn(&format!("deletions = \"delete\" has no effect here: {why}"));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

cohort_plugin_api::export_plugin!(source: CsvSource);
