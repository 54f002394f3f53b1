//! The CSV source, loaded as the real library the host loads, on real files.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cohort_plugin_api::sdk::Level;
use cohort_plugin_api::wire::{Page, Reject, StreamRecord};
use cohort_plugin_api::{Customer, Event, Order};
use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::dev::build_cdylib;
use cohort_plugin_host::{CallError, HostServices, LoadedPlugin, LogSink, pull};
use serde_json::{Value, json};

fn csv_plugin() -> LoadedPlugin {
    LoadedPlugin::load(build_cdylib("cohort-plugin-csv", false).unwrap()).unwrap()
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Everything a pull returned: records, rejects, and the final cursor.
struct Pulled<R> {
    records: Vec<R>,
    rejects: Vec<Reject>,
    cursor: Value,
}

fn pull_all<R: StreamRecord>(
    plugin: &LoadedPlugin,
    config: &Value,
    cursor: Value,
    page: usize,
) -> Pulled<R> {
    pull_with::<R>(plugin, config, cursor, page, HostServices::default())
}

fn pull_with<R: StreamRecord>(
    plugin: &LoadedPlugin,
    config: &Value,
    cursor: Value,
    page: usize,
    services: HostServices,
) -> Pulled<R> {
    let mut i = plugin.open(config, services).unwrap();
    let (mut records, mut rejects) = (Vec::new(), Vec::new());
    let cursor = pull::<R, CallError>(&mut i, cursor, page, |p: Page<R>| {
        records.extend(p.records);
        rejects.extend(p.rejects);
        Ok(())
    })
    .unwrap();
    Pulled {
        records,
        rejects,
        cursor,
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn data_rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .count()
}

const GEN_CUSTOMERS: &str =
    "id,email,country,city,birth_year,gender,tags,accepts_marketing,created_at
1,user1@gmail.com,US,New York,1980,female,\"vip,newsletter\",True,2019-03-01 10:00:00
2,user2@proton.me,GB,London,,male,,False,2020-07-15 08:30:00
3,user3@example.com,DE,Berlin,1999,,eco,True,2021-01-02 00:00:00
4,user4@yahoo.com,FR,Paris,1975,other,,False,2022-05-05 12:00:00
";

const GEN_ORDERS: &str = "id,customer_id,created_at,total_price,items
1,1,2020-01-01 10:00:00,120.50,2
2,1,2021-06-01 11:00:00,80.00,1
3,2,2021-07-01 12:00:00,15.25,1
4,3,2022-01-01 09:00:00,300.00,4
5,1,2023-03-03 03:03:03,42.00,1
6,4,2024-01-01 00:00:00,9.99,1
7,2,2024-06-06 06:06:06,19.90,3
";

#[test]
fn the_csv_source_passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("customers.csv"), GEN_CUSTOMERS);
    write(&dir.path().join("orders.csv"), GEN_ORDERS);
    write(
        &dir.path().join("events.csv"),
        "customer_id,kind,occurred_at\n1,email_open,2024-01-01\n2,page_view,2024-01-02\n1,clicked,2024-01-03\n3,add_to_cart,2024-01-04\n",
    );
    let config = json!({
        "base_dir": dir.path(),
        "customers": {"paths": ["customers.csv"]},
        "orders": {"paths": ["orders*.csv"]},
        "events": {"paths": ["events.csv"]},
    });
    let bad =
        json!({"customers": {"paths": ["customers.csv"]}, "base_dir": dir.path().join("missing")});
    let report = conformance::run(
        &build_cdylib("cohort-plugin-csv", false).unwrap(),
        &Fixture::new(config).bad_config(bad),
    );
    report.assert_passed();
    assert!(
        !report
            .to_string()
            .contains("skip  orders: a cursor resumes"),
        "{report}"
    );
}

#[test]
fn the_generators_layout_reads_without_any_column_mapping() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("customers.csv"), GEN_CUSTOMERS);
    write(&dir.path().join("orders.csv"), GEN_ORDERS);
    let config = json!({"base_dir": dir.path(), "customers": {"paths": ["customers.csv"]}, "orders": {"paths": ["orders.csv"]}});
    let p = csv_plugin();
    let customers = pull_all::<Customer>(&p, &config, Value::Null, 3);
    assert_eq!(customers.records.len(), 4);
    assert!(customers.rejects.is_empty(), "{:?}", customers.rejects);
    let c1 = &customers.records[0];
    assert_eq!(c1.tags, ["vip", "newsletter"]);
    assert!(c1.accepts_email_marketing);
    assert_eq!(customers.records[1].birth_year, None);
    let orders = pull_all::<Order>(&p, &config, Value::Null, 3);
    assert_eq!(orders.records.len(), 7);
    assert_eq!(orders.records[0].total.to_string(), "120.50");
    assert_eq!(orders.records[3].item_count, 4);
}

