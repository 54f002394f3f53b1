//! `cohort plugins list` and `cohort plugins check`, run as a user runs them.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use cohort_plugin_host::dev::build_cdylib;

fn cohort() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cohort"));
    cmd.env_remove("COHORT_PLUGIN_PATH");
    cmd
}

#[test]
fn after_a_workspace_build_plugins_list_shows_csv_and_outbox_beside_the_binary() {
    // What `cargo build --workspace` does for the plugins: their cdylibs land next to `cohort`.
    let csv = build_cdylib("cohort-plugin-csv", false).unwrap();
    build_cdylib("cohort-plugin-outbox", false).unwrap();
    let exe_dir = std::path::Path::new(env!("CARGO_BIN_EXE_cohort"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert_eq!(
        csv.parent().unwrap(),
        exe_dir,
        "the plugin library is built beside the binary"
    );

    let out = cohort().args(["plugins", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("KINDS") && lines[0].contains("ABI"),
        "{stdout}"
    );
    let csv_line = lines
        .iter()
        .find(|l| l.starts_with("csv "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        csv_line.contains("source")
            && csv_line.contains(&format!(
                " {}.{} ",
                cohort_plugin_host::abi::ABI_MAJOR,
                cohort_plugin_host::abi::ABI_MINOR
            ))
            && csv_line.contains("libcohort_plugin_csv")
    );
    let outbox_line = lines
        .iter()
        .find(|l| l.starts_with("outbox "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(outbox_line.contains("destination"));
    assert!(
        !stdout.contains("test-"),
        "test plugins are not named like plugins, so never listed: {stdout}"
    );
}

#[test]
fn plugins_found_through_cohort_plugin_path_are_listed_too() {
    let lib = build_cdylib("cohort-testplugin-panicking", false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        &lib,
        dir.path()
            .join(cohort_plugin_host::discovery::plugin_file_name("probe")),
    )
    .unwrap();
    let out = cohort()
        .args(["plugins", "list", "--json"])
        .env("COHORT_PLUGIN_PATH", dir.path())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "test-panicking")
        .unwrap();
    assert_eq!(found["found"], "COHORT_PLUGIN_PATH");
    // Built with this workspace's SDK, so it speaks the current ABI.
    let abi = format!(
        "{}.{}",
        cohort_plugin_host::abi::ABI_MAJOR,
        cohort_plugin_host::abi::ABI_MINOR
    );
    assert_eq!(found["abi"], abi.as_str());
}

#[test]
fn plugins_check_passes_a_good_plugin_and_fails_one_of_another_abi() {
    let outbox = build_cdylib("cohort-plugin-outbox", false).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("outbox.toml");
    std::fs::write(
        &config,
        format!("dir = {:?}\n", dir.path().join("out").display().to_string()),
    )
    .unwrap();
    let out = cohort()
        .args(["plugins", "check"])
        .arg(&outbox)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pass  push answers one outcome per operation"),
        "{stdout}"
    );
    assert!(stdout.contains("0 failed"), "{stdout}");

    let wrong = build_cdylib("cohort-testplugin-wrong-abi", false).unwrap();
    let out = cohort()
        .args(["plugins", "check"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL  loads and speaks this ABI") && stdout.contains("ABI 2.3"),
        "{stdout}"
    );
}

#[test]
fn plugins_check_with_no_flags_exercises_every_bundled_plugin_through_its_example() {
    for (package, must_pass) in [
        ("cohort-plugin-csv", "pass  opens with the fixture config"),
        (
            "cohort-plugin-outbox",
            "pass  the fixture config is accepted by the schema",
        ),
        (
            "cohort-plugin-webhook",
            "pass  push answers one outcome per operation",
        ),
        (
            "cohort-plugin-http-json",
            "pass  orders: a cursor resumes where it stopped",
        ),
    ] {
        let lib = build_cdylib(package, false).unwrap();
        let out = cohort()
            .args(["plugins", "check"])
            .arg(&lib)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{package}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("with the example from the manifest"),
            "{stdout}"
        );
        assert!(stdout.contains(must_pass), "{package}:\n{stdout}");
        assert!(stdout.contains(" 0 failed"), "{package}:\n{stdout}");
    }
}

#[test]
fn plugins_check_says_when_a_plugin_ships_no_example() {
    let lib = build_cdylib("cohort-testplugin-panicking", false).unwrap();
    let out = cohort()
        .args(["plugins", "check"])
        .arg(&lib)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ships no example"), "{stdout}");
}
