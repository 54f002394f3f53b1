//! Per-customer totals of orders and events, kept in step with the records in the same
//! transaction as every upsert and deletion, so a run reads one row per customer and source.
//!
//! The arithmetic is the core's (`cohort_core::features::totals`); this module finds the
//! changes and moves rows:
//!
//! - The ingest reads each written key's stored version together with the lookup it makes
//!   anyway (the existing-key count on SQLite, the stored hashes on PostgreSQL), so a change
//!   costs no extra round trip to find what it replaces. A record whose content did not
//!   change contributes nothing.
//! - What was replaced and what replaces it become an [`OrderChange`] / [`EventChange`] per
//!   customer, applied to the stored totals, which are read and written once per chunk, as
//!   sets (one statement each), never row by row.
//! - When a change cannot be applied (it removes a customer's first, last or latest fact, or
//!   records are deleted), that customer is recomputed from their live records, found through
//!   the `(source_id, customer_id)` index. Exact, and rare on the hot path: a new order never
//!   needs it.
//!
//! A recompute is always correct, so whenever in doubt this module recomputes.

use std::collections::{BTreeSet, HashMap};

use cohort_core::features::{EventChange, EventTotals, OrderChange, OrderTotals};
use cohort_core::money::Money;
use cohort_core::record::{LineItem, Order, OrderFacts};
use cohort_core::time::Timestamp;
use futures_util::TryStreamExt;
use sea_orm::sqlx::{self, Postgres, Sqlite, Transaction};
use serde_json::Value;

use crate::error::StoreError;
use crate::read::in_workspace_sources;
use crate::types::Backend;

/// Customers per statement when a set of them is read or written.
const CHUNK: usize = 5_000;

/// Above this many customers touched by one ingest call, the source's totals are set aside
/// (`totals_ready = 0`) instead of kept, and rebuilt in one pass over its records when next
/// read ([`ensure_ready`]). Keeping them costs a read and a write per customer touched, about
/// what the records' own upsert costs; a bulk load touches nearly as many customers as it
/// writes records, and a rebuild reads a million orders in under a second.
const BULK_CUSTOMERS: usize = 10_000;

/// The columns of a stored record that its totals need, after its customer: what
/// [`Fact::from_stored`] decodes. `line_items` only when the order gives no item count.
pub(crate) const ORDER_FACTS: &str = "customer_id, created_at, total, refunded, item_count, \
     cancelled_at, CASE WHEN item_count = 0 THEN line_items END";
/// [`ORDER_FACTS`] for events.
pub(crate) const EVENT_FACTS: &str = "customer_id, kind, occurred_at";

/// What one record contributes to its customer's totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fact {
    /// An order (`None`: void, it counts as a record only).
    Order {
        customer: String,
        facts: Option<OrderFacts>,
    },
    /// An event.
    Event {
        customer: String,
        kind: String,
        at: Timestamp,
    },
}

fn corrupt(reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: "record",
        key: "(totals)".to_owned(),
        reason: reason.to_string(),
    }
}

impl Fact {
    /// An order's contribution from its stored columns, as [`Order::facts`] computes it.
    pub(crate) fn order(
        customer: String,
        created_at: Option<i64>,
        total: i64,
        refunded: i64,
        item_count: i64,
        cancelled_at: Option<i64>,
        line_items: Option<&Value>,
    ) -> Result<Fact, StoreError> {
        let mut order = Order {
            created_at: created_at.map(Timestamp::from_secs),
            total: Money::from_raw(total),
            refunded: Money::from_raw(refunded),
            item_count: u32::try_from(item_count).map_err(corrupt)?,
            cancelled_at: cancelled_at.map(Timestamp::from_secs),
            ..Order::default()
        };
        if order.item_count == 0 {
            order.line_items = match line_items {
                None | Some(Value::Null) => Vec::new(),
                // SQLite hands a JSON column back as its text.
                Some(Value::String(text)) => serde_json::from_str(text).map_err(corrupt)?,
                Some(v) => serde_json::from_value::<Vec<LineItem>>(v.clone()).map_err(corrupt)?,
            };
        }
        Ok(Fact::Order {
            customer,
            facts: order.facts(),
        })
    }

