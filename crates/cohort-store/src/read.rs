//! Reading records back in bulk, streamed.
//!
//! Memory stays flat whatever the number of records: a call holds one page (SQLite) or a
//! handful of rows (PostgreSQL) at a time, plus whatever the caller's callback keeps. Rows come
//! in storage order (by source and key on SQLite, heap order on PostgreSQL): no sort over
//! millions of rows, and the core's aggregates do not depend on the order.
//!
//! - PostgreSQL: one query, read row by row as the protocol delivers it.
//! - SQLite: pages of [`SQLITE_PAGE_ROWS`] records, each packed by SQLite into one JSON array
//!   (`json_group_array`) and parsed here with serde, walked by key (`(id_len, external_id) >
//!   last`) inside one read transaction, so the pages form one snapshot. sqlx runs SQLite on a
//!   worker thread and hands every result row to the caller separately, with a wake-up and
//!   an allocation per column; row by row, ten million orders took about a minute, most of
//!   it in that hand-over.

use std::collections::BTreeMap;

use cohort_core::money::Money;
use cohort_core::record::{Customer, CustomerId, Event, EventKind, LineItem, Order};
use cohort_core::time::Timestamp;
use futures_util::TryStreamExt;
use sea_orm::sqlx::{self, Sqlite, Transaction};
use sea_orm::{DatabaseConnection, QueryResult, Statement, StreamTrait};
use serde::de::DeserializeOwned;

use crate::error::StoreError;
use crate::types::Backend;

/// SQL saying that `column` names one of the workspace's sources, the workspace's id being the
/// statement's first parameter.
///
/// On PostgreSQL the ids are read first, as an array (`= ANY(ARRAY(…))`), rather than joined
/// (`IN (SELECT …)`). Without statistics (a new store before its first `ANALYZE`, which
/// autovacuum runs only after its naptime) the planner joins the two by scanning every
/// workspace's rows in parallel; measured on the daemon bench's store (1,000 workspaces), the
/// first minute read 74 million customer rows that way. A known array of ids is always looked
/// up through the table's primary key, which starts with `source_id`, whatever the
/// statistics say.
pub(crate) fn in_workspace_sources(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Postgres => {
            format!("{column} = ANY(ARRAY(SELECT id FROM sources WHERE workspace_id = $1))")
        }
        Backend::Sqlite => format!("{column} IN (SELECT id FROM sources WHERE workspace_id = ?1)"),
    }
}

fn corrupt(what: &'static str, key: &str, reason: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

/// PostgreSQL: streams `SELECT {columns} FROM {table}` over the workspace's sources, calling
/// `f` with each row's source id and the row as it arrives; `columns` start at index 1 (the
/// source id is 0). JSON columns are selected as `::text` (`json` keeps the text as sent).
async fn for_each_pg_row(
    db: &DatabaseConnection,
    workspace: &str,
    table: &str,
    filter: &str,
    columns: &str,
    mut f: impl FnMut(i64, QueryResult) -> Result<(), StoreError> + Send,
) -> Result<u64, StoreError> {
    let sources = in_workspace_sources(Backend::Postgres, "source_id");
    let sql = format!(
        "SELECT source_id, {columns} FROM {table} WHERE {sources} AND deleted_at IS NULL{filter}"
    );
    let stmt =
        Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, [workspace.into()]);
    let mut rows = db.stream_raw(stmt).await?;
    let mut n = 0u64;
    while let Some(row) = rows.try_next().await? {
        let source: i64 = row.try_get_by_index(0)?;
        f(source, row)?;
        n += 1;
    }
    Ok(n)
}

/// Records per SQLite page: a few hundred kilobytes of JSON.
const SQLITE_PAGE_ROWS: i64 = 2_000;

