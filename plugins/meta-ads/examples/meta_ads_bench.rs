//! `cargo xtask bench ads` drives this: pushes N members (EMAIL, PHONE, FN, LN, ZIP, COUNTRY)
//! through the built plugin and the host's HTTP service to the fake Graph API (tests/fake), in
//! host batches of 50,000, and prints one JSON line: members, seconds, rows per second,
//! requests, and how full the requests were against Meta's 10,000 rows.
//!
//! Usage: bench [--members N]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/fake/mod.rs"]
mod fake;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{Action, DestinationMode, Operation};
use cohort_plugin_testkit::bench::{DestinationBench, Pushed, host_batches};
use fake::{APP_SECRET, Fake, TOKEN};
use serde_json::{Value, json};

const AUDIENCE: &str = "23850000000001";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--members")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |v| v.parse().unwrap());
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let bench = DestinationBench::load("cohort-plugin-meta-ads");
    let config = json!({"access_token": TOKEN, "app_secret": APP_SECRET, "base_url": fake.url()});
    let batches = host_batches(n, 50_000, DestinationMode::Mirror, AUDIENCE, op);
    let Pushed { seconds, ok, .. } = bench.push_all(&config, &batches);
    assert_eq!(ok, n, "every member acknowledged");
    assert_eq!(fake.keys(AUDIENCE).len(), n, "every member in the audience");
    let sizes: Vec<usize> = fake.stats(|s| s.requests.iter().map(|(_, r)| *r).collect());
    let full = sizes.iter().filter(|s| **s == 10_000).count();
    println!(
        "{}",
        json!({"vendor": "meta", "members": n, "seconds": seconds,
               "rows_per_second": n as f64 / seconds, "requests": sizes.len(),
               "full_requests": full, "limit": 10_000,
               "fill": n as f64 / (sizes.len() as f64 * 10_000.0)})
    );
}

fn op(i: usize) -> Operation {
    let fields: Value = json!({
        "EMAIL": format!("customer.{i}@example.com"),
        "PHONE": format!("+1 650 {:03} {:04}", i % 1000, i % 10_000),
        "FN": "Ann", "LN": "Smith", "ZIP": "94043", "COUNTRY": "US",
    });
    Operation {
        key: format!("bench/seed/{i}/1-add"),
        action: Action::Upsert,
        customer_id: CustomerId::new(i.to_string()),
        customer: None,
        payload: fields,
        previous: Value::Null,
        message: None,
    }
}
