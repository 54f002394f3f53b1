//! A reused result never outlives the clock: a run whose clock reaches the instant the last
//! result stood until computes, and sees what changed at that very instant. The engine on a
//! SQLite store with an injected clock; records are ingested straight into the store.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cohort_core::{Customer, CustomerId, Event, EventKind, Money, Order, Timestamp};
use cohort_engine::{Engine, FixedClock, Quiet, RunOptions, RunSummary, job_plan};
use serde_json::json;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn order(id: &str, customer: &str, created: &str) -> Order {
    Order {
        id: id.to_owned(),
        customer_id: CustomerId::new(customer),
        created_at: Some(ts(created)),
        total: Money::from_whole(20),
        currency: None,
        item_count: 1,
        line_items: Vec::new(),
        cancelled_at: None,
        refunded: Money::ZERO,
    }
}

struct Shop {
    _dir: tempfile::TempDir,
    config: cohort_config::Config,
    clock: FixedClock,
}

impl Shop {
    /// Ann last bought on 2024-04-02 at 20:00, Bob on 2024-06-01; Bob opened an email on
    /// 2024-06-10 at 08:00. Segments: bought in the last 90 days, opened in the last 30.
    async fn new(now: &str) -> (Shop, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let toml = format!(
            r#"
[store]
url = "sqlite://{}/cohort.db?mode=rwc"

[workspace]
id = "shop"
timezone = "UTC"

[[segments]]
name = "recent"
where = "last_order_at > -90d"

[[segments]]
name = "engaged"
where = "email_opens_30d >= 1"
"#,
            dir.path().display()
        );
        let path = dir.path().join("cohort.toml");
        let config =
            cohort_config::load_str(&[(Path::new(&path), toml.as_str())], &BTreeMap::new())
                .unwrap();
        let clock = FixedClock::at(at(now));
        let engine = Engine::open(&config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let ws = engine.workspace(&config.workspaces[0]).await.unwrap();
        let customers = [Customer::new("ann"), Customer::new("bob")];
        ws.ingest_customers("shop", &customers, &json!({}))
            .await
            .unwrap();
        let orders = [
            order("1", "ann", "2024-04-02T20:00:00Z"),
            order("2", "bob", "2024-06-01T00:00:00Z"),
        ];
        ws.ingest_orders("shop", &orders, &json!({})).await.unwrap();
        let opened = Event {
            id: Some("e1".to_owned()),
            customer_id: CustomerId::new("bob"),
            kind: EventKind::EmailOpen,
            occurred_at: ts("2024-06-10T08:00:00Z"),
            properties: BTreeMap::new(),
        };
        ws.ingest_events("shop", &[opened], &json!({}))
            .await
            .unwrap();
        let shop = Shop {
            _dir: dir,
            config,
            clock,
        };
        (shop, engine)
    }

    async fn run_at(&self, engine: &Engine, now: &str) -> RunSummary {
        self.clock.set(at(now));
        let workspace = &self.config.workspaces[0];
        let plan = job_plan(workspace, None).unwrap();
        let done = engine
            .run(workspace, &plan, &RunOptions::default(), Arc::new(Quiet))
            .await
            .unwrap();
        assert!(done.error.is_none(), "{:?}", done.error);
        done.summary
    }
}

fn members(s: &RunSummary, segment: &str) -> u64 {
    s.segments
        .iter()
        .find(|x| x.name == segment)
        .unwrap()
        .members
}

#[tokio::test]
async fn a_result_is_reused_until_a_relative_date_bound_crosses_a_customer_and_not_a_second_longer()
{
    let (shop, engine) = Shop::new("2024-07-01T15:30:00Z").await;
    let first = shop.run_at(&engine, "2024-07-01T15:30:00Z").await;
    assert_eq!(first.reused, None);
    assert_eq!(members(&first, "recent"), 2);

    // Ann's last order leaves the 90 days at 2024-07-01T20:00:00Z.
    let before = shop.run_at(&engine, "2024-07-01T19:59:59Z").await;
    let reused = before.reused.as_ref().expect("reused");
    assert_eq!(reused.run, 1);
    assert_eq!(reused.stable_until, "2024-07-01T20:00:00Z");

    let crossing = shop.run_at(&engine, "2024-07-01T20:00:00Z").await;
    assert_eq!(crossing.reused, None, "the clock reached the bound");
    assert_eq!(members(&crossing, "recent"), 1);
    let recent = crossing
        .segments
        .iter()
        .find(|x| x.name == "recent")
        .unwrap();
    assert_eq!(recent.removed, 1);
}

#[tokio::test]
async fn an_event_leaving_its_window_ends_the_result_and_so_does_midnight() {
    let (shop, engine) = Shop::new("2024-07-09T12:00:00Z").await;
    let first = shop.run_at(&engine, "2024-07-09T12:00:00Z").await;
    assert_eq!(members(&first, "engaged"), 1);
    // Without the open, the next thing a clock changes is the day (midnight, UTC).
    let later = shop.run_at(&engine, "2024-07-09T23:59:59Z").await;
    assert_eq!(
        later.reused.as_ref().map(|r| r.stable_until.as_str()),
        Some("2024-07-10T00:00:00Z")
    );
    let next_day = shop.run_at(&engine, "2024-07-10T00:00:00Z").await;
    assert_eq!(next_day.reused, None);
    // Bob's open leaves the 30 days at 2024-07-10T08:00:00Z.
    let reused = shop.run_at(&engine, "2024-07-10T07:00:00Z").await;
    assert_eq!(
        reused.reused.as_ref().map(|r| r.stable_until.as_str()),
        Some("2024-07-10T08:00:00Z")
    );
    let left = shop.run_at(&engine, "2024-07-10T08:00:00Z").await;
    assert_eq!(left.reused, None);
    assert_eq!(members(&left, "engaged"), 0);
}

#[tokio::test]
async fn a_new_record_ends_the_result_at_once() {
    let (shop, engine) = Shop::new("2024-07-01T10:00:00Z").await;
    shop.run_at(&engine, "2024-07-01T10:00:00Z").await;
    let ws = engine.workspace(&shop.config.workspaces[0]).await.unwrap();
    let orders = [order("3", "ann", "2024-07-01T09:00:00Z")];
    ws.ingest_orders("shop", &orders, &json!({})).await.unwrap();
    let after = shop.run_at(&engine, "2024-07-01T10:00:01Z").await;
    assert_eq!(after.reused, None);
    // The same order sent again changes nothing: the next run reuses.
    ws.ingest_orders("shop", &orders, &json!({})).await.unwrap();
    let again = shop.run_at(&engine, "2024-07-01T10:00:02Z").await;
    assert_eq!(again.reused.map(|r| r.run), Some(2));
}
