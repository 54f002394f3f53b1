//! The http-json source, built as the `cdylib` Cohort loads, pulled through the ABI and the
//! host's HTTP service from fake APIs on 127.0.0.1.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cohort_plugin_api::wire::{Page, StreamRecord};
use cohort_plugin_api::{Customer, Event, Order};
use cohort_plugin_host::{CallError, HostServices, HttpPolicy, HttpService, LoadedPlugin, pull};
use cohort_plugin_testkit::{FakeServer, Logs, Reply, check_example, plugin};
use serde_json::{Value, json};

const TOKEN: &str = "api_TOPSECRET_token_42";

fn source() -> LoadedPlugin {
    LoadedPlugin::load(plugin("cohort-plugin-http-json")).unwrap()
}

fn services(logs: &Arc<Logs>) -> HostServices {
    let http = HttpService::new(HttpPolicy {
        max_attempts: 3,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(2),
        rate_limit: None,
        ..HttpPolicy::default()
    })
    .unwrap();
    HostServices::default()
        .with_http(http)
        .with_log(logs.clone())
}

/// Pulls `R`'s stream to its end from `cursor`: every page's records, and the final cursor.
fn pull_all<R: StreamRecord>(
    config: &Value,
    cursor: Value,
    page_size: usize,
    logs: &Arc<Logs>,
) -> Result<(Vec<R>, Value), CallError> {
    let mut i = source().open(config, services(logs))?;
    let mut records = Vec::new();
    let end = pull(&mut i, cursor, page_size, |page: Page<R>| {
        records.extend(page.records);
        Ok::<_, CallError>(())
    })?;
    Ok((records, end))
}

fn ids(customers: &[Customer]) -> Vec<String> {
    customers.iter().map(|c| c.id.to_string()).collect()
}

/// 7 customers `{"id": n}` served in pages of 3 by whatever `next` makes of page `n`.
fn customers_page(n: usize) -> Vec<Value> {
    (n * 3 + 1..=(n * 3 + 3).min(7))
        .map(|id| json!({"id": id, "email": format!("c{id}@example.com")}))
        .collect()
}

fn config_with(server: &FakeServer, paging: &Value, records: &str) -> Value {
    json!({
        "base_url": server.url(),
        "customers": {"path": "/customers", "records": records,
                      "fields": {"id": "/id", "email": "/email"}, "paging": paging}
    })
}

#[test]
fn the_source_passes_the_conformance_kit_with_the_example_it_ships() {
    let checked = check_example(&plugin("cohort-plugin-http-json"), 3);
    checked.assert_passed();
    let report = checked.report.to_string();
    for stream in ["customers", "orders", "events"] {
        assert!(
            report.contains(&format!(
                "pass  {stream}: a cursor resumes where it stopped"
            )),
            "{report}"
        );
        assert!(report.contains(&format!(
            "pass  {stream}: a finished cursor yields nothing new"
        )));
    }
}

