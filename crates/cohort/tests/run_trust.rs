//! What a merchant relies on when a run goes wrong: the exit status tells cron what happened,
//! a broken config stops a run before anything is pulled or pushed, secrets never leave the
//! process, a record no store can hold is skipped alike on SQLite and PostgreSQL, and two runs
//! of one workspace never push at the same time. The real binary, the real plugins.
#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use std::process::Stdio;
use std::time::{Duration, Instant};

use util::pg::PgSchema;
use util::shop::{CONFIG, outbox, run, setup, test_plugin};
use util::{Dir, Run};

/// Runs `cohort ARGS` with extra environment variables.
fn run_with(dir: &Dir, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = dir.command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Run::from(cmd.output().unwrap())
}

#[test]
fn a_broken_template_fails_the_run_before_anything_is_pulled_or_pushed() {
    let dir = setup(12);
    let config = CONFIG.replace(
        "html = \"<p>You spent {{money total_spent}}.</p>",
        "html = \"<p>{{#if first_name}}You spent {{money total_spent}}.</p>",
    );
    assert_ne!(config, CONFIG);
    dir.write("cohort.toml", &config);
    let failed = run(&dir, &[]).failed();
    assert!(
        failed.stderr.contains("cohort.toml:")
            && failed.stderr.contains("`{{#if}}` is never closed"),
        "the error points at the block left open: {}",
        failed.stderr
    );
    assert!(outbox(dir.tmp.path()).is_empty(), "nothing was pushed");
    let show = dir
        .run(&["runs", "show", "1", "--config", "cohort.toml"])
        .ok();
    assert!(show.stdout.contains("failed"), "{}", show.stdout);
    assert!(
        !show.stdout.contains("customers"),
        "nothing was pulled: {}",
        show.stdout
    );
}

#[test]
fn a_missing_input_file_is_reported_by_validate_and_stops_the_run_before_it_pulls() {
    let dir = setup(12);
    let config = CONFIG.replace(
        "orders = { paths = [\"orders.csv\"] }",
        "orders = { paths = [\"nowhere.csv\"] }",
    );
    assert_ne!(config, CONFIG);
    dir.write("cohort.toml", &config);
    let validate = dir.run(&["validate", "--config", "cohort.toml"]).failed();
    assert!(
        validate.stderr.contains("nowhere.csv") && validate.stderr.contains("cohort.toml:"),
        "validate must say which file and where it is configured: {}",
        validate.stderr
    );
    let failed = run(&dir, &[]).failed();
    assert!(failed.stderr.contains("nowhere.csv"), "{}", failed.stderr);
    assert!(outbox(dir.tmp.path()).is_empty());

    // A folder where a file is expected is caught the same way.
    std::fs::create_dir_all(dir.path("data/folder.csv")).unwrap();
    dir.write(
        "cohort.toml",
        &CONFIG.replace(
            "orders = { paths = [\"orders.csv\"] }",
            "orders = { paths = [\"folder.csv\"] }",
        ),
    );
    let validate = dir.run(&["validate", "--config", "cohort.toml"]).failed();
    assert!(
        validate.stderr.contains("folder.csv"),
        "{}",
        validate.stderr
    );
}

#[test]
fn a_run_whose_records_partly_failed_exits_3_and_says_where_to_look() {
    let dir = setup(12);
    let customers = std::fs::read_to_string(dir.path("data/customers.csv")).unwrap();
    dir.write(
        "data/customers.csv",
        &format!("{customers}13,c13@example.com,Ann,maybe,2024-01-01 10:00:00\n"),
    );
    let partial = run(&dir, &[]);
    assert_eq!(
        partial.code,
        Some(3),
        "{}\n{}",
        partial.stdout,
        partial.stderr
    );
    assert!(
        partial
            .stdout
            .contains("finished with 1 record errors: cohort runs show 1"),
        "{}",
        partial.stdout
    );
    // Nothing new, nothing failing: success again.
    dir.write("data/customers.csv", &customers);
    run(&dir, &[]).ok();
}

#[test]
fn run_json_prints_each_run_with_its_status_and_summary() {
    let dir = setup(12);
    let out = run(&dir, &["--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["workspace"], "shop");
    assert_eq!(runs[0]["summary"]["campaigns"][0]["name"], "thanks");
    assert!(out.stderr.is_empty(), "quiet when piped: {}", out.stderr);
}

#[test]
fn audience_files_carry_only_the_campaign_fields() {
    let dir = setup(12);
    run(&dir, &[]).ok();
    let folder = dir.path("outbox/audiences/vip_audience");
    let file = std::fs::read_dir(&folder).unwrap().next().unwrap().unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file.path()).unwrap()).unwrap();
    assert!(doc.get("customer").is_none(), "{doc}");
    let payload = doc["payload"].as_object().unwrap();
    let keys: Vec<&str> = payload.keys().map(String::as_str).collect();
    assert_eq!(keys, ["email", "spent"], "{doc}");
}

