//! The sendgrid plugin, built as the `cdylib` Cohort loads, driven through the ABI and the
//! host's HTTP service against a fake SendGrid that checks every request against the vendor's
//! OpenAPI file.
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Message, Operation, OutcomeStatus, PushResult,
};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, Instance, LoadedPlugin, StateStore,
};
use cohort_plugin_testkit::{Logs, Reply, check_example, plugin};
use fake::{Fake, KEY};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct MemState(Mutex<BTreeMap<String, Value>>);

impl StateStore for MemState {
    fn get(&self, key: &str) -> Result<Option<Value>, String> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String> {
        let mut map = self.0.lock().unwrap();
        match value {
            Some(v) => map.insert(key.to_owned(), v.clone()),
            None => map.remove(key),
        };
        Ok(())
    }
}

/// Quick retries, so fault tests stay fast.
fn http() -> HttpService {
    HttpService::new(HttpPolicy {
        max_attempts: 2,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(1),
        rate_limit: None,
        ..HttpPolicy::default()
    })
    .unwrap()
}

fn open(fake: &Fake, state: &Arc<MemState>, logs: &Arc<Logs>) -> Result<Instance, CallError> {
    let config = json!({"api_key": KEY, "base_url": fake.url(), "timeout": 2,
                        "unsubscribe_mailto": "unsubscribe@shop.example",
                        "categories": ["winback"]});
    let services = HostServices::default()
        .with_http(http())
        .with_state(state.clone())
        .with_log(logs.clone());
    LoadedPlugin::load(plugin("cohort-plugin-sendgrid"))
        .unwrap()
        .open(&config, services)
}

fn send(n: usize, to: &str, html: &str) -> Operation {
    Operation {
        key: format!("acme/winback/{n}/1-send"),
        action: Action::Send,
        customer_id: CustomerId::new(n.to_string()),
        customer: None,
        payload: Value::Null,
        previous: Value::Null,
        message: Some(Message {
            from: Some("Records Shop <shop@shop.example>".into()),
            to: vec![to.into()],
            subject: Some(format!("We miss you, customer {n}")),
            text: Some("Come back".into()),
            html: Some(html.into()),
            headers: vec![
                ("Reply-To".into(), "care@shop.example".into()),
                (
                    "List-Unsubscribe".into(),
                    format!("<https://shop.example/u/{n}>"),
                ),
            ],
        }),
    }
}

fn sends(n: usize) -> Vec<Operation> {
    (1..=n)
        .map(|i| send(i, &format!("c{i}@example.com"), "<p>Come back</p>"))
        .collect()
}

fn batch(operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("acme".into()),
        campaign: Some("winback".into()),
        mode: DestinationMode::Send,
        audience: Some("winback".into()),
        replace: None,
        operations,
    }
}

fn statuses(result: &PushResult) -> Vec<OutcomeStatus> {
    result.outcomes.iter().map(|o| o.status.clone()).collect()
}

#[test]
fn the_sendgrid_plugin_passes_the_conformance_kit_with_the_example_it_ships() {
    check_example(&plugin("cohort-plugin-sendgrid"), 3).assert_passed();
}

