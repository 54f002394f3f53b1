//! Reading records back in bulk, streamed.
//!
//! One query per call, read row by row as the driver receives it (PostgreSQL's protocol and
//! sqlx's bounded SQLite row channel both push back), so reading ten million orders holds a
//! handful of rows at a time, plus whatever the caller's callback keeps. Rows come in storage
//! order (by key on SQLite, heap order on PostgreSQL): no sort over millions of rows, and the
//! core's aggregates do not depend on the order.

use std::collections::BTreeMap;

use cohort_core::money::Money;
use cohort_core::record::{Customer, CustomerId, Event, EventKind, LineItem, Order};
use cohort_core::time::Timestamp;
use futures_util::TryStreamExt;
use sea_orm::{DatabaseConnection, QueryResult, Statement, StreamTrait};

use crate::error::StoreError;
use crate::types::Backend;

fn corrupt(what: &'static str, key: &str, reason: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what,
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

/// JSON columns as text: PostgreSQL's `json` is cast (it keeps the text), SQLite stores text.
fn json_text(backend: Backend, column: &str) -> String {
    match backend {
        Backend::Sqlite => column.to_owned(),
        Backend::Postgres => format!("{column}::text"),
    }
}

fn statement(backend: Backend, sql: String, workspace: &str) -> Statement {
    let db_backend = match backend {
        Backend::Sqlite => sea_orm::DbBackend::Sqlite,
        Backend::Postgres => sea_orm::DbBackend::Postgres,
    };
    Statement::from_sql_and_values(db_backend, sql, [workspace.into()])
}

/// The filter that scopes a record table to the workspace bound as the one parameter: its
/// rows are those of the workspace's sources.
fn of_workspace(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "source_id IN (SELECT id FROM sources WHERE workspace_id = ?)",
        Backend::Postgres => "source_id IN (SELECT id FROM sources WHERE workspace_id = $1)",
    }
}

async fn for_each_row(
    db: &DatabaseConnection,
    stmt: Statement,
    mut f: impl FnMut(QueryResult) -> Result<(), StoreError> + Send,
) -> Result<u64, StoreError> {
    let mut rows = db.stream_raw(stmt).await?;
    let mut n = 0u64;
    while let Some(row) = rows.try_next().await? {
        f(row)?;
        n += 1;
    }
    Ok(n)
}

pub(crate) async fn for_each_customer(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
    mut f: impl FnMut(Customer) + Send,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT external_id, {} FROM customers WHERE {}",
        json_text(backend, "data"),
        of_workspace(backend)
    );
    for_each_row(db, statement(backend, sql, workspace), |row| {
        let key: String = row.try_get_by_index(0)?;
        let data: String = row.try_get_by_index(1)?;
        let customer: Customer =
            serde_json::from_str(&data).map_err(|e| corrupt("customer", &key, &e))?;
        f(customer);
        Ok(())
    })
    .await
}

pub(crate) async fn for_each_order(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
    mut f: impl FnMut(Order) + Send,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT external_id, customer_id, created_at, total, refunded, currency, item_count, \
         cancelled_at, {} FROM orders WHERE {}",
        json_text(backend, "line_items"),
        of_workspace(backend)
    );
    for_each_row(db, statement(backend, sql, workspace), |row| {
        let id: String = row.try_get_by_index(0)?;
        let line_items: Option<String> = row.try_get_by_index(8)?;
        let line_items: Vec<LineItem> = match line_items {
            Some(text) => serde_json::from_str(&text).map_err(|e| corrupt("order", &id, &e))?,
            None => Vec::new(),
        };
        let item_count: i64 = row.try_get_by_index(6)?;
        let order = Order {
            customer_id: CustomerId::new(row.try_get_by_index::<String>(1)?),
            created_at: row
                .try_get_by_index::<Option<i64>>(2)?
                .map(Timestamp::from_secs),
            total: Money::from_raw(row.try_get_by_index(3)?),
            refunded: Money::from_raw(row.try_get_by_index(4)?),
            currency: row.try_get_by_index(5)?,
            item_count: u32::try_from(item_count).map_err(|e| corrupt("order", &id, &e))?,
            cancelled_at: row
                .try_get_by_index::<Option<i64>>(7)?
                .map(Timestamp::from_secs),
            line_items,
            id,
        };
        f(order);
        Ok(())
    })
    .await
}

pub(crate) async fn for_each_event(
    db: &DatabaseConnection,
    backend: Backend,
    workspace: &str,
    mut f: impl FnMut(Event) + Send,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT external_id, customer_id, kind, occurred_at, {} FROM events \
         WHERE {}",
        json_text(backend, "properties"),
        of_workspace(backend)
    );
    for_each_row(db, statement(backend, sql, workspace), |row| {
        let id: String = row.try_get_by_index(0)?;
        let kind: String = row.try_get_by_index(2)?;
        // serde, not EventKind::parse: the stored name round-trips exactly, unknown kinds too.
        let kind: EventKind = serde_json::from_value(serde_json::Value::String(kind))
            .map_err(|e| corrupt("event", &id, &e))?;
        let properties: String = row.try_get_by_index(4)?;
        let properties: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&properties).map_err(|e| corrupt("event", &id, &e))?;
        let event = Event {
            customer_id: CustomerId::new(row.try_get_by_index::<String>(1)?),
            kind,
            occurred_at: Timestamp::from_secs(row.try_get_by_index(3)?),
            properties,
            id: Some(id),
        };
        f(event);
        Ok(())
    })
    .await
}
