//! meta-ads, built as the `cdylib` Cohort loads, driven through the ABI and the host's HTTP
//! service against the fake Graph API.
#![allow(clippy::unwrap_used)]

mod fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_adkeys::sha256_hex;
use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Operation, OutcomeStatus, PushResult, Replace,
};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, Instance, LoadedPlugin,
};
use cohort_plugin_testkit::{Logs, check_example, plugin};
use fake::{APP_SECRET, Fake, Fault, TOKEN};
use serde_json::{Value, json};

const AUDIENCE: &str = "23851234567890";

fn meta() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-meta-ads")).unwrap()
}

/// Quick host retries, so fault tests stay fast.
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

fn open_with(fake: &Fake, logs: &Arc<Logs>, extra: &Value) -> Result<Instance, CallError> {
    let mut config =
        json!({"access_token": TOKEN, "base_url": fake.url(), "app_secret": APP_SECRET});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let services = HostServices::default()
        .with_http(http())
        .with_log(logs.clone());
    meta().open(&config, services)
}

fn open(fake: &Fake, logs: &Arc<Logs>) -> Instance {
    open_with(fake, logs, &json!({})).unwrap()
}

fn upsert(n: usize, fields: Value) -> Operation {
    Operation {
        key: format!("shop/vip/{n}/1-add"),
        action: Action::Upsert,
        customer_id: CustomerId::new(n.to_string()),
        customer: None,
        payload: fields,
        previous: Value::Null,
        message: None,
    }
}

fn remove(n: usize, fields: Value) -> Operation {
    Operation {
        key: format!("shop/vip/{n}/2-remove"),
        action: Action::Remove,
        ..upsert(n, fields)
    }
}

fn batch(operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("shop".into()),
        campaign: Some("vip".into()),
        mode: DestinationMode::Mirror,
        audience: Some(AUDIENCE.into()),
        replace: None,
        operations,
    }
}

fn email(n: usize) -> String {
    format!("Customer{n}@Example.com ")
}

fn hashed_email(n: usize) -> String {
    sha256_hex(&format!("customer{n}@example.com"))
}

fn statuses(result: &PushResult) -> Vec<OutcomeStatus> {
    result.outcomes.iter().map(|o| o.status.clone()).collect()
}

fn all_ok(result: &PushResult) -> bool {
    result
        .outcomes
        .iter()
        .all(|o| o.status == OutcomeStatus::Ok)
}

#[test]
fn meta_ads_passes_the_conformance_kit_with_the_example_it_ships() {
    check_example(&plugin("cohort-plugin-meta-ads"), 3).assert_passed();
}

#[test]
fn mirror_adds_and_removes_rows_hashed_by_metas_rules() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let logs = Arc::new(Logs::default());
    let mut i = open(&fake, &logs);
    let fields = |n: usize| {
        json!({"EMAIL": email(n), "PHONE": format!("+1 (650) 253-12{n:02}"), "FN": " José ",
               "COUNTRY": "US", "ZIP": "94043-1351"})
    };
    let r = i
        .push(&batch((1..=3).map(|n| upsert(n, fields(n))).collect()))
        .unwrap();
    assert!(all_ok(&r), "{:?}", statuses(&r));
    let members = fake.members(AUDIENCE);
    assert_eq!(members.len(), 3);
    let ann = &members[&hashed_email(1)];
    assert_eq!(
        ann["PHONE"],
        json!(sha256_hex("16502531201")),
        "Meta's phone has no +"
    );
    assert_eq!(ann["FN"], json!(sha256_hex("josé")));
    assert_eq!(
        ann["ZIP"],
        json!(sha256_hex("94043")),
        "US ZIP+4 keeps five digits"
    );
    assert_eq!(ann["COUNTRY"], json!(sha256_hex("us")));

    let r = i.push(&batch(vec![remove(2, fields(2))])).unwrap();
    assert!(all_ok(&r));
    assert_eq!(
        fake.keys(AUDIENCE),
        [hashed_email(1), hashed_email(3)].into_iter().collect()
    );
    assert!(
        fake.stats(|s| s.violations.is_empty()),
        "{:?}",
        fake.stats(|s| s.violations.clone())
    );
    let logged = logs.all();
    assert!(
        !logged.contains(TOKEN) && !logged.contains(APP_SECRET),
        "{logged}"
    );
}

