//! The outbox plugin, loaded as the real library the host loads.
#![allow(clippy::unwrap_used)]

use cohort_plugin_api::CustomerId;
use cohort_plugin_api::wire::{Action, Batch, DestinationMode, Message, Operation, OutcomeStatus};
use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::dev::build_cdylib;
use cohort_plugin_host::{CallError, HostServices, LoadedPlugin};
use serde_json::json;

fn outbox() -> LoadedPlugin {
    LoadedPlugin::load(build_cdylib("cohort-plugin-outbox", false).unwrap()).unwrap()
}

fn op(key: &str, action: Action) -> Operation {
    Operation {
        key: key.into(),
        action,
        customer_id: CustomerId::new("42"),
        customer: None,
        payload: json!({"first_name": "Ann", "offer": "10%"}),
        previous: serde_json::Value::Null,
        message: (action == Action::Send).then(|| Message {
            from: Some("shop@example.com".into()),
            to: vec!["ann@example.com".into()],
            subject: Some("Welcome back".into()),
            text: Some("Hello Ann".into()),
            html: Some("<p>Hello Ann</p>".into()),
            headers: vec![],
        }),
    }
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_outbox_passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    let path = build_cdylib("cohort-plugin-outbox", false).unwrap();
    let report = conformance::run(&path, &Fixture::new(json!({"dir": dir.path()})));
    report.assert_passed();
}

#[test]
fn audience_operations_become_json_and_sends_become_eml_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = outbox()
        .open(&json!({"dir": dir.path()}), HostServices::default())
        .unwrap();
    let result = i
        .push(&Batch {
            workspace: None,
            campaign: None,
            mode: DestinationMode::Mirror,
            replace: None,
            audience: Some("vip".into()),
            operations: vec![
                op("vip:42:add", Action::Upsert),
                op("vip:7:remove", Action::Remove),
            ],
        })
        .unwrap();
    assert!(
        result
            .outcomes
            .iter()
            .all(|o| o.status == OutcomeStatus::Ok),
        "{result:?}"
    );
    i.push(&Batch {
        workspace: None,
        campaign: None,
        mode: DestinationMode::Send,
        replace: None,
        audience: None,
        operations: vec![op("welcome:42", Action::Send)],
    })
    .unwrap();
    assert_eq!(
        files(dir.path()),
        [
            "audiences/vip/vip%3A42%3Aadd.json",
            "audiences/vip/vip%3A7%3Aremove.json",
            "messages/welcome%3A42.eml"
        ]
    );
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("audiences/vip/vip%3A42%3Aadd.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(doc["action"], "upsert");
    assert!(
        doc.get("customer").is_none(),
        "only the campaign's fields are written: {doc}"
    );
    assert_eq!(doc["payload"]["offer"], "10%");
    let eml = std::fs::read_to_string(dir.path().join("messages/welcome%3A42.eml")).unwrap();
    assert!(eml.contains("Subject: Welcome back\r\n"), "{eml}");
    assert!(eml.contains("<p>Hello Ann</p>"));
}

#[test]
fn pushing_the_same_key_again_writes_no_duplicate_and_keeps_the_first_file() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = outbox();
    let mut i = plugin
        .open(&json!({"dir": dir.path()}), HostServices::default())
        .unwrap();
    let send = |i: &mut cohort_plugin_host::Instance, subject: &str| {
        let mut o = op("welcome:42", Action::Send);
        o.message.as_mut().unwrap().subject = Some(subject.into());
        i.push(&Batch {
            workspace: None,
            campaign: None,
            mode: DestinationMode::Send,
            replace: None,
            audience: None,
            operations: vec![o],
        })
        .unwrap()
    };
    send(&mut i, "First");
    // A retry after a crash comes from a fresh instance.
    drop(i);
    let mut again = plugin
        .open(&json!({"dir": dir.path()}), HostServices::default())
        .unwrap();
    let second = send(&mut again, "Second");
    assert_eq!(
        second.outcomes[0].status,
        OutcomeStatus::Ok,
        "a repeat is acknowledged"
    );
    assert_eq!(files(dir.path()), ["messages/welcome%3A42.eml"]);
    let eml = std::fs::read_to_string(dir.path().join("messages/welcome%3A42.eml")).unwrap();
    assert!(eml.contains("Subject: First"), "the first write stands");
}

#[test]
fn bad_operations_are_rejected_one_by_one_and_the_rest_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut i = outbox()
        .open(&json!({"dir": dir.path()}), HostServices::default())
        .unwrap();
    let mut no_message = op("send-without-message", Action::Send);
    no_message.message = None;
    let result = i
        .push(&Batch {
            workspace: None,
            campaign: None,
            mode: DestinationMode::Upsert,
            replace: None,
            audience: Some("vip".into()),
            operations: vec![
                op("remove-in-upsert-mode", Action::Remove),
                no_message,
                op("fine", Action::Upsert),
            ],
        })
        .unwrap();
    let statuses: Vec<&OutcomeStatus> = result.outcomes.iter().map(|o| &o.status).collect();
    assert!(matches!(statuses[0], OutcomeStatus::Rejected { reason } if reason.contains("mirror")));
    assert!(
        matches!(statuses[1], OutcomeStatus::Rejected { reason } if reason.contains("rendered message"))
    );
    assert_eq!(*statuses[2], OutcomeStatus::Ok);
    assert_eq!(files(dir.path()), ["audiences/vip/fine.json"]);
}

#[test]
fn a_dir_that_is_a_file_is_a_config_error_at_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = outbox()
        .open(&json!({"dir": file}), HostServices::default())
        .unwrap_err();
    let CallError::Config(issues) = err else {
        panic!("expected a config error")
    };
    assert_eq!(issues[0].path, "/dir");
    assert!(
        issues[0].message.contains("is not a folder"),
        "{}",
        issues[0]
    );
    let err = outbox()
        .open(
            &json!({"dir": dir.path(), "fsync": "yes"}),
            HostServices::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: /fsync: expected a boolean, got a string \"yes\""
    );
}
