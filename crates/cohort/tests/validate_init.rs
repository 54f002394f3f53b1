//! `cohort validate` and `cohort init`, run as a user runs them.
#![allow(clippy::unwrap_used)]

mod util;

use cohort_plugin_host::dev::build_cdylib;
use util::{Dir, demo};

/// The csv and outbox plugins, built beside the binary where discovery finds them.
fn build_plugins() {
    build_cdylib("cohort-plugin-csv", false).unwrap();
    build_cdylib("cohort-plugin-outbox", false).unwrap();
}

fn validate(dir: &Dir, config: &str) -> util::Run {
    let out = dir
        .command()
        .env_remove("COHORT_PLUGIN_PATH")
        .args(["validate", "--config", config])
        .output()
        .unwrap();
    util::Run::from(out)
}

const MISTAKES: &str = r#"[workspace]
id = "demo"
timezone = "America/New_Yrok"

[[sources]]
name = "shop"
plugin = "csvv"

[[sources]]
name = "files"
plugin = "csv"
config = { base_dirr = "data", customers = { paths = "customers.csv" } }

[[segments]]
name = "vip"
where = "total_spend > 500"
descripton = "Big spenders"

[[destinations]]
name = "outbox"
plugin = "outbox"
config = { dir = "out" }

[[campaigns]]
name = "winback"
segments = ["vips"]
destination = "outbox"
mode = "send"
[campaigns.email]
from = "Shop <hi@shop.example>"
subject = "Hi {{first_nam}}"
html_file = "templates/winback.html"

[[jobs]]
name = "nightly"
schedule = "0 3 * * 8"
campaigns = ["winbak"]
"#;