#[test]
fn shopifys_customer_export_reads_without_any_column_mapping() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("customers_export.csv"),
        "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address City,Default Address Country Code,Tags\n\
         '7061234,Ann,Lee,ann@example.com,yes,Toronto,CA,\"vip, wholesale\"\n\
         '7061235,Bo,Kim,bo@example.com,no,Austin,US,\n",
    );
    let config = json!({"base_dir": dir.path(), "customers": {"paths": ["customers_export.csv"]}});
    let got = pull_all::<Customer>(&csv_plugin(), &config, Value::Null, 10);
    assert!(got.rejects.is_empty(), "{:?}", got.rejects);
    assert_eq!(got.records.len(), 2);
    assert_eq!(got.records[0].first_name.as_deref(), Some("Ann"));
    assert_eq!(got.records[0].country.as_deref(), Some("CA"));
    assert!(got.records[0].accepts_email_marketing);
    assert!(!got.records[1].accepts_email_marketing);
}

#[test]
fn the_cdnow_demo_shop_loads_every_row() {
    let demo = root().join("config/demo");
    let config = json!({
        "base_dir": demo,
        "customers": {"paths": ["customers.csv"]},
        "orders": {"paths": ["orders.csv"]},
        "events": {"paths": ["events.csv"]},
    });
    let p = csv_plugin();
    let customers = pull_all::<Customer>(&p, &config, Value::Null, 5000);
    let orders = pull_all::<Order>(&p, &config, Value::Null, 5000);
    let events = pull_all::<Event>(&p, &config, Value::Null, 5000);
    assert!(customers.rejects.is_empty() && orders.rejects.is_empty() && events.rejects.is_empty());
    // The demo shop grows with the demo (newcomers were added); every row of it must load.
    assert_eq!(
        customers.records.len(),
        data_rows(&demo.join("customers.csv")),
        "every demo customer"
    );
    assert_eq!(
        orders.records.len(),
        data_rows(&demo.join("orders.csv")),
        "every demo order"
    );
    assert!(
        customers.records.len() >= 23_570,
        "at least every CDNOW customer"
    );
    assert!(
        orders.records.len() >= 69_659,
        "at least every CDNOW transaction"
    );
    assert_eq!(events.records.len(), data_rows(&demo.join("events.csv")));
    let spent: i64 = orders.records.iter().map(|o| o.total.raw()).sum();
    assert!(spent > 0);
}

#[test]
fn bad_rows_are_reported_by_file_line_and_column_and_the_rest_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders.csv");
    write(
        &orders,
        "id,customer_id,created_at,total_price,items
1,1,2020-01-01 10:00:00,120.50,2
2,1,2021-13-45 11:00:00,80.00,1
3,2,2021-07-01 12:00:00,12;50,1
4,3,2022-01-01 09:00:00,300.00
5,1,2023-03-03 03:03:03,42.00,1
",
    );
    let config = json!({"orders": {"paths": [orders]}});
    let got = pull_all::<Order>(&csv_plugin(), &config, Value::Null, 2);
    let ids: Vec<&str> = got.records.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, ["1", "5"]);
    let lines: Vec<String> = got.rejects.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let file = orders.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{file}:3:3: created_at: ")),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!("{file}:4:4: total_price: ")),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with(&format!("{file}:5")), "{}", lines[2]);
}

#[test]
fn a_rerun_from_the_saved_cursor_reads_only_appended_rows() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders.csv");
    write(&orders, GEN_ORDERS);
    let config = json!({"orders": {"paths": [dir.path().join("*.csv")]}});
    let p = csv_plugin();
    let first = pull_all::<Order>(&p, &config, Value::Null, 3);
    assert_eq!(first.records.len(), 7);

    let again = pull_all::<Order>(&p, &config, first.cursor.clone(), 3);
    assert!(again.records.is_empty(), "nothing new, nothing read");

    append(
        &orders,
        "8,3,2024-07-07 07:07:07,70.00,2\n9,4,2024-08-08 08:08:08,80.00,1\n",
    );
    write(
        &dir.path().join("orders-late.csv"),
        "id,customer_id,created_at,total_price,items\n10,1,2024-09-09 09:09:09,10.00,1\n",
    );
    let next = pull_all::<Order>(&p, &config, first.cursor, 3);
    let ids: Vec<&str> = next.records.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(
        ids,
        ["10", "8", "9"],
        "the new file (sorted first) and the appended rows, nothing else"
    );
}

