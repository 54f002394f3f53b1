//! The shopify source, built as the `cdylib` Cohort loads, pulled through the ABI and the host's
//! HTTP service from the fake Shopify on 127.0.0.1 (tests/fake).
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cohort_plugin_api::wire::{Page, StreamRecord};
use cohort_plugin_api::{Customer, Event, Order};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, LoadedPlugin, StateStore, pull,
};
use cohort_plugin_testkit::{Logs, MemoryState as Memory, check_example, plugin};
use fake::{Fake, SHOP, TOKEN};
use serde_json::{Value, json};

fn source() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-shopify")).unwrap()
}

fn services(logs: &Arc<Logs>, state: &Arc<Memory>) -> HostServices {
    let http = HttpService::new(HttpPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        ..HttpPolicy::default()
    })
    .unwrap();
    HostServices::default()
        .with_http(http)
        .with_log(logs.clone())
        .with_state(state.clone())
}

fn config(fake: &Fake, extra: &Value) -> Value {
    let mut c = json!({
        "shop": SHOP,
        "access_token": TOKEN,
        "base_url": fake.url(),
        "initial_sync": "paged",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

trait Id {
    fn id(&self) -> String;
}
impl Id for Customer {
    fn id(&self) -> String {
        self.id.to_string()
    }
}
impl Id for Order {
    fn id(&self) -> String {
        self.id.clone()
    }
}
impl Id for Event {
    fn id(&self) -> String {
        self.id.clone().unwrap()
    }
}

/// What the host keeps of a stream, applied page by page as the store applies them.
struct Kept<R> {
    records: BTreeMap<String, R>,
    deleted: BTreeSet<String>,
    rejects: Vec<String>,
    cursor: Value,
    /// Records handed over, duplicates included.
    handed: usize,
    logs: Arc<Logs>,
    state: Arc<Memory>,
}

impl<R: StreamRecord + Id + Clone + PartialEq + std::fmt::Debug> Kept<R> {
    fn new() -> Kept<R> {
        Kept {
            records: BTreeMap::new(),
            deleted: BTreeSet::new(),
            rejects: Vec::new(),
            cursor: Value::Null,
            handed: 0,
            logs: Arc::new(Logs::default()),
            state: Arc::new(Memory::default()),
        }
    }

    /// Pulls from the kept cursor, host pages of `page_size`; stops (as a killed run would,
    /// after the store committed) once `stop_after` pages are kept.
    fn pull_some(
        &mut self,
        config: &Value,
        page_size: usize,
        stop_after: Option<usize>,
    ) -> Result<bool, CallError> {
        let mut i = source().open(config, services(&self.logs, &self.state))?;
        let mut pages = 0;
        let result = pull(&mut i, self.cursor.clone(), page_size, |page: Page<R>| {
            if stop_after.is_some_and(|n| pages >= n) {
                return Err(CallError::Protocol("killed".into()));
            }
            pages += 1;
            for r in page.records {
                self.handed += 1;
                self.deleted.remove(&r.id());
                self.records.insert(r.id(), r);
            }
            for id in page.deleted {
                self.records.remove(&id);
                self.deleted.insert(id);
            }
            self.rejects.extend(
                page.rejects
                    .into_iter()
                    .map(|r| format!("{}: {}", r.location, r.reason)),
            );
            self.cursor = page.next_cursor;
            Ok::<_, CallError>(())
        });
        match result {
            Ok(_) => Ok(true),
            Err(CallError::Protocol(m)) if m == "killed" => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn pull(&mut self, config: &Value, page_size: usize) {
        assert!(self.pull_some(config, page_size, None).unwrap());
    }
}

fn assert_clean(fake: &Fake) {
    let stats = fake.stats();
    assert_eq!(stats.invalid, 0, "queries Shopify would refuse: {stats:?}");
}

/// A shop: customers, orders (one without a customer, some long), checkouts.
fn shop(fake: &Fake, customers: usize, orders: usize) -> Vec<u64> {
    let t = fake.now() - 86_400;
    let ids = fake.add_customers(customers, t);
    for i in 0..orders {
        let lines = if i % 7 == 0 { 23 } else { 1 + i % 3 };
        fake.add_order(Some(ids[i % ids.len()]), lines, t + (i as i64 % 5));
    }
    fake.add_order(None, 1, t);
    fake.add_checkout(Some(ids[0]), 2, t);
    fake.add_checkout(Some(ids[1]), 1, t + 1);
    fake.add_checkout(None, 1, t + 1);
    ids
}

#[test]
fn the_source_passes_the_conformance_kit_with_the_example_it_ships() {
    let checked = check_example(&plugin("cohort-plugin-shopify"), 3);
    checked.assert_passed();
    let report = checked.report.to_string();
    for stream in ["customers", "orders", "events"] {
        assert!(
            report.contains(&format!(
                "pass  {stream}: a cursor resumes where it stopped"
            )),
            "{report}"
        );
    }
}

#[test]
fn a_paged_full_sync_maps_every_stream_and_skips_orders_without_a_customer() {
    let fake = Fake::start(2000.0, 1000.0);
    let ids = shop(&fake, 40, 30);
    let c = config(&fake, &json!({}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 7);
    assert_eq!(customers.records.len(), 40);
    let first = &customers.records[&ids[0].to_string()];
    assert_eq!(
        first.email.as_deref(),
        Some(&*format!("c{}@example.com", ids[0]))
    );
    assert!(first.accepts_email_marketing);
    assert!(!customers.records[&ids[1].to_string()].accepts_email_marketing);
    assert_eq!(first.country.as_deref(), Some("DE"));

    let mut orders = Kept::<Order>::new();
    orders.pull(&c, 7);
    assert_eq!(orders.records.len(), 30);
    assert_eq!(orders.rejects.len(), 1, "{:?}", orders.rejects);
    assert!(
        orders.rejects[0].contains("no customer"),
        "{:?}",
        orders.rejects
    );
    let long = orders.records.values().find(|o| o.line_items.len() == 23);
    assert!(long.is_some(), "an order of 23 line items is read whole");
    assert!(
        fake.stats()
            .operations
            .get("MoreLineItems")
            .copied()
            .unwrap_or(0)
            > 0,
        "{:?}",
        fake.stats()
    );

    let mut events = Kept::<Event>::new();
    events.pull(&c, 7);
    assert_eq!(
        events.records.len(),
        2,
        "the guest's checkout has no one to remind"
    );
    let e = events.records.values().next().unwrap();
    assert!(
        e.properties["recovery_url"]
            .as_str()
            .unwrap()
            .contains("/cart/recover/")
    );
    assert_eq!(e.properties["total"], "39.80");
    assert_clean(&fake);
    assert_eq!(fake.stats().throttled, 0);
}

#[test]
fn a_bulk_full_sync_stores_what_a_paged_one_stores() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 60, 45);
    let paged = config(&fake, &json!({}));
    let bulk = config(&fake, &json!({"initial_sync": "bulk"}));
    let mut p = Kept::<Order>::new();
    p.pull(&paged, 10);
    let mut b = Kept::<Order>::new();
    b.pull(&bulk, 10);
    assert_eq!(fake.stats().bulk_started, 1);
    assert_eq!(b.records, p.records);
    assert_eq!(b.rejects, p.rejects);
    let mut pc = Kept::<Customer>::new();
    pc.pull(&paged, 10);
    let mut bc = Kept::<Customer>::new();
    bc.pull(&bulk, 10);
    assert_eq!(bc.records, pc.records);
    let mut pe = Kept::<Event>::new();
    pe.pull(&paged, 10);
    let mut be = Kept::<Event>::new();
    be.pull(&bulk, 10);
    assert_eq!(be.records, pe.records);
    assert_clean(&fake);
}

#[test]
fn auto_reads_a_stream_in_bulk_only_above_the_threshold() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 30, 5);
    let c = config(
        &fake,
        &json!({"initial_sync": "auto", "bulk_threshold": 20}),
    );
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 50);
    assert_eq!(fake.stats().bulk_started, 1, "30 customers > 20");
    let mut orders = Kept::<Order>::new();
    orders.pull(&c, 50);
    assert_eq!(fake.stats().bulk_started, 1, "5 orders are paged");
    assert_eq!(orders.records.len(), 5);
}

#[test]
fn a_shop_running_its_one_bulk_query_is_read_in_pages_and_the_log_says_so() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 12, 0);
    fake.occupy_bulk();
    let c = config(&fake, &json!({"initial_sync": "bulk"}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 50);
    assert_eq!(customers.records.len(), 12);
    let logs = customers.logs.all();
    assert!(logs.contains("in pages instead"), "{logs}");
}

