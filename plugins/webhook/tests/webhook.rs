//! The webhook, built as the `cdylib` Cohort loads, driven through the ABI and the host's HTTP
//! service against a fake endpoint on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Message, Operation, OutcomeStatus, PushResult,
};
use cohort_plugin_host::{
    CallError, HostServices, HttpPolicy, HttpService, Instance, LoadedPlugin,
};
use cohort_plugin_testkit::{FakeServer, Logs, Reply, check_example, plugin};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "whsec_TOPSECRET_signing_key";
const TOKEN: &str = "hook_token_TOPSECRET_42";

fn webhook() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-webhook")).unwrap()
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

fn open(server: &FakeServer, logs: &Arc<Logs>) -> Instance {
    let config = json!({
        "url": server.url_of("/hook"),
        "secret": SECRET,
        "headers": {"Authorization": format!("Bearer {TOKEN}")},
        "timeout": 5
    });
    let services = HostServices::default()
        .with_http(http())
        .with_log(logs.clone());
    webhook().open(&config, services).unwrap()
}

fn op(key: &str, action: Action) -> Operation {
    Operation {
        key: key.into(),
        action,
        customer_id: CustomerId::new("42"),
        customer: None,
        previous: Value::Null,
        payload: if action == Action::Upsert {
            json!({"first_name": "Ann", "offer": "10%"})
        } else {
            Value::Null
        },
        message: (action == Action::Send).then(|| Message {
            from: Some("shop@example.com".into()),
            to: vec!["ann@example.com".into()],
            subject: Some("Welcome back".into()),
            text: Some("Hello Ann".into()),
            ..Message::default()
        }),
    }
}

fn batch(mode: DestinationMode, operations: Vec<Operation>) -> Batch {
    Batch {
        workspace: Some("acme".into()),
        campaign: Some("winback".into()),
        mode,
        audience: Some("vip".into()),
        replace: None,
        operations,
    }
}

fn statuses(result: &PushResult) -> Vec<(String, OutcomeStatus)> {
    result
        .outcomes
        .iter()
        .map(|o| (o.key.clone(), o.status.clone()))
        .collect()
}

#[test]
fn the_webhook_passes_the_conformance_kit_with_the_example_it_ships() {
    check_example(&plugin("cohort-plugin-webhook"), 3).assert_passed();
}

#[test]
fn a_batch_is_posted_as_json_with_an_idempotency_key_and_a_verifiable_signature() {
    let server = FakeServer::start();
    server.reply("POST", "/hook", Reply::ok());
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let result = i
        .push(&batch(
            DestinationMode::Mirror,
            vec![
                op("vip:42:add", Action::Upsert),
                op("vip:7:rm", Action::Remove),
            ],
        ))
        .unwrap();
    assert!(
        statuses(&result)
            .iter()
            .all(|(_, s)| *s == OutcomeStatus::Ok)
    );

    let sent = &server.requests()[0];
    let body = sent.json();
    let key = body["batch_key"].as_str().unwrap();
    assert_eq!(sent.header("idempotency-key"), Some(key));
    assert!(key.starts_with("cohort-"));
    assert_eq!(
        body,
        json!({
            "workspace": "acme", "campaign": "winback", "mode": "mirror", "batch_key": key,
            "records": [
                {"key": "vip:42:add", "action": "upsert", "customer_id": "42",
                 "payload": {"first_name": "Ann", "offer": "10%"}},
                {"key": "vip:7:rm", "action": "remove", "customer_id": "42", "payload": null}
            ]
        })
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // The receiver's side of Stripe's scheme: recompute the HMAC of "t.body".
    let signature = sent.header("cohort-signature").unwrap();
    let (t, v1) = signature.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", sent.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t.parse::<u64>().unwrap()) < 60);
}

#[test]
fn a_retried_batch_carries_the_same_idempotency_key_and_is_acknowledged_once() {
    let server = FakeServer::start();
    server.script(
        "POST",
        "/hook",
        vec![Reply::status(503), Reply::dropped(), Reply::ok()],
    );
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let result = i
        .push(&batch(
            DestinationMode::Upsert,
            vec![op("k1", Action::Upsert)],
        ))
        .unwrap();
    assert_eq!(statuses(&result), [("k1".to_owned(), OutcomeStatus::Ok)]);
    let keys: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_owned())
        .collect();
    assert_eq!(
        keys.len(),
        3,
        "503 and a dropped connection were retried by the host"
    );
    assert!(keys.iter().all(|k| *k == keys[0]));
    // The same operations in a later push (a new run) carry the same key again.
    i.push(&batch(
        DestinationMode::Upsert,
        vec![op("k1", Action::Upsert)],
    ))
    .unwrap();
    assert_eq!(
        server.requests()[3].header("idempotency-key"),
        Some(keys[0].as_str())
    );
}