#[derive(Default)]
struct Logs(std::sync::Mutex<Vec<String>>);
impl LogSink for Logs {
    fn log(&self, _plugin: &str, level: Level, message: &str, fields: &Value) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{level:?} {message} {fields}"));
    }
}

#[test]
fn a_file_replaced_rather_than_appended_is_read_again_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders.csv");
    write(&orders, GEN_ORDERS);
    let config = json!({"orders": {"paths": [orders]}});
    let p = csv_plugin();
    let first = pull_all::<Order>(&p, &config, Value::Null, 100);
    write(
        &orders,
        "id,customer_id,created_at,total_price,items\n100,1,2024-01-01 00:00:00,1.00,1\n",
    );
    let logs = Arc::new(Logs::default());
    let again = pull_with::<Order>(
        &p,
        &config,
        first.cursor,
        100,
        HostServices::default().with_log(logs.clone()),
    );
    assert_eq!(again.records.len(), 1);
    assert_eq!(again.records[0].id, "100");
    let lines = logs.0.lock().unwrap().join("\n");
    assert!(
        lines.contains("Warn File changed other than by appending"),
        "{lines}"
    );
}

#[test]
fn config_problems_name_their_paths_before_any_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = csv_plugin();
    let err = p
        .open(
            &json!({
                "base_dir": dir.path(),
                "orders": {"paths": ["missing.csv", "ok-*.csv"]},
                "customers": {"paths": ["c.csv"], "columns": {"emial": "E-mail"}},
            }),
            HostServices::default(),
        )
        .unwrap_err();
    let CallError::Config(issues) = err else {
        panic!("expected config issues")
    };
    let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("/customers/paths/0: "), "{}", lines[0]);
    assert!(
        lines[1].starts_with("/customers/columns/emial: "),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("did you mean `email`"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("/orders/paths/0: ") && lines[2].contains("missing.csv"),
        "{}",
        lines[2]
    );

    let err = p
        .open(&json!({"orders": {"paths": []}}), HostServices::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: /orders/paths: expected at least 1 item, got 0"
    );
    let err = p
        .open(&json!({"order": {"paths": ["x"]}}), HostServices::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: /order: unknown field; did you mean `orders`?"
    );
}

#[test]
fn a_stream_that_is_not_configured_yields_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("orders.csv"), GEN_ORDERS);
    let config = json!({"orders": {"paths": [dir.path().join("orders.csv")]}});
    let events = pull_all::<Event>(&csv_plugin(), &config, Value::Null, 10);
    assert!(events.records.is_empty());
}

/// `n` customers, all `vip` with consent: the shop of issue 9.
fn vip_customers(ids: impl Iterator<Item = u32>) -> String {
    let mut text = String::from("id,email,tags,accepts_marketing\n");
    for id in ids {
        text.push_str(&format!("{id},c{id}@example.com,vip,true\n"));
    }
    text
}

fn consent_of(customers: &[Customer], id: &str) -> Option<bool> {
    customers
        .iter()
        .find(|c| c.id.as_str() == id)
        .map(|c| c.accepts_email_marketing)
}

#[test]
fn a_consent_changed_in_place_past_the_first_kilobytes_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    write(&path, &vip_customers(1..=300));
    let config = json!({"customers": {"paths": [path]}});
    let p = csv_plugin();
    let first = pull_all::<Customer>(&p, &config, Value::Null, 64);
    assert_eq!(first.records.len(), 300);
    assert!(std::fs::metadata(&path).unwrap().len() > 4096 * 2);

    let text = std::fs::read_to_string(&path).unwrap().replace(
        "250,c250@example.com,vip,true",
        "250,c250@example.com,vip,false",
    );
    write(&path, &text);
    let logs = Arc::new(Logs::default());
    let again = pull_with::<Customer>(
        &p,
        &config,
        first.cursor,
        64,
        HostServices::default().with_log(logs.clone()),
    );
    assert!(again.rejects.is_empty(), "{:?}", again.rejects);
    assert_eq!(again.records.len(), 300, "the whole file, read again");
    assert_eq!(consent_of(&again.records, "250"), Some(false));
    let lines = logs.0.lock().unwrap().join("\n");
    assert!(
        lines.contains("Warn File changed other than by appending"),
        "{lines}"
    );
}

