//! The per-customer totals the store keeps equal a full recompute from the records, after any
//! sequence of inserts, updates, deletions and full passes, on SQLite and on PostgreSQL.
//!
//! Each case is a fresh workspace in one store per backend (a store per case would spend the
//! test in migrations). Keys, customers and instants come from small ranges, so that updates
//! hit existing orders, orders move between customers, and deletions remove extremes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod util;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use cohort_core::features::{EventTotals, OrderTotals};
use cohort_core::money::Money;
use cohort_core::record::{CustomerId, Event, EventKind, LineItem, Order};
use cohort_core::time::Timestamp;
use cohort_store::{Records, Store, Sweep, WorkspaceStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use util::{TestDb, workspace};

/// One step of a case.
#[derive(Debug, Clone)]
enum Step {
    /// A page of orders from a source (0 or 1).
    Orders(usize, Vec<Order>),
    /// A page of events.
    Events(usize, Vec<Event>),
    /// Orders named deleted by the source.
    DeleteOrders(usize, Vec<String>),
    /// Events named deleted.
    DeleteEvents(usize, Vec<String>),
    /// A full pass of orders in one page: every order of the source not in it is deleted.
    OrdersPass(usize, Vec<Order>),
    /// A bulk load: one order each for more customers than the store keeps totals for
    /// row set by row set, so the source's totals are set aside and rebuilt when read.
    Bulk(usize),
}

/// Customers in a [`Step::Bulk`]: above the store's threshold (10,000).
const BULK: u32 = 10_001;

fn bulk_orders() -> Vec<Order> {
    (0..BULK)
        .map(|i| Order {
            id: format!("b{i}"),
            customer_id: CustomerId::new(format!("b{i}")),
            created_at: Some(Timestamp::from_secs(1_700_000_000 + i64::from(i))),
            total: Money::from_whole(i64::from(i % 50)),
            item_count: 1,
            ..Order::default()
        })
        .collect()
}

const SOURCES: [&str; 2] = ["shop", "pos"];

fn order() -> impl Strategy<Value = Order> {
    (
        0..12u32,
        0..4u32,
        prop::option::weighted(0.85, 0..6i64),
        -3..12i64,
        0..3i64,
        0..3u32,
        prop::bool::weighted(0.15),
        prop::collection::vec(0..3u32, 0..3),
    )
        .prop_map(
            |(id, customer, at, total, refunded, items, cancelled, quantities)| Order {
                id: format!("o{id}"),
                customer_id: CustomerId::new(format!("c{customer}")),
                created_at: at.map(|d| Timestamp::from_secs(1_700_000_000 + d * 86_400)),
                total: Money::from_whole(total),
                refunded: Money::from_whole(refunded),
                item_count: items,
                cancelled_at: cancelled.then(|| Timestamp::from_secs(1_700_500_000)),
                line_items: quantities
                    .into_iter()
                    .map(|quantity| LineItem {
                        quantity,
                        ..LineItem::default()
                    })
                    .collect(),
                ..Order::default()
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    (0..10u32, 0..4u32, 0..3usize, 0..6i64).prop_map(|(id, customer, kind, at)| Event {
        id: Some(format!("e{id}")),
        customer_id: CustomerId::new(format!("c{customer}")),
        kind: [
            EventKind::EmailOpen,
            EventKind::EmailClick,
            EventKind::PageView,
        ][kind]
            .clone(),
        occurred_at: Timestamp::from_secs(1_700_000_000 + at * 3_600),
        properties: BTreeMap::new(),
    })
}

fn step() -> impl Strategy<Value = Step> {
    let source = 0..SOURCES.len();
    let ids = |prefix: &'static str, n: u32| {
        prop::collection::vec((0..n).prop_map(move |i| format!("{prefix}{i}")), 1..4)
    };
    prop_oneof![
        4 => (source.clone(), prop::collection::vec(order(), 1..6))
            .prop_map(|(s, o)| Step::Orders(s, o)),
        3 => (source.clone(), prop::collection::vec(event(), 1..6))
            .prop_map(|(s, e)| Step::Events(s, e)),
        1 => (source.clone(), ids("o", 12)).prop_map(|(s, ids)| Step::DeleteOrders(s, ids)),
        1 => (source.clone(), ids("e", 10)).prop_map(|(s, ids)| Step::DeleteEvents(s, ids)),
        1 => (source.clone(), prop::collection::vec(order(), 0..5))
            .prop_map(|(s, o)| Step::OrdersPass(s, o)),
        1 => source.prop_map(Step::Bulk),
    ]
}

async fn apply(ws: &WorkspaceStore, steps: &[Step]) {
    let cursor = json!(null);
    let bulk = bulk_orders();
    for (n, step) in steps.iter().enumerate() {
        let pass = format!("pass-{n}");
        let (source, records, sweep) = match step {
            Step::Orders(s, o) => (*s, Records::Orders(o), Sweep::NONE),
            Step::Events(s, e) => (*s, Records::Events(e), Sweep::NONE),
            Step::DeleteOrders(s, ids) => (
                *s,
                Records::Orders(&[]),
                Sweep {
                    deleted: ids,
                    ..Sweep::NONE
                },
            ),
            Step::DeleteEvents(s, ids) => (
                *s,
                Records::Events(&[]),
                Sweep {
                    deleted: ids,
                    ..Sweep::NONE
                },
            ),
            Step::Bulk(s) => (*s, Records::Orders(&bulk), Sweep::NONE),
            Step::OrdersPass(s, o) => (
                *s,
                Records::Orders(o),
                Sweep {
                    pass: Some(&pass),
                    done: true,
                    ..Sweep::NONE
                },
            ),
        };
        ws.ingest(SOURCES[source], records, &cursor, &sweep)
            .await
            .unwrap();
    }
}

type Totals = (
    BTreeMap<(String, String), OrderTotals>,
    BTreeMap<(String, String, String), EventTotals>,
);

/// What the store keeps.
async fn stored(ws: &WorkspaceStore) -> Totals {
    let mut orders = BTreeMap::new();
    ws.for_each_order_totals(|s, c, t| {
        assert!(
            orders.insert((s.to_owned(), c.to_owned()), *t).is_none(),
            "one row per source and customer"
        );
    })
    .await
    .unwrap();
    let mut events = BTreeMap::new();
    ws.for_each_event_totals(|s, c, k, t| {
        events.insert((s.to_owned(), c.to_owned(), k.to_owned()), *t);
    })
    .await
    .unwrap();
    (orders, events)
}

/// The naive reference: every live record read back and folded.
async fn recomputed(ws: &WorkspaceStore) -> Totals {
    let mut orders: BTreeMap<(String, String), OrderTotals> = BTreeMap::new();
    ws.for_each_order_by_source(|s, o| {
        orders
            .entry((s.to_owned(), o.customer_id.as_str().to_owned()))
            .or_default()
            .add(o.facts());
    })
    .await
    .unwrap();
    let mut events: BTreeMap<(String, String, String), EventTotals> = BTreeMap::new();
    ws.for_each_event_by_source(|s, e| {
        events
            .entry((
                s.to_owned(),
                e.customer_id.as_str().to_owned(),
                e.kind.as_str().to_owned(),
            ))
            .or_default()
            .add(e.occurred_at);
    })
    .await
    .unwrap();
    (orders, events)
}

fn totals_equal_a_full_recompute(db: &TestDb, rt: &tokio::runtime::Runtime) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let store: &Store = &db.store;
    let mut runner = TestRunner::new(Config {
        cases: 40,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 1..14), |steps| {
            rt.block_on(async {
                let id = format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed));
                store.ensure_workspace(&workspace(&id)).await.unwrap();
                let ws = store.workspace(&id);
                // Read halfway too: a read rebuilds totals a bulk load set aside, and the
                // steps after it must keep the rebuilt ones.
                let (first, second) = steps.split_at(steps.len() / 2);
                for done in [first, second] {
                    apply(&ws, done).await;
                    let (kept, expected) = (stored(&ws).await, recomputed(&ws).await);
                    prop_assert_eq!(kept.0, expected.0, "order totals after {:?}", steps);
                    prop_assert_eq!(kept.1, expected.1, "event totals after {:?}", steps);
                }
                Ok(())
            })
        })
        .unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn totals_equal_a_full_recompute_on_sqlite() {
    let rt = runtime();
    let db = rt.block_on(TestDb::sqlite());
    totals_equal_a_full_recompute(&db, &rt);
}

#[test]
fn totals_equal_a_full_recompute_on_postgres() {
    let rt = runtime();
    let db = rt.block_on(TestDb::postgres());
    totals_equal_a_full_recompute(&db, &rt);
    drop(db);
}
