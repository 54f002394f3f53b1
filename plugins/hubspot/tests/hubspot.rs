//! The hubspot source, built as the `cdylib` Cohort loads, pulled through the ABI and the host's
//! HTTP service from the fake HubSpot on 127.0.0.1 (tests/fake).
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cohort_plugin_api::cohort_core::record::AttributeValue;
use cohort_plugin_api::wire::{Page, StreamRecord};
use cohort_plugin_api::{Customer, Money, Order};
use cohort_plugin_host::{CallError, HostServices, HttpPolicy, HttpService, LoadedPlugin, pull};
use cohort_plugin_hubspot::client::SEARCH_SETTLE_MS;
use cohort_plugin_testkit::{Logs, check_example, plugin};
use fake::{Fake, Fault, TOKEN};
use serde_json::{Value, json};

fn source() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-hubspot")).unwrap()
}

fn services(logs: &Arc<Logs>) -> HostServices {
    let http = HttpService::new(HttpPolicy {
        max_attempts: 4,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
        ..HttpPolicy::default()
    })
    .unwrap();
    HostServices::default()
        .with_http(http)
        .with_log(logs.clone())
}

/// A contact that long ago stopped changing: a day before HubSpot's clock.
fn old(fake: &Fake) -> i64 {
    fake.now() - 86_400_000
}

