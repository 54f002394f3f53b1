//! The klaviyo destination, built as the `cdylib` Cohort loads, driven through the ABI and the
//! host's HTTP service against a fake Klaviyo that checks every request against the vendor's
//! OpenAPI files and keeps the account's state.
#![allow(clippy::unwrap_used, clippy::needless_pass_by_value)]

mod fake;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Operation, OutcomeStatus, PushResult,
};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, Instance, LoadedPlugin, StateStore,
};
use cohort_plugin_testkit::{Logs, check_example, plugin};
use fake::{API_KEY, Fake, Fault, LIST};
use serde_json::{Value, json};

fn klaviyo() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-klaviyo")).unwrap()
}

/// Quick retries, so fault tests stay fast.
fn http() -> HttpService {
    HttpService::new(HttpPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        rate_limit: None,
        ..HttpPolicy::default()
    })
    .unwrap()
}

/// The host's state service, in memory.
#[derive(Debug, Default)]
struct Memory(Mutex<BTreeMap<String, Value>>);

impl StateStore for Memory {
    fn get(&self, key: &str) -> Result<Option<Value>, String> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String> {
        let mut m = self.0.lock().unwrap();
        match value {
            Some(v) => m.insert(key.to_owned(), v.clone()),
            None => m.remove(key),
        };
        Ok(())
    }
}

struct Setup {
    logs: Arc<Logs>,
    state: Arc<Memory>,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            logs: Arc::new(Logs::default()),
            state: Arc::new(Memory::default()),
        }
    }

    fn open(&self, fake: &Fake, extra: Value) -> Result<Instance, CallError> {
        let mut config = json!({
            "api_key": API_KEY,
            "list_id": LIST,
            "base_url": fake.url(),
            "poll_interval": 0,
            "timeout": 1,
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let services = HostServices::default()
            .with_http(http())
            .with_log(self.logs.clone())
            .with_state(self.state.clone());
        klaviyo().open(&config, services)
    }
}

fn upsert(key: &str, email: &str, first_name: &str) -> Operation {
    Operation {
        key: key.into(),
        action: Action::Upsert,
        customer_id: CustomerId::new(key),
        customer: None,
        payload: json!({"email": email, "first_name": first_name, "tier": "gold"}),
        previous: Value::Null,
        message: None,
    }
}

fn remove(key: &str, email: &str) -> Operation {
    Operation {
        action: Action::Remove,
        payload: json!({"email": email}),
        ..upsert(key, email, "")
    }
}

fn batch(operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("shop".into()),
        campaign: Some("vip_sync".into()),
        mode: DestinationMode::Mirror,
        audience: Some("vip".into()),
        replace: None,
        operations,
    }
}

fn statuses(result: &PushResult) -> Vec<(String, String)> {
    result
        .outcomes
        .iter()
        .map(|o| {
            let s = match &o.status {
                OutcomeStatus::Ok => "ok".to_owned(),
                OutcomeStatus::Rejected { reason } => format!("rejected: {reason}"),
                OutcomeStatus::Retry { reason, .. } => format!("retry: {reason}"),
            };
            (o.key.clone(), s)
        })
        .collect()
}

fn all_ok(result: &PushResult) -> bool {
    result
        .outcomes
        .iter()
        .all(|o| o.status == OutcomeStatus::Ok)
}

#[test]
fn klaviyo_passes_the_conformance_kit_with_the_example_it_ships() {
    check_example(&plugin("cohort-plugin-klaviyo"), 3).assert_passed();
}

