//! `cargo xtask bench hubspot` drives this: it fills the fake HubSpot (tests/fake) with
//! contacts, pulls them all through the built plugin and the host's HTTP service (a full sync),
//! changes 1% and pulls again (an incremental sync), and prints one JSON line of figures per
//! sync: records, seconds, requests, HubSpot's 429s, and the share of the tier's budget used.
//!
//! The fake paces in real time, as HubSpot does, so the figures are what a real account would
//! see, less the network. The share of the 10-second budget is the requests the sync made that
//! count toward it, over what the tier allows in the time the sync took.
//!
//! Usage: bench [--contacts N] [--tier free|starter|professional|enterprise|api_add_on]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/fake/mod.rs"]
mod fake;

use std::time::{Duration, Instant};

use cohort_plugin_api::Customer;
use cohort_plugin_api::wire::Page;
use cohort_plugin_host::{CallError, HostServices, HttpService, LoadedPlugin, pull};
use cohort_plugin_hubspot::client::SEARCH_SETTLE_MS;
use cohort_plugin_hubspot::config::Tier;
use fake::{Fake, TOKEN};
use serde_json::{Value, json};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let contacts: usize = arg("--contacts", "100000").parse().unwrap();
    let tier_name = arg("--tier", "professional");
    let tier: Tier = serde_json::from_value(json!(tier_name)).unwrap();
    let per_ten = tier.per_ten_seconds();

    let fake = Fake::start(usize::try_from(per_ten).unwrap(), tier.per_day());
    let day_ago = fake.now() - 86_400_000;
    for chunk in 0..contacts.div_ceil(100) {
        let n = 100.min(contacts - chunk * 100);
        fake.add_contacts(n, day_ago + i64::try_from(chunk).unwrap());
    }
    let path = cohort_plugin_host::dev::build_cdylib("cohort-plugin-hubspot", true).unwrap();
    let plugin = LoadedPlugin::load(path).unwrap();
    let config = json!({"access_token": TOKEN, "base_url": fake.url(), "tier": tier_name,
                        "consent_property": "marketing_opt_in", "tags_property": "interests",
                        "properties": ["company", "score"]});
    let services = HostServices::default().with_http(HttpService::shared().unwrap());

    let sync = |cursor: Value| -> (u64, f64, Value) {
        let mut i = plugin.open(&config, services.clone()).unwrap();
        let mut records = 0u64;
        let start = Instant::now();
        let end = pull(&mut i, cursor, 10_000, |page: Page<Customer>| {
            records += page.records.len() as u64 + page.deleted.len() as u64;
            Ok::<_, CallError>(())
        })
        .unwrap();
        (records, start.elapsed().as_secs_f64(), end)
    };
    let report = |kind: &str, records: u64, seconds: f64| {
        let s = fake.stats();
        #[allow(clippy::cast_precision_loss)]
        let budget = f64::from(per_ten) * seconds / 10.0;
        #[allow(clippy::cast_precision_loss)]
        let search_budget = 5.0 * seconds;
        println!(
            "{}",
            json!({"sync": kind, "tier": tier_name, "per_ten": per_ten, "records": records,
                   "seconds": seconds, "records_per_second": records as f64 / seconds,
                   "requests": s.windowed, "searches": s.searches, "throttled": s.throttled,
                   "budget": budget, "share": s.windowed as f64 / budget,
                   "search_share": s.searches as f64 / search_budget,
                   "busiest_window": s.busiest_window, "invalid": s.invalid})
        );
    };

    let (records, seconds, cursor) = sync(Value::Null);
    report("full", records, seconds);
    assert_eq!(records, contacts as u64, "the full sync read every contact");

    // 1% changes, settled by the time the next run asks.
    fake.advance(Duration::from_secs(120));
    let changed_at = fake.now() - SEARCH_SETTLE_MS - 30_000;
    for id in fake.live_contacts().into_iter().step_by(100) {
        fake.update_contact(id, &[("city", "Hamburg")], Some(changed_at));
    }
    fake.reset_stats();
    let (records, seconds, _) = sync(cursor);
    report("incremental", records, seconds);
    assert_eq!(
        records,
        contacts.div_ceil(100) as u64,
        "the incremental sync read the changes"
    );
}
