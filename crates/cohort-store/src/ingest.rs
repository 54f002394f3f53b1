//! Bulk upserts of records, with the stream cursor saved in the same transaction.
//!
//! Records are turned into columns once, then written in multi-row statements: on SQLite a
//! `VALUES` list sized to its 32766-parameter limit, on PostgreSQL one `UNNEST` of typed arrays
//! per chunk (a handful of parameters whatever the row count, and one plan). Both upsert on
//! (workspace, source, external id) and rewrite a row only when its content hash changed;
//! `RETURNING revision` tells new rows (revision 1) from rewritten ones, and whatever was not
//! returned was unchanged. sqlx is used directly here (sea-orm's own driver, through its
//! pool) because sea-orm's array values cannot carry NULL elements.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::Utc;
use cohort_core::record::{Customer, Event, Order};
use sea_orm::sqlx::{self, Postgres, Sqlite, Transaction};
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::error::StoreError;
use crate::types::{Backend, StreamKind, Upserted};

/// SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` since 3.32.
const SQLITE_MAX_PARAMS: usize = 32_766;
/// Rows per `UNNEST` statement on PostgreSQL: large enough to amortise the round trip, small
/// enough that one statement's arrays stay a few megabytes.
const PG_CHUNK_ROWS: usize = 10_000;

/// The SQL type family of a data column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int,
    Bool,
    /// JSON, carried as text and cast to `jsonb` on PostgreSQL.
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
};

const EVENTS: TableDef = TableDef {
    name: "events",
    columns: &[
        col("customer_id", Kind::Text),
        col("kind", Kind::Text),
        col("occurred_at", Kind::Int),
        col("properties", Kind::Json),
    ],
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
}

fn json_error(what: &'static str, key: &str, err: &serde_json::Error) -> StoreError {
    StoreError::Invalid(format!("{what} `{key}` cannot be serialised: {err}"))
}

/// The hash stored beside a record: the first 64 bits of XXH3 over its canonical JSON.
fn content_hash(bytes: &[u8]) -> i64 {
    i64::from_ne_bytes(xxh3_64(bytes).to_ne_bytes())
}

/// Indices of `keys` keeping only the last occurrence of each key, in first-seen order:
/// PostgreSQL refuses to upsert the same row twice in one statement, and the last version a
/// source sent is the one that counts.
fn last_of_each<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut order = Vec::new();
    for (i, key) in keys.enumerate() {
        match seen.get_mut(key) {
            Some(slot) => order[*slot] = i,
            None => {
                seen.insert(key, order.len());
                order.push(i);
            }
        }
    }
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

/// Writes `batch` for (workspace, source) and saves the stream's cursor, in one transaction.
pub(crate) async fn ingest(
    db: &sea_orm::DatabaseConnection,
    backend: Backend,
    workspace: &str,
    source: &str,
    stream: StreamKind,
    batch: &Batch,
    cursor: &Value,
) -> Result<Upserted, StoreError> {
    let cursor = serde_json::to_string(cursor)
        .map_err(|e| StoreError::Invalid(format!("cursor cannot be serialised: {e}")))?;
    match backend {
        Backend::Sqlite => {
            // IMMEDIATE takes the write lock up front (waiting out the busy timeout): a
            // deferred transaction that reads first may be refused the upgrade to writing.
            let mut tx = db
                .get_sqlite_connection_pool()
                .begin_with("BEGIN IMMEDIATE")
                .await?;
            ensure_workspace_sqlite(&mut tx, workspace).await?;
            let counts = upsert_sqlite(&mut tx, workspace, source, batch).await?;
            sqlx::query(
                "INSERT INTO source_cursors (workspace_id, source, stream, cursor, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (workspace_id, source, stream) \
                 DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(source)
            .bind(stream.as_str())
            .bind(&cursor)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(counts)
        }
        Backend::Postgres => {
            let mut tx = db.get_postgres_connection_pool().begin().await?;
            ensure_workspace_pg(&mut tx, workspace).await?;
            let counts = upsert_pg(&mut tx, workspace, source, batch).await?;
            sqlx::query(
                "INSERT INTO source_cursors (workspace_id, source, stream, cursor, updated_at) \
                 VALUES ($1, $2, $3, $4::jsonb, $5) ON CONFLICT (workspace_id, source, stream) \
                 DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )
            .bind(workspace)
            .bind(source)
            .bind(stream.as_str())
            .bind(&cursor)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(counts)
        }
    }
}

async fn ensure_workspace_sqlite(
    tx: &mut Transaction<'static, Sqlite>,
    workspace: &str,
) -> Result<(), StoreError> {
    let found = sqlx::query("SELECT 1 FROM workspaces WHERE id = ?1")
        .bind(workspace)
        .fetch_optional(&mut **tx)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::UnknownWorkspace(workspace.to_owned()))
}

async fn ensure_workspace_pg(
    tx: &mut Transaction<'static, Postgres>,
    workspace: &str,
) -> Result<(), StoreError> {
    let found = sqlx::query("SELECT 1 FROM workspaces WHERE id = $1")
        .bind(workspace)
        .fetch_optional(&mut **tx)
        .await?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::UnknownWorkspace(workspace.to_owned()))
}