/// Walks every record of `table` in the workspace's sources, a page at a time, calling `f`
/// with each decoded row and its source id. `fields` are the SQL expressions packed into each row's JSON array
/// after its key; `T` decodes `[id_len, external_id, fields…]`, and `key` returns its
/// (id_len, external_id) to continue from.
async fn for_each_sqlite_page<T: DeserializeOwned>(
    db: &DatabaseConnection,
    workspace: &str,
    table: &str,
    filter: &str,
    fields: &str,
    key: fn(&T) -> (i32, &str),
    mut f: impl FnMut(i64, T) -> Result<(), StoreError> + Send,
) -> Result<u64, StoreError> {
    let mut tx: Transaction<'static, Sqlite> = db.get_sqlite_connection_pool().begin().await?;
    let sources: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM sources WHERE workspace_id = ?1 ORDER BY id")
            .bind(workspace)
            .fetch_all(&mut *tx)
            .await?;
    let page = |after: bool| {
        format!(
            "SELECT json_group_array(json_array(id_len, external_id, {fields})) FROM \
             (SELECT * FROM {table} WHERE source_id = ?1 AND deleted_at IS NULL{filter}{} \
             ORDER BY id_len, external_id \
             LIMIT {SQLITE_PAGE_ROWS})",
            if after {
                " AND (id_len, external_id) > (?2, ?3)"
            } else {
                ""
            }
        )
    };
    let (first, next) = (page(false), page(true));
    let mut n = 0u64;
    for source in sources {
        let mut last: Option<(i32, String)> = None;
        loop {
            let json: String = match &last {
                None => sqlx::query_scalar(sqlx::AssertSqlSafe(first.as_str())).bind(source),
                Some((len, id)) => sqlx::query_scalar(sqlx::AssertSqlSafe(next.as_str()))
                    .bind(source)
                    .bind(*len)
                    .bind(id.as_str()),
            }
            .fetch_one(&mut *tx)
            .await?;
            let rows: Vec<T> = serde_json::from_str(&json).map_err(|e| {
                let after = last.as_ref().map_or("the start", |(_, id)| id.as_str());
                corrupt("page", &format!("{table} after {after}"), &e)
            })?;
            let full = rows.len() as i64 == SQLITE_PAGE_ROWS;
            last = rows.last().map(|r| {
                let (len, id) = key(r);
                (len, id.to_owned())
            });
            for row in rows {
                f(source, row)?;
                n += 1;
            }
            if !full {
                break;
            }
        }
    }
    tx.commit().await?;
    Ok(n)
}

/// A customer page row: key, then the stored record.
#[derive(serde::Deserialize)]
struct CustomerRow(i32, String, Customer);

/// An order page row: key, then the columns `for_each_order` selects on PostgreSQL.
#[derive(serde::Deserialize)]
struct OrderRow(
    i32,
    String,
    String,
    Option<i64>,
    i64,
    i64,
    Option<String>,
    i64,
    Option<i64>,
    Option<Vec<LineItem>>,
);

/// An event page row: key, customer, kind, instant, properties.
#[derive(serde::Deserialize)]
struct EventRow(
    i32,
    String,
    String,
    EventKind,
    i64,
    BTreeMap<String, serde_json::Value>,
);

impl EventRow {
    fn into_event(self) -> Event {
        let EventRow(_, id, customer, kind, at, properties) = self;
        Event {
            customer_id: CustomerId::new(customer),
            kind,
            occurred_at: Timestamp::from_secs(at),
            properties,
            id: Some(id),
        }
    }
}

pub(crate) async fn for_each_customer(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
    mut f: impl FnMut(i64, Customer) + Send,
) -> Result<u64, StoreError> {
    if backend == Backend::Sqlite {
        return for_each_sqlite_page(
            db,
            workspace,
            "customers",
            "",
            "json(data)",
            |r: &CustomerRow| (r.0, &r.1),
            |source, r| {
                f(source, r.2);
                Ok(())
            },
        )
        .await;
    }
    for_each_pg_row(
        db,
        workspace,
        "customers",
        "",
        "external_id, data::text",
        |source, row| {
            let key: String = row.try_get_by_index(1)?;
            let data: String = row.try_get_by_index(2)?;
            let customer: Customer =
                serde_json::from_str(&data).map_err(|e| corrupt("customer", &key, &e))?;
            f(source, customer);
            Ok(())
        },
    )
    .await
}