    /// Decodes the JSON array of a stored record's [`ORDER_FACTS`] or [`EVENT_FACTS`].
    pub(crate) fn from_stored(table: &str, v: &Value) -> Result<Fact, StoreError> {
        let at = |i: usize| v.get(i).unwrap_or(&Value::Null);
        let text = |i: usize| {
            at(i)
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| corrupt(format!("column {i} of a stored {table} row is not text")))
        };
        let int = |i: usize| at(i).as_i64();
        match table {
            "orders" => Fact::order(
                text(0)?,
                int(1),
                int(2).unwrap_or(0),
                int(3).unwrap_or(0),
                int(4).unwrap_or(0),
                int(5),
                Some(at(6)),
            ),
            _ => Ok(Fact::Event {
                customer: text(0)?,
                kind: text(1)?,
                at: Timestamp::from_secs(
                    int(2).ok_or_else(|| corrupt("an event without occurred_at"))?,
                ),
            }),
        }
    }
}

/// What one ingest changes in a source's totals: deltas per customer, and the customers to
/// recompute.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    orders: HashMap<String, OrderChange>,
    events: HashMap<(String, String), EventChange>,
    recompute: BTreeSet<String>,
}

impl Changes {
    /// Records that a record's live version `old` (`None`: there was none) became `new`.
    pub(crate) fn replace(&mut self, old: Option<Fact>, new: Fact) {
        if let Some(old) = old {
            self.count(old, true);
        }
        self.count(new, false);
    }

    /// Counts `fact` into what its customer loses (`removed`) or gains.
    fn count(&mut self, fact: Fact, removed: bool) {
        match fact {
            Fact::Order { customer, facts } => {
                let change = self.orders.entry(customer).or_default();
                if removed {
                    &mut change.removed
                } else {
                    &mut change.added
                }
                .add(facts);
            }
            Fact::Event { customer, kind, at } => {
                let change = self.events.entry((customer, kind)).or_default();
                if removed {
                    &mut change.removed
                } else {
                    &mut change.added
                }
                .add(at);
            }
        }
    }

    /// How many customers (customer and kind, for events) the changes touch.
    fn touched(&self) -> usize {
        self.orders.len() + self.events.len() + self.recompute.len()
    }

    /// Whether there is nothing to apply.
    pub(crate) fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.events.is_empty() && self.recompute.is_empty()
    }
}

/// The ingest's transaction.
pub(crate) enum Tx<'a> {
    Sqlite(&'a mut Transaction<'static, Sqlite>),
    Postgres(&'a mut Transaction<'static, Postgres>),
}

/// Applies `changes` to the totals of `table` (`orders` or `events`) of `source_id`; with
/// `swept_at`, the customers of the records deleted at that instant are recomputed too.
pub(crate) async fn apply(
    tx: &mut Tx<'_>,
    table: &str,
    source_id: i64,
    mut changes: Changes,
    swept_at: Option<i64>,
) -> Result<(), StoreError> {
    if let Some(at) = swept_at {
        changes
            .recompute
            .extend(deleted_customers(tx, table, source_id, at).await?);
    }
    if changes.is_empty() {
        return Ok(());
    }
    if changes.touched() > BULK_CUSTOMERS {
        // A bulk load: one pass over the source when the totals are next read costs less
        // than keeping them row set by row set.
        return set_ready(tx, source_id, false).await;
    }
    if table == "orders" {
        apply_orders(tx, source_id, changes).await
    } else {
        apply_events(tx, source_id, changes).await
    }
}

async fn apply_orders(tx: &mut Tx<'_>, source_id: i64, changes: Changes) -> Result<(), StoreError> {
    let Changes {
        orders,
        mut recompute,
        ..
    } = changes;
    let customers: Vec<&str> = orders
        .keys()
        .map(String::as_str)
        .filter(|c| !recompute.contains(*c))
        .collect();
    let stored = read_order_totals(tx, source_id, &customers).await?;
    let mut next: Vec<(String, OrderTotals)> = Vec::with_capacity(orders.len());
    for (customer, change) in orders {
        if recompute.contains(&customer) {
            continue;
        }
        let before = stored.get(&customer).copied().unwrap_or_default();
        match change.apply(&before) {
            Some(after) => next.push((customer, after)),
            None => {
                recompute.insert(customer);
            }
        }
    }
    let recompute: Vec<String> = recompute.into_iter().collect();
    let mut recomputed: HashMap<String, OrderTotals> = HashMap::new();
    for fact in live_facts(tx, "orders", source_id, &recompute).await? {
        if let Fact::Order { customer, facts } = fact {
            recomputed.entry(customer).or_default().add(facts);
        }
    }
    next.extend(recompute.into_iter().map(|c| {
        let t = recomputed.remove(&c).unwrap_or_default();
        (c, t)
    }));
    let (keep, gone): (Vec<_>, Vec<_>) = next.into_iter().partition(|(_, t)| !t.is_empty());
    let gone: Vec<String> = gone.into_iter().map(|(c, _)| c).collect();
    delete_customers(tx, "order_totals", source_id, &gone).await?;
    write_order_totals(tx, source_id, &keep).await
}

