//! `cargo xtask bench email` drives this: upserts N members (email, first name, country)
//! through the built plugin and the host's HTTP service to the fake Mailchimp (tests/fake),
//! in the host batches a run hands it by default (the plugin's preferred 10,000), and prints
//! one JSON line: members, seconds, requests, 429s, and how much of Mailchimp's published
//! limit (10 simultaneous connections) the run used.
//!
//! The fake answers every request after `--latency-ms` (default 100), as Mailchimp would
//! across the internet: on 127.0.0.1 with no latency a connection is never busy long enough
//! to count. The connections in use are the fake's busy time over the wall time: each request
//! counts from its head arriving to its answer going out, as a connection at Mailchimp is in
//! use while its body uploads, and until it is answered even when the fake (sharing the
//! machine's cores with the client) answers late. `used` also gives the figure counted from
//! each body read to its answer's due time, as this bench counted before 2026-12-06.
//!
//! `--host-batch` is how many operations the host hands the plugin per push (a destination's
//! `batch_size`; by default the plugin's preferred size, as in a run whose config sets none):
//! the plugin's connections are kept busy within a push, and wait for its last job at the end
//! of each. `--pushes` is how many pushes are in flight at once, each on its own instance (by
//! default the plugin's `concurrent_pushes`, as a run keeps them).
//!
//! Usage: mailchimp_bench [--members N] [--latency-ms MS] [--batch-size N] [--host-batch N]
//!        [--pushes N]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/fake/mod.rs"]
mod fake;

use std::time::Duration;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{Action, DestinationMode, Operation};
use cohort_plugin_testkit::bench::{DestinationBench, Pushed, host_batches};
use fake::{API_KEY, Fake, LIST, MAX_CONNECTIONS};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap())
    };
    let n = arg("--members", 100_000);
    let latency = Duration::from_millis(arg("--latency-ms", 100) as u64);
    let batch_size = arg("--batch-size", 1000);
    let bench = DestinationBench::load("cohort-plugin-mailchimp");
    let host_batch = arg("--host-batch", bench.preferred_batch().unwrap_or(10_000));
    let fake = Fake::start();
    fake.set_latency(latency);
    let config = json!({"api_key": API_KEY, "list_id": LIST, "base_url": fake.url(),
                        "poll_interval": 0, "batch_size": batch_size});
    let batches = host_batches(n, host_batch, DestinationMode::Upsert, "vip", op);
    let pushes = arg("--pushes", bench.concurrent_pushes());
    let Pushed { seconds, ok, .. } = bench.push_all_at(&config, &batches, pushes);
    let stats = fake.stats();
    assert_eq!(ok, n, "every member acknowledged");
    assert_eq!(fake.member_count(), n, "every member on the list");
    assert_eq!(fake.tagged("vip").len(), n, "every member tagged");
    assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
    let connections = stats.busy.as_secs_f64() / seconds;
    let after_body = stats.busy_after_body.as_secs_f64() / seconds;
    println!(
        "{}",
        json!({"vendor": "mailchimp", "members": n, "seconds": seconds,
               "members_per_second": n as f64 / seconds, "requests": stats.requests,
               "throttled": stats.throttled,
               "limit": format!("{MAX_CONNECTIONS} simultaneous connections"),
               "used": format!("{connections:.2} on average, {} at most ({} ms latency, \
                                pushes of {host_batch}, {pushes} at once, \
                                {} jobs of {batch_size}; \
                                {after_body:.2} counted from each body read)",
                               stats.peak, latency.as_millis(), stats.jobs),
               "share": connections / MAX_CONNECTIONS as f64})
    );
}

fn op(i: usize) -> Operation {
    Operation {
        key: format!("bench/seed/{i}/1-upsert"),
        action: Action::Upsert,
        customer_id: CustomerId::new(i.to_string()),
        customer: None,
        payload: json!({"email": format!("customer.{i}@example.com"),
                        "first_name": "Ann", "country": "DE"}),
        previous: Value::Null,
        message: None,
    }
}
