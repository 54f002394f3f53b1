//! `cargo xtask bench email` drives this: upserts N contacts (email, first name, a custom field)
//! into the list through the built plugin, in mode `upsert`, and the host's HTTP service to the
//! fake SendGrid (tests/fake), and prints one JSON line per `--batches` entry: members,
//! seconds, requests, 429s, and the share of the rate limit used.
//!
//! SendGrid limits each endpoint to a fixed number of requests per refresh period and publishes
//! no figure for the marketing endpoints: the fake enforces its published default, 600
//! requests a minute per endpoint, in periods on whole minutes of the clock, with SendGrid's
//! `X-RateLimit-*` headers and 429 (see tests/fake/marketing.rs). The endpoint that carries the
//! contacts is `PUT /v3/marketing/contacts`; the share is what it admitted in the periods
//! that began and ended during the run over 600 each. The first and last periods are left out:
//! the run starts at some point of the first, and runs out of contacts in the last, so neither
//! says anything about pacing. Import jobs finish at their first poll (where SendGrid takes
//! minutes), so each host batch is one upsert and one poll, and the run measures the plugin
//! and its pacing.
//!
//! One upsert carries up to 30,000 contacts, so with host batches of 10,000 the limits never
//! bind: 10 upserts. That row says `"binding": false` (no period was used up) and its share is
//! only what it happened to use. Host batches of 50 make 2,000 upserts, which the limit spreads
//! over more than three minutes: that is the row the share is judged on.
//!
//! Usage: sendgrid_bench [--members N] [--batches 10000,50]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/fake/mod.rs"]
mod fake;

use std::time::{SystemTime, UNIX_EPOCH};

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{Action, DestinationMode, Operation};
use cohort_plugin_testkit::bench::{DestinationBench, Pushed, host_batches};
use fake::{Fake, KEY, LIST};
use serde_json::{Value, json};

/// The endpoint whose limit the share is of.
const UPSERT: &str = "PUT /v3/marketing/contacts";

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let n: usize = arg("--members", "100000").parse().unwrap();
    let bench = DestinationBench::load("cohort-plugin-sendgrid");
    for batch_size in arg("--batches", "10000,50").split(',') {
        let batch_size: usize = batch_size.parse().unwrap();
        let fake = Fake::start();
        fake.set_polls_before_done(0);
        let config = json!({"api_key": KEY, "list_id": LIST, "base_url": fake.url(),
                            "poll_interval": 0});
        let batches = host_batches(n, batch_size, DestinationMode::Upsert, "vip", op);
        let Pushed {
            seconds,
            ok,
            started_at,
            ended_at,
        } = bench.push_all(&config, &batches);
        let (started_unix, ended_unix) = (unix(started_at), unix(ended_at));
        assert_eq!(ok, n, "every contact acknowledged");
        assert_eq!(fake.members().len(), n, "every contact on the list");
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
        let stats = fake.rate_stats();
        let (limit, period) = stats.limit;
        let upserts = stats.periods.get(UPSERT).cloned().unwrap_or_default();
        let binding = stats
            .periods
            .values()
            .flatten()
            .any(|(_, &used)| used >= limit);
        let full: Vec<u64> = upserts
            .iter()
            .filter(|(start, _)| {
                **start as f64 >= started_unix && (**start + period) as f64 <= ended_unix
            })
            .map(|(_, &used)| used)
            .collect();
        let made: u64 = upserts.values().sum();
        let (counted, periods) = if full.is_empty() {
            (made, upserts.len() as u64)
        } else {
            (full.iter().sum(), full.len() as u64)
        };
        let requests: u64 =
            stats.periods.values().flat_map(|p| p.values()).sum::<u64>() + stats.throttled;
        println!(
            "{}",
            json!({"vendor": format!("sendgrid (host batches of {batch_size})"), "members": n,
                   "seconds": seconds, "members_per_second": n as f64 / seconds,
                   "requests": requests, "throttled": stats.throttled,
                   "limit": format!("{limit} a minute per endpoint (published default)"),
                   "used": format!("{counted} upserts in {periods} {} of {limit} ({made} in all)",
                                   if full.is_empty() { "minutes touched" } else { "whole minutes" }),
                   "binding": binding,
                   "share": counted as f64 / (limit * periods) as f64})
        );
    }
}

fn op(i: usize) -> Operation {
    Operation {
        key: format!("bench/seed/{i}/1-upsert"),
        action: Action::Upsert,
        customer_id: CustomerId::new(i.to_string()),
        customer: None,
        payload: json!({"email": format!("customer.{i}@example.com"),
                        "first_name": "Ann", "tier": "gold"}),
        previous: Value::Null,
        message: None,
    }
}