async fn apply_events(tx: &mut Tx<'_>, source_id: i64, changes: Changes) -> Result<(), StoreError> {
    let Changes {
        events,
        mut recompute,
        ..
    } = changes;
    let customers: BTreeSet<&str> = events
        .keys()
        .map(|(c, _)| c.as_str())
        .filter(|c| !recompute.contains(*c))
        .collect();
    let customers: Vec<&str> = customers.into_iter().collect();
    let stored = read_event_totals(tx, source_id, &customers).await?;
    let mut next: Vec<((String, String), EventTotals)> = Vec::with_capacity(events.len());
    let mut failed = BTreeSet::new();
    for ((customer, kind), change) in events {
        if recompute.contains(&customer) {
            continue;
        }
        let before = stored
            .get(&(customer.clone(), kind.clone()))
            .copied()
            .unwrap_or_default();
        match change.apply(&before) {
            Some(after) => next.push(((customer, kind), after)),
            None => {
                failed.insert(customer);
            }
        }
    }
    // A customer recomputed is recomputed whole: every kind of theirs is rewritten.
    next.retain(|((c, _), _)| !failed.contains(c));
    recompute.extend(failed);
    let recompute: Vec<String> = recompute.into_iter().collect();
    delete_customers(tx, "event_totals", source_id, &recompute).await?;
    let mut recomputed: HashMap<(String, String), EventTotals> = HashMap::new();
    for fact in live_facts(tx, "events", source_id, &recompute).await? {
        if let Fact::Event { customer, kind, at } = fact {
            recomputed.entry((customer, kind)).or_default().add(at);
        }
    }
    next.extend(recomputed);
    let (keep, gone): (Vec<_>, Vec<_>) = next.into_iter().partition(|(_, t)| t.count > 0);
    let gone: Vec<(String, String)> = gone.into_iter().map(|(k, _)| k).collect();
    delete_event_kinds(tx, source_id, &gone).await?;
    write_event_totals(tx, source_id, &keep).await
}

/// A JSON array of strings, for SQLite's `json_each`.
fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    Value::Array(
        items
            .iter()
            .map(|s| Value::String(s.as_ref().to_owned()))
            .collect(),
    )
    .to_string()
}

/// Reads a packed SQLite result: one JSON array of rows (`None`: no row at all).
fn unpack<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Vec<T>, StoreError> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(&t).map_err(corrupt),
    }
}

/// The customers of the records of `table` deleted at `at` (one pass over the source: a
/// deletion is rare, and no index covers `deleted_at`).
async fn deleted_customers(
    tx: &mut Tx<'_>,
    table: &str,
    source_id: i64,
    at: i64,
) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT DISTINCT customer_id FROM {table} WHERE source_id = $1 AND deleted_at = $2"
    );
    Ok(match tx {
        Tx::Sqlite(tx) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.replace('$', "?")))
                .bind(source_id)
                .bind(at)
                .fetch_all(&mut ***tx)
                .await?
        }
        Tx::Postgres(tx) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(source_id)
                .bind(at)
                .fetch_all(&mut ***tx)
                .await?
        }
    })
}

/// The contributions of the live records of `customers` in `table`.
async fn live_facts(
    tx: &mut Tx<'_>,
    table: &str,
    source_id: i64,
    customers: &[String],
) -> Result<Vec<Fact>, StoreError> {
    let columns = if table == "orders" {
        ORDER_FACTS
    } else {
        EVENT_FACTS
    };
    let mut facts = Vec::new();
    for part in customers.chunks(CHUNK) {
        let rows: Vec<Value> = match tx {
            Tx::Sqlite(tx) => {
                // Without `INDEXED BY` SQLite walks the whole source by its key (`source_id`
                // is the key's first column) instead of probing the customer index.
                let sql = format!(
                    "SELECT json_group_array(json_array({columns})) FROM {table} \
                     INDEXED BY {table}_customer WHERE source_id = ?1 AND deleted_at IS NULL \
                     AND customer_id IN (SELECT value FROM json_each(?2))"
                );
                let packed: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(json_list(part))
                    .fetch_one(&mut ***tx)
                    .await?;
                unpack(packed)?
            }
            Tx::Postgres(tx) => {
                // One index probe per customer, whatever the statistics say (a table just
                // bulk-loaded has none, and `= ANY` was then planned as a scan of the source).
                let sql = format!(
                    "SELECT r.facts FROM UNNEST($2::text[]) AS k(id) CROSS JOIN LATERAL \
                     (SELECT json_build_array({columns})::text AS facts FROM {table} \
                     WHERE source_id = $1 AND customer_id = k.id AND deleted_at IS NULL) AS r"
                );
                let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(part)
                    .fetch_all(&mut ***tx)
                    .await?;
                texts
                    .iter()
                    .map(|t| serde_json::from_str(t).map_err(corrupt))
                    .collect::<Result<_, _>>()?
            }
        };
        for row in &rows {
            facts.push(Fact::from_stored(table, row)?);
        }
    }
    Ok(facts)
}