#[test]
fn every_paging_style_reads_every_page() {
    let logs = Arc::new(Logs::default());
    // A token in the body, sent back as a query parameter.
    let server = FakeServer::start();
    server.on("GET", "/customers", |r| {
        let n: usize = r.query("after").map_or(0, |t| t.parse().unwrap());
        let next = if n < 2 {
            json!((n + 1).to_string())
        } else {
            Value::Null
        };
        Reply::json(&json!({"items": customers_page(n), "next": next}))
    });
    let paging = json!({"type": "cursor", "field": "/next", "param": "after"});
    let (got, _) = pull_all::<Customer>(
        &config_with(&server, &paging, "/items"),
        Value::Null,
        2,
        &logs,
    )
    .unwrap();
    assert_eq!(ids(&got), ["1", "2", "3", "4", "5", "6", "7"]);

    // A next link in the body.
    let server = FakeServer::start();
    let base = server.url().to_owned();
    server.on("GET", "/customers", move |r| {
        let n: usize = r.query("p").map_or(0, |t| t.parse().unwrap());
        let next = (n < 2).then(|| format!("{base}/customers?p={}", n + 1));
        Reply::json(&json!({"data": customers_page(n), "links": {"next": next}}))
    });
    let paging = json!({"type": "next_link", "field": "/links/next"});
    let (got, _) = pull_all::<Customer>(
        &config_with(&server, &paging, "/data"),
        Value::Null,
        5,
        &logs,
    )
    .unwrap();
    assert_eq!(got.len(), 7);

    // Page numbers, until an empty page.
    let server = FakeServer::start();
    server.on("GET", "/customers", |r| {
        let n: usize = r.query("page").unwrap().parse().unwrap();
        Reply::json(&json!(if n <= 3 {
            customers_page(n - 1)
        } else {
            vec![]
        }))
    });
    let paging = json!({"type": "page_number", "param": "page"});
    let (got, _) =
        pull_all::<Customer>(&config_with(&server, &paging, ""), Value::Null, 10, &logs).unwrap();
    assert_eq!(got.len(), 7);
    let pages: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.query("page").unwrap().to_owned())
        .collect();
    assert_eq!(pages, ["1", "2", "3", "4"]);

    // Link headers.
    let server = FakeServer::start();
    let base = server.url().to_owned();
    server.on("GET", "/customers", move |r| {
        let n: usize = r.query("page").map_or(0, |t| t.parse().unwrap());
        let reply = Reply::json(&json!(customers_page(n)));
        if n < 2 {
            let link = format!("<{base}/customers?page={}>; rel=\"next\", <{base}/customers?page=0>; rel=\"first\"", n + 1);
            reply.with_header("Link", &link)
        } else {
            reply
        }
    });
    let (got, _) = pull_all::<Customer>(
        &config_with(&server, &json!({"type": "link_header"}), ""),
        Value::Null,
        3,
        &logs,
    )
    .unwrap();
    assert_eq!(got.len(), 7);
}

#[test]
fn records_are_mapped_through_pointers_and_an_unreadable_one_is_a_reject() {
    let server = FakeServer::start();
    server.reply(
        "GET",
        "/orders",
        Reply::json(&json!({"result": {"orders": [
            {"id": 7, "buyer": {"id": 42}, "price": {"amount": "19.90", "currency": "EUR"}, "ts": 1709287200},
            {"id": 8, "price": {"amount": "5"}},
            {"id": 9, "buyer": {"id": 43}, "price": {"amount": "abc"}}
        ]}})),
    );
    let config = json!({
        "base_url": server.url(),
        "orders": {"path": "/orders", "records": "/result/orders", "fields": {
            "id": "/id", "customer_id": "/buyer/id", "total": "/price/amount",
            "currency": "/price/currency", "created_at": "/ts"
        }}
    });
    let logs = Arc::new(Logs::default());
    let mut i = source().open(&config, services(&logs)).unwrap();
    let page = i.next_page::<Order>(&Value::Null, 10).unwrap();
    assert_eq!(page.records.len(), 1);
    let o = &page.records[0];
    assert_eq!((o.id.as_str(), o.customer_id.as_str()), ("7", "42"));
    assert_eq!(o.total.to_string(), "19.90");
    assert_eq!(o.created_at.unwrap().to_string(), "2024-03-01T10:00:00Z");
    assert_eq!(page.rejects.len(), 2, "{:?}", page.rejects);
    assert!(
        page.rejects[0].reason.contains("customer_id"),
        "{:?}",
        page.rejects
    );
    assert!(
        page.rejects[0].location.contains("/orders") && page.rejects[0].location.contains("item 1")
    );
}

