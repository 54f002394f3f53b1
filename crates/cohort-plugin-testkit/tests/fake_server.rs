//! The fake server answers, records and injects faults as the tests of connectors need. The
//! client is the host's own HTTP service, with retries off, so what the server does is seen as is.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cohort_plugin_api::wire::{Exchange, HttpRequest, HttpResponse};
use cohort_plugin_host::http::{CallContext, HttpError};
use cohort_plugin_host::redact::Redactor;
use cohort_plugin_host::{CancellationToken, HttpPolicy, HttpService};
use cohort_plugin_testkit::{FakeServer, Logs, Reply};
use serde_json::json;

fn send(
    method: &str,
    url: String,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<HttpResponse, HttpError> {
    let http = HttpService::new(HttpPolicy {
        max_attempts: 1,
        rate_limit: None,
        timeout: Duration::from_secs(2),
        ..HttpPolicy::default()
    })
    .unwrap();
    let (redactor, logs, cancel) = (
        Redactor::default(),
        Logs::default(),
        CancellationToken::new(),
    );
    let cx = CallContext {
        plugin: "test",
        redactor: &redactor,
        log: &logs,
        cancel: &cancel,
        rate_limit: None,
    };
    let request = HttpRequest {
        method: method.to_owned(),
        url,
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.map(str::to_owned),
        ..HttpRequest::default()
    };
    http.execute_blocking(request, &cx)
}

fn get(url: String) -> Result<HttpResponse, HttpError> {
    send("GET", url, &[], None)
}

#[test]
fn routes_answer_and_every_request_is_recorded() {
    let server = FakeServer::start();
    server.reply("POST", "/hook", Reply::json(&json!({"ok": true})));
    let resp = send(
        "POST",
        server.url_of("/hook?x=1"),
        &[("Idempotency-Key", "k1")],
        Some(r#"{"a":1}"#),
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, r#"{"ok":true}"#);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let got = server.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].method.as_str(), got[0].path.as_str()),
        ("POST", "/hook")
    );
    assert_eq!(got[0].query("x"), Some("1"));
    assert_eq!(got[0].header("idempotency-key"), Some("k1"));
    assert_eq!(got[0].json(), json!({"a": 1}));
}

#[test]
fn an_unknown_route_is_a_404_that_lists_the_routes() {
    let server = FakeServer::start();
    server.reply("GET", "/a", Reply::ok());
    let resp = get(server.url_of("/b")).unwrap();
    assert_eq!(resp.status, 404);
    assert!(
        resp.body.contains("GET /b") && resp.body.contains("GET /a"),
        "{}",
        resp.body
    );
}

#[test]
fn scripts_inject_statuses_retry_after_delays_and_dropped_connections() {
    let server = FakeServer::start();
    server.script(
        "GET",
        "/x",
        vec![
            Reply::status(429).retry_after(7),
            Reply::dropped(),
            Reply::text("slow").delay(Duration::from_millis(200)),
        ],
    );
    let first = get(server.url_of("/x")).unwrap();
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("7"));
    assert!(
        matches!(get(server.url_of("/x")), Err(HttpError::Transport(_))),
        "the connection was dropped"
    );
    let started = Instant::now();
    assert_eq!(get(server.url_of("/x")).unwrap().body, "slow");
    assert!(started.elapsed() >= Duration::from_millis(190));
    // The last reply repeats.
    assert_eq!(get(server.url_of("/x")).unwrap().body, "slow");
    assert_eq!(server.requests_to("/x").len(), 4);
}

#[test]
fn exchanges_match_their_query_in_any_order_before_the_catch_all() {
    let server = FakeServer::with_exchanges(&[
        Exchange::get("/orders").json(&json!({"page": 1})),
        Exchange::get("/orders?page=2&since=2024-01-01T00:00:00Z").json(&json!({"page": 2})),
    ]);
    let body = |q: &str| get(server.url_of(&format!("/orders{q}"))).unwrap().body;
    assert_eq!(body(""), r#"{"page":1}"#);
    assert_eq!(
        body("?since=2024-01-01T00%3A00%3A00Z&page=2"),
        r#"{"page":2}"#
    );
    assert_eq!(body("?page=3"), r#"{"page":1}"#);
}

#[test]
fn each_server_has_its_own_port_and_stops_when_dropped() {
    let a = FakeServer::start();
    let b = FakeServer::start();
    assert_ne!(a.url(), b.url());
    let url = a.url_of("/");
    drop(a);
    assert!(get(url).is_err());
}
