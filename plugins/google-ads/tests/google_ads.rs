//! google-ads, built as the `cdylib` Cohort loads, driven through the ABI and the host's HTTP
//! service against the fake Data Manager API and token endpoint.
#![allow(clippy::unwrap_used)]

mod fake;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cohort_adkeys::sha256_hex;
use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Operation, OutcomeStatus, PushResult,
};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, Instance, LoadedPlugin,
};
use cohort_plugin_testkit::{Logs, check_example, plugin};
use fake::{ACCOUNT, CLIENT_ID, CLIENT_SECRET, Fake, Fault, REFRESH_TOKEN, STATIC_TOKEN};
use serde_json::{Value, json};

const LIST: &str = "9000000001";

fn google() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-google-ads")).unwrap()
}

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

fn refresh_config(fake: &Fake) -> Value {
    json!({"operating_account_id": "123-456-7890", "base_url": fake.url(),
           "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
           "refresh_token": REFRESH_TOKEN, "token_url": fake.token_url()})
}

fn open_with(config: &Value, logs: &Arc<Logs>) -> Result<Instance, CallError> {
    let services = HostServices::default()
        .with_http(http())
        .with_log(logs.clone());
    google().open(config, services)
}

fn open(fake: &Fake, logs: &Arc<Logs>) -> Instance {
    open_with(&refresh_config(fake), logs).unwrap()
}

fn upsert(n: usize, fields: Value) -> Operation {
    Operation {
        key: format!("shop/lapsed/{n}/1-add"),
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
        key: format!("shop/lapsed/{n}/2-remove"),
        action: Action::Remove,
        ..upsert(n, fields)
    }
}

fn batch(operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("shop".into()),
        campaign: Some("lapsed".into()),
        mode: DestinationMode::Mirror,
        audience: Some(LIST.into()),
        replace: None,
        operations,
    }
}

fn email(n: usize) -> String {
    format!(" Customer{n}@Example.com")
}

fn hashed(n: usize) -> String {
    sha256_hex(&format!("customer{n}@example.com"))
}

fn all_ok(r: &PushResult) -> bool {
    r.outcomes.iter().all(|o| o.status == OutcomeStatus::Ok)
}

fn statuses(r: &PushResult) -> Vec<OutcomeStatus> {
    r.outcomes.iter().map(|o| o.status.clone()).collect()
}

#[test]
fn google_ads_passes_the_conformance_kit_with_the_example_it_ships() {
    check_example(&plugin("cohort-plugin-google-ads"), 3).assert_passed();
}

#[test]
fn members_are_ingested_hashed_with_consent_terms_and_hex_encoding_then_removed() {
    let fake = Fake::start();
    fake.list(LIST);
    let logs = Arc::new(Logs::default());
    let mut i = open(&fake, &logs);
    let full = |n: usize| {
        json!({"email": email(n), "phone": format!("(650) 253-12{n:02}"), "given_name": "Mary Ann",
               "family_name": "O'Neil", "region_code": "us", "postal_code": "94043-1351"})
    };
    let r = i
        .push(&batch((1..=3).map(|n| upsert(n, full(n))).collect()))
        .unwrap();
    assert!(all_ok(&r), "{:?}", statuses(&r));
    let member = &fake.members(LIST)[&hashed(1)];
    let ids = &member["userData"]["userIdentifiers"];
    assert_eq!(
        ids[1]["phoneNumber"],
        json!(sha256_hex("+16502531201")),
        "Google's phone has its +"
    );
    assert_eq!(
        ids[2]["address"]["givenName"],
        json!(sha256_hex("mary ann"))
    );
    assert_eq!(ids[2]["address"]["regionCode"], "US");
    assert_eq!(ids[2]["address"]["postalCode"], "94043-1351");
    let sent = fake.server.requests_to("/v1/audienceMembers:ingest")[0].json();
    assert_eq!(sent["encoding"], "HEX");
    assert_eq!(
        sent["destinations"][0]["operatingAccount"]["accountId"],
        ACCOUNT
    );
    assert_eq!(
        sent["termsOfService"]["customerMatchTermsOfServiceStatus"],
        "ACCEPTED"
    );

    let r = i.push(&batch(vec![remove(2, full(2))])).unwrap();
    assert!(all_ok(&r));
    assert_eq!(
        fake.keys(LIST),
        [hashed(1), hashed(3)].into_iter().collect()
    );
    assert!(
        fake.stats(|s| s.violations.is_empty()),
        "{:?}",
        fake.stats(|s| s.violations.clone())
    );
    let logged = logs.all();
    assert!(!logged.contains("TOPSECRET"), "{logged}");
}

