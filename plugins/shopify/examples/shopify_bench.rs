//! `cargo xtask bench shopify` drives this: it fills the fake Shopify (tests/fake) with a shop of
//! customers and orders, then reads it through the built plugin and the host's HTTP service
//! twice, on the standard plan's bucket (1,000 points, 100 restored a second):
//!
//! - **bulk**: a first sync by bulk operations, every customer and order;
//! - **paged**: a first sync by pages, for a fixed time (at 100 points a second a million orders
//!   take days by pages, which is why the first sync of a large shop is a bulk one).
//!
//! It prints one JSON line of figures per sync: records, seconds, requests, points used,
//! THROTTLED replies, and the share of the rate budget used, which is points used over
//! (bucket + restore rate × elapsed). The fake's bucket leaks in real time, as Shopify's does.
//!
//! Usage: shopify_bench [--customers N] [--orders N] [--paged-seconds S] [--bucket P]
//! [--restore P]
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

#[path = "../tests/fake/mod.rs"]
mod fake;

use std::sync::Arc;
use std::time::Instant;

use cohort_plugin_api::wire::{Page, StreamRecord};
use cohort_plugin_api::{Customer, Order};
use cohort_plugin_host::{CallError, HostServices, HttpService, LoadedPlugin, pull};
use cohort_plugin_testkit::MemoryState;
use fake::{Fake, SHOP, TOKEN};
use serde_json::{Value, json};

/// Why a paged pull stopped early: its time was up.
const TIME_UP: &str = "time up";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: &str| -> f64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
            .parse()
            .unwrap()
    };
    let customers = arg("--customers", "100000") as usize;
    // The fake holds every order as JSON: a million take about 17 GB, so the default is the
    // largest that leaves a shared machine room (200,000, about 5 GB).
    let orders = arg("--orders", "200000") as usize;
    let paged_seconds = arg("--paged-seconds", "60");
    let bucket = arg("--bucket", "1000");
    let restore = arg("--restore", "100");

    let fake = Fake::start(bucket, restore);
    let filled = Instant::now();
    // A year of history, a record a few seconds apart; every 25th order is long enough to need
    // a second query for its line items.
    let t0 = fake.now() - 365 * 86_400;
    let ids: Vec<u64> = (0..customers)
        .map(|i| fake.add_customer(t0 + i as i64, i % 2 == 0))
        .collect();
    for i in 0..orders {
        let lines = if i % 25 == 0 { 12 } else { 1 + i % 3 };
        let customer = ids[(i * 7919) % ids.len()];
        fake.add_order(Some(customer), lines, t0 + (i as i64) * 3);
    }
    eprintln!(
        "filled the fake with {customers} customers and {orders} orders in {:.1} s",
        filled.elapsed().as_secs_f64()
    );

    let path = cohort_plugin_host::dev::build_cdylib("cohort-plugin-shopify", true).unwrap();
    let plugin = LoadedPlugin::load(path).unwrap();
    let http = HttpService::shared().unwrap();

    let report = |sync: &str, records: u64, seconds: f64| {
        let s = fake.stats();
        let budget = bucket + restore * seconds;
        println!(
            "{}",
            json!({"sync": sync, "bucket": bucket, "restore": restore, "records": records,
                   "seconds": seconds, "records_per_second": records as f64 / seconds,
                   "requests": s.requests, "points": s.points, "budget": budget,
                   "share": s.points / budget, "throttled": s.throttled,
                   "bulk_operations": s.bulk_started, "chunks": s.chunks,
                   "invalid": s.invalid})
        );
        assert_eq!(
            s.invalid, 0,
            "queries Shopify would refuse: {:?}",
            s.invalid_messages
        );
    };

    // Reads one stream from the start until it is done or `until` has passed; the records read.
    fn sync<R: StreamRecord>(
        plugin: &LoadedPlugin,
        config: &Value,
        services: &HostServices,
        until: Option<Instant>,
    ) -> u64 {
        let mut i = plugin.open(config, services.clone()).unwrap();
        let mut records = 0u64;
        // Small host pages for a timed pull, so it stops close to its time.
        let host_page = if until.is_some() { 50 } else { 10_000 };
        let result = pull(&mut i, Value::Null, host_page, |page: Page<R>| {
            records += page.records.len() as u64;
            if until.is_some_and(|u| Instant::now() >= u) {
                return Err(CallError::Protocol(TIME_UP.into()));
            }
            Ok::<_, CallError>(())
        });
        match result {
            Ok(_) => {}
            Err(CallError::Protocol(m)) if m == TIME_UP => {}
            Err(e) => panic!("the pull failed: {e}"),
        }
        records
    }

    let config = |mode: &str| {
        json!({"shop": SHOP, "access_token": TOKEN, "base_url": fake.url(),
               "initial_sync": mode, "streams": ["customers", "orders"]})
    };
    let services = || {
        HostServices::default()
            .with_http(http.clone())
            .with_state(Arc::new(MemoryState::default()))
    };

    // Bulk: every record.
    fake.reset_stats();
    let start = Instant::now();
    let bulk = services();
    let read = sync::<Customer>(&plugin, &config("bulk"), &bulk, None)
        + sync::<Order>(&plugin, &config("bulk"), &bulk, None);
    report("bulk", read, start.elapsed().as_secs_f64());
    assert_eq!(
        read,
        (customers + orders) as u64,
        "the bulk sync read every record"
    );

    // Each stream by pages for the same time, from a full bucket (as after a quiet while): the
    // streams' queries cost differently (an order asks for its line items).
    let rest = || std::thread::sleep(std::time::Duration::from_secs_f64(bucket / restore + 1.0));
    let timed = |sync_name: &str, read: &dyn Fn(Instant) -> u64| {
        rest();
        fake.reset_stats();
        let start = Instant::now();
        let records = read(start + std::time::Duration::from_secs_f64(paged_seconds));
        report(sync_name, records, start.elapsed().as_secs_f64());
    };
    timed("paged customers", &|until| {
        sync::<Customer>(&plugin, &config("paged"), &services(), Some(until))
    });
    timed("paged orders", &|until| {
        sync::<Order>(&plugin, &config("paged"), &services(), Some(until))
    });
}