#[test]
fn a_second_run_asks_for_what_changed_and_skips_only_what_it_already_has() {
    let server = FakeServer::start();
    // Customer 3 arrived with the same updated_at as 2, after the first run.
    let first =
        json!([{"id": 1, "u": "2024-03-01T00:00:00Z"}, {"id": 2, "u": "2024-03-02T00:00:00Z"}]);
    let later =
        json!([{"id": 2, "u": "2024-03-02T00:00:00Z"}, {"id": 3, "u": "2024-03-02T00:00:00Z"}]);
    server.on("GET", "/customers", move |r| {
        match r.query("updated_since") {
            None => Reply::json(&first),
            Some(_) => Reply::json(&later),
        }
    });
    let config = json!({"base_url": server.url(), "customers": {
        "path": "/customers", "fields": {"id": "/id", "updated_at": "/u"}, "since_param": "updated_since"}});
    let logs = Arc::new(Logs::default());
    let (got, cursor) = pull_all::<Customer>(&config, Value::Null, 10, &logs).unwrap();
    assert_eq!(ids(&got), ["1", "2"]);
    let (got, _) = pull_all::<Customer>(&config, cursor, 10, &logs).unwrap();
    assert_eq!(ids(&got), ["3"], "2 is not pulled twice, 3 is not skipped");
    let asked = server.requests()[1]
        .query("updated_since")
        .map(str::to_owned);
    assert_eq!(asked.as_deref(), Some("2024-03-02T00:00:00Z"));
}

#[test]
fn a_refused_token_is_a_config_error_and_the_token_never_reaches_logs_or_errors() {
    let server = FakeServer::start();
    server.on("GET", "/events", |r| {
        Reply::status(401).with_body(format!(
            "invalid token {}",
            r.header("x-api-key").unwrap_or("")
        ))
    });
    let config = json!({"base_url": server.url(),
        "auth": {"header": "X-Api-Key", "scheme": "", "token": TOKEN},
        "events": {"path": "/events", "fields": {"customer_id": "/c", "kind": "/k", "occurred_at": "/t"}}});
    let logs = Arc::new(Logs::default());
    let err = pull_all::<Event>(&config, Value::Null, 10, &logs).unwrap_err();
    let CallError::Config(issues) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(issues[0].path, "/auth/token");
    assert_eq!(server.requests()[0].header("x-api-key"), Some(TOKEN));
    let everything = format!("{err}\n{}", logs.all());
    assert!(everything.contains("401 Unauthorized"), "{everything}");
    assert!(
        !everything.contains(TOKEN),
        "the token leaked:\n{everything}"
    );
}

#[test]
fn server_errors_are_retried_by_the_host_and_a_long_retry_after_makes_the_pull_retryable() {
    let server = FakeServer::start();
    server.script(
        "GET",
        "/customers",
        vec![Reply::status(503), Reply::json(&json!([{"id": 1}]))],
    );
    let config = json!({"base_url": server.url(), "customers": {"path": "/customers", "fields": {"id": "/id"}}});
    let logs = Arc::new(Logs::default());
    let (got, _) = pull_all::<Customer>(&config, Value::Null, 10, &logs).unwrap();
    assert_eq!(ids(&got), ["1"]);

    let server = FakeServer::start();
    server.reply("GET", "/customers", Reply::status(429).retry_after(600));
    let config = json!({"base_url": server.url(), "customers": {"path": "/customers", "fields": {"id": "/id"}}});
    let err = pull_all::<Customer>(&config, Value::Null, 10, &logs).unwrap_err();
    assert!(
        matches!(err, CallError::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(600)),
        "{err:?}"
    );
}

#[test]
fn a_config_with_unknown_fields_or_bad_pointers_is_refused_naming_each_path() {
    let err = source()
        .open(
            &json!({"base_url": "ftp://x", "customers": {"path": "/c", "fields": {"emial": "/e", "id": "id"}}}),
            HostServices::default(),
        )
        .unwrap_err();
    let CallError::Config(issues) = err else {
        panic!()
    };
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/base_url",
            "/customers/fields/emial",
            "/customers/fields/id"
        ]
    );
}