#[test]
fn an_address_goes_only_with_all_four_parts() {
    let fake = Fake::start();
    fake.list(LIST);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let r = i
        .push(&batch(vec![upsert(
            1,
            json!({"email": email(1), "given_name": "Ann", "region_code": "FR"}),
        )]))
        .unwrap();
    assert!(all_ok(&r));
    let ids = fake.members(LIST)[&hashed(1)]["userData"]["userIdentifiers"].clone();
    assert_eq!(ids.as_array().unwrap().len(), 1, "{ids}");
}

#[test]
fn tokens_are_refreshed_before_they_expire() {
    let fake = Fake::start();
    fake.list(LIST);
    fake.token_lifetime(61); // within the minute's margin after a second
    let mut i = open(&fake, &Arc::new(Logs::default()));
    assert!(all_ok(
        &i.push(&batch(vec![upsert(1, json!({"email": email(1)}))]))
            .unwrap()
    ));
    std::thread::sleep(Duration::from_millis(1_200));
    assert!(all_ok(
        &i.push(&batch(vec![upsert(2, json!({"email": email(2)}))]))
            .unwrap()
    ));
    assert_eq!(fake.stats(|s| s.tokens_issued), 2);
}

#[test]
fn a_service_account_key_is_exchanged_for_tokens_with_a_signed_jwt() {
    let fake = Fake::start();
    fake.list(LIST);
    let key = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/service-account.json");
    let config = json!({"operating_account_id": ACCOUNT, "base_url": fake.url(),
                        "service_account_key_file": key, "token_url": fake.token_url()});
    let logs = Arc::new(Logs::default());
    let mut i = open_with(&config, &logs).unwrap();
    assert!(all_ok(
        &i.push(&batch(vec![upsert(1, json!({"email": email(1)}))]))
            .unwrap()
    ));
    assert_eq!(fake.stats(|s| s.tokens_issued), 1);
    assert!(!logs.all().contains("PRIVATE KEY"));
}

