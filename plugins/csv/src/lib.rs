//! `csv`: a source of customers, orders and events read from CSV files.
//!
//! Parsing, column mapping (the shared generator's layout and Shopify's exports work as they
//! are; anything else through `columns`), type coercion and bad-row reports all come from
//! `cohort-csv`, so a file means the same here as in `cohort segment eval`. This crate adds what
//! a connector needs on top: paths and globs, paging driven by the host, and an incremental
//! cursor (see [`cursor`]) so that a re-run reads only rows appended since the last one.
//!
//! Files are streamed: a page holds at most the host's `max_records` records, and the reader
//! stays open between pages of one run, so a 10-million-row file is read once, front to back.
//! A row that cannot be read is reported as a reject (`file:line:column` and the reason) and
//! skipped; the rest still load.

pub mod config;
pub mod cursor;

use std::path::Path;

use cohort_csv::{CsvReader, Position, RowError};
use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::binary::{CustomerRef, OrderRef};
use serde_json::json;

use crate::config::{Config, Validated, kind};
use crate::cursor::Cursor;

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

#[derive(Debug)]
struct OpenReader {
    stream: Stream,
    returned: Cursor,
    file: usize,
    reader: CsvReader,
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

/// Reads the next row into the page: `Some(true)` a record, `Some(false)` a reject, `None` the
/// end of the file.
fn read_next(
    reader: &mut CsvReader,
    stream: Stream,
    page: &mut PageWriter,
) -> Result<Option<bool>, PluginError> {
    // Customers and orders go from the reader's buffer straight into the page, without building
    // an owned record first (the page is the same either way).
    let row = match stream {
        Stream::Customers => reader.next_customer_row().map(|row| {
            row.map(|c| {
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
        }),
        Stream::Orders => reader.next_order_row().map(|row| {
            row.map(|o| {
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
        }),
        Stream::Events => reader
            .next_event()
            .map(|row| row.map(|event| page.push(&event))),
    };
    match row {
        None => Ok(None),
        Some(Ok(pushed)) => pushed.map(|()| Some(true)),
        Some(Err(RowError::Bad(bad))) => {
            let mut location = format!("{}:{}", bad.path.display(), bad.line);
            if let Some(col) = bad.column {
                location.push_str(&format!(":{col}"));
            }
            let reason = match &bad.header {
                Some(h) => format!("{h}: {}", bad.reason),
                None => bad.reason.clone(),
            };
            page.reject(location, reason);
            Ok(Some(false))
        }
        Some(Err(RowError::Fatal(e))) => Err(PluginError::failed(e.to_string())),
    }
}

impl CsvSource {
    fn open_file(
        &self,
        stream: Stream,
        path: &Path,
        byte: u64,
        line: u64,
    ) -> Result<CsvReader, PluginError> {
        let files = &self.config.streams[&stream];
        let reader = if byte == 0 {
            CsvReader::open(path, kind(stream), &files.overrides)
        } else {
            CsvReader::open_at(
                path,
                kind(stream),
                &files.overrides,
                Position { byte, line },
            )
        };
        reader.map_err(|e| PluginError::failed(format!("reading {stream}: {e}")))
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
        let Some(files) = self.config.streams.get(&stream) else {
            // Not configured: nothing to read, ever.
            return Ok(PageEnd {
                next_cursor: Cursor::default(),
                done: true,
            });
        };
        let (mut cursor, mut open) = match self.open.take() {
            Some(o) if o.stream == stream && cursor.as_ref() == Some(&o.returned) => {
                (o.returned, Some((o.file, o.reader)))
            }
            _ => {
                let paths = files.files().map_err(PluginError::failed)?;
                let (current, replaced) = cursor
                    .unwrap_or_default()
                    .reconcile(&paths)
                    .map_err(|e| PluginError::failed(format!("checking {stream} files: {e}")))?;
                for path in replaced {
                    self.host.log_with(
                        Level::Warn,
                        "File changed other than by appending; reading it again from the start",
                        &json!({"path": path, "stream": stream}),
                    );
                }
                (current, None)
            }
        };
        let total: u64 = cursor
            .files
            .iter()
            .map(|f| std::fs::metadata(&f.path).map_or(0, |m| m.len()))
            .sum();
        let mut rejects = page.rejects().len();
        for i in 0..cursor.files.len() {
            let state = &cursor.files[i];
            let len = std::fs::metadata(&state.path).map_or(0, |m| m.len());
            if len == 0 || (state.byte > 0 && state.byte >= len) {
                continue;
            }
            let mut reader = match open.take() {
                Some((file, reader)) if file == i => reader,
                _ => {
                    let path = state.path.clone();
                    self.open_file(stream, &path, state.byte, state.line)?
                }
            };
            loop {
                if page.is_full() || rejects >= MAX_REJECTS_PER_PAGE {
                    let p = reader.position();
                    cursor.files[i].byte = p.byte;
                    cursor.files[i].line = p.line;
                    let done_bytes: u64 = cursor.files.iter().map(|f| f.byte).sum();
                    self.host.progress(done_bytes, Some(total));
                    self.open = Some(OpenReader {
                        stream,
                        returned: cursor.clone(),
                        file: i,
                        reader,
                    });
                    return Ok(PageEnd {
                        next_cursor: cursor,
                        done: false,
                    });
                }
                match read_next(&mut reader, stream, page)? {
                    None => break,
                    Some(true) => {}
                    Some(false) => rejects += 1,
                }
            }
            let p = reader.position();
            cursor.files[i].byte = p.byte.max(1);
            cursor.files[i].line = p.line;
            self.host.check_cancelled()?;
        }
        self.host.progress(total, Some(total));
        Ok(PageEnd {
            next_cursor: cursor,
            done: true,
        })
    }
}

cohort_plugin_api::export_plugin!(source: CsvSource);