#[test]
fn a_short_bulk_result_fails_loudly() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 12, 0);
    fake.truncate_bulk(2);
    let c = config(&fake, &json!({"initial_sync": "bulk"}));
    let mut customers = Kept::<Customer>::new();
    let err = customers.pull_some(&c, 50, None).unwrap_err().to_string();
    assert!(
        err.contains("reported 12 objects") && err.contains("10 lines"),
        "{err}"
    );
}

#[test]
fn an_incremental_run_after_n_changes_pulls_about_n_records() {
    let fake = Fake::start(2000.0, 1000.0);
    // A second apart, as a shop's changes come: the watermark's second holds one record, which
    // the next pass reads again (and drops by its id).
    let t = fake.now() - 86_400;
    let ids: Vec<u64> = (0..300)
        .map(|i| fake.add_customer(t + i, i % 2 == 0))
        .collect();
    let c = config(&fake, &json!({"streams": ["customers"]}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 100);
    assert_eq!(customers.handed, 300);
    // Nothing changed: nothing comes.
    customers.pull(&c, 100);
    assert_eq!(customers.handed, 300);
    // Five change, two of them sharing one second with an untouched record's new time.
    fake.advance(10);
    let now = fake.now() - 5;
    for id in &ids[10..15] {
        fake.touch_customer(*id, Some(now));
    }
    fake.advance(10);
    fake.reset_stats();
    customers.pull(&c, 100);
    assert_eq!(customers.handed, 305, "exactly the 5 changed");
    assert!(
        customers.records[&ids[12].to_string()]
            .first_name
            .as_deref()
            .unwrap()
            .starts_with("Changed")
    );
    let pages = fake
        .stats()
        .operations
        .get("CustomersPage")
        .copied()
        .unwrap_or(0);
    assert!(pages <= 2, "{:?}", fake.stats());
    assert!(
        fake.stats().nodes <= 6,
        "the 5 changed and the watermark's: {:?}",
        fake.stats()
    );
    assert_clean(&fake);
}

#[test]
fn records_sharing_the_watermarks_second_are_neither_skipped_nor_pulled_twice() {
    let fake = Fake::start(2000.0, 1000.0);
    let t = fake.now() - 100;
    let first = fake.add_customers(5, t);
    let c = config(&fake, &json!({"streams": ["customers"]}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 2);
    assert_eq!(customers.handed, 5);
    // More records at the very second of the watermark.
    let late = fake.add_customers(3, t);
    customers.pull(&c, 2);
    assert_eq!(customers.handed, 8);
    for id in first.iter().chain(&late) {
        assert!(customers.records.contains_key(&id.to_string()));
    }
}

#[test]
fn a_completed_checkout_withdraws_its_cart_abandoned_event() {
    let fake = Fake::start(2000.0, 1000.0);
    let t = fake.now() - 100;
    let ids = fake.add_customers(2, t);
    let a = fake.add_checkout(Some(ids[0]), 2, t);
    let b = fake.add_checkout(Some(ids[1]), 1, t);
    let c = config(&fake, &json!({"streams": ["abandoned_checkouts"]}));
    let mut events = Kept::<Event>::new();
    events.pull(&c, 10);
    assert_eq!(events.records.len(), 2);
    fake.advance(5);
    fake.complete_checkout(a);
    fake.advance(5);
    events.pull(&c, 10);
    assert_eq!(
        events.records.keys().cloned().collect::<Vec<_>>(),
        [format!("checkout-{b}")]
    );
    assert!(events.deleted.contains(&format!("checkout-{a}")));
}

#[test]
fn a_tiny_budget_finishes_with_at_most_one_throttled_reply() {
    let fake = Fake::start(100.0, 10.0);
    shop(&fake, 30, 0);
    let c = config(&fake, &json!({"streams": ["customers"]}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 100);
    assert_eq!(customers.records.len(), 30);
    let stats = fake.stats();
    assert!(stats.throttled <= 1, "{stats:?}");
    assert_clean(&fake);
}

#[test]
fn throttled_replies_wait_for_the_bucket_and_retry() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 20, 0);
    fake.throttle_next(3);
    let c = config(&fake, &json!({"streams": ["customers"]}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 100);
    assert_eq!(customers.records.len(), 20);
    assert_eq!(fake.stats().throttled, 3);
}

#[test]
fn a_429_with_retry_after_is_waited_out_and_the_query_sent_again() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 20, 0);
    fake.too_many_next(2);
    let c = config(&fake, &json!({"streams": ["customers"]}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 100);
    assert_eq!(customers.records.len(), 20);
    assert_eq!(fake.stats().too_many, 2);
    assert_clean(&fake);
}

#[test]
fn a_request_that_times_out_is_sent_again_and_nothing_is_lost() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 30, 12);
    fake.stall_next(2);
    let c = config(&fake, &json!({"timeout_secs": 1}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 10);
    let mut orders = Kept::<Order>::new();
    orders.pull(&c, 10);
    assert_eq!(fake.stats().stalled, 2);
    assert_eq!(customers.records.len(), 30);
    assert_eq!(orders.records.len(), 12);
}