impl OrderRow {
    fn into_order(self) -> Result<Order, StoreError> {
        let OrderRow(_, id, customer, created, total, refunded, currency, items, cancelled, lines) =
            self;
        Ok(Order {
            customer_id: CustomerId::new(customer),
            created_at: created.map(Timestamp::from_secs),
            total: Money::from_raw(total),
            refunded: Money::from_raw(refunded),
            currency,
            item_count: u32::try_from(items).map_err(|e| corrupt("order", &id, &e))?,
            cancelled_at: cancelled.map(Timestamp::from_secs),
            line_items: lines.unwrap_or_default(),
            id,
        })
    }
}

pub(crate) async fn for_each_order(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
    mut f: impl FnMut(i64, Order) + Send,
) -> Result<u64, StoreError> {
    if backend == Backend::Sqlite {
        return for_each_sqlite_page(
            db,
            workspace,
            "orders",
            "",
            "customer_id, created_at, total, refunded, currency, item_count, cancelled_at, \
             json(line_items)",
            |r: &OrderRow| (r.0, &r.1),
            |source, row| {
                f(source, row.into_order()?);
                Ok(())
            },
        )
        .await;
    }
    let columns = "external_id, customer_id, created_at, total, refunded, currency, item_count, \
                   cancelled_at, line_items::text";
    for_each_pg_row(db, workspace, "orders", "", columns, |source, row| {
        let id: String = row.try_get_by_index(1)?;
        let line_items: Option<String> = row.try_get_by_index(9)?;
        let line_items: Option<Vec<LineItem>> = match line_items {
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| corrupt("order", &id, &e))?),
            None => None,
        };
        let row = OrderRow(
            0, // the key's length: only SQLite's pages continue from it
            id,
            row.try_get_by_index(2)?,
            row.try_get_by_index(3)?,
            row.try_get_by_index(4)?,
            row.try_get_by_index(5)?,
            row.try_get_by_index(6)?,
            row.try_get_by_index(7)?,
            row.try_get_by_index(8)?,
            line_items,
        );
        f(source, row.into_order()?);
        Ok(())
    })
    .await
}

pub(crate) async fn for_each_event(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
    filter: &str,
    mut f: impl FnMut(i64, Event) + Send,
) -> Result<u64, StoreError> {
    if backend == Backend::Sqlite {
        return for_each_sqlite_page(
            db,
            workspace,
            "events",
            filter,
            "customer_id, kind, occurred_at, json(properties)",
            |r: &EventRow| (r.0, &r.1),
            |source, row| {
                f(source, row.into_event());
                Ok(())
            },
        )
        .await;
    }
    let columns = "external_id, customer_id, kind, occurred_at, properties::text";
    for_each_pg_row(db, workspace, "events", filter, columns, |source, row| {
        let id: String = row.try_get_by_index(1)?;
        let kind: String = row.try_get_by_index(3)?;
        // serde, not EventKind::parse: the stored name round-trips exactly, unknown kinds too.
        let kind: EventKind = serde_json::from_value(serde_json::Value::String(kind))
            .map_err(|e| corrupt("event", &id, &e))?;
        let properties: String = row.try_get_by_index(5)?;
        let properties: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&properties).map_err(|e| corrupt("event", &id, &e))?;
        let row = EventRow(
            0, // the key's length: only SQLite's pages continue from it
            id,
            row.try_get_by_index(2)?,
            kind,
            row.try_get_by_index(4)?,
            properties,
        );
        f(source, row.into_event());
        Ok(())
    })
    .await
}

/// Ids of customers marked deleted in some source and live in none.
pub(crate) async fn deleted_customers(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let sources = in_workspace_sources(backend, "source_id");
    let sql = format!(
        "SELECT external_id FROM customers WHERE {sources} AND deleted_at IS NOT NULL \
         EXCEPT SELECT external_id FROM customers WHERE {sources} AND deleted_at IS NULL"
    );
    let ids: Vec<String> = match backend {
        Backend::Sqlite => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(workspace)
                .fetch_all(db.get_sqlite_connection_pool())
                .await?
        }
        Backend::Postgres => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(workspace)
                .fetch_all(db.get_postgres_connection_pool())
                .await?
        }
    };
    Ok(ids.into_iter().collect())
}
