//! The host's HTTP service, exercised through a real plugin against a local server.
#![allow(clippy::unwrap_used)]

mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cohort_plugin_api::Customer;
use cohort_plugin_api::wire::HttpRequest;
use cohort_plugin_host::http::{CallContext, HttpError};
use cohort_plugin_host::redact::Redactor;
use cohort_plugin_host::{
    CallError, CancellationToken, HostServices, HttpPolicy, HttpService, LoadedPlugin, RateLimit,
};
use serde_json::{Value, json};
use util::{Logs, Reply, Server, plugin};

const TOKEN: &str = "sk_live_TOPSECRET_42";
const CUSTOMERS: &str = r#"[{"id":"1","email":"a@example.com"},{"id":"2"}]"#;

fn quick_policy() -> HttpPolicy {
    HttpPolicy {
        timeout: Duration::from_secs(5),
        max_attempts: 3,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(2),
        rate_limit: None,
        ..HttpPolicy::default()
    }
}

fn probe(
    server: &Server,
    policy: HttpPolicy,
    logs: &Arc<Logs>,
    extra: &Value,
) -> Result<Vec<Customer>, CallError> {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-http-probe")).unwrap();
    let services = HostServices::default()
        .with_log(logs.clone())
        .with_http(HttpService::new(policy).unwrap());
    let mut config = json!({"url": format!("{}/customers?page=1&api_key={TOKEN}", server.url), "api_token": TOKEN});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let mut i = p.open(&config, services)?;
    i.next_page::<Customer>(&Value::Null, 100)
        .map(|p| p.records)
}

#[test]
fn a_plugin_fetches_through_the_host_with_its_headers() {
    let server = Server::start(vec![Reply::new(200, CUSTOMERS)]);
    let logs = Arc::new(Logs::default());
    let customers = probe(&server, quick_policy(), &logs, &json!({})).unwrap();
    assert_eq!(customers.len(), 2);
    assert_eq!(customers[0].email.as_deref(), Some("a@example.com"));
    let requests = server.requests.lock().unwrap();
    let head = &requests[0].1;
    assert!(head.starts_with("GET /customers?page=1"), "{head}");
    assert!(head.to_ascii_lowercase().contains(&format!(
        "authorization: bearer {}",
        TOKEN.to_ascii_lowercase()
    )));
}

#[test]
fn a_429_with_retry_after_is_waited_out_then_succeeds() {
    let server = Server::start(vec![
        Reply::new(429, "slow down").header("Retry-After", "1"),
        Reply::new(200, CUSTOMERS),
    ]);
    let logs = Arc::new(Logs::default());
    plugin("cohort-testplugin-http-probe");
    let started = Instant::now();
    let customers = probe(&server, quick_policy(), &logs, &json!({})).unwrap();
    assert_eq!(customers.len(), 2);
    assert_eq!(server.count(), 2);
    let requests = server.requests.lock().unwrap();
    let gap = requests[1].0 - requests[0].0;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was honoured, waited {gap:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        logs.all().contains("Retrying HTTP request"),
        "{}",
        logs.all()
    );
    assert!(
        logs.all().contains("\"attempts\":2"),
        "the plugin sees how many attempts it took: {}",
        logs.all()
    );
}

#[test]
fn a_retry_after_longer_than_the_host_waits_goes_back_to_the_plugin_as_retryable() {
    let server = Server::start(vec![Reply::new(429, "later").header("Retry-After", "3600")]);
    let logs = Arc::new(Logs::default());
    plugin("cohort-testplugin-http-probe");
    let started = Instant::now();
    let err = probe(&server, quick_policy(), &logs, &json!({})).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the host did not hold the worker for an hour"
    );
    assert_eq!(server.count(), 1);
    match err {
        CallError::Retry { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3600)));
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