#[test]
fn a_config_with_many_mistakes_reports_all_of_them_with_places() {
    build_plugins();
    let dir = Dir::new();
    std::fs::create_dir(dir.path("templates")).unwrap();
    dir.write("templates/winback.html", "<p>Hello\n{{frist_name}}</p>\n");
    dir.write("cohort.toml", MISTAKES);
    let run = validate(&dir, "cohort.toml").failed();
    let expect = [
        "cohort.toml:3:12: unknown time zone `America/New_Yrok`; did you mean `America/New_York`?",
        "cohort.toml:7:10: source `shop`: plugin `csvv` not found; did you mean `csv`?",
        "cohort.toml:12:24: source `files` config.base_dirr: unknown field; did you mean `base_dir`?",
        "cohort.toml:12:54: source `files` config.customers.paths: expected an array",
        "cohort.toml:16:10: segment `vip`: unknown field `total_spend`; did you mean `total_spent`?",
        "cohort.toml:17:1: unknown key `descripton` in [[segments]]; did you mean `description`?",
        "cohort.toml:26:13: unknown segment `vips`; did you mean `vip`?",
        "cohort.toml:31:15: template `winback.subject`: unknown field `first_nam`; did you mean `first_name`?",
        "cohort.toml:36:12: job `nightly` schedule: day of week field `8`: 8 is out of range 0-7",
        "cohort.toml:37:14: unknown campaign `winbak`; did you mean `winback`?",
        "templates/winback.html:2:1: template `winback.html`: unknown field `frist_name`; did you mean `first_name`?",
    ];
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.is_empty()).collect();
    for e in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(e)),
            "missing: {e}\nstderr:\n{}",
            run.stderr
        );
    }
    assert_eq!(
        lines.last().copied(),
        Some(format!("{} problems in cohort.toml", expect.len()).as_str()),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_toml_syntax_error_is_reported_with_its_line_and_column() {
    let dir = Dir::new();
    dir.write(
        "cohort.toml",
        "[workspace]\nid = \"demo\"\nname = \"unterminated\n",
    );
    let run = validate(&dir, "cohort.toml").failed();
    assert!(
        run.stderr
            .starts_with("cohort.toml:3:21: TOML syntax: invalid basic string"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_missing_secret_is_reported_without_failing_the_other_checks() {
    build_plugins();
    let dir = Dir::new();
    dir.write(
        "cohort.toml",
        "[workspace]\nid = \"w\"\n[[destinations]]\nname = \"out\"\nplugin = \"outbox\"\nconfig = { dir = \"${env:COHORT_TEST_UNSET_OUTBOX_DIR}\" }\n[[segments]]\nname = \"s\"\nwhere = \"orders_count >= x\"\n",
    );
    let run = validate(&dir, "cohort.toml").failed();
    assert!(
        run.stderr.contains(
            "destination `out` config.dir (cohort.toml:6:18): `${env:COHORT_TEST_UNSET_OUTBOX_DIR}`: the environment variable COHORT_TEST_UNSET_OUTBOX_DIR is not set"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("segment `s`"), "{}", run.stderr);
}

#[test]
fn a_good_config_passes_with_a_summary() {
    build_plugins();
    let dir = Dir::new();
    dir.write(
        "cohort.toml",
        &format!(
            r#"[workspace]
id = "shop"
name = "The Shop"
timezone = "Europe/Paris"
currency = "EUR"

[[sources]]
name = "files"
plugin = "csv"
config = {{ customers = {{ paths = [{customers:?}] }} }}

[[segments]]
name = "big"
where = "total_spent > 100"

[[destinations]]
name = "outbox"
plugin = "outbox"
config = {{ dir = "out" }}

[[campaigns]]
name = "thanks"
segments = ["big"]
destination = "outbox"
mode = "send"
[campaigns.email]
from = "Shop <hi@shop.example>"
subject = "Thank you, {{{{default first_name \"friend\"}}}}"
text = "You spent {{{{money total_spent}}}}."

[[jobs]]
name = "weekdays"
schedule = "0 9 * * 1-5"
"#,
            customers = demo("customers.csv")
        ),
    );
    let run = validate(&dir, "cohort.toml").ok();
    assert!(
        run.stdout.starts_with("cohort.toml: OK\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("workspace shop \"The Shop\" (Europe/Paris, EUR)"),
        "{}",
        run.stdout
    );
    let job = run.stdout.lines().find(|l| l.contains("weekdays")).unwrap();
    assert!(
        job.contains("`0 9 * * 1-5`, next ") && job.contains(" 09:00 CE"),
        "the next fire time is in the workspace's zone: {job}"
    );
}

#[test]
fn init_writes_a_starter_that_validates_and_refuses_to_overwrite() {
    build_plugins();
    let dir = Dir::new();
    let run = dir.run(&["init", "starter"]).ok();
    assert!(run.stdout.contains("cohort.toml"), "{}", run.stdout);
    for f in [
        "starter/cohort.toml",
        "starter/templates/winback.html",
        "starter/templates/welcome.html",
        "starter/data/customers.csv",
        "starter/data/orders.csv",
        "starter/data/events.csv",
    ] {
        assert!(dir.path(f).is_file(), "{f} written");
    }
    let toml = std::fs::read_to_string(dir.path("starter/cohort.toml")).unwrap();
    assert!(
        toml.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .count()
            > 20,
        "the starter is commented"
    );

    let run = validate(&dir, "starter/cohort.toml").ok();
    assert!(
        run.stdout
            .contains("campaigns:    winback (send to outbox)"),
        "{}",
        run.stdout
    );

    // From inside the folder too: every path is relative to the file.
    let run = dir
        .command()
        .current_dir(dir.path("starter"))
        .env_remove("COHORT_PLUGIN_PATH")
        .args(["validate", "--config", "cohort.toml"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    std::fs::write(dir.path("starter/cohort.toml"), "# mine\n").unwrap();
    let run = dir.run(&["init", "starter"]).failed();
    assert!(
        run.stderr.contains("not overwriting") && run.stderr.contains("--force"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path("starter/cohort.toml")).unwrap(),
        "# mine\n",
        "nothing was touched"
    );
    dir.run(&["init", "starter", "--force"]).ok();
    validate(&dir, "starter/cohort.toml").ok();
}

#[test]
fn plugins_list_honours_plugins_dir_from_the_config() {
    let lib = build_cdylib("cohort-testplugin-panicking", false).unwrap();
    let dir = Dir::new();
    std::fs::create_dir(dir.path("more-plugins")).unwrap();
    std::fs::copy(
        &lib,
        dir.path("more-plugins")
            .join(cohort_plugin_host::discovery::plugin_file_name("probe")),
    )
    .unwrap();
    dir.write(
        "cohort.toml",
        "[plugins]\ndir = \"more-plugins\"\n[workspace]\nid = \"w\"\n",
    );
    let out = dir
        .command()
        .env_remove("COHORT_PLUGIN_PATH")
        .args(["plugins", "list", "--json", "--config", "cohort.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = doc["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "test-panicking")
        .unwrap_or_else(|| panic!("{doc}"));
    assert_eq!(found["found"], "plugins.dir");
}