#[test]
fn a_refused_refresh_token_is_a_config_error_that_never_shows_it() {
    let fake = Fake::start();
    fake.list(LIST);
    let mut config = refresh_config(&fake);
    config["refresh_token"] = json!("1//TOPSECRET-revoked");
    let logs = Arc::new(Logs::default());
    let mut i = open_with(&config, &logs).unwrap();
    let err = i
        .push(&batch(vec![upsert(1, json!({"email": email(1)}))]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/refresh_token"), "{err}");
    assert!(
        !err.contains("TOPSECRET") && !logs.all().contains("TOPSECRET"),
        "{err}"
    );
}

#[test]
fn resource_exhausted_honours_retry_info_and_outages_are_retried() {
    let fake = Fake::start();
    fake.list(LIST);
    // Each 429 and 5xx is tried three times by the host before the plugin sees it.
    for _ in 0..3 {
        fake.fault(Fault::Exhausted(300));
    }
    for _ in 0..3 {
        fake.fault(Fault::Unavailable);
    }
    for _ in 0..3 {
        fake.fault(Fault::Internal);
    }
    let logs = Arc::new(Logs::default());
    let mut i = open(&fake, &logs);
    let r = i
        .push(&batch(vec![upsert(1, json!({"email": email(1)}))]))
        .unwrap();
    assert!(all_ok(&r), "{:?}", statuses(&r));
    assert_eq!(fake.stats(|s| s.ingests), 1);
    let logged = logs.all();
    assert!(
        logged.contains("\"wait_ms\":300"),
        "the RetryInfo delay was used: {logged}"
    );
}

#[test]
fn a_429_storm_longer_than_a_minute_answers_retry_without_holding_the_worker() {
    let fake = Fake::start();
    fake.list(LIST);
    for _ in 0..50 {
        fake.fault(Fault::Exhausted(90_000));
    }
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let r = i
        .push(&batch(vec![upsert(1, json!({"email": email(1)}))]))
        .unwrap();
    match &statuses(&r)[0] {
        OutcomeStatus::Retry { retry_after_ms, .. } => assert_eq!(*retry_after_ms, Some(90_000)),
        other => panic!("{other:?}"),
    }
    assert!(fake.keys(LIST).is_empty());
}

#[test]
fn one_invalid_identifier_among_1000_is_a_record_error_and_the_rest_go_in() {
    let fake = Fake::start();
    fake.list(LIST);
    // Refused by Google by name (as if its hash were malformed), the others accepted.
    fake.refuse(&hashed(321));
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let mut ops: Vec<Operation> = (0..1000)
        .map(|n| upsert(n, json!({"email": email(n)})))
        .collect();
    ops[500].payload = json!({"email": "not-an-email"});
    let r = i.push(&batch(ops)).unwrap();
    let bad: Vec<(String, OutcomeStatus)> = r
        .outcomes
        .iter()
        .filter(|o| o.status != OutcomeStatus::Ok)
        .map(|o| (o.key.clone(), o.status.clone()))
        .collect();
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(
        matches!(&bad[0].1, OutcomeStatus::Rejected { reason } if reason.contains("INVALID_SHA256_FORMAT")),
        "{bad:?}"
    );
    assert_eq!(bad[0].0, "shop/lapsed/321/1-add");
    assert!(
        matches!(&bad[1].1, OutcomeStatus::Rejected { reason } if reason.contains("field email")),
        "{bad:?}"
    );
    assert_eq!(fake.keys(LIST).len(), 998);
    assert_eq!(
        fake.stats(|s| s.requests.clone()),
        [("ingest".to_owned(), 998)]
    );
}

#[test]
fn an_invalid_argument_about_the_destination_is_a_config_error() {
    let fake = Fake::start(); // knows no list
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let err = i
        .push(&batch(vec![upsert(1, json!({"email": email(1)}))]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("product_destination_id") && err.contains("user list id"),
        "{err}"
    );
}

#[test]
fn requests_are_split_at_10000_members() {
    let fake = Fake::start();
    fake.list(LIST);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    let r = i
        .push(&batch(
            (0..21_000)
                .map(|n| upsert(n, json!({"email": email(n)})))
                .collect(),
        ))
        .unwrap();
    assert!(all_ok(&r));
    let sizes: Vec<usize> = fake.stats(|s| s.requests.iter().map(|(_, n)| *n).collect());
    assert_eq!(sizes, [10_000, 10_000, 1_000]);
}

#[test]
fn a_changed_email_removes_the_old_member_and_ingests_the_new_one() {
    let fake = Fake::start();
    fake.list(LIST);
    let mut i = open(&fake, &Arc::new(Logs::default()));
    i.push(&batch(vec![upsert(1, json!({"email": "old@example.com"}))]))
        .unwrap();
    let mut changed = upsert(1, json!({"email": "new@example.com"}));
    changed.key = "shop/lapsed/1/2-add".into();
    changed.previous = json!({"email": "old@example.com"});
    assert!(all_ok(&i.push(&batch(vec![changed])).unwrap()));
    assert_eq!(
        fake.keys(LIST),
        [sha256_hex("new@example.com")].into_iter().collect()
    );
}

#[test]
fn request_status_is_read_at_the_end_and_a_failed_request_comes_back_as_late_rejections() {
    let fake = Fake::start();
    fake.list(LIST);
    fake.processing_reads(1);
    let mut i = open_with(
        &json!({"operating_account_id": ACCOUNT, "base_url": fake.url(), "access_token": STATIC_TOKEN}),
        &Arc::new(Logs::default()),
    )
    .unwrap();
    fake.fail_next();
    assert!(all_ok(
        &i.push(&batch(vec![
            upsert(1, json!({"email": email(1)})),
            upsert(2, json!({"email": email(2)}))
        ]))
        .unwrap()
    ));
    // Still processing at the end of this run: nothing late yet, asked again next time.
    assert!(i.finish().unwrap().outcomes.is_empty());
    let late = i.finish().unwrap().outcomes;
    let keys: Vec<&str> = late.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["shop/lapsed/1/1-add", "shop/lapsed/2/1-add"]);
    assert!(late.iter().all(|o| matches!(&o.status, OutcomeStatus::Rejected { reason } if reason.contains("PROCESSING_ERROR_REASON_INTERNAL_ERROR"))));
    assert!(i.finish().unwrap().outcomes.is_empty(), "reported once");
    assert_eq!(fake.stats(|s| s.status_reads), 2);
}