/// An order totals row as stored: customer, records, orders, items, spent, first, last,
/// latest.
type OrderRow = (
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

fn order_totals_of(row: &OrderRow) -> Result<OrderTotals, StoreError> {
    let count = |n: i64| u64::try_from(n).map_err(corrupt);
    Ok(OrderTotals {
        records: count(row.1)?,
        orders: count(row.2)?,
        items: count(row.3)?,
        spent: i128::from(row.4),
        first: row.5.map(Timestamp::from_secs),
        last: row.6.map(Timestamp::from_secs),
        latest: row.7.map(Timestamp::from_secs),
    })
}

const ORDER_TOTALS_COLUMNS: &str =
    "customer_id, records, orders, items, spent, first_at, last_at, latest_at";

async fn read_order_totals(
    tx: &mut Tx<'_>,
    source_id: i64,
    customers: &[&str],
) -> Result<HashMap<String, OrderTotals>, StoreError> {
    let mut found = HashMap::with_capacity(customers.len());
    for part in customers.chunks(CHUNK) {
        let rows: Vec<OrderRow> = match tx {
            Tx::Sqlite(tx) => {
                let sql = format!(
                    "SELECT json_group_array(json_array({ORDER_TOTALS_COLUMNS})) \
                     FROM order_totals WHERE source_id = ?1 \
                     AND customer_id IN (SELECT value FROM json_each(?2))"
                );
                let packed: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(json_list(part))
                    .fetch_one(&mut ***tx)
                    .await?;
                unpack(packed)?
            }
            Tx::Postgres(tx) => {
                // A probe per customer, as in `live_facts`.
                let sql = format!(
                    "SELECT r.* FROM UNNEST($2::text[]) AS k(id) CROSS JOIN LATERAL \
                     (SELECT {ORDER_TOTALS_COLUMNS} FROM order_totals \
                     WHERE source_id = $1 AND customer_id = k.id) AS r"
                );
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(part)
                    .fetch_all(&mut ***tx)
                    .await?
            }
        };
        for row in &rows {
            found.insert(row.0.clone(), order_totals_of(row)?);
        }
    }
    Ok(found)
}

async fn write_order_totals(
    tx: &mut Tx<'_>,
    source_id: i64,
    rows: &[(String, OrderTotals)],
) -> Result<(), StoreError> {
    const SET: &str = "ON CONFLICT (source_id, customer_id) DO UPDATE SET \
        records = excluded.records, orders = excluded.orders, items = excluded.items, \
        spent = excluded.spent, first_at = excluded.first_at, last_at = excluded.last_at, \
        latest_at = excluded.latest_at";
    for part in rows.chunks(CHUNK) {
        let mut out: Vec<OrderRow> = Vec::with_capacity(part.len());
        for (customer, t) in part {
            let count = |n: u64| i64::try_from(n).map_err(corrupt);
            let spent = i64::try_from(t.spent).map_err(|_| {
                StoreError::Invalid(format!(
                    "the spend of customer `{customer}` no longer fits the store (more than \
                     922 trillion)"
                ))
            })?;
            out.push((
                customer.clone(),
                count(t.records)?,
                count(t.orders)?,
                count(t.items)?,
                spent,
                t.first.map(Timestamp::secs),
                t.last.map(Timestamp::secs),
                t.latest.map(Timestamp::secs),
            ));
        }
        match tx {
            Tx::Sqlite(tx) => {
                let json = serde_json::to_string(&out).map_err(corrupt)?;
                let sql = format!(
                    "INSERT INTO order_totals (source_id, {ORDER_TOTALS_COLUMNS}) \
                     SELECT ?1, value->>0, value->>1, value->>2, value->>3, value->>4, \
                     value->>5, value->>6, value->>7 FROM json_each(?2) WHERE true {SET}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(json)
                    .execute(&mut ***tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "INSERT INTO order_totals (source_id, {ORDER_TOTALS_COLUMNS}) \
                     SELECT $1, * FROM UNNEST($2::text[], $3::int8[], $4::int8[], $5::int8[], \
                     $6::int8[], $7::int8[], $8::int8[], $9::int8[]) {SET}"
                );
                let col = |f: fn(&OrderRow) -> Option<i64>| -> Vec<Option<i64>> {
                    out.iter().map(f).collect()
                };
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(out.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
                    .bind(col(|r| Some(r.1)))
                    .bind(col(|r| Some(r.2)))
                    .bind(col(|r| Some(r.3)))
                    .bind(col(|r| Some(r.4)))
                    .bind(col(|r| r.5))
                    .bind(col(|r| r.6))
                    .bind(col(|r| r.7))
                    .execute(&mut ***tx)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Deletes every row of `customers` from `table` (`order_totals`, `event_totals`).
async fn delete_customers(
    tx: &mut Tx<'_>,
    table: &str,
    source_id: i64,
    customers: &[String],
) -> Result<(), StoreError> {
    for part in customers.chunks(CHUNK) {
        match tx {
            Tx::Sqlite(tx) => {
                let sql = format!(
                    "DELETE FROM {table} WHERE source_id = ?1 \
                     AND customer_id IN (SELECT value FROM json_each(?2))"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(json_list(part))
                    .execute(&mut ***tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "DELETE FROM {table} WHERE source_id = $1 AND customer_id = ANY($2::text[])"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(part)
                    .execute(&mut ***tx)
                    .await?;
            }
        }
    }
    Ok(())
}

/// An event totals row as stored: customer, kind, count, last.
type EventRow = (String, String, i64, Option<i64>);

async fn read_event_totals(
    tx: &mut Tx<'_>,
    source_id: i64,
    customers: &[&str],
) -> Result<HashMap<(String, String), EventTotals>, StoreError> {
    let mut found = HashMap::with_capacity(customers.len());
    for part in customers.chunks(CHUNK) {
        let rows: Vec<EventRow> = match tx {
            Tx::Sqlite(tx) => {
                let packed: Option<String> = sqlx::query_scalar(
                    "SELECT json_group_array(json_array(customer_id, kind, count, last_at)) \
                     FROM event_totals WHERE source_id = ?1 \
                     AND customer_id IN (SELECT value FROM json_each(?2))",
                )
                .bind(source_id)
                .bind(json_list(part))
                .fetch_one(&mut ***tx)
                .await?;
                unpack(packed)?
            }
            Tx::Postgres(tx) => {
                sqlx::query_as(
                    "SELECT r.* FROM UNNEST($2::text[]) AS k(id) CROSS JOIN LATERAL \
                     (SELECT customer_id, kind, count, last_at FROM event_totals \
                     WHERE source_id = $1 AND customer_id = k.id) AS r",
                )
                .bind(source_id)
                .bind(part)
                .fetch_all(&mut ***tx)
                .await?
            }
        };
        for (customer, kind, count, last) in rows {
            let totals = EventTotals {
                count: u64::try_from(count).map_err(corrupt)?,
                last: last.map(Timestamp::from_secs),
            };
            found.insert((customer, kind), totals);
        }
    }
    Ok(found)
}

async fn write_event_totals(
    tx: &mut Tx<'_>,
    source_id: i64,
    rows: &[((String, String), EventTotals)],
) -> Result<(), StoreError> {
    const SET: &str = "ON CONFLICT (source_id, customer_id, kind) DO UPDATE SET \
        count = excluded.count, last_at = excluded.last_at";
    for part in rows.chunks(CHUNK) {
        let out: Vec<EventRow> = part
            .iter()
            .map(|((c, k), t)| {
                Ok((
                    c.clone(),
                    k.clone(),
                    i64::try_from(t.count).map_err(corrupt)?,
                    t.last.map(Timestamp::secs),
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        match tx {
            Tx::Sqlite(tx) => {
                let json = serde_json::to_string(&out).map_err(corrupt)?;
                let sql = format!(
                    "INSERT INTO event_totals (source_id, customer_id, kind, count, last_at) \
                     SELECT ?1, value->>0, value->>1, value->>2, value->>3 \
                     FROM json_each(?2) WHERE true {SET}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(json)
                    .execute(&mut ***tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                let sql = format!(
                    "INSERT INTO event_totals (source_id, customer_id, kind, count, last_at) \
                     SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::int8[]) \
                     {SET}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .bind(out.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
                    .bind(out.iter().map(|r| r.1.clone()).collect::<Vec<_>>())
                    .bind(out.iter().map(|r| r.2).collect::<Vec<_>>())
                    .bind(out.iter().map(|r| r.3).collect::<Vec<_>>())
                    .execute(&mut ***tx)
                    .await?;
            }
        }
    }
    Ok(())
}

async fn delete_event_kinds(
    tx: &mut Tx<'_>,
    source_id: i64,
    pairs: &[(String, String)],
) -> Result<(), StoreError> {
    for part in pairs.chunks(CHUNK) {
        match tx {
            Tx::Sqlite(tx) => {
                let json = serde_json::to_string(part).map_err(corrupt)?;
                sqlx::query(
                    "DELETE FROM event_totals WHERE source_id = ?1 AND (customer_id, kind) IN \
                     (SELECT value->>0, value->>1 FROM json_each(?2))",
                )
                .bind(source_id)
                .bind(json)
                .execute(&mut ***tx)
                .await?;
            }
            Tx::Postgres(tx) => {
                sqlx::query(
                    "DELETE FROM event_totals WHERE source_id = $1 AND (customer_id, kind) IN \
                     (SELECT * FROM UNNEST($2::text[], $3::text[]))",
                )
                .bind(source_id)
                .bind(part.iter().map(|p| p.0.clone()).collect::<Vec<_>>())
                .bind(part.iter().map(|p| p.1.clone()).collect::<Vec<_>>())
                .execute(&mut ***tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Whether the totals of `source_id` are kept (`totals_ready`): an ingest into a source whose
/// totals are set aside leaves them alone (its records are folded at the next rebuild).
///
/// On PostgreSQL the caller holds the source's ingest lock, so a rebuild cannot mark the
/// source ready between this read and the ingest's writes.
pub(crate) async fn is_ready(tx: &mut Tx<'_>, source_id: i64) -> Result<bool, StoreError> {
    let ready: Option<i32> = match tx {
        Tx::Sqlite(tx) => {
            sqlx::query_scalar("SELECT totals_ready FROM sources WHERE id = ?1")
                .bind(source_id)
                .fetch_optional(&mut ***tx)
                .await?
        }
        Tx::Postgres(tx) => {
            sqlx::query_scalar("SELECT totals_ready FROM sources WHERE id = $1")
                .bind(source_id)
                .fetch_optional(&mut ***tx)
                .await?
        }
    };
    Ok(ready == Some(1))
}

async fn set_ready(tx: &mut Tx<'_>, source_id: i64, ready: bool) -> Result<(), StoreError> {
    let value = i32::from(ready);
    match tx {
        Tx::Sqlite(tx) => {
            sqlx::query("UPDATE sources SET totals_ready = ?1 WHERE id = ?2")
                .bind(value)
                .bind(source_id)
                .execute(&mut ***tx)
                .await?;
        }
        Tx::Postgres(tx) => {
            sqlx::query("UPDATE sources SET totals_ready = $1 WHERE id = $2")
                .bind(value)
                .bind(source_id)
                .execute(&mut ***tx)
                .await?;
        }
    }
    Ok(())
}

/// The PostgreSQL lock an ingest of `table` into `source_id` holds (see `ingest`).
pub(crate) async fn lock_pg(
    tx: &mut Transaction<'static, Postgres>,
    table: &str,
    source_id: i64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2::text, 0))")
        .bind(table)
        .bind(source_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Rebuilds the totals of every source of `workspace` (every source, with `None`) whose
/// totals are set aside: its records predate them, or a bulk load skipped them. One
/// transaction per source, holding its ingest locks, which marks it ready.
pub(crate) async fn ensure_ready(
    db: &sea_orm::DatabaseConnection,
    workspace: Option<&str>,
) -> Result<(), StoreError> {
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let sql = if postgres {
        "SELECT id FROM sources WHERE totals_ready = 0 AND ($1::text IS NULL OR workspace_id = $1)"
    } else {
        "SELECT id FROM sources WHERE totals_ready = 0 AND (?1 IS NULL OR workspace_id = ?1)"
    };
    let sources: Vec<i64> = if postgres {
        sqlx::query_scalar(sql)
            .bind(workspace)
            .fetch_all(db.get_postgres_connection_pool())
            .await?
    } else {
        sqlx::query_scalar(sql)
            .bind(workspace)
            .fetch_all(db.get_sqlite_connection_pool())
            .await?
    };
    let rebuilt = !sources.is_empty();
    for source_id in sources {
        if postgres {
            let mut tx = db.get_postgres_connection_pool().begin().await?;
            lock_pg(&mut tx, "orders", source_id).await?;
            lock_pg(&mut tx, "events", source_id).await?;
            let mut t = Tx::Postgres(&mut tx);
            if !is_ready(&mut t, source_id).await? {
                rebuild(&mut t, source_id).await?;
                set_ready(&mut t, source_id, true).await?;
            }
            tx.commit().await?;
        } else {
            let mut tx = db
                .get_sqlite_connection_pool()
                .begin_with("BEGIN IMMEDIATE")
                .await?;
            let mut t = Tx::Sqlite(&mut tx);
            if !is_ready(&mut t, source_id).await? {
                rebuild(&mut t, source_id).await?;
                set_ready(&mut t, source_id, true).await?;
            }
            tx.commit().await?;
        }
    }
    if postgres && rebuilt {
        // A rebuild follows a bulk load: fresh statistics let the planner probe the customer
        // index for the changes that follow (with none, and autovacuum slow or off, it walked
        // whole sources per change set).
        sqlx::query("ANALYZE orders, events, order_totals, event_totals")
            .execute(db.get_postgres_connection_pool())
            .await?;
    }
    Ok(())
}

/// Recomputes every customer's totals of one source in one pass over its records.
async fn rebuild(tx: &mut Tx<'_>, source_id: i64) -> Result<(), StoreError> {
    let mut orders: HashMap<String, OrderTotals> = HashMap::new();
    let mut events: HashMap<(String, String), EventTotals> = HashMap::new();
    for table in ["orders", "events"] {
        for_each_live_fact(tx, table, source_id, |fact| match fact {
            Fact::Order { customer, facts } => orders.entry(customer).or_default().add(facts),
            Fact::Event { customer, kind, at } => {
                events.entry((customer, kind)).or_default().add(at);
            }
        })
        .await?;
    }
    for table in ["order_totals", "event_totals"] {
        let sql = format!("DELETE FROM {table} WHERE source_id = $1");
        match tx {
            Tx::Sqlite(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(sql.replace('$', "?")))
                    .bind(source_id)
                    .execute(&mut ***tx)
                    .await?;
            }
            Tx::Postgres(tx) => {
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(source_id)
                    .execute(&mut ***tx)
                    .await?;
            }
        }
    }
    let orders: Vec<(String, OrderTotals)> = orders.into_iter().collect();
    write_order_totals(tx, source_id, &orders).await?;
    let events: Vec<((String, String), EventTotals)> = events.into_iter().collect();
    write_event_totals(tx, source_id, &events).await
}

/// Calls `f` with the contribution of every live record of `table` in one source: pages of
/// packed rows on SQLite, walked by key; one streamed query on PostgreSQL.
async fn for_each_live_fact(
    tx: &mut Tx<'_>,
    table: &str,
    source_id: i64,
    mut f: impl FnMut(Fact) + Send,
) -> Result<(), StoreError> {
    let columns = if table == "orders" {
        ORDER_FACTS
    } else {
        EVENT_FACTS
    };
    match tx {
        Tx::Postgres(tx) => {
            let sql = format!(
                "SELECT json_build_array({columns})::text FROM {table} \
                 WHERE source_id = $1 AND deleted_at IS NULL"
            );
            let mut rows = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .bind(source_id)
                .fetch(&mut ***tx);
            while let Some(text) = rows.try_next().await? {
                let v: Value = serde_json::from_str(&text).map_err(corrupt)?;
                f(Fact::from_stored(table, &v)?);
            }
        }
        Tx::Sqlite(tx) => {
            let sql = format!(
                "SELECT json_group_array(json_array(id_len, external_id, json_array({columns}))) \
                 FROM (SELECT * FROM {table} WHERE source_id = ?1 AND deleted_at IS NULL \
                 AND (id_len, external_id) > (?2, ?3) ORDER BY id_len, external_id \
                 LIMIT {PAGE_ROWS})"
            );
            let mut after: (i64, String) = (-1, String::new());
            loop {
                let packed: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(source_id)
                    .bind(after.0)
                    .bind(after.1.as_str())
                    .fetch_one(&mut ***tx)
                    .await?;
                let rows: Vec<(i64, String, Value)> =
                    serde_json::from_str(&packed).map_err(corrupt)?;
                let full = rows.len() as i64 == PAGE_ROWS;
                for (len, key, facts) in rows {
                    f(Fact::from_stored(table, &facts)?);
                    after = (len, key);
                }
                if !full {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Rows per SQLite page when totals are read back: packed into one JSON array, as
/// `read` does for records (sqlx hands SQLite rows over one by one, slowly).
const PAGE_ROWS: i64 = 5_000;

/// Calls `f` with every order totals row of the workspace: source id, customer, totals.
pub(crate) async fn for_each_order_totals(
    db: &sea_orm::DatabaseConnection,
    workspace: &str,
    mut f: impl FnMut(i64, String, OrderTotals) + Send,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for_each_totals_row(
        db,
        workspace,
        "order_totals",
        ORDER_TOTALS_COLUMNS,
        |source, v| {
            let row: OrderRow = serde_json::from_value(v).map_err(corrupt)?;
            let totals = order_totals_of(&row)?;
            f(source, row.0, totals);
            n += 1;
            Ok(())
        },
    )
    .await?;
    Ok(n)
}

/// Calls `f` with every event totals row of the workspace: source id, customer, kind, totals.
pub(crate) async fn for_each_event_totals(
    db: &sea_orm::DatabaseConnection,
    workspace: &str,
    mut f: impl FnMut(i64, String, String, EventTotals) + Send,
) -> Result<u64, StoreError> {
    let mut n = 0;
    for_each_totals_row(
        db,
        workspace,
        "event_totals",
        "customer_id, kind, count, last_at",
        |source, v| {
            let (customer, kind, count, last): EventRow =
                serde_json::from_value(v).map_err(corrupt)?;
            let totals = EventTotals {
                count: u64::try_from(count).map_err(corrupt)?,
                last: last.map(Timestamp::from_secs),
            };
            f(source, customer, kind, totals);
            n += 1;
            Ok(())
        },
    )
    .await?;
    Ok(n)
}

/// Walks `table` (`order_totals`, `event_totals`) over the workspace's sources, one
/// snapshot, calling `f` with each row as a JSON array of `columns`.
async fn for_each_totals_row(
    db: &sea_orm::DatabaseConnection,
    workspace: &str,
    table: &str,
    columns: &str,
    mut f: impl FnMut(i64, Value) -> Result<(), StoreError> + Send,
) -> Result<(), StoreError> {
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        let mut tx = db.get_postgres_connection_pool().begin().await?;
        let sources = in_workspace_sources(Backend::Postgres, "t.source_id");
        let sql = format!(
            "SELECT t.source_id, json_build_array({columns})::text FROM {table} AS t \
             WHERE {sources}"
        );
        {
            let mut rows = sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(sql))
                .bind(workspace)
                .fetch(&mut *tx);
            while let Some((source, text)) = rows.try_next().await? {
                f(source, serde_json::from_str(&text).map_err(corrupt)?)?;
            }
        }
        tx.commit().await?;
        return Ok(());
    }
    let mut tx = db.get_sqlite_connection_pool().begin().await?;
    let sources: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM sources WHERE workspace_id = ?1 ORDER BY id")
            .bind(workspace)
            .fetch_all(&mut *tx)
            .await?;
    // Paged by key: `customer_id` (and `kind`, the key's last column, for events).
    let with_kind = table == "event_totals";
    let key = if with_kind {
        "(customer_id, kind) > (?2, ?3) ORDER BY customer_id, kind"
    } else {
        "customer_id > ?2 ORDER BY customer_id"
    };
    let sql = format!(
        "SELECT json_group_array(json_array({columns})) FROM \
         (SELECT * FROM {table} WHERE source_id = ?1 AND {key} LIMIT {PAGE_ROWS})"
    );
    for source in sources {
        let mut after = (String::new(), String::new());
        loop {
            let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(source)
                .bind(after.0.as_str());
            if with_kind {
                q = q.bind(after.1.as_str());
            }
            let packed = q.fetch_one(&mut *tx).await?;
            let rows: Vec<Value> = serde_json::from_str(&packed).map_err(corrupt)?;
            let full = rows.len() as i64 == PAGE_ROWS;
            for row in rows {
                let text = |i: usize| row.get(i).and_then(Value::as_str).map(str::to_owned);
                after = (text(0).unwrap_or_default(), text(1).unwrap_or_default());
                f(source, row)?;
            }
            if !full {
                break;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}
