//! Bulk upserts of records, with the stream cursor saved in the same transaction.
//!
//! Records are turned into columns once (key, content hash, data columns), then written the
//! cheapest way each backend has, keeping three promises: upsert by (source, external id),
//! where the source is the workspace's integer id for it (`sources`); exact new / updated /
//! unchanged counts by content hash; and the cursor in the same transaction.
//!
//! - SQLite: per chunk of rows sized to its 32,766-parameter limit, one `SELECT count(*)` of
//!   the keys that exist, then one multi-row `INSERT … ON CONFLICT DO UPDATE … WHERE hash <>
//!   excluded.hash`. The rows it wrote (`changes()`) and the existing count give the three
//!   counts; no row comes back, which matters because sqlx hands every result row from its
//!   worker thread to the caller one at a time.
//! - PostgreSQL: look the keys' stored hashes up first, `COPY` the new rows in (binary), and
//!   upsert only the changed ones from `UNNEST`ed arrays. `ON CONFLICT` costs the server about
//!   twice a plain insert per row, and a bulk load is almost all new rows.
//!
//! sqlx is used directly here (sea-orm's own driver, through its pool) because sea-orm's array
//! values cannot carry NULL elements and it has no `COPY`.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::Utc;
use cohort_core::record::{Customer, Event, Order};
use sea_orm::sqlx::{self, Postgres, Sqlite, Transaction};
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::error::StoreError;
use crate::totals::{self, Changes, Fact, Tx};
use crate::types::{Backend, Stream, Sweep, Upserted};

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` since 3.32.
const SQLITE_MAX_PARAMS: usize = 32_766;
/// Keys per lookup and rows per `UNNEST` upsert on PostgreSQL: large enough to amortise the
/// round trip, small enough that one statement's arrays stay a few megabytes.
const PG_CHUNK_ROWS: usize = 10_000;

/// The SQL type family of a data column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bool,
    /// JSON, carried as text (`json` on PostgreSQL).
    Json,
}

/// A data column of a record table (key, hash and revision columns are implied).
#[derive(Debug)]
struct ColumnDef {
    name: &'static str,
    kind: Kind,
}

const fn col(name: &'static str, kind: Kind) -> ColumnDef {
    ColumnDef { name, kind }
}

#[derive(Debug)]
struct TableDef {
    name: &'static str,
    columns: &'static [ColumnDef],
    /// The stored columns per-customer totals need (`totals`), for tables that keep them.
    facts: Option<&'static str>,
}

const CUSTOMERS: TableDef = TableDef {
    name: "customers",
    columns: &[
        col("email", Kind::Text),
        col("accepts_email_marketing", Kind::Bool),
        col("accepts_sms_marketing", Kind::Bool),
        col("created_at", Kind::Int),
        col("updated_at", Kind::Int),
        col("data", Kind::Json),
    ],
    facts: None,
};

const ORDERS: TableDef = TableDef {
    name: "orders",
    columns: &[
        col("customer_id", Kind::Text),
        col("created_at", Kind::Int),
        col("total", Kind::Int),
        col("refunded", Kind::Int),
        col("currency", Kind::Text),
        col("item_count", Kind::Int),
        col("cancelled_at", Kind::Int),
        col("line_items", Kind::Json),
    ],
    facts: Some(totals::ORDER_FACTS),
};

const EVENTS: TableDef = TableDef {
    name: "events",
    columns: &[
        col("customer_id", Kind::Text),
        col("kind", Kind::Text),
        col("occurred_at", Kind::Int),
        col("properties", Kind::Json),
    ],
    facts: Some(totals::EVENT_FACTS),
};

/// One column's values for a batch of rows; every column may hold NULLs.
#[derive(Debug)]
enum Values {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

/// A batch of records of one table, as columns.
#[derive(Debug)]
pub(crate) struct Batch {
    table: &'static TableDef,
    keys: Vec<String>,
    hashes: Vec<i64>,
    columns: Vec<Values>,
}

impl Batch {
    fn new(table: &'static TableDef, capacity: usize) -> Batch {
        let columns = table
            .columns
            .iter()
            .map(|c| match c.kind {
                Kind::Text | Kind::Json => Values::Text(Vec::with_capacity(capacity)),
                Kind::Int => Values::Int(Vec::with_capacity(capacity)),
                Kind::Bool => Values::Bool(Vec::with_capacity(capacity)),
            })
            .collect();
        Batch {
            table,
            keys: Vec::with_capacity(capacity),
            hashes: Vec::with_capacity(capacity),
            columns,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// A copy of rows `rows`, in that order.
    fn select(&self, rows: &[usize]) -> Batch {
        fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
            rows.iter().map(|&r| v[r].clone()).collect()
        }
        Batch {
            table: self.table,
            keys: pick(&self.keys, rows),
            hashes: pick(&self.hashes, rows),
            columns: self
                .columns
                .iter()
                .map(|c| match c {
                    Values::Text(v) => Values::Text(pick(v, rows)),
                    Values::Int(v) => Values::Int(pick(v, rows)),
                    Values::Bool(v) => Values::Bool(pick(v, rows)),
                })
                .collect(),
        }
    }

    fn text(&mut self, i: usize, v: Option<String>) {
        if let Values::Text(col) = &mut self.columns[i] {
            col.push(v);
        }
    }

    fn int(&mut self, i: usize, v: Option<i64>) {
        if let Values::Int(col) = &mut self.columns[i] {
            col.push(v);
        }
    }

    fn bool(&mut self, i: usize, v: bool) {
        if let Values::Bool(col) = &mut self.columns[i] {
            col.push(Some(v));
        }
    }

    fn text_at(&self, column: usize, row: usize) -> Option<&str> {
        match &self.columns[column] {
            Values::Text(col) => col[row].as_deref(),
            _ => None,
        }
    }

    fn int_at(&self, column: usize, row: usize) -> Option<i64> {
        match &self.columns[column] {
            Values::Int(col) => col[row],
            _ => None,
        }
    }

    /// What row `row` contributes to its customer's totals, for a table that keeps them
    /// (the columns are those of [`ORDERS`] and [`EVENTS`]).
    fn fact(&self, row: usize) -> Result<Fact, StoreError> {
        let customer = self.text_at(0, row).unwrap_or_default().to_owned();
        if self.table.name == "orders" {
            let line_items = match self.int_at(5, row) {
                Some(0) => self.text_at(7, row).map(|t| Value::String(t.to_owned())),
                _ => None,
            };
            Fact::order(
                customer,
                self.int_at(1, row),
                self.int_at(2, row).unwrap_or(0),
                self.int_at(3, row).unwrap_or(0),
                self.int_at(5, row).unwrap_or(0),
                self.int_at(6, row),
                line_items.as_ref(),
            )
        } else {
            Ok(Fact::Event {
                customer,
                kind: self.text_at(1, row).unwrap_or_default().to_owned(),
                at: cohort_core::time::Timestamp::from_secs(self.int_at(2, row).unwrap_or(0)),
            })
        }
    }
}

fn json_error(what: &'static str, key: &str, err: &serde_json::Error) -> StoreError {
    StoreError::Invalid(format!("{what} `{key}` cannot be serialised: {err}"))
}

/// The hash stored beside a record: the first 64 bits of XXH3 over its canonical JSON.
pub(crate) fn content_hash(bytes: &[u8]) -> i64 {
    i64::from_ne_bytes(xxh3_64(bytes).to_ne_bytes())
}

/// The key's `id_len` column: the external id's length in bytes.
fn id_len(key: &str) -> i32 {
    i32::try_from(key.len()).unwrap_or(i32::MAX)
}

/// Orders external ids as the record tables' key does: shorter first, then bytewise (SQLite's
/// default collation, `COLLATE "C"` on PostgreSQL). Numeric ids sort as numbers.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Indices of `keys` in key order, keeping only the last occurrence of each key: PostgreSQL
/// refuses to upsert the same row twice in one statement, and the last version a source sent
/// is the one that counts.
///
/// In key order a batch goes into the B-tree from one end to the other, each index page
/// touched once, instead of wherever each key falls.
fn last_of_each<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<usize> {
    let keys: Vec<&str> = keys.collect();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Equal keys: the latest first, so `dedup_by` (which keeps the first of a run) keeps it.
    order.sort_unstable_by(|&a, &b| key_order(keys[a], keys[b]).then(b.cmp(&a)));
    order.dedup_by(|later, kept| keys[*later] == keys[*kept]);
    order
}

pub(crate) fn customers_batch(records: &[Customer]) -> Result<Batch, StoreError> {
    let picked = last_of_each(records.iter().map(|c| c.id.as_str()));
    let mut b = Batch::new(&CUSTOMERS, picked.len());
    for i in picked {
        let c = &records[i];
        let data =
            serde_json::to_string(c).map_err(|e| json_error("customer", c.id.as_str(), &e))?;
        b.keys.push(c.id.as_str().to_owned());
        b.hashes.push(content_hash(data.as_bytes()));
        b.text(0, c.email.clone());
        b.bool(1, c.accepts_email_marketing);
        b.bool(2, c.accepts_sms_marketing);
        b.int(3, c.created_at.map(|t| t.secs()));
        b.int(4, c.updated_at.map(|t| t.secs()));
        b.text(5, Some(data));
    }
    Ok(b)
}

pub(crate) fn orders_batch(records: &[Order]) -> Result<Batch, StoreError> {
    let picked = last_of_each(records.iter().map(|o| o.id.as_str()));
    let mut b = Batch::new(&ORDERS, picked.len());
    let mut buf = Vec::with_capacity(256);
    for i in picked {
        let o = &records[i];
        buf.clear();
        serde_json::to_writer(&mut buf, o).map_err(|e| json_error("order", &o.id, &e))?;
        let line_items = if o.line_items.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&o.line_items).map_err(|e| json_error("order", &o.id, &e))?)
        };
        b.keys.push(o.id.clone());
        b.hashes.push(content_hash(&buf));
        b.text(0, Some(o.customer_id.as_str().to_owned()));
        b.int(1, o.created_at.map(|t| t.secs()));
        b.int(2, Some(o.total.raw()));
        b.int(3, Some(o.refunded.raw()));
        b.text(4, o.currency.clone());
        b.int(5, Some(i64::from(o.item_count)));
        b.int(6, o.cancelled_at.map(|t| t.secs()));
        b.text(7, line_items);
    }
    Ok(b)
}

/// The id under which an event without a source id is stored: a hash of its content, so the
/// same event pulled twice is stored once.
pub(crate) fn derived_event_id(canonical: &[u8]) -> String {
    format!("~{:032x}", xxh3_128(canonical))
}

pub(crate) fn events_batch(records: &[Event]) -> Result<Batch, StoreError> {
    let mut canon = Vec::with_capacity(records.len());
    let mut keys = Vec::with_capacity(records.len());
    for e in records {
        let bytes = serde_json::to_vec(e)
            .map_err(|err| json_error("event", e.id.as_deref().unwrap_or("?"), &err))?;
        keys.push(match &e.id {
            Some(id) => id.clone(),
            None => derived_event_id(&bytes),
        });
        canon.push(bytes);
    }
    let picked = last_of_each(keys.iter().map(String::as_str));
    let mut b = Batch::new(&EVENTS, picked.len());
    for i in picked {
        let e = &records[i];
        let properties = serde_json::to_string(&e.properties)
            .map_err(|err| json_error("event", &keys[i], &err))?;
        b.keys.push(std::mem::take(&mut keys[i]));
        b.hashes.push(content_hash(&canon[i]));
        b.text(0, Some(e.customer_id.as_str().to_owned()));
        b.text(1, Some(e.kind.as_str().to_owned()));
        b.int(2, Some(e.occurred_at.secs()));
        b.text(3, Some(properties));
    }
    Ok(b)
}

/// Writes `batch` for (workspace, source), applies what the page says about deletions
/// (`sweep`), and saves the stream's cursor, all in one transaction.
#[allow(
    clippy::too_many_arguments,
    reason = "one page's parts, each used once"
)]
pub(crate) async fn ingest(
    db: &sea_orm::DatabaseConnection,
    backend: Backend,
    workspace: &str,
    source: &str,
    stream: Stream,
    batch: &Batch,
    cursor: &Value,
    sweep: &Sweep<'_>,
) -> Result<Upserted, StoreError> {
    let cursor = serde_json::to_string(cursor)
        .map_err(|e| StoreError::Invalid(format!("cursor cannot be serialised: {e}")))?;
    // The pass the stream stays in after this page: none once the pass's last page is in.
    let pass_after = sweep.pass.filter(|_| !sweep.done);
    let now = Utc::now();
    match backend {
        Backend::Sqlite => {
            // IMMEDIATE takes the write lock up front (waiting out the busy timeout): a
            // deferred transaction that reads first may be refused the upgrade to writing.
            let mut tx = db
                .get_sqlite_connection_pool()
                .begin_with("BEGIN IMMEDIATE")
                .await?;
            let source_id = source_id_sqlite(&mut tx, workspace, source).await?;
            let mut changes = match batch.table.facts {
                Some(_) if totals::is_ready(&mut Tx::Sqlite(&mut tx), source_id).await? => {
                    Some(Changes::default())
                }
                _ => None,
            };
            let mut counts = upsert_sqlite(&mut tx, source_id, batch, changes.as_mut()).await?;
            if sweep.pass.is_some() || !sweep.deleted.is_empty() {
                let pass: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT pass FROM source_cursors \
                     WHERE workspace_id = ?1 AND source = ?2 AND stream = ?3",
                )
                .bind(workspace)
                .bind(source)
                .bind(stream.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let sql = SweepSql::new(Backend::Sqlite, batch.table.name);
                counts.deleted = sql
                    .apply_sqlite(
                        &mut tx,
                        source_id,
                        stream,
                        batch,
                        sweep,
                        pass.flatten(),
                        now,
                    )
                    .await?;
            }
            if let Some(changes) = changes {
                let swept = (counts.deleted > 0).then(|| now.timestamp());
                let mut totals_tx = Tx::Sqlite(&mut tx);
                totals::apply(&mut totals_tx, batch.table.name, source_id, changes, swept).await?;
            }
            if counts.changed() {
                sqlx::query("UPDATE sources SET data_version = data_version + 1 WHERE id = ?1")
                    .bind(source_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO source_cursors (workspace_id, source, stream, cursor, updated_at, pass) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (workspace_id, source, stream) \
                 DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at, \
                 pass = excluded.pass",
            )
            .bind(workspace)
            .bind(source)
            .bind(stream.as_str())
            .bind(&cursor)
            .bind(now)
            .bind(pass_after)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(counts)
        }
        Backend::Postgres => {
            let mut tx = db.get_postgres_connection_pool().begin().await?;
            let source_id = source_id_pg(&mut tx, workspace, source).await?;
            // The lock `upsert_pg` takes, taken first: readiness must not change under it.
            totals::lock_pg(&mut tx, batch.table.name, source_id).await?;
            let mut changes = match batch.table.facts {
                Some(_) if totals::is_ready(&mut Tx::Postgres(&mut tx), source_id).await? => {
                    Some(Changes::default())
                }
                _ => None,
            };
            let mut counts = upsert_pg(&mut tx, source_id, batch, changes.as_mut()).await?;
            if sweep.pass.is_some() || !sweep.deleted.is_empty() {
                let pass: Option<Option<String>> = sqlx::query_scalar(
                    "SELECT pass FROM source_cursors \
                     WHERE workspace_id = $1 AND source = $2 AND stream = $3",
                )
                .bind(workspace)
                .bind(source)
                .bind(stream.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let sql = SweepSql::new(Backend::Postgres, batch.table.name);
                counts.deleted = sql
                    .apply_pg(
                        &mut tx,
                        source_id,
                        stream,
                        batch,
                        sweep,
                        pass.flatten(),
                        now,
                    )
                    .await?;
            }
            if let Some(changes) = changes {
                let swept = (counts.deleted > 0).then(|| now.timestamp());
                let mut totals_tx = Tx::Postgres(&mut tx);
                totals::apply(&mut totals_tx, batch.table.name, source_id, changes, swept).await?;
            }
            if counts.changed() {
                sqlx::query("UPDATE sources SET data_version = data_version + 1 WHERE id = $1")
                    .bind(source_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO source_cursors (workspace_id, source, stream, cursor, updated_at, pass) \
                 VALUES ($1, $2, $3, $4::jsonb, $5, $6) ON CONFLICT (workspace_id, source, stream) \
                 DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at, \
                 pass = excluded.pass",
            )
            .bind(workspace)
            .bind(source)
            .bind(stream.as_str())
            .bind(&cursor)
            .bind(now)
            .bind(pass_after)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(counts)
        }
    }
}

/// The statements that carry out a page's [`Sweep`] on one record table.
///
/// A full pass is tracked in `sweeps`: when a page names a pass the stream is not in yet, the
/// keys of every live record of the stream are copied in; each page of the pass takes its own
/// keys out; the pass's last page marks the records whose keys are left as deleted, and
/// empties the table. Ids a page names as deleted are marked at once.
struct SweepSql {
    table: &'static str,
    backend: Backend,
}

impl SweepSql {
    fn new(backend: Backend, table: &'static str) -> SweepSql {
        SweepSql { table, backend }
    }

    /// `$n` on PostgreSQL, `?n` on SQLite.
    fn p(&self, n: usize) -> String {
        match self.backend {
            Backend::Postgres => format!("${n}"),
            Backend::Sqlite => format!("?{n}"),
        }
    }

    fn clear(&self) -> String {
        format!(
            "DELETE FROM sweeps WHERE source_id = {} AND stream = {}",
            self.p(1),
            self.p(2)
        )
    }

    fn start(&self) -> String {
        format!(
            "INSERT INTO sweeps (source_id, stream, id_len, external_id) \
             SELECT source_id, {stream}, id_len, external_id FROM {table} \
             WHERE source_id = {source} AND deleted_at IS NULL",
            stream = self.p(2),
            table = self.table,
            source = self.p(1)
        )
    }

    fn finish(&self) -> String {
        format!(
            "UPDATE {table} SET deleted_at = {at} WHERE source_id = {source} AND deleted_at IS NULL \
             AND (id_len, external_id) IN (SELECT id_len, external_id FROM sweeps \
             WHERE source_id = {source} AND stream = {stream})",
            table = self.table,
            at = self.p(3),
            source = self.p(1),
            stream = self.p(2)
        )
    }

    /// SQLite: the keys as `VALUES` rows after the first `first` parameters.
    fn values(rows: usize) -> String {
        let mut v = String::with_capacity(rows * 6 + 8);
        v.push_str("VALUES ");
        for r in 0..rows {
            v.push_str(if r == 0 { "(?,?)" } else { ",(?,?)" });
        }
        v
    }

    #[allow(clippy::too_many_arguments, reason = "one page's parts")]
    async fn apply_sqlite(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        source_id: i64,
        stream: Stream,
        batch: &Batch,
        sweep: &Sweep<'_>,
        current_pass: Option<String>,
        now: chrono::DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let chunk = (SQLITE_MAX_PARAMS - 4) / 2;
        if let Some(pass) = sweep.pass {
            if current_pass.as_deref() != Some(pass) {
                for sql in [self.clear(), self.start()] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(source_id)
                        .bind(stream.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
            }
            for keys in batch.keys.chunks(chunk) {
                let sql = format!(
                    "DELETE FROM sweeps WHERE source_id = ? AND stream = ? \
                     AND (id_len, external_id) IN ({})",
                    Self::values(keys.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(stream.as_str());
                for key in keys {
                    q = q.bind(id_len(key)).bind(key.as_str());
                }
                q.execute(&mut **tx).await?;
            }
        }
        for ids in sweep.deleted.chunks(chunk) {
            let sql = format!(
                "UPDATE {} SET deleted_at = ? WHERE source_id = ? AND deleted_at IS NULL \
                 AND (id_len, external_id) IN ({})",
                self.table,
                Self::values(ids.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now.timestamp())
                .bind(source_id);
            for id in ids {
                q = q.bind(id_len(id)).bind(id.as_str());
            }
            deleted += q.execute(&mut **tx).await?.rows_affected();
        }
        if sweep.pass.is_some() && sweep.done {
            deleted += sqlx::query(sqlx::AssertSqlSafe(self.finish()))
                .bind(source_id)
                .bind(stream.as_str())
                .bind(now.timestamp())
                .execute(&mut **tx)
                .await?
                .rows_affected();
            sqlx::query(sqlx::AssertSqlSafe(self.clear()))
                .bind(source_id)
                .bind(stream.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(deleted)
    }

    #[allow(clippy::too_many_arguments, reason = "one page's parts")]
    async fn apply_pg(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        source_id: i64,
        stream: Stream,
        batch: &Batch,
        sweep: &Sweep<'_>,
        current_pass: Option<String>,
        now: chrono::DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        if let Some(pass) = sweep.pass {
            if current_pass.as_deref() != Some(pass) {
                for sql in [self.clear(), self.start()] {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(source_id)
                        .bind(stream.as_str())
                        .execute(&mut **tx)
                        .await?;
                }
            }
            for keys in batch.keys.chunks(PG_CHUNK_ROWS) {
                let lens: Vec<i32> = keys.iter().map(|k| id_len(k)).collect();
                sqlx::query(
                    "DELETE FROM sweeps WHERE source_id = $1 AND stream = $2 \
                     AND (id_len, external_id) IN (SELECT * FROM UNNEST($3::int4[], $4::text[]))",
                )
                .bind(source_id)
                .bind(stream.as_str())
                .bind(lens)
                .bind(keys)
                .execute(&mut **tx)
                .await?;
            }
        }
        for ids in sweep.deleted.chunks(PG_CHUNK_ROWS) {
            let lens: Vec<i32> = ids.iter().map(|k| id_len(k)).collect();
            let sql = format!(
                "UPDATE {} SET deleted_at = $1 WHERE source_id = $2 AND deleted_at IS NULL \
                 AND (id_len, external_id) IN (SELECT * FROM UNNEST($3::int4[], $4::text[]))",
                self.table
            );
            deleted += sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now.timestamp())
                .bind(source_id)
                .bind(lens)
                .bind(ids)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        }
        if sweep.pass.is_some() && sweep.done {
            deleted += sqlx::query(sqlx::AssertSqlSafe(self.finish()))
                .bind(source_id)
                .bind(stream.as_str())
                .bind(now.timestamp())
                .execute(&mut **tx)
                .await?
                .rows_affected();
            sqlx::query(sqlx::AssertSqlSafe(self.clear()))
                .bind(source_id)
                .bind(stream.as_str())
                .execute(&mut **tx)
                .await?;
        }
        Ok(deleted)
    }
}

/// The id of (workspace, source), made on its first ingest. Unknown workspaces are refused
/// here, once per call: the record tables carry no foreign key (see the migration).
async fn source_id_sqlite(
    tx: &mut Transaction<'static, Sqlite>,
    workspace: &str,
    source: &str,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO sources (workspace_id, name, created_at, totals_ready) \
         SELECT id, ?2, ?3, 1 FROM workspaces WHERE id = ?1 \
         ON CONFLICT (workspace_id, name) DO NOTHING",
    )
    .bind(workspace)
    .bind(source)
    .bind(Utc::now())
    .execute(&mut **tx)
    .await?;
    sqlx::query_scalar("SELECT id FROM sources WHERE workspace_id = ?1 AND name = ?2")
        .bind(workspace)
        .bind(source)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::UnknownWorkspace(workspace.to_owned()))
}

/// [`source_id_sqlite`] for PostgreSQL.
async fn source_id_pg(
    tx: &mut Transaction<'static, Postgres>,
    workspace: &str,
    source: &str,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO sources (workspace_id, name, created_at, totals_ready) \
         SELECT id, $2, $3, 1 FROM workspaces WHERE id = $1 \
         ON CONFLICT (workspace_id, name) DO NOTHING",
    )
    .bind(workspace)
    .bind(source)
    .bind(Utc::now())
    .execute(&mut **tx)
    .await?;
    sqlx::query_scalar("SELECT id FROM sources WHERE workspace_id = $1 AND name = $2")
        .bind(workspace)
        .bind(source)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::UnknownWorkspace(workspace.to_owned()))
}

/// `ON CONFLICT … DO UPDATE`, rewriting a row only when its hash changed.
fn on_conflict_clause(table: &TableDef, sql: &mut String) {
    sql.push_str(" ON CONFLICT (source_id, id_len, external_id) DO UPDATE SET ");
    for c in table.columns {
        let _ = write!(sql, "{0} = excluded.{0}, ", c.name);
    }
    // A record marked deleted and sent again comes back, changed or not.
    let _ = write!(
        sql,
        "hash = excluded.hash, revision = {0}.revision + 1, deleted_at = NULL \
         WHERE {0}.hash <> excluded.hash OR {0}.deleted_at IS NOT NULL",
        table.name
    );
}

fn insert_head(table: &TableDef, sql: &mut String) {
    let _ = write!(
        sql,
        "INSERT INTO {} (source_id, id_len, external_id",
        table.name
    );
    for c in table.columns {
        let _ = write!(sql, ", {}", c.name);
    }
    sql.push_str(", hash, revision) ");
}

/// `INSERT … SELECT ?, column1, … FROM (VALUES (?, …), …)`: the source id is bound once,
/// then every row binds its key (length and id), data columns and hash. Placeholders are plain
/// `?`, numbered in the order they appear: SQLite looks each numbered `?NNN` up in a list,
/// which made a 30,000-parameter statement quadratic to prepare. `WHERE true` is SQLite's
/// documented way to let `ON CONFLICT` follow a `SELECT`.
fn sqlite_statement(table: &TableDef, rows: usize) -> String {
    let fields = table.columns.len() + 3;
    let mut row = String::from("(?");
    for _ in 1..fields {
        row.push_str(",?");
    }
    row.push(')');
    let mut sql = String::with_capacity(256 + rows * (row.len() + 1));
    insert_head(table, &mut sql);
    sql.push_str("SELECT ?");
    for i in 1..=fields {
        let _ = write!(sql, ", column{i}");
    }
    sql.push_str(", 1 FROM (VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&row);
    }
    sql.push_str(") WHERE true");
    on_conflict_clause(table, &mut sql);
    sql
}

/// How many of `rows` keys already exist: a join of the keys, as `VALUES` (length, id), with
/// the table on its key, then the source id. (A row-value `IN` would be planned as a scan of
/// the whole source.)
fn sqlite_count_statement(table: &TableDef, rows: usize) -> String {
    let mut sql = String::with_capacity(160 + rows * 6);
    sql.push_str("SELECT count(*) FROM (VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(?,?)" } else { ",(?,?)" });
    }
    let _ = write!(
        sql,
        ") AS k JOIN {} AS t ON t.source_id = ? AND t.id_len = k.column1 \
         AND t.external_id = k.column2",
        table.name
    );
    sql
}

/// [`sqlite_count_statement`] for a table with totals: the stored versions of the keys that
/// exist, packed into one JSON array of `[key, hash, deleted, [facts…]]`.
fn sqlite_stored_statement(table: &TableDef, facts: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(256 + rows * 6);
    let _ = write!(
        sql,
        "SELECT json_group_array(json_array(t.external_id, t.hash, t.deleted_at IS NOT NULL, \
         json_array({facts}))) FROM (VALUES "
    );
    for r in 0..rows {
        sql.push_str(if r == 0 { "(?,?)" } else { ",(?,?)" });
    }
    let _ = write!(
        sql,
        ") AS k JOIN {} AS t ON t.source_id = ? AND t.id_len = k.column1 \
         AND t.external_id = k.column2",
        table.name
    );
    sql
}

/// SQLite: per chunk, count the keys that exist, then upsert. No row comes back: the chunk's
/// `changes()` is new + rewritten rows, and with the existing count that splits exactly into
/// new, updated and unchanged (the transaction is `IMMEDIATE`, so nothing changes between the
/// two statements). Returning a row per record (`RETURNING revision`, as before) took about
/// 30% of a load's time: each row crossed sqlx's worker thread on its own.
async fn upsert_sqlite(
    tx: &mut Transaction<'static, Sqlite>,
    source_id: i64,
    batch: &Batch,
    mut changes: Option<&mut Changes>,
) -> Result<Upserted, StoreError> {
    let per_row = batch.table.columns.len() + 3;
    let chunk = (SQLITE_MAX_PARAMS - 1) / per_row;
    let mut total = Upserted::default();
    let mut full_sql: Option<(String, String)> = None;
    let mut start = 0;
    while start < batch.len() {
        let end = (start + chunk).min(batch.len());
        let rows = end - start;
        let partial;
        let (count_sql, upsert_sql) = if rows == chunk {
            full_sql.get_or_insert_with(|| {
                (
                    sqlite_count_statement(batch.table, chunk),
                    sqlite_statement(batch.table, chunk),
                )
            })
        } else {
            partial = (
                sqlite_count_statement(batch.table, rows),
                sqlite_statement(batch.table, rows),
            );
            &partial
        };
        let existing = match (changes.as_deref_mut(), batch.table.facts) {
            (Some(changes), Some(facts)) => {
                // The stored versions, for the totals, in place of the count.
                let sql = sqlite_stored_statement(batch.table, facts, rows);
                let mut q = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
                for key in &batch.keys[start..end] {
                    q = q.bind(id_len(key)).bind(key.as_str());
                }
                let packed = q.bind(source_id).fetch_one(&mut **tx).await?;
                let stored: Vec<(String, i64, i64, Value)> = match packed {
                    Some(text) => serde_json::from_str(&text)
                        .map_err(|e| json_error("stored record", "(chunk)", &e))?,
                    None => Vec::new(),
                };
                let existing = stored.len() as i64;
                let mut by_key: HashMap<String, (i64, bool, Value)> = stored
                    .into_iter()
                    .map(|(key, hash, deleted, facts)| (key, (hash, deleted != 0, facts)))
                    .collect();
                for r in start..end {
                    let old = match by_key.remove(&batch.keys[r]) {
                        Some((hash, false, _)) if hash == batch.hashes[r] => continue,
                        Some((_, false, facts)) => {
                            Some(Fact::from_stored(batch.table.name, &facts)?)
                        }
                        Some((_, true, _)) | None => None,
                    };
                    changes.replace(old, batch.fact(r)?);
                }
                existing
            }
            _ => {
                let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql.as_str()));
                for key in &batch.keys[start..end] {
                    q = q.bind(id_len(key)).bind(key.as_str());
                }
                q.bind(source_id).fetch_one(&mut **tx).await?
            }
        };

        let mut q = sqlx::query(sqlx::AssertSqlSafe(upsert_sql.as_str())).bind(source_id);
        for r in start..end {
            q = q.bind(id_len(&batch.keys[r])).bind(batch.keys[r].as_str());
            for values in &batch.columns {
                q = match values {
                    Values::Text(v) => q.bind(v[r].as_deref()),
                    Values::Int(v) => q.bind(v[r]),
                    Values::Bool(v) => q.bind(v[r]),
                };
            }
            q = q.bind(batch.hashes[r]);
        }
        let written = q.execute(&mut **tx).await?.rows_affected();
        total += split_counts(rows as u64, existing as u64, written)?;
        start = end;
    }
    Ok(total)
}

/// New, updated and unchanged from the chunk's size, how many of its keys existed, and how
/// many rows the upsert wrote (inserted or rewritten).
fn split_counts(rows: u64, existing: u64, written: u64) -> Result<Upserted, StoreError> {
    let new = rows.checked_sub(existing);
    let updated = new.and_then(|new| written.checked_sub(new));
    match (new, updated) {
        (Some(new), Some(updated)) if updated <= existing => Ok(Upserted {
            new,
            updated,
            unchanged: existing - updated,
            deleted: 0,
        }),
        _ => Err(StoreError::Invalid(format!(
            "ingest counted {existing} existing keys of {rows} and wrote {written} rows: \
             the table changed under the transaction"
        ))),
    }
}

fn pg_upsert_statement(table: &TableDef) -> String {
    let mut sql = String::with_capacity(1024);
    insert_head(table, &mut sql);
    sql.push_str("SELECT $1, u.id_len, u.external_id");
    for c in table.columns {
        match c.kind {
            Kind::Json => {
                let _ = write!(sql, ", u.{0}::json", c.name);
            }
            _ => {
                let _ = write!(sql, ", u.{0}", c.name);
            }
        }
    }
    sql.push_str(", u.hash, 1 FROM UNNEST($2::int4[], $3::text[]");
    for (i, c) in table.columns.iter().enumerate() {
        let ty = match c.kind {
            Kind::Text | Kind::Json => "text",
            Kind::Int => "int8",
            Kind::Bool => "bool",
        };
        let _ = write!(sql, ", ${}::{ty}[]", i + 4);
    }
    let _ = write!(
        sql,
        ", ${}::int8[]) AS u(id_len, external_id",
        table.columns.len() + 4
    );
    for c in table.columns {
        let _ = write!(sql, ", {}", c.name);
    }
    sql.push_str(", hash)");
    on_conflict_clause(table, &mut sql);
    sql
}

fn pg_copy_statement(table: &TableDef) -> String {
    let mut sql = format!("COPY {} (source_id, id_len, external_id", table.name);
    for c in table.columns {
        let _ = write!(sql, ", {}", c.name);
    }
    sql.push_str(", hash, revision) FROM STDIN (FORMAT binary)");
    sql
}

/// PostgreSQL: look the batch's keys up first, then `COPY` the new rows in and upsert only
/// the changed ones.
///
/// `INSERT … ON CONFLICT` costs the server about twice a plain insert per row (a speculative
/// insertion, checked and confirmed), and a bulk load is almost all new rows. So the keys'
/// stored hashes are fetched first ([`stored_hashes_pg`]), rows whose key is absent
/// go in through binary `COPY` (the cheapest way into a table), rows whose hash changed take
/// the `ON CONFLICT` path, and equal ones are not sent at all. A transaction-scoped advisory
/// lock on (table, source id) keeps two ingests of one stream from inserting the same
/// new key between lookup and copy; ingests of different streams still run side by side.
async fn upsert_pg(
    tx: &mut Transaction<'static, Postgres>,
    source_id: i64,
    batch: &Batch,
    mut changes: Option<&mut Changes>,
) -> Result<Upserted, StoreError> {
    let table = batch.table;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2::text, 0))")
        .bind(table.name)
        .bind(source_id)
        .execute(&mut **tx)
        .await?;

    // With totals kept, the stored versions' facts come along (as JSON text).
    let facts = changes.as_ref().and(table.facts);
    let mut stored: HashMap<String, (i64, bool, Option<String>)> = HashMap::new();
    for keys in batch.keys.chunks(PG_CHUNK_ROWS) {
        stored.extend(
            stored_hashes_pg(tx, table, source_id, keys, facts)
                .await?
                .into_iter()
                .map(|(key, hash, deleted, facts)| (key, (hash, deleted, facts))),
        );
    }

    let mut counts = Upserted::default();
    let mut new = Vec::new();
    let mut changed = Vec::new();
    for (i, key) in batch.keys.iter().enumerate() {
        let entry = stored.get(key);
        if let Some(changes) = changes.as_deref_mut() {
            let old = match entry {
                Some((hash, false, _)) if *hash == batch.hashes[i] => None,
                Some((_, false, Some(text))) => {
                    let v: Value = serde_json::from_str(text)
                        .map_err(|e| json_error("stored record", key, &e))?;
                    Some(Some(Fact::from_stored(table.name, &v)?))
                }
                _ => Some(None),
            };
            if let Some(old) = old {
                changes.replace(old, batch.fact(i)?);
            }
        }
        match entry {
            None => new.push(i),
            // Marked deleted: written again, which brings it back.
            Some(&(hash, deleted, _)) if deleted || hash != batch.hashes[i] => changed.push(i),
            Some(_) => counts.unchanged += 1,
        }
    }

    if !new.is_empty() {
        copy_pg(tx, source_id, batch, &new).await?;
        counts.new = new.len() as u64;
    }
    if !changed.is_empty() {
        let sql = pg_upsert_statement(table);
        for rows in changed.chunks(PG_CHUNK_ROWS) {
            let part = batch.select(rows);
            let lens: Vec<i32> = part.keys.iter().map(|k| id_len(k)).collect();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(source_id)
                .bind(lens)
                .bind(&part.keys);
            for values in &part.columns {
                q = match values {
                    Values::Text(v) => q.bind(v),
                    Values::Int(v) => q.bind(v),
                    Values::Bool(v) => q.bind(v),
                };
            }
            q = q.bind(&part.hashes);
            counts.updated += q.execute(&mut **tx).await?.rows_affected();
        }
    }
    Ok(counts)
}

/// The stored hashes of `keys` (sorted in key order) that exist.
///
/// First one range scan over the keys' span, stopping after twice as many rows as there are
/// keys: a load of new, increasing ids finds its span empty with one index descent, and a
/// re-sync of the same ids reads them in one sweep. A span holding more than that (random
/// ids, or a few keys spread across many stored ones) falls back to one unique-index probe
/// per key, so a call never reads more than a small multiple of its own size. In the probe,
/// `LIMIT 1` keeps the lateral subquery from being flattened into a join the planner might
/// hash, and `= ANY(keys)` was planned as a filter over the whole source while statistics
/// lagged.
async fn stored_hashes_pg(
    tx: &mut Transaction<'static, Postgres>,
    table: &TableDef,
    source_id: i64,
    keys: &[String],
    facts: Option<&str>,
) -> Result<Vec<(String, i64, bool, Option<String>)>, StoreError> {
    let (Some(first), Some(last)) = (keys.first(), keys.last()) else {
        return Ok(Vec::new());
    };
    let facts = facts.map_or_else(
        || "NULL::text".to_owned(),
        |f| format!("json_build_array({f})::text"),
    );
    let limit = keys.len() * 2;
    let range = format!(
        "SELECT external_id, hash, deleted_at IS NOT NULL, {facts} FROM {} WHERE source_id = $1 \
         AND (id_len, external_id) >= ($2, $3) AND (id_len, external_id) <= ($4, $5) LIMIT $6",
        table.name
    );
    let rows: Vec<(String, i64, bool, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(range))
        .bind(source_id)
        .bind(id_len(first))
        .bind(first)
        .bind(id_len(last))
        .bind(last)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut **tx)
        .await?;
    if rows.len() < limit {
        return Ok(rows);
    }
    let probe = format!(
        "SELECT k.id, s.hash, s.deleted, s.facts FROM UNNEST($2::int4[], $3::text[]) AS k(len, id) \
         CROSS JOIN LATERAL (SELECT hash, deleted_at IS NOT NULL AS deleted, {facts} AS facts FROM {} \
         WHERE source_id = $1 AND id_len = k.len \
         AND external_id = k.id LIMIT 1) AS s",
        table.name
    );
    let lens: Vec<i32> = keys.iter().map(|k| id_len(k)).collect();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(probe))
        .bind(source_id)
        .bind(lens)
        .bind(keys)
        .fetch_all(&mut **tx)
        .await?)
}

/// Bytes of `COPY` data sent at a time: the server parses one while the next is encoded.
const COPY_SEND_BYTES: usize = 1 << 20;

/// Writes rows `rows` of `batch` with `COPY … FROM STDIN (FORMAT binary)`: a header, then per
/// row a field count and each field as a length (-1 for NULL) and its binary value (text as
/// UTF-8, `int8` big-endian, `bool` one byte, `json` as its text).
async fn copy_pg(
    tx: &mut Transaction<'static, Postgres>,
    source_id: i64,
    batch: &Batch,
    rows: &[usize],
) -> Result<(), StoreError> {
    fn text(buf: &mut Vec<u8>, v: &str) {
        buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
        buf.extend_from_slice(v.as_bytes());
    }
    fn int(buf: &mut Vec<u8>, v: i64) {
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&v.to_be_bytes());
    }
    fn null(buf: &mut Vec<u8>) {
        buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    let table = batch.table;
    let fields = i16::try_from(table.columns.len() + 5).unwrap_or(i16::MAX);
    let mut copy = tx.copy_in_raw(&pg_copy_statement(table)).await?;
    let mut buf: Vec<u8> = Vec::with_capacity(COPY_SEND_BYTES + 64 * 1024);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes()); // flags
    buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for &r in rows {
        buf.extend_from_slice(&fields.to_be_bytes());
        int(&mut buf, source_id);
        buf.extend_from_slice(&4i32.to_be_bytes());
        buf.extend_from_slice(&id_len(&batch.keys[r]).to_be_bytes());
        text(&mut buf, &batch.keys[r]);
        for values in &batch.columns {
            match values {
                Values::Text(v) => match &v[r] {
                    None => null(&mut buf),
                    Some(s) => text(&mut buf, s),
                },
                Values::Int(v) => match v[r] {
                    None => null(&mut buf),
                    Some(i) => int(&mut buf, i),
                },
                Values::Bool(v) => match v[r] {
                    None => null(&mut buf),
                    Some(b) => {
                        buf.extend_from_slice(&1i32.to_be_bytes());
                        buf.push(u8::from(b));
                    }
                },
            }
        }
        int(&mut buf, batch.hashes[r]);
        int(&mut buf, 1);
        if buf.len() >= COPY_SEND_BYTES {
            if let Err(err) = copy.send(buf.as_slice()).await {
                let _ = copy.abort(err.to_string()).await;
                return Err(err.into());
            }
            buf.clear();
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    if let Err(err) = copy.send(buf.as_slice()).await {
        let _ = copy.abort(err.to_string()).await;
        return Err(err.into());
    }
    copy.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_duplicate_wins_and_keys_come_shortest_first_then_in_byte_order() {
        let keys = ["b", "a", "b", "c", "a", "B", "10", "9", "aa"];
        assert_eq!(last_of_each(keys.into_iter()), vec![7, 5, 4, 2, 3, 6, 8]);
    }

    #[test]
    fn counts_split_into_new_updated_and_unchanged() {
        let got = split_counts(10, 4, 7).unwrap();
        assert_eq!((got.new, got.updated, got.unchanged), (6, 1, 3));
        assert!(split_counts(10, 4, 3).is_err());
        assert!(split_counts(10, 4, 11).is_err());
    }

    #[test]
    fn sqlite_statements_bind_every_column_of_every_row() {
        let sql = sqlite_statement(&EVENTS, 2);
        // The source id once; per row the key (length, id), 4 data columns and the hash.
        assert!(sql.contains(
            "SELECT ?, column1, column2, column3, column4, column5, column6, column7, 1"
        ));
        assert!(sql.contains("(VALUES (?,?,?,?,?,?,?),(?,?,?,?,?,?,?)) WHERE true ON CONFLICT"));
    }
}
