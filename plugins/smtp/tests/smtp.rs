//! The smtp plugin, built as the `cdylib` Cohort loads, driven through the ABI against a real
//! SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS with a test CA, AUTH, faults mid-batch, and
//! the bytes the server received.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use cohort_plugin_api::wire::{OutcomeStatus, PushResult};
use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::{CallError, HostServices, Instance, LoadedPlugin};
use cohort_plugin_testkit::{Logs, plugin};
use serde_json::{Value, json};
use support::*;

fn smtp() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-smtp")).unwrap()
}

fn open(config: &Value, state: &Arc<MemState>, logs: &Arc<Logs>) -> Result<Instance, CallError> {
    let services = HostServices::default()
        .with_state(state.clone())
        .with_log(logs.clone());
    smtp().open(config, services)
}

fn tls_config(server: &SmtpServer) -> Value {
    json!({
        "host": "127.0.0.1", "port": server.port, "tls": "starttls",
        "username": USER, "password": PASSWORD, "ca_file": ca_file(),
        "unsubscribe_mailto": "unsubscribe@shop.example", "timeout": 5
    })
}

fn statuses(result: &PushResult) -> Vec<OutcomeStatus> {
    result.outcomes.iter().map(|o| o.status.clone()).collect()
}

#[test]
fn the_smtp_plugin_passes_the_conformance_kit_and_a_repeated_batch_sends_nothing_twice() {
    let server = SmtpServer::plain();
    let fixture = Fixture::new(plain_config(&server))
        .services(HostServices::default().with_state(Arc::new(MemState::default())))
        .batch(batch(sends(3)));
    conformance::run(&plugin("cohort-plugin-smtp"), &fixture).assert_passed();
    let copies = server.copies();
    assert_eq!(copies.len(), 3, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

#[test]
fn starttls_with_a_test_ca_and_auth_delivers_what_a_receiving_server_checks() {
    let server = SmtpServer::starttls();
    let state = Arc::new(MemState::default());
    let logs = Arc::new(Logs::default());
    let mut i = open(&tls_config(&server), &state, &logs).unwrap();
    let mut with_text = send(1, "ann@example.com");
    let m = with_text.message.as_mut().unwrap();
    m.subject = Some("Vous nous manquez, Zoë ✨".into());
    m.text = Some("Hello Ann, in plain text".into());
    m.headers
        .push(("Reply-To".into(), "care@shop.example".into()));
    let html_only = send(2, "bob@example.com");
    let result = i.push(&batch(vec![with_text, html_only])).unwrap();
    assert_eq!(statuses(&result), [OutcomeStatus::Ok, OutcomeStatus::Ok]);

    let got = server.messages();
    assert_eq!(got.len(), 2);
    // Messages may arrive in either order (several connections): find each by its recipient.
    let to = |who: &str| {
        got.iter()
            .find(|m| m.rcpt_tos.iter().any(|r| r == who))
            .unwrap_or_else(|| panic!("no message to {who}"))
    };
    let (ann, bob) = (to("ann@example.com"), to("bob@example.com"));
    assert_eq!(ann.mail_from, "shop@shop.example");
    assert_eq!(
        ann.rcpt_tos,
        ["ann@example.com"],
        "one recipient per message"
    );
    assert_eq!(bob.rcpt_tos, ["bob@example.com"]);
    assert_eq!(ann.header("To").unwrap(), "ann@example.com");
    let from = ann.header("From").unwrap();
    assert!(
        from.contains("=?utf-8?") && from.ends_with("<shop@shop.example>"),
        "{from}"
    );
    let subject = ann.header("Subject").unwrap();
    assert!(
        subject.contains("=?utf-8?") && subject.is_ascii(),
        "encoded-words: {subject}"
    );
    assert!(ann.header("Date").is_some());
    assert_eq!(ann.header("Reply-To").unwrap(), "care@shop.example");
    assert_eq!(
        ann.header("Message-ID").unwrap(),
        cohort_plugin_smtp::message::message_id("acme/winback/1/1-send", "shop.example")
    );
    assert_eq!(
        ann.header("List-Unsubscribe").unwrap(),
        "<https://shop.example/u/1>, <mailto:unsubscribe@shop.example?subject=unsubscribe>"
    );
    assert_eq!(
        ann.header("List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(ann.header("MIME-Version").unwrap(), "1.0");
    for m in [ann, bob] {
        let ct = m.header("Content-Type").unwrap();
        assert!(ct.starts_with("multipart/alternative;"), "{ct}");
        let plain = m.data.find("Content-Type: text/plain").unwrap();
        let html = m.data.find("Content-Type: text/html").unwrap();
        assert!(plain < html, "text/plain comes first");
    }
    assert!(ann.data.contains("Hello Ann, in plain text"));
    let plain_part = &bob.data[bob.data.find("Content-Type: text/plain").unwrap()..];
    assert!(
        plain_part.contains("Hello customer 2"),
        "text derived from the html: {}",
        bob.data
    );
    assert!(!logs.all().contains(PASSWORD));
}

#[test]
fn implicit_tls_works_too() {
    let server = SmtpServer::start(&["--tls", "--implicit-tls"]);
    let config = json!({"host": "127.0.0.1", "port": server.port, "tls": "tls",
                        "ca_file": ca_file(), "timeout": 5});
    let mut i = open(&config, &Arc::default(), &Arc::default()).unwrap();
    let result = i.push(&batch(sends(2))).unwrap();
    assert_eq!(statuses(&result), [OutcomeStatus::Ok, OutcomeStatus::Ok]);
    assert_eq!(server.messages().len(), 2);
}

#[test]
fn a_wrong_password_is_a_config_error_that_never_shows_the_password() {
    let server = SmtpServer::starttls();
    let mut config = tls_config(&server);
    config["password"] = json!("wrong-TOPSECRET-pass");
    let logs = Arc::new(Logs::default());
    let mut i = open(&config, &Arc::default(), &logs).unwrap();
    let err = i.push(&batch(sends(2))).unwrap_err().to_string();
    assert!(err.contains("/password"), "{err}");
    assert!(err.contains("535"), "the server's reply: {err}");
    assert!(!err.contains("TOPSECRET") && !logs.all().contains("TOPSECRET"));
    assert!(server.messages().is_empty());
}

#[test]
fn a_certificate_from_an_unknown_ca_fails_and_points_at_ca_file() {
    let server = SmtpServer::starttls();
    let mut config = tls_config(&server);
    config.as_object_mut().unwrap().remove("ca_file");
    let mut i = open(&config, &Arc::default(), &Arc::default()).unwrap();
    let err = i.push(&batch(sends(1))).unwrap_err().to_string();
    assert!(err.contains("ca_file"), "{err}");
    assert!(server.messages().is_empty());
}

#[test]
fn a_451_mid_batch_is_retried_and_a_second_push_sends_only_what_was_not_accepted() {
    let server = SmtpServer::plain();
    server.control(&json!({"data_replies": {"2": "451 4.3.0 Try again later"}}));
    let state = Arc::new(MemState::default());
    let mut i = open(&plain_config(&server), &state, &Arc::default()).unwrap();
    let b = batch(sends(4));
    let first = statuses(&i.push(&b).unwrap());
    assert_eq!(first[0], OutcomeStatus::Ok);
    assert!(
        matches!(&first[1], OutcomeStatus::Retry { reason, .. } if reason.contains("451") && reason.contains("Try again later")),
        "{first:?}"
    );
    assert_eq!(&first[2..], [OutcomeStatus::Ok, OutcomeStatus::Ok]);
    // The host pushes the batch again (it never heard, say): the ledger skips the three sent.
    let second = statuses(&i.push(&b).unwrap());
    assert!(second.iter().all(|s| *s == OutcomeStatus::Ok), "{second:?}");
    let copies = server.copies();
    assert_eq!(copies.len(), 4);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

#[test]
fn a_421_closing_the_connection_is_retried_and_the_next_message_opens_a_new_one() {
    let server = SmtpServer::plain();
    server.control(&json!({"data_replies": {"2": "421 4.3.2 Service shutting down"}}));
    let mut i = open(&plain_config(&server), &Arc::default(), &Arc::default()).unwrap();
    let result = statuses(&i.push(&batch(sends(3))).unwrap());
    assert!(matches!(&result[1], OutcomeStatus::Retry { reason, .. } if reason.contains("421")));
    assert_eq!(
        [&result[0], &result[2]],
        [&OutcomeStatus::Ok, &OutcomeStatus::Ok]
    );
}

#[test]
fn a_550_for_one_recipient_rejects_that_record_with_the_servers_text_and_the_rest_land() {
    let server = SmtpServer::plain();
    server.control(&json!({"reject_rcpt": {
        "c2@example.com": "550 5.1.1 <c2@example.com>: Recipient address rejected: User unknown"
    }}));
    let mut i = open(&plain_config(&server), &Arc::default(), &Arc::default()).unwrap();
    let result = statuses(&i.push(&batch(sends(3))).unwrap());
    assert!(
        matches!(&result[1], OutcomeStatus::Rejected { reason } if reason.contains("550") && reason.contains("User unknown")),
        "{result:?}"
    );
    assert_eq!(
        [&result[0], &result[2]],
        [&OutcomeStatus::Ok, &OutcomeStatus::Ok]
    );
    assert_eq!(
        server.copies().keys().collect::<Vec<_>>(),
        ["c1@example.com", "c3@example.com"]
    );
}

#[test]
fn a_dropped_connection_is_retried_on_a_new_one() {
    let server = SmtpServer::plain();
    server.control(&json!({"drop_at": [2]}));
    let mut i = open(&plain_config(&server), &Arc::default(), &Arc::default()).unwrap();
    let result = statuses(&i.push(&batch(sends(3))).unwrap());
    assert!(result.iter().all(|s| *s == OutcomeStatus::Ok), "{result:?}");
    let copies = server.copies();
    assert_eq!(copies.len(), 3);
    assert!(copies.values().all(|&n| n == 1), "{copies:?}");
}

#[test]
fn an_unreachable_server_leaves_every_message_to_retry() {
    let server = SmtpServer::plain();
    let mut config = plain_config(&server);
    drop(server);
    config["connections"] = json!(2);
    let mut i = open(&config, &Arc::default(), &Arc::default()).unwrap();
    let result = statuses(&i.push(&batch(sends(4))).unwrap());
    assert!(
        result
            .iter()
            .all(|s| matches!(s, OutcomeStatus::Retry { .. })),
        "{result:?}"
    );
}

#[test]
fn a_message_that_cannot_be_sent_is_rejected_without_reaching_the_server() {
    let server = SmtpServer::plain();
    let mut i = open(&plain_config(&server), &Arc::default(), &Arc::default()).unwrap();
    let mut two = send(2, "a@example.com");
    two.message
        .as_mut()
        .unwrap()
        .to
        .push("b@example.com".into());
    let result = statuses(
        &i.push(&batch(vec![send(1, "ok@example.com"), two]))
            .unwrap(),
    );
    assert_eq!(result[0], OutcomeStatus::Ok);
    assert!(
        matches!(&result[1], OutcomeStatus::Rejected { reason } if reason.contains("one recipient")),
        "{result:?}"
    );
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn many_connections_send_every_message_once() {
    let server = SmtpServer::plain();
    let mut config = plain_config(&server);
    config["connections"] = json!(4);
    let state = Arc::new(MemState::default());
    let mut i = open(&config, &state, &Arc::default()).unwrap();
    let result = statuses(&i.push(&batch(sends(40))).unwrap());
    assert!(result.iter().all(|s| *s == OutcomeStatus::Ok));
    let copies = server.copies();
    assert_eq!(copies.len(), 40);
    assert!(copies.values().all(|&n| n == 1));
    assert_eq!(
        state.0.lock().unwrap().len(),
        40,
        "one ledger entry per message"
    );
}
