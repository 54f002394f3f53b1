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