/// Distinctive secret values, each set in the environment and used by one broken config.
const SECRETS: &[(&str, &str)] = &[
    ("SECRET_FSYNC", "S3cr3t-Fsync-7781"),
    ("SECRET_BASE", "/nowhere/S3cr3t-Base-9911"),
    ("SECRET_DIR", "S3cr3t-Dir-2231"),
    (
        "SECRET_DB",
        "postgres://cohort:S3cr3t-Pw-5566@127.0.0.1:1/S3cr3t-Db-4455",
    ),
];

/// The parts of the secrets that must not appear anywhere.
const NEEDLES: &[&str] = &[
    "S3cr3t-Fsync-7781",
    "S3cr3t-Base-9911",
    "S3cr3t-Dir-2231",
    "S3cr3t-Pw-5566",
];

fn assert_clean(what: &str, text: &str) {
    for needle in NEEDLES {
        assert!(
            !text.contains(needle),
            "{what} shows the secret {needle}:\n{text}"
        );
    }
}

#[test]
fn secrets_never_reach_output_logs_or_either_store() {
    let dir = setup(12);
    // Destination `out` gets fsync from a secret (a type error the schema reports), the source
    // reads from a secret folder that does not exist, a second destination writes into a
    // secret "folder" that is a file.
    dir.write("S3cr3t-Dir-2231", "a file, not a folder");
    let broken = CONFIG
        .replace("fsync = false", "fsync = \"${env:SECRET_FSYNC}\"")
        .replace("base_dir = \"data\"", "base_dir = \"${env:SECRET_BASE}\"")
        + "\n[[destinations]]\nname = \"spare\"\nplugin = \"outbox\"\nconfig = { dir = \"${env:SECRET_DIR}\" }\n";
    dir.write("cohort.toml", &broken);
    let pg = PgSchema::new("secrets");
    for (args, db) in [
        (vec!["validate", "--config", "cohort.toml"], None),
        (vec!["run", "--config", "cohort.toml"], None),
        (vec!["run", "--config", "cohort.toml", "--json"], None),
        (vec!["run", "--config", "cohort.toml"], Some(pg.url())),
        (vec!["runs", "list", "--config", "cohort.toml"], None),
        (vec!["runs", "show", "1", "--config", "cohort.toml"], None),
    ] {
        let mut env: Vec<(&str, &str)> = SECRETS.to_vec();
        env.push(("COHORT_LOG", "trace"));
        if let Some(url) = &db {
            env.push(("COHORT_DATABASE_URL", url));
        }
        let out = run_with(&dir, &args, &env);
        let shown = format!("{args:?}");
        assert_clean(&format!("stdout of {shown}"), &out.stdout);
        assert_clean(&format!("stderr of {shown}"), &out.stderr);
        if args[0] == "run" {
            assert_eq!(out.code, Some(1), "{shown}: {}", out.stderr);
            assert!(
                out.stderr.contains("[redacted]") || out.stdout.contains("[redacted]"),
                "the failure is still explained, with the secret masked: {}{}",
                out.stdout,
                out.stderr
            );
        }
    }
    let sqlite = std::fs::read(dir.path("cohort.db")).unwrap();
    assert_clean("the SQLite store", &String::from_utf8_lossy(&sqlite));
    for wal in ["cohort.db-wal", "cohort.db-shm"] {
        if let Ok(bytes) = std::fs::read(dir.path(wal)) {
            assert_clean(wal, &String::from_utf8_lossy(&bytes));
        }
    }
    let dump = pg.dump();
    assert!(dump.contains("job_runs"), "{dump}");
    assert_clean("the PostgreSQL store", &dump);

    // A store URL that is wholly a secret, and fails to connect.
    dir.write(
        "cohort.toml",
        &format!("[store]\nurl = \"${{env:SECRET_DB}}\"\n{CONFIG}"),
    );
    let out = run_with(&dir, &["run", "--config", "cohort.toml"], SECRETS);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_clean(
        "a failed connection",
        &format!("{}{}", out.stdout, out.stderr),
    );
    assert!(!out.stderr.contains("S3cr3t-Db-4455"), "{}", out.stderr);
}

/// A customers file with a NUL byte inside one email.
fn nul_shop(dir: &Dir) {
    let customers = std::fs::read_to_string(dir.path("data/customers.csv")).unwrap();
    let poisoned = customers.replace("c4@example.com", "c4@exa\0mple.com");
    assert_ne!(poisoned, customers);
    dir.write("data/customers.csv", &poisoned);
}

