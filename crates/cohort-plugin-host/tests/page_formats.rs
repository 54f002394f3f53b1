//! Page formats (ABI 1.1): binary pages are negotiated, JSON-only plugins keep working, and a
//! broken binary page is refused with an error that names the plugin.
#![allow(clippy::unwrap_used)]

mod util;

use cohort_plugin_api::Customer;
use cohort_plugin_api::wire::{PageFormat, Stream};
use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::{
    AsyncInstance, CallError, HostServices, LoadedPlugin, pull, pull_prefetched,
};
use serde_json::{Value, json};
use util::{c_plugin, c_plugin_against, plugin, workspace_root};

/// The minimal C plugin built against the 1.0 header: what a plugin compiled before binary
/// pages existed looks like to this host.
fn c_plugin_of_abi_1_0() -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let header = std::fs::read_to_string(
        workspace_root().join("crates/cohort-plugin-api/include/cohort_plugin.h"),
    )
    .unwrap();
    let minor = header
        .lines()
        .find(|l| l.starts_with("#define COHORT_ABI_MINOR"))
        .unwrap();
    // A 1.0 plugin's vtables end at `free_buf`: drop the members later versions appended, so
    // the host is shown a table shorter than its own and must not read past it.
    let header: String = header
        .replace(minor, "#define COHORT_ABI_MINOR 0")
        .lines()
        .filter(|l| {
            !l.contains("(*finish)") && !l.contains("(*state)") && !l.contains("(*suppressions)")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.join("cohort_plugin.h"), header).unwrap();
    c_plugin_against(
        &workspace_root().join("tests/plugins/c-minimal/minimal.c"),
        "libcohort_plugin_c_minimal_1_0.so",
        &dir,
    )
}

fn ids(records: &[Customer]) -> Vec<String> {
    records.iter().map(|c| c.id.to_string()).collect()
}

#[test]
fn a_json_only_plugin_of_abi_1_0_works_with_this_host() {
    let p = LoadedPlugin::load(c_plugin_of_abi_1_0()).unwrap();
    assert_eq!(p.abi_version(), (1, 0));
    assert!(p.manifest().capabilities.page_formats.is_empty());
    let config = json!({"count": 7});
    let mut i = p.open(&config, HostServices::default()).unwrap();
    assert_eq!(i.page_format(), PageFormat::Json);
    // It is never asked for a format it did not declare.
    assert!(matches!(
        i.set_page_format(PageFormat::Binary),
        Err(CallError::Unsupported(_))
    ));
    let raw = i.next_page_raw(Stream::Customers, &Value::Null, 3).unwrap();
    assert!(!raw.is_binary());

    for prefetch in [false, true] {
        let mut i = p.open(&config, HostServices::default()).unwrap();
        let mut got = Vec::new();
        let on_page = |page: cohort_plugin_api::wire::Page<Customer>| {
            got.extend(page.records);
            Ok::<(), CallError>(())
        };
        let cursor = if prefetch {
            pull_prefetched(&mut i, Value::Null, 3, on_page)
        } else {
            pull(&mut i, Value::Null, 3, on_page)
        }
        .unwrap();
        assert_eq!(ids(&got), ["c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7"]);
        assert_eq!(cursor, json!(7));
    }
    let report = conformance::run(
        &c_plugin_of_abi_1_0(),
        &Fixture::new(json!({"count": 8})).bad_config(json!({"count": 5000})),
    );
    report.assert_passed();
}

#[tokio::test]
async fn an_sdk_source_declares_binary_pages_and_the_host_asks_for_them() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    assert_eq!(p.manifest().capabilities.page_formats, [PageFormat::Binary]);
    let config = json!({"records": 10});
    let mut i = p.open(&config, HostServices::default()).unwrap();
    assert_eq!(i.page_format(), PageFormat::Binary);
    let binary = i.next_page_raw(Stream::Customers, &Value::Null, 4).unwrap();
    assert!(binary.is_binary());
    i.set_page_format(PageFormat::Json).unwrap();
    let json = i.next_page_raw(Stream::Customers, &Value::Null, 4).unwrap();
    assert!(!json.is_binary());
    let (a, b) = (
        binary.parse::<Customer>().unwrap(),
        json.parse::<Customer>().unwrap(),
    );
    assert_eq!(a.records, b.records);
    assert_eq!((a.next_cursor, a.done), (b.next_cursor, b.done));

    // The async host API reads binary pages the same way.
    let i = AsyncInstance::new(
        p.open(&config, HostServices::default()).unwrap(),
        std::time::Duration::from_secs(30),
    );
    let page = i.next_page::<Customer>(Value::Null, 4).await.unwrap();
    assert_eq!(page.records, b.records);
}

#[test]
fn a_c_plugin_can_write_binary_pages() {
    let p = LoadedPlugin::load(c_plugin(
        &workspace_root().join("tests/plugins/c-binary/binary.c"),
        "libcohort_plugin_c_binary.so",
    ))
    .unwrap();
    let mut i = p
        .open(&json!({"mode": "good"}), HostServices::default())
        .unwrap();
    let page = i.next_page::<Customer>(&Value::Null, 10).unwrap();
    assert_eq!(ids(&page.records), ["c-1", "c-2"]);
    assert_eq!(page.records[0].email.as_deref(), Some("c1@example.com"));
    assert_eq!((page.next_cursor, page.done), (json!(2), true));
}

#[test]
fn a_broken_binary_page_is_refused_naming_the_plugin_and_the_problem() {
    let p = LoadedPlugin::load(c_plugin(
        &workspace_root().join("tests/plugins/c-binary/binary.c"),
        "libcohort_plugin_c_binary.so",
    ))
    .unwrap();
    for (mode, why) in [
        (
            "wrong_stream",
            "a page of orders in answer to a request for customers",
        ),
        ("truncated", "record 1: 3 bytes announced, 1 left"),
        ("bad_utf8", "byte 21: record 0: a string that is not UTF-8"),
        (
            "future_version",
            "format version 2 (this host reads version 1)",
        ),
    ] {
        let config = json!({ "mode": mode });
        let mut i = p.open(&config, HostServices::default()).unwrap();
        let e = i.next_page::<Customer>(&Value::Null, 10).unwrap_err();
        let message = e.to_string();
        assert!(matches!(e, CallError::Protocol(_)), "{mode}: {message}");
        assert!(
            message.contains("plugin `c-binary` sent an unreadable customers page")
                && message.contains(why),
            "{mode}: {message}"
        );
        // The same through the prefetching driver.
        let mut i = p.open(&config, HostServices::default()).unwrap();
        let e = pull_prefetched::<Customer, CallError>(&mut i, Value::Null, 10, |_| Ok(()))
            .unwrap_err();
        assert!(e.to_string().contains("plugin `c-binary`"), "{mode}: {e}");
    }
}