#[test]
fn every_request_carries_the_token_and_the_appsecret_proof() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    i.push(&batch(vec![upsert(1, json!({"EMAIL": "a@b.co"}))]))
        .unwrap();
    let sent = &fake.server.requests()[0];
    assert_eq!(sent.path, format!("/v25.0/{AUDIENCE}/users"));
    assert_eq!(
        sent.query("appsecret_proof"),
        Some(cohort_plugin_meta_ads::client::appsecret_proof(APP_SECRET, TOKEN).as_str())
    );
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[test]
fn a_refused_token_is_a_config_error_that_never_shows_the_token() {
    let fake = Fake::start(false);
    fake.audience(AUDIENCE);
    let logs = Arc::new(Logs::default());
    let mut i = open_with(
        &fake,
        &logs,
        &json!({"access_token": "EAAB-wrong-TOPSECRET"}),
    )
    .unwrap();
    let err = i
        .push(&batch(vec![upsert(1, json!({"EMAIL": "a@b.co"}))]))
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/access_token"), "{text}");
    assert!(text.contains("190"), "Meta's code is quoted: {text}");
    assert!(
        !text.contains("TOPSECRET") && !logs.all().contains("TOPSECRET"),
        "{text}"
    );
}

#[test]
fn a_large_batch_is_sent_in_requests_of_at_most_10000_rows() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let ops = (0..25_000)
        .map(|n| upsert(n, json!({"EMAIL": email(n)})))
        .collect();
    let r = i.push(&batch(ops)).unwrap();
    assert!(all_ok(&r));
    let sizes: Vec<usize> = fake.stats(|s| s.requests.iter().map(|(_, n)| *n).collect());
    assert_eq!(sizes, [10_000, 10_000, 5_000]);
    assert_eq!(fake.keys(AUDIENCE).len(), 25_000);
}

#[test]
fn metas_rate_limit_codes_are_waited_out_and_the_request_sent_again() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    fake.fault(Fault::Throttle {
        code: 17,
        regain: 0,
    });
    fake.fault(Fault::Throttle {
        code: 613,
        regain: 0,
    });
    fake.fault(Fault::Throttle {
        code: 80003,
        regain: 0,
    });
    let logs = Arc::new(Logs::default());
    let mut i = open(&fake, &logs);
    let r = i
        .push(&batch(vec![upsert(1, json!({"EMAIL": email(1)}))]))
        .unwrap();
    assert!(all_ok(&r), "{:?}", statuses(&r));
    assert_eq!(fake.server.count(), 4);
    assert_eq!(fake.keys(AUDIENCE).len(), 1);
    assert!(logs.all().contains("Meta asked to wait"), "{}", logs.all());
}

#[test]
fn a_business_use_case_wait_longer_than_a_minute_answers_retry_with_that_delay() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    fake.fault(Fault::Throttle {
        code: 80003,
        regain: 5,
    });
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let started = Instant::now();
    let r = i
        .push(&batch(vec![upsert(1, json!({"EMAIL": email(1)}))]))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no worker held for 5 minutes"
    );
    match &statuses(&r)[0] {
        OutcomeStatus::Retry {
            retry_after_ms,
            reason,
        } => {
            assert_eq!(*retry_after_ms, Some(300_000));
            assert!(reason.contains("80003"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.keys(AUDIENCE).is_empty());
}

#[test]
fn a_transient_error_is_retried_and_a_429_storm_is_ridden_out() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    fake.fault(Fault::Transient);
    for _ in 0..6 {
        fake.fault(Fault::Status(429));
    }
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let r = i
        .push(&batch(vec![upsert(1, json!({"EMAIL": email(1)}))]))
        .unwrap();
    assert!(all_ok(&r), "{:?}", statuses(&r));
    assert_eq!(fake.keys(AUDIENCE).len(), 1);
    assert_eq!(
        fake.stats(|s| s.adds),
        1,
        "applied once, whatever the retries"
    );
}

#[test]
fn one_invalid_identifier_among_1000_is_rejected_by_name_and_the_rest_are_sent() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let ops = (0..1000)
        .map(|n| {
            let e = if n == 500 {
                "customer500.example.com".to_owned()
            } else {
                email(n)
            };
            upsert(n, json!({"EMAIL": e}))
        })
        .collect();
    let r = i.push(&batch(ops)).unwrap();
    let bad: Vec<_> = r
        .outcomes
        .iter()
        .filter(|o| o.status != OutcomeStatus::Ok)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].key, "shop/vip/500/1-add");
    assert!(
        matches!(&bad[0].status, OutcomeStatus::Rejected { reason } if reason.contains("EMAIL") && reason.contains("not an email")),
        "{:?}",
        bad[0].status
    );
    assert_eq!(
        fake.stats(|s| s.requests.clone()),
        [("add".to_owned(), 999)]
    );
}