#[test]
fn a_nul_byte_skips_that_record_alike_on_sqlite_and_postgresql() {
    let pg = PgSchema::new("nul");
    let mut shown = Vec::new();
    for db in [None, Some(pg.url())] {
        let dir = setup(12);
        nul_shop(&dir);
        let env: Vec<(&str, &str)> = db
            .iter()
            .map(|u| ("COHORT_DATABASE_URL", u.as_str()))
            .collect();
        let out = run_with(&dir, &["run", "--config", "cohort.toml", "--json"], &env);
        assert_eq!(out.code, Some(3), "{}\n{}", out.stdout, out.stderr);
        let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let summary = &doc["runs"][0]["summary"];
        let customers = &summary["sources"][0];
        assert_eq!(customers["stream"], "customers");
        assert_eq!(customers["bad"], 1, "{summary}");
        assert_eq!(
            summary["customers"], 11,
            "the other customers are stored: {summary}"
        );
        let show = run_with(
            &dir,
            &["runs", "show", "1", "--config", "cohort.toml"],
            &env,
        )
        .ok();
        assert!(
            show.stdout.contains("customer 4") && show.stdout.contains("NUL byte"),
            "{}",
            show.stdout
        );
        shown.push(summary.clone());
    }
    let strip = |mut v: serde_json::Value| {
        v["timings_ms"] = serde_json::Value::Null;
        v
    };
    assert_eq!(
        strip(shown[0].clone()),
        strip(shown[1].clone()),
        "both backends agree"
    );
}

/// Starts `cohort run` in the background with a destination that takes `ms` per push.
fn slow_run(dir: &Dir, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = dir.command();
    cmd.args(["run", "--config", "cohort.toml"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn slow_shop() -> Dir {
    let dir = setup(12);
    test_plugin(&dir);
    let config = format!(
        "{CONFIG}\n[plugins]\ndir = \"plugins\"\n\n[[destinations]]\nname = \"slow\"\nplugin = \"test-panicking\"\nconfig = {{ sleep_ms = 3000 }}\n\n\
         [[campaigns]]\nname = \"crm_sync\"\nsegments = [\"buyers\"]\ndestination = \"slow\"\nmode = \"upsert\"\n[campaigns.fields]\nemail = \"{{{{email}}}}\"\n"
    );
    dir.write("cohort.toml", &config);
    dir
}

/// Waits until run 1 is recorded as running; `false` if it never is.
fn until_running(dir: &Dir, env: &[(&str, &str)]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let list = run_with(dir, &["runs", "list", "--config", "cohort.toml"], env);
        if list.stdout.contains("running") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn second_run_refuses_then_waits(dir: &Dir, env: &[(&str, &str)]) {
    let mut first = slow_run(dir, env);
    if !until_running(dir, env) {
        let _ = first.kill();
        let out = first.wait_with_output().unwrap();
        panic!(
            "run 1 never showed as running:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = run_with(dir, &["run", "--config", "cohort.toml"], env).failed();
    assert!(
        refused
            .stderr
            .contains("workspace `shop` is busy: run 1 (job `run`)")
            && refused.stderr.contains("--wait"),
        "{}",
        refused.stderr
    );
    let waited = run_with(dir, &["run", "--config", "cohort.toml", "--wait"], env).ok();
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The waiting run started after the first ended, so it found nothing left to push.
    for line in waited.stdout.lines().filter(|l| l.contains('→')) {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[5], "0", "pushed twice: {line}\n{}", waited.stdout);
    }
    let list = run_with(dir, &["runs", "list", "--config", "cohort.toml"], env).ok();
    assert_eq!(
        list.stdout.matches("succeeded").count(),
        2,
        "{}",
        list.stdout
    );
}

#[test]
fn two_runs_of_one_workspace_never_push_at_once_on_sqlite() {
    let dir = slow_shop();
    second_run_refuses_then_waits(&dir, &[]);
}

#[test]
fn two_runs_of_one_workspace_never_push_at_once_on_postgresql() {
    let pg = PgSchema::new("lock");
    let dir = slow_shop();
    let url = pg.url();
    second_run_refuses_then_waits(&dir, &[("COHORT_DATABASE_URL", url.as_str())]);
}

#[test]
fn a_plugin_warning_reaches_the_user_even_when_piped() {
    let dir = setup(12);
    run(&dir, &[]).ok();
    // Rewritten, not appended to: the source reads it again and says so.
    let customers = std::fs::read_to_string(dir.path("data/customers.csv")).unwrap();
    dir.write(
        "data/customers.csv",
        &customers.replacen("c1@example.com", "c1@example.org", 1),
    );
    let again = run(&dir, &[]).ok();
    assert!(
        again.stderr.contains("warning: plugin `csv`: File changed"),
        "{}",
        again.stderr
    );
    let show = dir
        .run(&["runs", "show", "2", "--config", "cohort.toml"])
        .ok();
    assert!(
        show.stdout.contains("File changed"),
        "kept with the run: {}",
        show.stdout
    );
}