#[test]
fn a_deleted_row_and_appended_rows_load_without_a_bogus_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    write(&path, &vip_customers(1..=301));
    let config = json!({"customers": {"paths": [path]}});
    let p = csv_plugin();
    let first = pull_all::<Customer>(&p, &config, Value::Null, 1000);
    // Row 200 deleted, rows 302 and 303 appended.
    write(&path, &vip_customers((1..=303).filter(|&id| id != 200)));
    let again = pull_all::<Customer>(&p, &config, first.cursor, 1000);
    assert!(again.rejects.is_empty(), "{:?}", again.rejects);
    for id in ["302", "303", "1", "301"] {
        assert_eq!(consent_of(&again.records, id), Some(true), "{id}");
    }
    assert_eq!(consent_of(&again.records, "200"), None);
}

#[test]
fn a_bad_row_fixed_in_place_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    let shop = vip_customers(1..=300);
    // Same length as the fix, so only the bytes tell them apart.
    let typo = "250,c250@example.com,vip,ture";
    write(&path, &shop.replace("250,c250@example.com,vip,true", typo));
    let config = json!({"customers": {"paths": [path]}});
    let p = csv_plugin();
    let first = pull_all::<Customer>(&p, &config, Value::Null, 100);
    assert_eq!(first.records.len(), 299);
    assert_eq!(first.rejects.len(), 1);
    write(&path, &shop);
    let again = pull_all::<Customer>(&p, &config, first.cursor, 100);
    assert!(again.rejects.is_empty(), "{:?}", again.rejects);
    assert_eq!(consent_of(&again.records, "250"), Some(true));
}

#[test]
fn appending_to_an_unchanged_file_reads_only_the_new_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    write(&path, &vip_customers(1..=300));
    let config = json!({"customers": {"paths": [path]}});
    let p = csv_plugin();
    // Small pages: the hash is built page by page and must match the whole prefix's.
    let first = pull_all::<Customer>(&p, &config, Value::Null, 7);
    append(&path, "301,c301@example.com,vip,true\n");
    let logs = Arc::new(Logs::default());
    let again = pull_with::<Customer>(
        &p,
        &config,
        first.cursor,
        7,
        HostServices::default().with_log(logs.clone()),
    );
    let ids: Vec<&str> = again.records.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["301"]);
    assert!(logs.0.lock().unwrap().is_empty());
}

#[test]
fn a_cursor_of_the_previous_release_reads_the_file_again_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    write(&path, &vip_customers(1..=3));
    let config = json!({"customers": {"paths": [path]}});
    let old = json!({"files": [{
        "path": path, "head_len": 100, "head_hash": "0123456789abcdef", "byte": 100, "line": 4
    }]});
    let again = pull_all::<Customer>(&csv_plugin(), &config, old, 10);
    assert_eq!(again.records.len(), 3);
    assert!(again.cursor["files"][0]["prefix_hash"].is_string());
    assert!(again.cursor["files"][0].get("head_hash").is_none());
}

#[test]
fn a_last_row_without_its_line_end_is_read_again_once_it_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    // An export caught while being written: the last row is cut short.
    write(
        &path,
        "id,email,accepts_marketing\n1,a@x.com,yes\n2,b@x.com,y",
    );
    let config = json!({"customers": {"paths": [path]}});
    let p = csv_plugin();
    let first = pull_all::<Customer>(&p, &config, Value::Null, 10);
    assert_eq!(first.records.len(), 2);
    append(&path, "es\n3,c@x.com,no\n");
    let again = pull_all::<Customer>(&p, &config, first.cursor, 10);
    assert!(again.rejects.is_empty(), "{:?}", again.rejects);
    let ids: Vec<&str> = again.records.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["2", "3"]);
    assert_eq!(consent_of(&again.records, "2"), Some(true));
}

#[test]
fn an_empty_file_is_a_reject_naming_it_at_every_run_and_a_header_alone_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("a-customers.csv");
    write(&empty, "");
    write(&dir.path().join("b-customers.csv"), "id,email\n");
    write(&dir.path().join("c-customers.csv"), &vip_customers(1..=2));
    let config = json!({"customers": {"paths": [dir.path().join("*-customers.csv")]}});
    let p = csv_plugin();
    let first = pull_all::<Customer>(&p, &config, Value::Null, 1);
    assert_eq!(first.records.len(), 2);
    let rejects: Vec<String> = first.rejects.iter().map(ToString::to_string).collect();
    assert_eq!(
        rejects,
        [format!(
            "{}: customers: the file is empty; expected a header line naming the columns",
            empty.display()
        )]
    );
    let again = pull_all::<Customer>(&p, &config, first.cursor, 1);
    assert!(again.records.is_empty());
    assert_eq!(again.rejects.len(), 1, "still empty, still reported");
}

