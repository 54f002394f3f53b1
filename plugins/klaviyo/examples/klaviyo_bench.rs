//! `cargo xtask bench email` drives this: upserts N profiles (email, first name, a custom
//! property) into the list through the built plugin and the host's HTTP service to the fake
//! Klaviyo (tests/fake, which enforces the published burst and steady limits of each endpoint
//! family with 429 and `Retry-After`), in host batches of 10,000, and prints one JSON line per
//! `--bulk-sizes` entry: members, seconds, requests, 429s, and the share of the limits used.
//!
//! Above `bulk_threshold` the plugin uses bulk import jobs (which also add to the list), so the
//! family that counts is `bulk-jobs` (10/s, 150/m, both sliding windows): the share is its
//! requests over the most that a client alone on the account could have sent in the time the
//! run took, [`allowed`]: each request as early as both windows let it, from empty windows.
//! Jobs are polled with `poll_interval = 0`: as fast as the limits let the plugin (the fake runs
//! a job when it is polled, where Klaviyo takes minutes, so the run measures the plugin and its
//! pacing).
//!
//! A share means something only when the limits bound the run: `binding` says whether they
//! did, that is whether any answer left a window full (the fake's `limit_reached`), so that
//! some request had to wait for it. A run that never filled one (large jobs: few requests,
//! the time going to the profiles themselves) is `"binding": false`, its share only what it
//! happened to use.
//!
//! Usage: klaviyo_bench [--members N] [--bulk-sizes 10000,1000]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/fake/mod.rs"]
mod fake;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{Action, DestinationMode, Operation};
use cohort_plugin_testkit::bench::{DestinationBench, Pushed, host_batches};
use fake::{API_KEY, Fake, LIST};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let n: usize = arg("--members", "100000").parse().unwrap();
    let bench = DestinationBench::load("cohort-plugin-klaviyo");
    let batches = host_batches(n, 10_000, DestinationMode::Upsert, "vip", op);
    for bulk_size in arg("--bulk-sizes", "10000,1000").split(',') {
        let bulk_size: usize = bulk_size.parse().unwrap();
        let fake = Fake::start();
        let config = json!({"api_key": API_KEY, "list_id": LIST, "base_url": fake.url(),
                            "poll_interval": 0, "bulk_size": bulk_size});
        let Pushed { seconds, ok, .. } = bench.push_all(&config, &batches);
        let stats = fake.stats();
        assert_eq!(ok, n, "every profile acknowledged");
        assert_eq!(fake.members().len(), n, "every profile on the list");
        assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
        let by_family = fake.requests_by_family();
        // What the limiter admitted: a request it answered 429 used none of the limit.
        let jobs = by_family.get("bulk-jobs").copied().unwrap_or(0) as u64
            - stats
                .throttled_by_family
                .get("bulk-jobs")
                .copied()
                .unwrap_or(0);
        let (per_second, per_minute) = fake.limits("bulk-jobs");
        let allowed = allowed(seconds, per_second, per_minute);
        let binding = stats.limit_reached.get("bulk-jobs").copied().unwrap_or(0) > 0;
        println!(
            "{}",
            json!({"vendor": format!("klaviyo (jobs of {bulk_size})"), "members": n,
                   "seconds": seconds, "members_per_second": n as f64 / seconds,
                   "requests": by_family.values().sum::<usize>(),
                   "throttled": stats.throttled,
                   "limit": format!("bulk jobs {per_second}/s, {per_minute}/m"),
                   "used": format!("{jobs} bulk-job requests admitted of {allowed} allowed in {seconds:.1} s"),
                   "binding": binding,
                   "share": jobs as f64 / allowed as f64})
        );
    }
}

/// The most requests a sliding-window limiter of `per_second` a second and `per_minute` a
/// minute lets through in `seconds`, starting empty: each request sent as soon as both windows
/// have room (sending earlier never lets fewer through later).
fn allowed(seconds: f64, per_second: usize, per_minute: usize) -> usize {
    let mut sent: Vec<f64> = Vec::new();
    loop {
        let n = sent.len();
        let mut at: f64 = 0.0;
        if n >= per_second {
            at = at.max(sent[n - per_second] + 1.0);
        }
        if n >= per_minute {
            at = at.max(sent[n - per_minute] + 60.0);
        }
        if at >= seconds {
            return n;
        }
        sent.push(at);
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