/// `SET c = excluded.c, …` and the conflict clause shared by both backends.
fn on_conflict_clause(table: &TableDef, sql: &mut String) {
    sql.push_str(" ON CONFLICT (workspace_id, source, external_id) DO UPDATE SET ");
    for c in table.columns {
        let _ = write!(sql, "{0} = excluded.{0}, ", c.name);
    }
    let _ = write!(
        sql,
        "hash = excluded.hash, revision = {0}.revision + 1 WHERE {0}.hash <> excluded.hash \
         RETURNING revision",
        table.name
    );
}

fn insert_head(table: &TableDef, sql: &mut String) {
    let _ = write!(
        sql,
        "INSERT INTO {} (workspace_id, source, external_id",
        table.name
    );
    for c in table.columns {
        let _ = write!(sql, ", {}", c.name);
    }
    sql.push_str(", hash, revision) ");
}

/// Placeholders are plain `?`: SQLite looks each numbered `?NNN` up in a list, which made a
/// 30,000-parameter statement quadratic to prepare. So workspace and source are bound on
/// every row.
fn sqlite_statement(table: &TableDef, rows: usize) -> String {
    let mut row = String::from("(?,?,?");
    for _ in 0..table.columns.len() + 1 {
        row.push_str(",?");
    }
    row.push_str(",1)");
    let mut sql = String::with_capacity(256 + rows * (row.len() + 1));
    insert_head(table, &mut sql);
    sql.push_str("VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push_str(&row);
    }
    on_conflict_clause(table, &mut sql);
    sql
}

fn count(revisions: &[i64], rows: usize) -> Upserted {
    let new = revisions.iter().filter(|&&r| r == 1).count() as u64;
    let updated = revisions.len() as u64 - new;
    Upserted {
        new,
        updated,
        unchanged: rows as u64 - new - updated,
    }
}

async fn upsert_sqlite(
    tx: &mut Transaction<'static, Sqlite>,
    workspace: &str,
    source: &str,
    batch: &Batch,
) -> Result<Upserted, StoreError> {
    let per_row = batch.table.columns.len() + 4;
    let chunk = SQLITE_MAX_PARAMS / per_row;
    let mut total = Upserted::default();
    let mut full_sql: Option<String> = None;
    let mut start = 0;
    while start < batch.len() {
        let end = (start + chunk).min(batch.len());
        let rows = end - start;
        let partial;
        let sql = if rows == chunk {
            full_sql.get_or_insert_with(|| sqlite_statement(batch.table, chunk))
        } else {
            partial = sqlite_statement(batch.table, rows);
            &partial
        };
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.as_str()));
        for r in start..end {
            q = q.bind(workspace).bind(source).bind(batch.keys[r].as_str());
            for values in &batch.columns {
                q = match values {
                    Values::Text(v) => q.bind(v[r].as_deref()),
                    Values::Int(v) => q.bind(v[r]),
                    Values::Bool(v) => q.bind(v[r]),
                };
            }
            q = q.bind(batch.hashes[r]);
        }
        let revisions = q.fetch_all(&mut **tx).await?;
        total += count(&revisions, rows);
        start = end;
    }
    Ok(total)
}

fn pg_statement(table: &TableDef) -> String {
    let mut sql = String::with_capacity(1024);
    insert_head(table, &mut sql);
    sql.push_str("SELECT $1, $2, u.external_id");
    for c in table.columns {
        match c.kind {
            Kind::Json => {
                let _ = write!(sql, ", u.{0}::jsonb", c.name);
            }
            _ => {
                let _ = write!(sql, ", u.{0}", c.name);
            }
        }
    }
    sql.push_str(", u.hash, 1 FROM UNNEST($3::text[]");
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
        ", ${}::int8[]) AS u(external_id",
        table.columns.len() + 4
    );
    for c in table.columns {
        let _ = write!(sql, ", {}", c.name);
    }
    sql.push_str(", hash)");
    on_conflict_clause(table, &mut sql);
    sql
}

async fn upsert_pg(
    tx: &mut Transaction<'static, Postgres>,
    workspace: &str,
    source: &str,
    batch: &Batch,
) -> Result<Upserted, StoreError> {
    let sql = pg_statement(batch.table);
    let mut total = Upserted::default();
    let mut start = 0;
    while start < batch.len() {
        let end = (start + PG_CHUNK_ROWS).min(batch.len());
        let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(workspace)
            .bind(source)
            .bind(&batch.keys[start..end]);
        for values in &batch.columns {
            q = match values {
                Values::Text(v) => q.bind(&v[start..end]),
                Values::Int(v) => q.bind(&v[start..end]),
                Values::Bool(v) => q.bind(&v[start..end]),
            };
        }
        q = q.bind(&batch.hashes[start..end]);
        let revisions = q.fetch_all(&mut **tx).await?;
        total += count(&revisions, end - start);
        start = end;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_duplicate_wins_in_first_seen_order() {
        let keys = ["a", "b", "a", "c", "b"];
        assert_eq!(last_of_each(keys.into_iter()), vec![2, 4, 3]);
    }

    #[test]
    fn sqlite_statements_bind_every_column_of_every_row() {
        let sql = sqlite_statement(&EVENTS, 2);
        // workspace, source, external id, 4 data columns, hash; revision is the literal 1.
        assert!(sql.contains("VALUES (?,?,?,?,?,?,?,?,1),(?,?,?,?,?,?,?,?,1) ON CONFLICT"));
    }
}