#[test]
fn a_repeated_id_keeps_the_first_record_and_names_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let customers = dir.path().join("customers.csv");
    write(
        &customers,
        "id,email\n1,a@x.com\n2,b@x.com\n1,imposter@x.com\n3,c@x.com\n2,again@x.com\n",
    );
    let orders = dir.path().join("orders.csv");
    write(
        &orders,
        "id,customer_id,created_at,total_price\nA,1,2024-01-01,1.00\nB,2,2024-01-01,2.00\nA,3,2024-01-02,3.00\n,1,2024-01-03,4.00\n,1,2024-01-04,5.00\n",
    );
    let config = json!({"customers": {"paths": [customers]}, "orders": {"paths": [orders]}});
    let p = csv_plugin();
    // Pages of one record: the ids seen carry over from page to page.
    let got = pull_all::<Customer>(&p, &config, Value::Null, 1);
    let emails: Vec<&str> = got
        .records
        .iter()
        .map(|c| c.email.as_deref().unwrap())
        .collect();
    assert_eq!(emails, ["a@x.com", "b@x.com", "c@x.com"]);
    let rejects: Vec<String> = got.rejects.iter().map(ToString::to_string).collect();
    let file = customers.display().to_string();
    assert_eq!(
        rejects,
        [
            format!("{file}:4:1: id: duplicate customer id 1 (first at line 2); skipped"),
            format!("{file}:6:1: id: duplicate customer id 2 (first at line 3); skipped"),
        ]
    );
    let got = pull_all::<Order>(&p, &config, Value::Null, 2);
    let totals: Vec<String> = got.records.iter().map(|o| o.total.to_string()).collect();
    assert_eq!(
        totals,
        ["1.00", "2.00", "4.00", "5.00"],
        "orders without ids are all kept"
    );
    let rejects: Vec<String> = got.rejects.iter().map(ToString::to_string).collect();
    assert_eq!(
        rejects,
        [format!(
            "{}:4:1: id: duplicate order id A (first at line 2); skipped",
            orders.display()
        )]
    );
}

#[test]
fn an_unclosed_quote_is_one_reject_and_max_field_bytes_bounds_a_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("customers.csv");
    write(
        &path,
        "id,email,first_name,accepts_marketing\n1,a@example.com,\"Ann,true\n2,b@example.com,Bob,true\n3,c@example.com,Cy,true\n",
    );
    let config = json!({"customers": {"paths": [path]}, "max_field_bytes": 20});
    let got = pull_all::<Customer>(&csv_plugin(), &config, Value::Null, 10);
    let ids: Vec<&str> = got.records.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["2", "3"]);
    let rejects: Vec<String> = got.rejects.iter().map(ToString::to_string).collect();
    assert_eq!(
        rejects,
        [format!(
            "{}:2: the quote opened at line 2 is not closed within 20 bytes (max_field_bytes); row skipped, reading resumes at line 3",
            path.display()
        )]
    );
    let err = csv_plugin()
        .open(
            &json!({"customers": {"paths": [path]}, "max_field_bytes": 0}),
            HostServices::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("/max_field_bytes"), "{err}");
}

#[test]
fn a_refund_row_becomes_an_order_with_a_negative_total_that_counts_as_a_refund() {
    let dir = tempfile::tempdir().unwrap();
    let orders = dir.path().join("orders.csv");
    write(
        &orders,
        "id,customer_id,created_at,total_price,kind\nA1,1,2024-01-01,100.00,\nR1,1,2024-02-01,30.00,refund\nA3,2,2024-01-03,-5.00,\n",
    );
    let config = json!({"orders": {"paths": [orders]}});
    let got = pull_all::<Order>(&csv_plugin(), &config, Value::Null, 10);
    let totals: Vec<String> = got.records.iter().map(|o| o.total.to_string()).collect();
    assert_eq!(totals, ["100.00", "-30.00"]);
    // What the store keeps and the run computes features from: the same facts as
    // `cohort segment eval` folds.
    let refund = got.records[1].facts().unwrap();
    assert!(refund.refund);
    assert_eq!(refund.net_total.to_string(), "-30.00");
    assert!(!got.records[0].facts().unwrap().refund);
    assert_eq!(got.rejects.len(), 1);
    assert!(
        got.rejects[0].reason.contains("`-5.00` is negative"),
        "{:?}",
        got.rejects
    );
}