fn config(fake: &Fake, extra: &Value) -> Value {
    let mut c = json!({
        "access_token": TOKEN,
        "base_url": fake.url(),
        "tier": "api_add_on",
        "properties": ["company", "score"],
        "consent_property": "marketing_opt_in",
        "tags_property": "interests",
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// What the host keeps of a stream, applied page by page as the store applies them.
#[derive(Debug, Default)]
struct Kept<R> {
    records: BTreeMap<String, R>,
    deleted: BTreeSet<String>,
    rejects: Vec<String>,
    passes: BTreeSet<String>,
    cursor: Value,
    /// The full pass under way: its name and what it sent so far.
    pass: Option<(String, BTreeSet<String>)>,
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

impl<R: StreamRecord + Id + Clone> Kept<R> {
    /// Pulls the stream to its end from the kept cursor, with host pages of `page_size`,
    /// keeping each page with its cursor as the store does (a failed pull resumes there).
    fn pull(
        &mut self,
        config: &Value,
        page_size: usize,
        logs: &Arc<Logs>,
    ) -> Result<(), CallError> {
        let mut i = source().open(config, services(logs))?;
        pull(&mut i, self.cursor.clone(), page_size, |page: Page<R>| {
            let mut sent = Vec::new();
            for r in page.records {
                sent.push(r.id());
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
            if let Some(name) = page.pass {
                let (current, seen) = self
                    .pass
                    .get_or_insert_with(|| (name.clone(), BTreeSet::new()));
                assert_eq!(*current, name, "one name on every page of a pass");
                seen.extend(sent);
                if page.done {
                    // The pass is over: what it did not send is gone.
                    let seen = seen.clone();
                    let gone: Vec<String> = self
                        .records
                        .keys()
                        .filter(|id| !seen.contains(*id))
                        .cloned()
                        .collect();
                    for id in gone {
                        self.records.remove(&id);
                        self.deleted.insert(id);
                    }
                    self.passes.insert(name);
                    self.pass = None;
                }
            }
            self.cursor = page.next_cursor;
            Ok::<_, CallError>(())
        })?;
        Ok(())
    }

    /// [`pull`](Self::pull), resumed after retryable failures as a run's retries would.
    fn pull_retrying(&mut self, config: &Value, page_size: usize, logs: &Arc<Logs>) -> usize {
        for failures in 0..5 {
            match self.pull(config, page_size, logs) {
                Ok(()) => return failures,
                Err(e) if e.is_retryable() => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("still failing after 5 pulls");
    }

    fn ids(&self) -> Vec<u64> {
        self.records
            .keys()
            .map(|k| k.parse().unwrap())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn assert_clean(fake: &Fake) {
    let stats = fake.stats();
    assert_eq!(
        stats.invalid, 0,
        "requests that break HubSpot's rules: {stats:?}"
    );
    assert_eq!(
        stats.throttled, 0,
        "429s caused by the plugin's own pace: {stats:?}"
    );
    assert_eq!(stats.past_cap, 0, "searches paged past 10,000: {stats:?}");
}

#[test]
fn the_source_passes_the_conformance_kit_with_the_example_it_ships() {
    let checked = check_example(&plugin("cohort-plugin-hubspot"), 3);
    checked.assert_passed();
    let report = checked.report.to_string();
    for stream in ["customers", "orders"] {
        assert!(
            report.contains(&format!(
                "pass  {stream}: a cursor resumes where it stopped"
            )),
            "{report}"
        );
    }
}

#[test]
fn a_full_sync_reads_every_contact_and_closed_won_deal() {
    let fake = Fake::start(250, 1_000_000);
    let t = old(&fake);
    let ids = fake.add_contacts(250, t);
    let won = fake.add_deal(true, "1234.56", &[ids[9], ids[3]], t);
    let lost = fake.add_deal(false, "10", &[ids[1]], t);
    let orphan = fake.add_deal(true, "5", &[], t);
    let logs = Arc::new(Logs::default());
    let c = config(&fake, &json!({"deals_as_orders": true}));

    let mut customers = Kept::<Customer>::default();
    customers.pull(&c, 40, &logs).unwrap();
    assert_eq!(customers.ids(), fake.live_contacts());
    assert!(customers.rejects.is_empty(), "{:?}", customers.rejects);
    assert_eq!(customers.passes.len(), 1, "the first run is a full pass");
    let c10 = &customers.records["10"];
    assert_eq!(c10.email.as_deref(), Some("contact10@example.com"));
    assert_eq!(c10.country.as_deref(), Some("DE"));
    assert!(
        c10.accepts_email_marketing,
        "10 consents and did not opt out"
    );
    assert!(
        !customers.records["35"].accepts_email_marketing,
        "35 consents but opted out"
    );
    assert!(!customers.records["11"].accepts_email_marketing);
    assert_eq!(customers.records["5"].tags, ["yoga", "running"]);
    assert_eq!(
        c10.attributes["score"],
        AttributeValue::Number(10.0),
        "typed by HubSpot's property type"
    );
    assert_eq!(
        c10.attributes["lifecyclestage"],
        AttributeValue::Text("lead".into())
    );

    let mut orders = Kept::<Order>::default();
    orders.pull(&c, 40, &logs).unwrap();
    assert_eq!(
        orders.records.keys().collect::<Vec<_>>(),
        [&won.to_string()]
    );
    let order = &orders.records[&won.to_string()];
    assert_eq!(order.total, Money::parse("1234.56").unwrap());
    assert_eq!(
        order.customer_id.as_str(),
        ids[3].to_string(),
        "the first contact: the lowest id"
    );
    assert!(!orders.records.contains_key(&lost.to_string()));
    assert_eq!(orders.rejects.len(), 1, "{:?}", orders.rejects);
    assert!(orders.rejects[0].starts_with(&format!("deal {orphan}: ")));
    assert_clean(&fake);
    let searches = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/search"))
        .count();
    assert_eq!(searches, 0, "a full sync lists; it does not search");
}

#[test]
fn an_incremental_run_reads_what_changed_once_it_settled_and_deletes_what_was_archived() {
    let fake = Fake::start(250, 1_000_000);
    let t = old(&fake);
    let ids = fake.add_contacts(120, t);
    let deal = fake.add_deal(true, "50", &[ids[0]], t);
    let logs = Arc::new(Logs::default());
    let c = config(&fake, &json!({"deals_as_orders": true}));
    let mut customers = Kept::<Customer>::default();
    let mut orders = Kept::<Order>::default();
    customers.pull(&c, 1000, &logs).unwrap();
    orders.pull(&c, 1000, &logs).unwrap();
    assert_eq!(orders.records.len(), 1);

    fake.advance(Duration::from_secs(120));
    fake.update_contact(ids[4], &[("firstname", "Renamed")], None);
    fake.update_contact(ids[7], &[("hs_email_optout", "true")], None);
    fake.archive_contact(ids[9]);
    fake.set_deal_won(deal, false);
    let listed = fake.requests().len();

    // Just changed: not settled yet, so not read (the index may not show it all).
    customers.pull(&c, 1000, &logs).unwrap();
    assert_eq!(
        customers.records[&ids[4].to_string()].first_name.as_deref(),
        Some("First5")
    );

    fake.advance(Duration::from_millis(
        u64::try_from(SEARCH_SETTLE_MS).unwrap() + 2000,
    ));
    customers.pull(&c, 1000, &logs).unwrap();
    orders.pull(&c, 1000, &logs).unwrap();
    assert_eq!(
        customers.records[&ids[4].to_string()].first_name.as_deref(),
        Some("Renamed")
    );
    assert!(!customers.records[&ids[7].to_string()].accepts_email_marketing);
    assert!(
        customers.deleted.contains(&ids[9].to_string()),
        "the archived contact is deleted"
    );
    assert!(!customers.records.contains_key(&ids[9].to_string()));
    assert!(
        orders.records.is_empty(),
        "a deal no longer won is no order"
    );
    assert_eq!(
        customers.passes.len(),
        1,
        "incremental runs are not full passes"
    );
    // Only searches and the archived listings: no contact was listed again.
    let after: Vec<_> = fake.requests()[listed..]
        .iter()
        .filter(|r| !r.path.ends_with("/search"))
        .map(|r| format!("{} {}", r.path, r.query("archived").unwrap_or_default()))
        .collect();
    assert!(
        after
            .iter()
            .all(|r| r.ends_with("true") || r.contains("associations") || r.contains("properties")),
        "{after:?}"
    );
    assert_clean(&fake);
}

#[test]
fn more_than_10000_contacts_modified_in_one_window_are_all_read() {
    let fake = Fake::start(250, 1_000_000);
    let logs = Arc::new(Logs::default());
    let c = config(&fake, &json!({}));
    let mut customers = Kept::<Customer>::default();
    customers.pull(&c, 1000, &logs).unwrap(); // an empty account: the watermark is its start
    // 10,400 contacts modified after it, a few to a millisecond.
    let start = fake.now();
    for i in 0..2600 {
        fake.add_contacts(4, start + i);
    }
    fake.advance(Duration::from_millis(
        u64::try_from(SEARCH_SETTLE_MS).unwrap() + 5000,
    ));
    customers.pull(&c, 2000, &logs).unwrap();
    assert_eq!(customers.ids(), fake.live_contacts());
    assert_eq!(customers.records.len(), 10_400);
    assert_clean(&fake);
}

#[test]
fn many_contacts_sharing_one_millisecond_are_walked_by_id_and_none_is_skipped() {
    let fake = Fake::start(250, 1_000_000);
    let logs = Arc::new(Logs::default());
    let c = config(&fake, &json!({}));
    let mut customers = Kept::<Customer>::default();
    customers.pull(&c, 1000, &logs).unwrap();
    let at = fake.now() + 1000;
    fake.add_contacts(30, at - 1);
    fake.add_contacts(10_300, at);
    fake.add_contacts(30, at + 1);
    fake.advance(Duration::from_millis(
        u64::try_from(SEARCH_SETTLE_MS).unwrap() + 5000,
    ));
    customers.pull(&c, 5000, &logs).unwrap();
    assert_eq!(customers.records.len(), 10_360);
    assert_eq!(customers.ids(), fake.live_contacts());
    let by_id = fake
        .requests()
        .iter()
        .filter(|r| r.json()["sorts"][0]["propertyName"] == "hs_object_id")
        .count();
    assert!(
        by_id >= 52,
        "the shared millisecond is walked by id: {by_id} searches"
    );
    assert_clean(&fake);
}

#[test]
fn search_results_that_lag_behind_writes_are_not_skipped() {
    let fake = Fake::start(250, 1_000_000);
    let t = old(&fake);
    let ids = fake.add_contacts(20, t);
    let logs = Arc::new(Logs::default());
    let c = config(&fake, &json!({}));
    let mut customers = Kept::<Customer>::default();
    customers.pull(&c, 1000, &logs).unwrap();
    fake.advance(Duration::from_secs(120));
    // The index shows A's change 40 s late; B, changed after it, at once.
    fake.set_lag(Duration::from_secs(40));
    fake.update_contact(ids[0], &[("firstname", "Late")], None);
    fake.set_lag(Duration::ZERO);
    fake.advance(Duration::from_secs(10));
    fake.update_contact(ids[1], &[("firstname", "Prompt")], None);
    for _ in 0..4 {
        fake.advance(Duration::from_secs(20));
        customers.pull(&c, 1000, &logs).unwrap();
    }
    assert_eq!(customers.records["2"].first_name.as_deref(), Some("Prompt"));
    assert_eq!(
        customers.records["1"].first_name.as_deref(),
        Some("Late"),
        "the watermark never passed a change the index had not shown"
    );
    assert_clean(&fake);
}

#[test]
fn injected_429s_and_502s_still_store_everything_and_the_pace_causes_no_429() {
    let fake = Fake::start(100, 1_000_000);
    let t = old(&fake);
    fake.add_contacts(450, t);
    let logs = Arc::new(Logs::default());
    let c = config(&fake, &json!({"tier": "free"}));
    // Two bad answers in a row: the host's retries see them through.
    fake.inject("/crm/v3/objects/contacts", Fault::TooMany, 1);
    fake.inject("/crm/v3/objects/contacts", Fault::BadGatewayHtml, 1);
    let mut customers = Kept::<Customer>::default();
    customers.pull(&c, 100, &logs).unwrap();
    // Five in a row outlast them (4 attempts): the pull fails as retryable, and the next one
    // goes on from the last page kept.
    customers.cursor = Value::Null;
    customers.records.clear();
    fake.add_contacts(1, old(&fake));
    for fault in [
        Fault::TooMany,
        Fault::BadGatewayHtml,
        Fault::TooMany,
        Fault::Internal,
        Fault::BadGatewayHtml,
    ] {
        fake.inject("/crm/v3/objects/contacts", fault, 1);
    }
    assert_eq!(customers.pull_retrying(&c, 100, &logs), 1);
    fake.advance(Duration::from_secs(200));
    for id in [3, 30, 300] {
        fake.update_contact(id, &[("city", "Hamburg")], Some(fake.now() - 100_000));
    }
    fake.inject("/search", Fault::TooMany, 1);
    fake.inject("/search", Fault::BadGatewayHtml, 2);
    customers.pull(&c, 100, &logs).unwrap();
    assert_eq!(customers.ids(), fake.live_contacts());
    for id in ["3", "30", "300"] {
        assert_eq!(customers.records[id].city.as_deref(), Some("Hamburg"));
    }
    let stats = fake.stats();
    assert_eq!(stats.injected, 10);
    assert!(stats.busiest_window <= 100, "{stats:?}");
    assert_clean(&fake);
}

#[test]
fn an_error_that_outlasts_the_retries_names_hubspots_category_and_correlation_id() {
    let fake = Fake::start(100, 1_000_000);
    fake.add_contacts(5, old(&fake));
    fake.inject("/crm/v3/objects/contacts", Fault::TooMany, 10);
    let logs = Arc::new(Logs::default());
    let err = Kept::<Customer>::default()
        .pull(&config(&fake, &json!({})), 100, &logs)
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("RATE_LIMITS"), "{text}");
    assert!(text.contains("correlationId 0b6c-"), "{text}");
    assert!(text.contains("policy TEN_SECONDLY_ROLLING"), "{text}");
}

#[test]
fn the_token_never_appears_in_errors_or_logs_even_when_hubspot_echoes_it() {
    let fake = Fake::start(100, 1_000_000);
    fake.add_contacts(5, old(&fake));
    fake.inject("/crm/v3/objects/contacts", Fault::EchoCredentials, 1);
    let logs = Arc::new(Logs::default());
    let err = Kept::<Customer>::default()
        .pull(&config(&fake, &json!({})), 100, &logs)
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("VALIDATION_ERROR"), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!logs.all().contains(TOKEN), "{}", logs.all());
    // A wrong token is a config error naming the key, never the value.
    let wrong = config(&fake, &json!({"access_token": "pat-na1-wrong"}));
    let err = Kept::<Customer>::default()
        .pull(&wrong, 100, &logs)
        .unwrap_err();
    assert!(err.is_config(), "{err}");
    assert!(err.to_string().contains("/access_token"), "{err}");
    assert!(!err.to_string().contains("pat-na1-wrong"), "{err}");
}

#[test]
fn properties_hubspot_does_not_have_or_of_the_wrong_type_are_config_errors_at_their_paths() {
    let fake = Fake::start(100, 1_000_000);
    let logs = Arc::new(Logs::default());
    let c = config(
        &fake,
        &json!({"properties": ["company", "compnay"], "consent_property": "email", "tags_property": "score"}),
    );
    let err = Kept::<Customer>::default()
        .pull(&c, 100, &logs)
        .unwrap_err();
    let CallError::Config(issues) = err else {
        panic!("{err}");
    };
    let found: Vec<(&str, &str)> = issues
        .iter()
        .map(|i| (i.path.as_str(), i.message.as_str()))
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0].0, "/properties/1");
    assert!(found[0].1.contains("did you mean `company`?"), "{found:?}");
    assert_eq!(found[1].0, "/consent_property");
    assert!(found[1].1.contains("boolean"), "{found:?}");
    assert_eq!(found[2].0, "/tags_property");
}

#[test]
fn a_spent_daily_limit_ends_the_pull_as_retryable() {
    let fake = Fake::start(100, 3);
    fake.add_contacts(350, old(&fake));
    let logs = Arc::new(Logs::default());
    let err = Kept::<Customer>::default()
        .pull(&config(&fake, &json!({})), 100, &logs)
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("daily API limit"), "{err}");
    assert_eq!(
        fake.stats().requests,
        3,
        "no request is sent once the headers say it is spent"
    );
}