#[test]
fn per_record_results_give_each_operation_its_own_outcome() {
    let server = FakeServer::start();
    server.reply(
        "POST",
        "/hook",
        Reply::json(&json!({"results": [
            {"key": "a", "status": "ok"},
            {"key": "b", "status": "rejected", "reason": "unknown customer"},
            {"key": "c", "status": "retry", "reason": "locked"}
        ]})),
    );
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let ops = ["a", "b", "c", "d"].map(|k| op(k, Action::Upsert)).to_vec();
    let result = i.push(&batch(DestinationMode::Upsert, ops)).unwrap();
    let got = statuses(&result);
    assert_eq!(got[0].1, OutcomeStatus::Ok);
    assert_eq!(
        got[1].1,
        OutcomeStatus::Rejected {
            reason: "unknown customer".into()
        }
    );
    assert!(matches!(&got[2].1, OutcomeStatus::Retry { reason, .. } if reason == "locked"));
    assert!(
        matches!(&got[3].1, OutcomeStatus::Retry { .. }),
        "a key the endpoint did not mention is tried again, never assumed done: {got:?}"
    );
}

#[test]
fn a_4xx_rejects_the_batch_with_the_endpoints_text() {
    let server = FakeServer::start();
    server.reply(
        "POST",
        "/hook",
        Reply::status(422).with_body("field `email` is required"),
    );
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let ops = vec![op("a", Action::Upsert), op("b", Action::Upsert)];
    let result = i.push(&batch(DestinationMode::Upsert, ops)).unwrap();
    for (_, status) in statuses(&result) {
        let OutcomeStatus::Rejected { reason } = status else {
            panic!("{status:?}")
        };
        assert!(
            reason.contains("422") && reason.contains("field `email` is required"),
            "{reason}"
        );
    }
    assert_eq!(server.count(), 1, "a 4xx is not retried");
}

#[test]
fn a_429_the_host_will_not_wait_out_retries_the_operations_after_the_endpoints_delay() {
    let server = FakeServer::start();
    server.reply("POST", "/hook", Reply::status(429).retry_after(3600));
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let result = i
        .push(&batch(
            DestinationMode::Upsert,
            vec![op("a", Action::Upsert)],
        ))
        .unwrap();
    assert!(matches!(
        &statuses(&result)[0].1,
        OutcomeStatus::Retry { retry_after_ms: Some(3_600_000), reason } if reason.contains("429")
    ));
}

#[test]
fn a_refused_credential_is_a_config_error_and_no_secret_reaches_logs_or_errors() {
    let server = FakeServer::start();
    // An endpoint that echoes what it was sent, secrets included.
    server.on("POST", "/hook", |req| {
        Reply::status(401).with_body(format!(
            "bad credentials: {} / {}",
            req.header("authorization").unwrap_or(""),
            req.header("cohort-signature").unwrap_or("")
        ))
    });
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let err = i
        .push(&batch(
            DestinationMode::Upsert,
            vec![op("a", Action::Upsert)],
        ))
        .unwrap_err();
    let CallError::Config(issues) = &err else {
        panic!("{err:?}")
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["/headers/Authorization", "/secret"]);
    let everything = format!("{err}\n{}", logs.all());
    assert!(everything.contains("401 Unauthorized"), "{everything}");
    assert!(
        !everything.contains(TOKEN),
        "the token leaked:\n{everything}"
    );
    assert!(
        !everything.contains(SECRET),
        "the secret leaked:\n{everything}"
    );
}

#[test]
fn send_records_carry_the_rendered_message() {
    let server = FakeServer::start();
    server.reply("POST", "/hook", Reply::ok());
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    i.push(&batch(
        DestinationMode::Send,
        vec![op("welcome:42", Action::Send)],
    ))
    .unwrap();
    let record = &server.requests()[0].json()["records"][0];
    assert_eq!(record["action"], "send");
    assert_eq!(record["payload"]["message"]["subject"], "Welcome back");
    assert_eq!(
        record["payload"]["message"]["to"],
        json!(["ann@example.com"])
    );
}

#[test]
fn a_large_batch_is_split_into_requests_of_at_most_500_each_with_its_own_key() {
    let server = FakeServer::start();
    server.reply("POST", "/hook", Reply::ok());
    let logs = Arc::new(Logs::default());
    let mut i = open(&server, &logs);
    let ops: Vec<Operation> = (0..1200)
        .map(|n| op(&format!("k{n}"), Action::Upsert))
        .collect();
    let result = i.push(&batch(DestinationMode::Upsert, ops)).unwrap();
    assert_eq!(result.outcomes.len(), 1200);
    let requests = server.requests();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.json()["records"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [500, 500, 200]);
    let mut keys: Vec<&str> = requests
        .iter()
        .map(|r| r.header("idempotency-key").unwrap())
        .collect();
    keys.dedup();
    assert_eq!(keys.len(), 3);
}

#[test]
fn a_bad_url_or_short_secret_is_refused_naming_each_path() {
    let err = webhook()
        .open(
            &json!({"url": "ftp://x", "secret": "short"}),
            HostServices::default(),
        )
        .unwrap_err();
    let CallError::Config(issues) = err else {
        panic!()
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["/url", "/secret"]);
}