#[test]
fn one_personalization_per_customer_with_the_key_in_custom_args_and_the_unsubscribe_headers() {
    let fake = Fake::start();
    let mut i = open(&fake, &Arc::default(), &Arc::default()).unwrap();
    let mut ops = sends(3);
    // A body of its own: a request of its own.
    ops.push(send(4, "d4@example.com", "<p>Hello Dee</p>"));
    let result = i.push(&batch(ops)).unwrap();
    assert!(statuses(&result).iter().all(|s| *s == OutcomeStatus::Ok));
    assert_eq!(fake.violations(), Vec::<String>::new());
    let requests = fake.server.requests_to("/v3/mail/send");
    assert_eq!(
        requests.len(),
        2,
        "the three sharing a body share a request"
    );
    let first = requests[0].json();
    assert_eq!(first["personalizations"].as_array().unwrap().len(), 3);
    assert_eq!(
        first["from"],
        json!({"email": "shop@shop.example", "name": "Records Shop"})
    );
    assert_eq!(first["reply_to"], json!({"email": "care@shop.example"}));
    assert_eq!(first["content"][0]["type"], "text/plain");
    assert_eq!(first["content"][1]["type"], "text/html");
    assert_eq!(first["categories"], json!(["winback"]));
    let p = &first["personalizations"][1];
    assert_eq!(p["to"], json!([{"email": "c2@example.com"}]));
    assert_eq!(p["subject"], "We miss you, customer 2");
    assert_eq!(p["custom_args"]["cohort_key"], "acme/winback/2/1-send");
    assert_eq!(
        p["headers"]["List-Unsubscribe"],
        "<https://shop.example/u/2>, <mailto:unsubscribe@shop.example?subject=unsubscribe>"
    );
    assert_eq!(
        p["headers"]["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(
        requests[0].header("authorization").unwrap(),
        format!("Bearer {KEY}")
    );
    assert_eq!(fake.copies().len(), 4);
}

#[test]
fn a_refused_address_is_rejected_with_sendgrids_reason_and_the_rest_land() {
    let fake = Fake::start();
    let mut i = open(&fake, &Arc::default(), &Arc::default()).unwrap();
    let mut ops = sends(3);
    ops[1] = send(2, "c2@invalid.example", "<p>Come back</p>");
    let result = statuses(&i.push(&batch(ops)).unwrap());
    assert_eq!(result[0], OutcomeStatus::Ok);
    assert!(
        matches!(&result[1], OutcomeStatus::Rejected { reason }
            if reason.contains("Does not contain a valid address") && reason.contains("personalizations.1.to.0.email")),
        "{result:?}"
    );
    assert_eq!(result[2], OutcomeStatus::Ok);
    assert_eq!(
        fake.copies().keys().collect::<Vec<_>>(),
        ["c1@example.com", "c3@example.com"]
    );
}

#[test]
fn a_429_is_retried_after_the_rate_limit_reset_and_nothing_is_sent_twice() {
    let fake = Fake::start();
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    let throttled = Reply::status(429)
        .with_header("X-RateLimit-Limit", "600")
        .with_header("X-RateLimit-Remaining", "0")
        .with_header("X-RateLimit-Reset", &reset.to_string())
        .with_json(&json!({"errors": [{"field": null, "message": "too many requests"}]}));
    // The host tries twice; both are throttled.
    fake.fault(throttled.clone());
    fake.fault(throttled);
    let state = Arc::new(MemState::default());
    let mut i = open(&fake, &state, &Arc::default()).unwrap();
    let b = batch(sends(2));
    let first = statuses(&i.push(&b).unwrap());
    for s in &first {
        let OutcomeStatus::Retry {
            retry_after_ms: Some(ms),
            reason,
        } = s
        else {
            panic!("{first:?}")
        };
        assert!((25_000..=31_000).contains(ms), "waits for the reset: {ms}");
        assert!(reason.contains("429"), "{reason}");
    }
    assert!(fake.accepted().is_empty());
    let second = statuses(&i.push(&b).unwrap());
    assert!(second.iter().all(|s| *s == OutcomeStatus::Ok), "{second:?}");
    let third = statuses(&i.push(&b).unwrap());
    assert!(third.iter().all(|s| *s == OutcomeStatus::Ok));
    assert_eq!(fake.accepted().len(), 2, "a second push sends nothing");
}

#[test]
fn a_500_and_a_timeout_leave_the_messages_to_retry_and_a_later_push_sends_them_once() {
    let fake = Fake::start();
    fake.fault(Reply::status(500).with_json(&json!({"errors": [{"message": "internal"}]})));
    fake.fault(Reply::status(202).delay(Duration::from_secs(4)));
    let mut i = open(&fake, &Arc::default(), &Arc::default()).unwrap();
    let b = batch(sends(1));
    for _ in 0..2 {
        let result = statuses(&i.push(&b).unwrap());
        assert!(
            matches!(result[0], OutcomeStatus::Retry { .. }),
            "{result:?}"
        );
    }
    let result = statuses(&i.push(&b).unwrap());
    assert_eq!(result, [OutcomeStatus::Ok]);
    assert_eq!(fake.accepted().len(), 1);
}

#[test]
fn a_refused_api_key_is_a_config_error_that_never_shows_the_key() {
    let fake = Fake::start();
    let logs = Arc::new(Logs::default());
    let config = json!({"api_key": "SG.wrong-TOPSECRET-key", "base_url": fake.url()});
    let services = HostServices::default()
        .with_http(http())
        .with_log(logs.clone());
    let mut i = LoadedPlugin::load(plugin("cohort-plugin-sendgrid"))
        .unwrap()
        .open(&config, services)
        .unwrap();
    let err = i.push(&batch(sends(1))).unwrap_err().to_string();
    assert!(err.contains("/api_key"), "{err}");
    assert!(
        !err.contains("TOPSECRET") && !logs.all().contains("TOPSECRET"),
        "{err}"
    );
}

#[test]
fn a_message_that_cannot_be_sent_is_rejected_before_any_request() {
    let fake = Fake::start();
    let mut i = open(&fake, &Arc::default(), &Arc::default()).unwrap();
    let mut two = send(2, "a@example.com", "<p>x</p>");
    two.message
        .as_mut()
        .unwrap()
        .to
        .push("b@example.com".into());
    let result = statuses(&i.push(&batch(vec![two])).unwrap());
    assert!(
        matches!(&result[0], OutcomeStatus::Rejected { reason } if reason.contains("one recipient")),
        "{result:?}"
    );
    assert_eq!(fake.server.count(), 0);
}

#[test]
fn the_fakes_spec_check_catches_a_body_sendgrid_would_refuse() {
    let spec = fake::Spec::load("sendgrid/tsg_mail_v3.json");
    let req = cohort_plugin_testkit::Recorded {
        method: "POST".into(),
        path: "/v3/mail/send".into(),
        query: Vec::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: String::new(),
        at: std::time::Instant::now(),
    };
    let bad = json!({"personalizations": [{"to": [{"name": "no email"}]}],
                     "content": [{"type": "text/plain"}]});
    let found = spec.check("post", "/v3/mail/send", &req, &bad);
    for expected in [
        "no Bearer credential",
        "body: missing required \"from\"",
        "body.personalizations.0.to.0: missing required \"email\"",
        "body.content.0: missing required \"value\"",
    ] {
        assert!(found.iter().any(|f| f == expected), "{expected}: {found:?}");
    }
}

// Modes `upsert` and `mirror`: the Marketing Campaigns list.

fn open_list(fake: &Fake, state: &Arc<MemState>) -> Result<Instance, CallError> {
    let config = json!({"api_key": KEY, "base_url": fake.url(), "timeout": 2,
                        "list_id": fake::LIST, "poll_interval": 0});
    let services = HostServices::default()
        .with_http(http())
        .with_state(state.clone());
    LoadedPlugin::load(plugin("cohort-plugin-sendgrid"))
        .unwrap()
        .open(&config, services)
}

fn contact_op(n: usize, action: Action, payload: Value) -> Operation {
    Operation {
        key: format!("acme/vips/{n}/1-{}", action.as_str()),
        action,
        customer_id: CustomerId::new(n.to_string()),
        customer: None,
        payload,
        previous: Value::Null,
        message: None,
    }
}

fn upsert(n: usize, email: &str) -> Operation {
    contact_op(
        n,
        Action::Upsert,
        json!({"email": email, "first_name": format!("Customer {n}"), "last_name": "",
               "tier": "gold", "orders": n.to_string()}),
    )
}

fn remove(n: usize, email: &str) -> Operation {
    contact_op(n, Action::Remove, json!({"email": email}))
}

fn list_batch(mode: DestinationMode, operations: Vec<Operation>) -> Batch {
    Batch {
        mode,
        audience: Some("vips".into()),
        ..batch(operations)
    }
}

fn upserts(n: usize) -> Vec<Operation> {
    (1..=n)
        .map(|i| upsert(i, &format!("C{i}@Example.com")))
        .collect()
}

#[test]
fn upsert_puts_the_contacts_on_the_list_with_their_custom_fields_by_id() {
    let fake = Fake::start();
    let mut i = open_list(&fake, &Arc::default()).unwrap();
    let result = i
        .push(&list_batch(DestinationMode::Upsert, upserts(3)))
        .unwrap();
    assert!(
        statuses(&result).iter().all(|s| *s == OutcomeStatus::Ok),
        "{result:?}"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
    assert_eq!(
        fake.member_emails(),
        ["c1@example.com", "c2@example.com", "c3@example.com"]
    );
    let c2 = &fake.members()[1];
    assert_eq!(c2.first_name.as_deref(), Some("Customer 2"));
    assert_eq!(c2.last_name, None, "an empty field is left alone");
    assert_eq!(
        c2.custom_fields,
        [
            ("e1_T".to_owned(), json!("gold")),
            ("e2_N".to_owned(), json!(2))
        ]
        .into()
    );
    let puts = fake.server.requests_to("/v3/marketing/contacts");
    assert_eq!(puts.len(), 1, "one import job for the chunk");
    assert_eq!(puts[0].json()["list_ids"], json!([fake::LIST]));
    assert_eq!(
        fake.server
            .requests_to("/v3/marketing/field_definitions")
            .len(),
        1
    );
}

#[test]
fn mirror_takes_leavers_off_the_list_and_never_deletes_a_contact() {
    let fake = Fake::start();
    fake.add_member("kept@example.com");
    let mut i = open_list(&fake, &Arc::default()).unwrap();
    i.push(&list_batch(DestinationMode::Mirror, upserts(3)))
        .unwrap();
    // Customer 1 left the segment, customer 2 withdrew consent: both are removals; the third
    // address was never a contact.
    let result = i
        .push(&list_batch(
            DestinationMode::Mirror,
            vec![
                remove(1, "c1@example.com"),
                remove(2, "C2@example.com"),
                remove(9, "never@example.com"),
            ],
        ))
        .unwrap();
    assert!(
        statuses(&result).iter().all(|s| *s == OutcomeStatus::Ok),
        "{result:?}"
    );
    assert_eq!(fake.member_emails(), ["c3@example.com", "kept@example.com"]);
    assert_eq!(fake.contacts().len(), 4, "leavers stay contacts");
    let deletes: Vec<_> = fake
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1, "one removal for the chunk");
    assert_eq!(
        deletes[0].query("contact_ids").unwrap().split(',').count(),
        2
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn a_contact_the_import_job_refuses_is_rejected_with_sendgrids_reason_and_the_rest_land() {
    let fake = Fake::start();
    let mut i = open_list(&fake, &Arc::default()).unwrap();
    let mut ops = upserts(3);
    ops[1] = upsert(2, "c2@invalid.example");
    let result = statuses(&i.push(&list_batch(DestinationMode::Upsert, ops)).unwrap());
    assert_eq!(result[0], OutcomeStatus::Ok);
    assert!(
        matches!(&result[1], OutcomeStatus::Rejected { reason }
            if reason.contains("email is not a valid email address") && reason.contains("job-")),
        "{result:?}"
    );
    assert_eq!(result[2], OutcomeStatus::Ok);
    assert_eq!(fake.member_emails(), ["c1@example.com", "c3@example.com"]);
    assert_eq!(
        fake.violations(),
        Vec::<String>::new(),
        "the errors file is fetched without the key"
    );
}

#[test]
fn an_unknown_custom_field_rejects_its_records_by_name_before_any_upsert() {
    let fake = Fake::start();
    let mut i = open_list(&fake, &Arc::default()).unwrap();
    let op = contact_op(
        1,
        Action::Upsert,
        json!({"email": "a@example.com", "shoe_size": "44"}),
    );
    let result = statuses(
        &i.push(&list_batch(DestinationMode::Upsert, vec![op]))
            .unwrap(),
    );
    assert!(
        matches!(&result[0], OutcomeStatus::Rejected { reason } if reason.contains("`shoe_size`")),
        "{result:?}"
    );
    assert!(fake.server.requests_to("/v3/marketing/contacts").is_empty());
}

#[test]
fn a_429_waits_for_retry_after_a_500_is_retried_and_a_second_push_changes_nothing() {
    let fake = Fake::start();
    let throttled = Reply::status(429)
        .retry_after(1)
        .with_json(&json!({"errors": [{"field": null, "message": "too many requests"}]}));
    // The host tries twice; both are throttled.
    fake.fault_on("/v3/marketing/contacts", throttled.clone());
    fake.fault_on("/v3/marketing/contacts", throttled);
    let state = Arc::new(MemState::default());
    let mut i = open_list(&fake, &state).unwrap();
    let b = list_batch(DestinationMode::Upsert, upserts(2));
    let first = statuses(&i.push(&b).unwrap());
    for s in &first {
        assert!(
            matches!(s, OutcomeStatus::Retry { retry_after_ms: Some(1000), reason } if reason.contains("429")),
            "{first:?}"
        );
    }
    assert!(fake.members().is_empty());
    // A 500 on the upsert: the host repeats the PUT (an upsert by address), once.
    fake.fault_on(
        "/v3/marketing/contacts",
        Reply::status(500).with_json(&json!({"errors": [{"message": "internal"}]})),
    );
    let second = statuses(&i.push(&b).unwrap());
    assert!(second.iter().all(|s| *s == OutcomeStatus::Ok), "{second:?}");
    assert_eq!(fake.member_emails(), ["c1@example.com", "c2@example.com"]);
    let contacts = fake.contacts();
    let third = statuses(&i.push(&b).unwrap());
    assert!(third.iter().all(|s| *s == OutcomeStatus::Ok));
    assert_eq!(fake.contacts(), contacts, "pushed again, nothing changes");
    assert_eq!(
        state.0.lock().unwrap().len(),
        0,
        "finished jobs are forgotten"
    );
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn a_list_mode_without_list_id_is_a_config_error_naming_it() {
    let fake = Fake::start();
    let mut i = open(&fake, &Arc::default(), &Arc::default()).unwrap();
    let err = i
        .push(&list_batch(DestinationMode::Mirror, upserts(1)))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/list_id") && err.contains("mirror"), "{err}");
    assert_eq!(fake.server.count(), 0);
}

#[test]
fn global_unsubscribes_are_read_back_from_the_cursor_on() {
    let fake = Fake::start();
    fake.unsubscribe("gone@example.com", 1_700_000_000);
    fake.unsubscribe("later@example.com", 1_700_000_100);
    let mut i = open(&fake, &Arc::default(), &Arc::default()).unwrap();
    let first = i.suppressions(&Value::Null).unwrap();
    let emails = |p: &cohort_plugin_api::wire::SuppressionsPage| {
        p.suppressions
            .iter()
            .map(|s| s.email.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(emails(&first), ["later@example.com", "gone@example.com"]);
    assert!(first.done);
    assert!(
        first
            .suppressions
            .iter()
            .all(|s| s.reason == cohort_plugin_api::wire::SuppressionReason::Unsubscribed)
    );
    assert_eq!(first.next_cursor, json!({"since": 1_700_000_100}));
    fake.unsubscribe("newest@example.com", 1_700_000_200);
    let second = i.suppressions(&first.next_cursor).unwrap();
    assert_eq!(
        emails(&second),
        ["newest@example.com", "later@example.com"],
        "from the cursor's second on, inclusive"
    );
    assert_eq!(second.next_cursor, json!({"since": 1_700_000_200}));
    let reads = fake.server.requests_to("/v3/suppression/unsubscribes");
    assert_eq!(reads[0].query("start_time"), None);
    assert_eq!(reads[1].query("start_time"), Some("1700000100"));
    assert_eq!(
        reads[1].header("authorization").unwrap(),
        format!("Bearer {KEY}")
    );
}

#[test]
fn upserts_keep_to_sendgrids_rate_limit_headers_without_a_429() {
    let fake = Fake::start();
    // Three requests per endpoint per period of 2 s: four upserts (and their eight polls)
    // need several periods, and only `X-RateLimit-Remaining` and `X-RateLimit-Reset` say
    // when each one has room again.
    fake.set_rate_limit(3, 2);
    let state = Arc::new(MemState::default());
    let mut i = open_list(&fake, &state).unwrap();
    let started = std::time::Instant::now();
    for n in 0..4 {
        let op = upsert(n, &format!("p{n}@example.com"));
        let result = i
            .push(&list_batch(DestinationMode::Upsert, vec![op]))
            .unwrap();
        assert!(
            result
                .outcomes
                .iter()
                .all(|o| o.status == OutcomeStatus::Ok),
            "{:?}",
            result.outcomes
        );
    }
    let stats = fake.rate_stats();
    assert_eq!(
        stats.throttled, 0,
        "never past the limit: {:?}",
        stats.periods
    );
    let polls = &stats.periods["GET /v3/marketing/contacts/imports/{id}"];
    assert_eq!(polls.values().sum::<u64>(), 8);
    assert!(polls.values().all(|&n| n <= 3), "{polls:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited for the next period"
    );
    assert_eq!(fake.member_emails().len(), 4);
}