#[test]
fn a_ten_percent_rate_of_500s_still_stores_everything() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 120, 40);
    fake.fail_every(10);
    let c = config(&fake, &json!({}));
    let mut customers = Kept::<Customer>::new();
    customers.pull(&c, 10);
    let mut orders = Kept::<Order>::new();
    orders.pull(&c, 10);
    assert!(fake.stats().injected > 0);
    assert_eq!(customers.records.len(), 120);
    assert_eq!(orders.records.len(), 40);
}

#[test]
fn a_pull_killed_mid_pages_or_mid_bulk_and_run_again_stores_what_a_clean_run_stores() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 50, 60);
    for mode in ["paged", "bulk"] {
        let c = config(&fake, &json!({"initial_sync": mode}));
        let mut clean = Kept::<Order>::new();
        clean.pull(&c, 7);
        let mut killed = Kept::<Order>::new();
        for stop in [1, 2, 3] {
            killed.pull_some(&c, 7, Some(stop)).unwrap();
        }
        killed.pull(&c, 7);
        assert_eq!(killed.records, clean.records, "{mode}");
        assert_eq!(killed.rejects.len(), clean.rejects.len(), "{mode}");
    }
}

#[test]
fn a_run_killed_while_its_bulk_operation_runs_resumes_with_the_same_operation() {
    let fake = Fake::start(2000.0, 1000.0);
    shop(&fake, 30, 0);
    fake.bulk_polls(1_000_000);
    let c = config(
        &fake,
        &json!({"initial_sync": "bulk", "streams": ["customers"]}),
    );
    let logs = Arc::new(Logs::default());
    let state = Arc::new(Memory::default());
    let services = services(&logs, &state);
    let cancel = services.cancel.clone();
    let mut i = source().open(&c, services).unwrap();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        cancel.cancel();
    });
    let err = pull(&mut i, Value::Null, 50, |_: Page<Customer>| {
        Ok::<_, CallError>(())
    });
    killer.join().unwrap();
    assert!(err.is_err());
    assert_eq!(fake.stats().bulk_started, 1);
    assert!(
        state.get("bulk/customers").unwrap().is_some(),
        "the operation's id is kept"
    );
    fake.bulk_polls(0);
    let mut customers = Kept::<Customer>::new();
    customers.state = state.clone();
    customers.pull(&c, 50);
    assert_eq!(customers.records.len(), 30);
    assert_eq!(fake.stats().bulk_started, 1, "no second operation");
    assert!(state.get("bulk/customers").unwrap().is_none());
}

#[test]
fn a_refused_token_is_named_with_the_scopes_and_never_shown() {
    let fake = Fake::start(2000.0, 1000.0);
    let c = config(&fake, &json!({"access_token": "shpat_WRONG_SECRET_42"}));
    let logs = Arc::new(Logs::default());
    let state = Arc::new(Memory::default());
    let mut i = source().open(&c, services(&logs, &state)).unwrap();
    let err = pull(&mut i, Value::Null, 10, |_: Page<Customer>| {
        Ok::<_, CallError>(())
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("the access token was rejected for acme.myshopify.com (scopes needed: read_customers, read_orders, read_all_orders"),
        "{err}"
    );
    assert!(!err.contains("WRONG_SECRET"), "{err}");
    assert!(!logs.all().contains("WRONG_SECRET"));
}
