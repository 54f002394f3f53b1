//! Loading real libraries: version handshake, panic containment, config validation, C plugins.
#![allow(clippy::unwrap_used)]

mod util;

use std::sync::Arc;

use cohort_plugin_api::{Customer, Order};
use cohort_plugin_host::conformance::{self, Fixture, Verdict};
use cohort_plugin_host::{CallError, HostServices, LoadError, LoadedPlugin, abi};
use serde_json::{Value, json};
use util::{Logs, c_plugin, plugin, workspace_root};

#[test]
fn a_plugin_built_for_another_abi_major_is_refused_naming_both_versions_and_the_path() {
    let path = plugin("cohort-testplugin-wrong-abi");
    let err = LoadedPlugin::load(&path).unwrap_err();
    assert!(matches!(
        err,
        LoadError::AbiMismatch {
            plugin_major: 2,
            plugin_minor: 3,
            host_major: 1,
            ..
        }
    ));
    let message = err.to_string();
    assert!(message.contains("ABI 2.3"), "{message}");
    let host = format!("ABI {}.{}", abi::ABI_MAJOR, abi::ABI_MINOR);
    assert!(message.contains(&host), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn a_library_without_the_entry_symbol_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("empty.c");
    std::fs::write(&src, "int cohort_something_else(void) { return 1; }\n").unwrap();
    let lib = c_plugin(&src, "libcohort_plugin_empty.so");
    let err = LoadedPlugin::load(&lib).unwrap_err();
    assert!(matches!(err, LoadError::NotAPlugin { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("does not export `cohort_plugin_entry`")
    );
}

#[test]
fn a_missing_file_is_reported_with_its_path() {
    let err = LoadedPlugin::load("/nonexistent/libcohort_plugin_x.so").unwrap_err();
    assert!(
        err.to_string()
            .contains("/nonexistent/libcohort_plugin_x.so"),
        "{err}"
    );
}

#[test]
fn a_panic_in_next_page_fails_the_call_poisons_the_instance_and_the_host_goes_on() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    let logs = Arc::new(Logs::default());
    let services = HostServices::default().with_log(logs.clone());
    let mut broken = p
        .open(&json!({"panic_in": "next_page"}), services.clone())
        .unwrap();
    let err = broken.next_page::<Customer>(&Value::Null, 5).unwrap_err();
    let CallError::Panicked { message } = &err else {
        panic!("expected a contained panic, got {err:?}")
    };
    assert!(
        message.contains("test plugin panics in NextPage"),
        "{message}"
    );
    assert!(
        message.contains("src/lib.rs:"),
        "the panic location is reported: {message}"
    );
    assert!(logs.all().contains("Plugin panicked"), "{}", logs.all());
    // The instance is not called again on half-updated state.
    assert!(matches!(
        broken.next_page::<Customer>(&Value::Null, 5),
        Err(CallError::Poisoned(_))
    ));
    drop(broken);
    // The host and the library go on working.
    let mut fine = p.open(&json!({"records": 4}), services).unwrap();
    let page = fine.next_page::<Customer>(&Value::Null, 10).unwrap();
    assert_eq!(page.records.len(), 4);
    assert!(page.done);
}

#[test]
fn panics_in_open_push_and_close_are_contained_too() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    let err = p
        .open(&json!({"panic_in": "open"}), HostServices::default())
        .unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }), "{err:?}");

    let mut i = p
        .open(&json!({"panic_in": "push"}), HostServices::default())
        .unwrap();
    let batch = cohort_plugin_api::wire::Batch {
        workspace: None,
        campaign: None,
        mode: cohort_plugin_api::wire::DestinationMode::Upsert,
        replace: None,
        audience: None,
        operations: vec![],
    };
    assert!(matches!(i.push(&batch), Err(CallError::Panicked { .. })));

    // Dropping an instance whose Drop panics must not take the host down.
    let closing = p
        .open(&json!({"panic_in": "drop"}), HostServices::default())
        .unwrap();
    drop(closing);
    assert!(p.open(&json!({}), HostServices::default()).is_ok());
}

#[test]
fn an_invalid_config_never_reaches_the_plugin_and_each_problem_names_its_path() {
    let p = LoadedPlugin::load(plugin("cohort-testplugin-panicking")).unwrap();
    // `panic_in: open` would panic if the plugin were opened at all.
    let err = p
        .open(
            &json!({"panic_in": "open", "records": -1, "sleep": 5}),
            HostServices::default(),
        )
        .unwrap_err();
    let CallError::Config(issues) = &err else {
        panic!("expected config issues, got {err:?}")
    };
    let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "/records: expected at least 0, got -1",
            "/sleep: unknown field; did you mean `sleep_ms`?"
        ]
    );
}