#[test]
fn rows_meta_counts_invalid_are_rejected_with_its_reason_and_reported() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    fake.poison(&hashed_email(7));
    let logs = Arc::new(Logs::default());
    let mut i = open(&fake, &logs);
    let r = i
        .push(&batch(
            (5..10)
                .map(|n| upsert(n, json!({"EMAIL": email(n)})))
                .collect(),
        ))
        .unwrap();
    let rejected: Vec<_> = r
        .outcomes
        .iter()
        .filter(|o| matches!(&o.status, OutcomeStatus::Rejected { reason } if reason.contains("Invalid EMAIL hash")))
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(rejected, ["shop/vip/7/1-add"]);
    i.finish().unwrap();
    let logged = logs.all();
    assert!(logged.contains("\"num_invalid_entries\":1"), "{logged}");
}

#[test]
fn a_changed_email_removes_the_old_hash_and_adds_the_new_one() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    i.push(&batch(vec![upsert(1, json!({"EMAIL": "old@example.com"}))]))
        .unwrap();
    let mut changed = upsert(1, json!({"EMAIL": "new@example.com"}));
    changed.key = "shop/vip/1/2-add".into();
    changed.previous = json!({"EMAIL": "old@example.com"});
    let r = i.push(&batch(vec![changed])).unwrap();
    assert!(all_ok(&r));
    assert_eq!(
        fake.keys(AUDIENCE),
        [sha256_hex("new@example.com")].into_iter().collect()
    );
    let edges: Vec<String> = fake.stats(|s| s.requests.iter().map(|(e, _)| e.clone()).collect());
    assert_eq!(edges, ["add", "remove", "add"]);
}

#[test]
fn a_value_that_is_already_a_hash_is_refused_and_never_sent() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let r = i
        .push(&batch(vec![upsert(1, json!({"EMAIL": hashed_email(1)}))]))
        .unwrap();
    assert!(
        matches!(&statuses(&r)[0], OutcomeStatus::Rejected { reason } if reason.contains("looks like a hash")),
        "{:?}",
        statuses(&r)
    );
    assert_eq!(fake.server.count(), 0);
}

#[test]
fn value_based_audiences_carry_lookalike_value_as_a_number() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let r = i
        .push(&batch(vec![upsert(
            1,
            json!({"EMAIL": email(1), "LOOKALIKE_VALUE": "250.75"}),
        )]))
        .unwrap();
    assert!(all_ok(&r));
    assert_eq!(
        fake.members(AUDIENCE)[&hashed_email(1)]["LOOKALIKE_VALUE"],
        json!(250.75)
    );
}

#[test]
fn a_resync_replaces_the_audience_through_one_usersreplace_session() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    i.push(&batch(
        (0..5)
            .map(|n| upsert(n, json!({"EMAIL": email(n)})))
            .collect(),
    ))
    .unwrap();
    // The resync holds customers 3..=25_002: 0, 1 and 2 must go, the rest arrive.
    let total = 25_000;
    let members: Vec<usize> = (3..3 + total).collect();
    let halves = [&members[..12_000], &members[12_000..]];
    for (n, half) in halves.iter().enumerate() {
        let mut b = batch(
            half.iter()
                .map(|&n| upsert(n, json!({"EMAIL": email(n)})))
                .collect(),
        );
        b.replace = Some(Replace {
            session: "shop/vip/run-9".into(),
            seq: u32::try_from(n + 1).unwrap(),
            last: n == 1,
            estimated_total: total as u64,
        });
        assert!(all_ok(&i.push(&b).unwrap()));
    }
    let keys = fake.keys(AUDIENCE);
    assert_eq!(keys.len(), total);
    assert!(!keys.contains(&hashed_email(0)) && keys.contains(&hashed_email(3)));
    assert_eq!(
        fake.stats(|s| s.replaces),
        4,
        "12,000 and 13,000 rows: 2 + 2 requests"
    );
    assert!(
        fake.stats(|s| s.violations.is_empty()),
        "{:?}",
        fake.stats(|s| s.violations.clone())
    );
}

#[test]
fn campaign_fields_that_are_not_meta_keys_are_not_sent_and_warned_about_once() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
    let logs = Arc::new(Logs::default());
    let mut i = open(&fake, &logs);
    let ops = (0..3)
        .map(|n| upsert(n, json!({"email": email(n), "offer": "10%"})))
        .collect();
    assert!(all_ok(&i.push(&batch(ops)).unwrap()));
    let sent = fake.server.requests()[0].body.clone();
    assert!(!sent.contains("offer") && !sent.contains("10%25"), "{sent}");
    assert_eq!(
        logs.all().matches("not a key of Meta").count(),
        1,
        "{}",
        logs.all()
    );
}