#[test]
fn server_errors_are_retried_with_backoff_until_one_succeeds() {
    let server = Server::start(vec![
        Reply::new(503, "down"),
        Reply::new(502, "still down"),
        Reply::new(200, CUSTOMERS),
    ]);
    let logs = Arc::new(Logs::default());
    let customers = probe(&server, quick_policy(), &logs, &json!({})).unwrap();
    assert_eq!(customers.len(), 2);
    assert_eq!(server.count(), 3);
}

#[test]
fn server_errors_past_the_last_attempt_reach_the_plugin_as_the_final_response() {
    let server = Server::start(vec![Reply::new(500, "broken")]);
    let logs = Arc::new(Logs::default());
    let err = probe(&server, quick_policy(), &logs, &json!({})).unwrap_err();
    assert_eq!(server.count(), 3, "max_attempts = 3");
    assert!(
        matches!(err, CallError::Retry { .. }),
        "the plugin turned the 500 into a retryable failure: {err:?}"
    );
}

fn direct(
    svc: &HttpService,
    request: HttpRequest,
    logs: &Logs,
) -> Result<cohort_plugin_api::wire::HttpResponse, HttpError> {
    let redactor = Redactor::default();
    let cancel = CancellationToken::new();
    let cx = CallContext {
        plugin: "direct",
        redactor: &redactor,
        log: logs,
        cancel: &cancel,
        rate_limit: None,
    };
    svc.execute_blocking(request, &cx)
}

#[test]
fn a_post_is_not_retried_on_a_server_error_unless_the_plugin_says_it_is_safe() {
    let server = Server::start(vec![
        Reply::new(503, "down"),
        Reply::new(503, "down"),
        Reply::new(200, "ok"),
    ]);
    let svc = HttpService::new(quick_policy()).unwrap();
    let logs = Logs::default();
    let post = HttpRequest {
        method: "POST".into(),
        url: server.url.clone(),
        body: Some("{}".into()),
        ..HttpRequest::default()
    };
    let response = direct(&svc, post.clone(), &logs).unwrap();
    assert_eq!(
        (response.status, response.attempts, server.count()),
        (503, 1, 1)
    );
    let response = direct(
        &svc,
        HttpRequest {
            retry: Some(true),
            ..post
        },
        &logs,
    )
    .unwrap();
    assert_eq!((response.status, response.attempts), (200, 2));
}

#[test]
fn a_timeout_comes_back_to_the_plugin_as_retryable_and_names_the_limit() {
    let server = Server::start(vec![
        Reply::new(200, CUSTOMERS).delay(Duration::from_millis(1500)),
    ]);
    let logs = Arc::new(Logs::default());
    let policy = HttpPolicy {
        max_attempts: 2,
        ..quick_policy()
    };
    plugin("cohort-testplugin-http-probe");
    let started = Instant::now();
    let err = probe(&server, policy, &logs, &json!({"timeout_ms": 150})).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "each attempt stopped at its timeout"
    );
    assert_eq!(server.count(), 2, "a GET that timed out is retried");
    let CallError::Retry { message, .. } = &err else {
        panic!("expected retryable, got {err:?}")
    };
    assert!(message.contains("timed out after 150ms"), "{message}");
    assert!(message.contains("attempt 2 of 2"), "{message}");
}

#[test]
fn secrets_from_config_headers_and_urls_never_reach_the_logs_or_errors() {
    // A connection refused error message includes the URL, which carries the token.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = Server::at(url);
    let logs = Arc::new(Logs::default());
    let err = probe(
        &server,
        HttpPolicy {
            max_attempts: 1,
            ..quick_policy()
        },
        &logs,
        &json!({}),
    )
    .unwrap_err();
    let all = format!("{}\n{err}", logs.all());
    assert!(!all.contains(TOKEN), "a secret leaked:\n{all}");
    assert!(
        all.contains("Fetching customers with token [REDACTED]"),
        "{all}"
    );
    assert!(all.contains("api_key=[REDACTED]"), "{all}");
    assert!(all.contains("could not connect"), "{all}");
}