#[test]
fn profiles_are_upserted_with_custom_properties_and_added_to_the_list() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let result = i
        .push(&batch(vec![
            upsert("a", "Ann@Example.com", "Ann"),
            upsert("b", "bob@example.com", "Bob"),
        ]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.members(), ["ann@example.com", "bob@example.com"]);
    let ann = fake.profile("ann@example.com").unwrap();
    assert_eq!(ann.attributes["first_name"], "Ann");
    assert_eq!(ann.attributes["properties"]["tier"], "gold");
    let sent = fake.requests();
    assert!(
        sent.iter()
            .all(|r| r.header("revision") == Some("2026-07-15"))
    );
    assert!(
        sent.iter()
            .filter(|r| r.method != "GET")
            .all(|r| r.header("content-type") == Some("application/vnd.api+json"))
    );
    assert_eq!(
        sent.iter()
            .filter(|r| r.path.ends_with("/relationships/profiles"))
            .count(),
        1,
        "one list call for the batch"
    );
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

#[test]
fn mirror_takes_leavers_off_the_list_and_keeps_their_profiles() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    i.push(&batch(vec![
        upsert("a", "ann@example.com", "Ann"),
        upsert("b", "bob@example.com", "Bob"),
    ]))
    .unwrap();
    let result = i
        .push(&batch(vec![
            remove("b-rm", "bob@example.com"),
            remove("c-rm", "never@example.com"),
        ]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.members(), ["ann@example.com"]);
    assert_eq!(fake.profile_count(), 2, "the profile stays");
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

#[test]
fn a_rejected_record_carries_klaviyos_reason_and_the_rest_land() {
    let fake = Fake::start();
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let result = i
        .push(&batch(vec![
            upsert("a", "ann@example.com", "Ann"),
            upsert("x", "x@mail.invalid", "X"),
            upsert("b", "bob@example.com", "Bob"),
        ]))
        .unwrap();
    let s: BTreeMap<String, String> = statuses(&result).into_iter().collect();
    assert_eq!(s["a"], "ok");
    assert_eq!(
        s["x"],
        "rejected: 400 Invalid input. Invalid email address (at /data/attributes/email)"
    );
    assert_eq!(s["b"], "ok");
    assert_eq!(fake.members(), ["ann@example.com", "bob@example.com"]);
}

#[test]
fn a_429_a_500_and_a_timeout_are_retried_and_nothing_lands_twice() {
    let fake = Fake::start();
    fake.inject("/profile-import", Fault::TooMany, 1);
    fake.inject("/relationships/profiles", Fault::Internal, 1);
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let started = std::time::Instant::now();
    let result = i
        .push(&batch(vec![upsert("a", "ann@example.com", "Ann")]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After: 1 honoured"
    );
    fake.inject(
        "/profile-import",
        Fault::Slow(Duration::from_millis(1500)),
        1,
    );
    let result = i
        .push(&batch(vec![upsert("b", "bob@example.com", "Bob")]))
        .unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.stats().injected, 3);
    assert_eq!(fake.profile_count(), 2);
    assert_eq!(fake.members(), ["ann@example.com", "bob@example.com"]);
}

#[test]
fn an_account_with_lower_limits_is_throttled_and_everything_still_lands() {
    let fake = Fake::start();
    // A small account: bursts of 3 a second for profile imports.
    fake.set_limits("profile-import", 3, 750);
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let ops: Vec<Operation> = (0..12)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    let result = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.members().len(), 12);
    // The plugin paces to the published burst of 75/s, above this fake's 3/s, so the fake
    // throttles; the host honours each Retry-After and everything lands.
    assert!(fake.stats().throttled > 0);
    assert_eq!(fake.stats().invalid, 0);
}

#[test]
fn the_steady_limit_is_kept_from_klaviyos_headers_without_a_429() {
    let fake = Fake::start();
    // 8 imports per sliding window of 2 s (a minute at Klaviyo): 20 profiles need three
    // windows, and only `RateLimit-Remaining` and `RateLimit-Reset` say when each has room.
    fake.set_limits("profile-import", 75, 8);
    fake.set_steady_window(Duration::from_secs(2));
    let setup = Setup::new();
    let mut i = setup.open(&fake, json!({})).unwrap();
    let ops: Vec<Operation> = (0..20)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    let started = std::time::Instant::now();
    let result = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.stats().throttled, 0, "never past the limit");
    assert!(
        fake.stats().limit_reached["profile-import"] >= 2,
        "{:?}",
        fake.stats().limit_reached
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for two windows"
    );
    assert_eq!(fake.members().len(), 20);
}

#[test]
fn large_sets_go_through_bulk_import_jobs_with_import_errors_as_rejections() {
    let fake = Fake::start();
    fake.set_polls_before_done(2);
    let setup = Setup::new();
    let mut i = setup
        .open(&fake, json!({"bulk_threshold": 5, "bulk_size": 8}))
        .unwrap();
    let mut ops: Vec<Operation> = (0..20)
        .map(|n| upsert(&format!("k{n}"), &format!("m{n}@example.com"), "M"))
        .collect();
    ops.push(upsert("bad", "bad@mail.invalid", "B"));
    let result = i.push(&batch(ops)).unwrap();
    let s: BTreeMap<String, String> = statuses(&result).into_iter().collect();
    assert_eq!(s.len(), 21);
    assert!(
        s["bad"].starts_with("rejected: import error: Invalid input. Invalid email address"),
        "{s:?}"
    );
    assert_eq!(s.values().filter(|v| *v == "ok").count(), 20, "{s:?}");
    let stats = fake.stats();
    assert_eq!(stats.jobs, 3, "21 profiles in jobs of 8");
    assert_eq!(stats.imports, 0, "no profile was sent one by one");
    assert_eq!(fake.members().len(), 20);
    assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
    assert!(
        setup.state.0.lock().unwrap().is_empty(),
        "finished jobs are forgotten"
    );
}

#[test]
fn a_job_still_running_at_the_timeout_is_waited_for_again_not_submitted_again() {
    let fake = Fake::start();
    fake.set_polls_before_done(1_000_000);
    let setup = Setup::new();
    let mut i = setup
        .open(&fake, json!({"bulk_threshold": 1, "job_timeout": 1}))
        .unwrap();
    let ops = batch(vec![
        upsert("a", "ann@example.com", "Ann"),
        upsert("b", "bob@example.com", "Bob"),
    ]);
    let result = i.push(&ops).unwrap();
    assert!(
        result.outcomes.iter().all(
            |o| matches!(&o.status, OutcomeStatus::Retry { reason, .. } if reason.contains("still"))
        ),
        "{:?}",
        statuses(&result)
    );
    fake.set_polls_before_done(0);
    let result = i.push(&ops).unwrap();
    assert!(all_ok(&result), "{:?}", statuses(&result));
    assert_eq!(fake.stats().jobs, 1, "the retry waited for the same job");
    assert_eq!(fake.members().len(), 2);
}

#[test]
fn a_wrong_key_is_a_config_error_naming_api_key_and_never_shown() {
    let fake = Fake::start();
    let setup = Setup::new();
    let wrong = "pk_ffffffffffffffffffffffffffffffffff";
    let mut i = setup.open(&fake, json!({"api_key": wrong})).unwrap();
    let err = i
        .push(&batch(vec![upsert("a", "ann@example.com", "Ann")]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/api_key"), "{text}");
    assert!(!text.contains("ffffffff"), "{text}");
    assert!(
        !setup.logs.all().contains("ffffffff"),
        "{}",
        setup.logs.all()
    );
}