#[test]
fn asking_a_source_only_plugin_to_push_is_unsupported() {
    let c = c_plugin(
        &workspace_root().join("tests/plugins/c-minimal/minimal.c"),
        "libcohort_plugin_c_minimal.so",
    );
    let p = LoadedPlugin::load(c).unwrap();
    let mut i = p.open(&json!({}), HostServices::default()).unwrap();
    let batch = cohort_plugin_api::wire::Batch {
        workspace: None,
        campaign: None,
        mode: cohort_plugin_api::wire::DestinationMode::Upsert,
        replace: None,
        audience: None,
        operations: vec![],
    };
    assert!(matches!(i.push(&batch), Err(CallError::Unsupported(_))));
    assert!(matches!(
        i.next_page::<Order>(&Value::Null, 5),
        Err(CallError::Unsupported(_))
    ));
}

#[test]
fn the_c_plugin_loads_serves_pages_reports_progress_and_passes_conformance() {
    let c = c_plugin(
        &workspace_root().join("tests/plugins/c-minimal/minimal.c"),
        "libcohort_plugin_c_minimal.so",
    );
    let p = LoadedPlugin::load(&c).unwrap();
    assert_eq!(p.name(), "c-minimal");
    assert_eq!(p.abi_version(), (abi::ABI_MAJOR, abi::ABI_MINOR));

    let logs = Arc::new(Logs::default());
    let progress = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = progress.clone();
    let services = HostServices {
        progress: Some(Arc::new(move |done, total| {
            seen.lock().unwrap().push((done, total));
        })),
        ..HostServices::default().with_log(logs.clone())
    };
    let mut i = p.open(&json!({"count": 7}), services).unwrap();
    let mut ids = Vec::new();
    let cursor = cohort_plugin_host::pull::<Customer, CallError>(&mut i, Value::Null, 3, |page| {
        ids.extend(page.records.into_iter().map(|c| c.id.to_string()));
        Ok(())
    })
    .unwrap();
    assert_eq!(ids, ["c-1", "c-2", "c-3", "c-4", "c-5", "c-6", "c-7"]);
    assert_eq!(cursor, json!(7));
    assert_eq!(
        *progress.lock().unwrap(),
        [(3, Some(7)), (6, Some(7)), (7, Some(7))]
    );
    assert!(
        logs.all().contains("Info c-minimal: C plugin opened"),
        "{}",
        logs.all()
    );

    let report = conformance::run(
        &c,
        &Fixture::new(json!({"count": 8})).bad_config(json!({"count": 5000})),
    );
    report.assert_passed();
    assert!(
        matches!(
            report.verdict("customers: a cursor resumes where it stopped"),
            Some(Verdict::Passed(_))
        ),
        "{report}"
    );
}

#[test]
fn the_panicking_test_plugin_passes_conformance_including_panic_containment() {
    let path = plugin("cohort-testplugin-panicking");
    let fixture =
        Fixture::new(json!({"records": 10})).panic_config(json!({"panic_in": "next_page"}));
    let report = conformance::run(&path, &fixture);
    report.assert_passed();
    for check in [
        "a panic is contained and the host goes on",
        "customers: paging terminates within bounds",
        "customers: a cursor resumes where it stopped",
        "customers: a finished cursor yields nothing new",
        "a bad config is rejected, naming its path",
        "a cursor the plugin never made is refused cleanly",
        "push answers one outcome per operation",
    ] {
        assert!(
            matches!(report.verdict(check), Some(Verdict::Passed(_))),
            "{check} did not pass:\n{report}"
        );
    }
}

#[test]
fn conformance_fails_a_plugin_that_breaks_its_promises() {
    // The wrong-ABI plugin cannot even be loaded: the report says so instead of crashing.
    let report = conformance::run(
        &plugin("cohort-testplugin-wrong-abi"),
        &Fixture::new(json!({})),
    );
    assert!(!report.passed());
    assert!(
        report
            .to_string()
            .contains("FAIL  loads and speaks this ABI"),
        "{report}"
    );
    // A panic config that does not panic is reported as a failure, not a pass.
    let fixture = Fixture::new(json!({})).panic_config(json!({"panic_in": "never"}));
    let report = conformance::run(&plugin("cohort-testplugin-panicking"), &fixture);
    assert!(
        matches!(
            report.verdict("a panic is contained and the host goes on"),
            Some(Verdict::Failed(_))
        ),
        "{report}"
    );
}