#[test]
fn requests_are_rate_limited_per_plugin_and_account() {
    let server = Server::start(vec![Reply::new(200, "ok")]);
    let svc = HttpService::new(HttpPolicy {
        rate_limit: Some(RateLimit {
            per_second: 20.0,
            burst: 1,
        }),
        ..quick_policy()
    })
    .unwrap();
    let logs = Logs::default();
    let get = |account: &str| HttpRequest {
        url: server.url.clone(),
        account: Some(account.into()),
        ..HttpRequest::default()
    };
    let started = Instant::now();
    for _ in 0..5 {
        direct(&svc, get("shop-a"), &logs).unwrap();
    }
    let limited = started.elapsed();
    assert!(
        limited >= Duration::from_millis(190),
        "5 requests at 20/s with burst 1 take >= 200ms, took {limited:?}"
    );
    let started = Instant::now();
    direct(&svc, get("shop-b"), &logs).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "another account is not slowed by shop-a"
    );
}

#[test]
fn cancelling_stops_a_retry_wait() {
    let server = Server::start(vec![
        Reply::new(429, "").header("Retry-After", "2"),
        Reply::new(200, "ok"),
    ]);
    let svc = HttpService::new(quick_policy()).unwrap();
    let logs = Logs::default();
    let redactor = Redactor::default();
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        canceller.cancel();
    });
    let cx = CallContext {
        plugin: "p",
        redactor: &redactor,
        log: &logs,
        cancel: &cancel,
        rate_limit: None,
    };
    let started = Instant::now();
    let result = svc.execute_blocking(
        HttpRequest {
            url: server.url.clone(),
            ..HttpRequest::default()
        },
        &cx,
    );
    assert_eq!(result.unwrap_err(), HttpError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn only_http_and_https_urls_are_allowed() {
    let svc = HttpService::new(quick_policy()).unwrap();
    let err = direct(
        &svc,
        HttpRequest {
            url: "file:///etc/passwd".into(),
            ..HttpRequest::default()
        },
        &Logs::default(),
    );
    assert!(matches!(err, Err(HttpError::Invalid(_))), "{err:?}");
}

#[test]
fn a_body_over_the_limit_is_an_error_that_says_so_not_a_cut_body() {
    let big = format!("[{}]", vec![r#"{"id":"1"}"#; 200].join(","));
    let server = Server::start(vec![Reply::new(200, &big)]);
    let logs = Arc::new(Logs::default());
    let policy = HttpPolicy {
        max_body_bytes: 1000,
        ..quick_policy()
    };
    let err = probe(&server, policy, &logs, &json!({})).unwrap_err();
    let CallError::Failed { message, .. } = &err else {
        panic!("expected a failure, got {err:?}")
    };
    assert!(message.contains("larger than the 1000 bytes"), "{message}");
    assert!(message.contains("max_body_bytes"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
    assert_eq!(
        server.count(),
        1,
        "a body that is too large is not fetched again"
    );
}

/// Opens a probe instance on `http` that authenticates with `token`.
fn probe_instance(
    server: &Server,
    http: &HttpService,
    token: &str,
    services: HostServices,
) -> cohort_plugin_host::Instance {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-http-probe")).unwrap();
    let config = json!({"url": format!("{}/customers", server.url), "api_token": token});
    p.open(&config, services.with_http(http.clone())).unwrap()
}

#[test]
fn instances_with_the_same_credential_share_one_bucket_and_other_credentials_do_not() {
    let server = Server::start(vec![Reply::new(200, CUSTOMERS)]);
    let http = HttpService::new(HttpPolicy {
        rate_limit: Some(RateLimit {
            per_second: 10.0,
            burst: 1,
        }),
        ..quick_policy()
    })
    .unwrap();
    // Two instances (two campaigns, say) of one account: 4 requests at 10/s take >= 300ms.
    let mut a = probe_instance(&server, &http, TOKEN, HostServices::default());
    let mut b = probe_instance(&server, &http, TOKEN, HostServices::default());
    let started = Instant::now();
    for _ in 0..2 {
        a.next_page::<Customer>(&Value::Null, 10).unwrap();
        b.next_page::<Customer>(&Value::Null, 10).unwrap();
    }
    let shared = started.elapsed();
    assert!(shared >= Duration::from_millis(280), "{shared:?}");
    // Another credential is another account, with a bucket of its own.
    let mut c = probe_instance(
        &server,
        &http,
        "another-token-1234",
        HostServices::default(),
    );
    let started = Instant::now();
    c.next_page::<Customer>(&Value::Null, 10).unwrap();
    assert!(started.elapsed() < Duration::from_millis(80));
}

/// A GET with `token`'s credential that asks the host to keep at most `connections` of the
/// account's requests in flight.
fn capped(server: &Server, token: &str, connections: u32) -> HttpRequest {
    HttpRequest {
        url: format!("{}/members", server.url),
        headers: vec![("Authorization".into(), format!("Bearer {token}"))],
        connections: Some(connections),
        ..HttpRequest::default()
    }
}

#[test]
fn an_accounts_requests_in_flight_are_capped_across_instances() {
    let server = Server::start(vec![
        Reply::new(200, "ok").delay(Duration::from_millis(200)),
    ]);
    let svc = HttpService::new(quick_policy()).unwrap();
    let logs = Logs::default();
    // Nine callers at once on one account (campaigns, workspaces: the host sees only the
    // account), three requests in flight at most: three waves of 200 ms.
    std::thread::scope(|s| {
        for _ in 0..9 {
            s.spawn(|| direct(&svc, capped(&server, TOKEN, 3), &logs).unwrap());
        }
    });
    let mut arrivals: Vec<Instant> = server
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0)
        .collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), 9);
    for four in arrivals.windows(4) {
        let spread = four[3] - four[0];
        assert!(
            spread >= Duration::from_millis(150),
            "a fourth request went out while three were in flight: {spread:?} apart"
        );
    }
}

#[test]
fn a_request_waiting_to_retry_leaves_its_place_to_others() {
    let server = Server::start(vec![
        Reply::new(429, "").header("Retry-After", "1"),
        Reply::new(200, "ok"),
    ]);
    let svc = HttpService::new(quick_policy()).unwrap();
    let logs = Logs::default();
    std::thread::scope(|s| {
        let throttled = s.spawn(|| direct(&svc, capped(&server, TOKEN, 1), &logs).unwrap());
        while server.count() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let other = direct(&svc, capped(&server, TOKEN, 1), &logs).unwrap();
        assert_eq!(other.status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "the only place was free while the first request waited out its Retry-After: {:?}",
            started.elapsed()
        );
        let throttled = throttled.join().unwrap();
        assert_eq!((throttled.status, throttled.attempts), (200, 2));
    });
}

#[test]
fn an_instance_configured_rate_limit_applies_to_its_account() {
    let server = Server::start(vec![Reply::new(200, CUSTOMERS)]);
    let http = HttpService::new(quick_policy()).unwrap(); // no default limit
    let services = HostServices::default().with_rate_limit(Some(RateLimit {
        per_second: 5.0,
        burst: 1,
    }));
    let mut i = probe_instance(&server, &http, TOKEN, services);
    let started = Instant::now();
    for _ in 0..3 {
        i.next_page::<Customer>(&Value::Null, 10).unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(380),
        "3 requests at 5/s with burst 1: {:?}",
        started.elapsed()
    );
}

#[test]
fn cancelling_stops_a_request_in_flight() {
    let server = Server::start(vec![Reply::new(200, "ok").delay(Duration::from_secs(3))]);
    let svc = HttpService::new(quick_policy()).unwrap();
    let logs = Logs::default();
    let redactor = Redactor::default();
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        canceller.cancel();
    });
    let cx = CallContext {
        plugin: "p",
        redactor: &redactor,
        log: &logs,
        cancel: &cancel,
        rate_limit: None,
    };
    let started = Instant::now();
    let result = svc.execute_blocking(
        HttpRequest {
            url: server.url.clone(),
            ..HttpRequest::default()
        },
        &cx,
    );
    assert_eq!(result.unwrap_err(), HttpError::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(1));
}
