//! `cohort run` end to end: the real binary, the real csv and outbox plugins, a SQLite store in
//! a temporary folder. Covers idempotency, consent, dry runs, the run history, and runs killed
//! at any point and run again.
#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cohort_plugin_host::dev::build_cdylib;
use util::{Dir, Run};

/// Builds the plugins beside the `cohort` binary, where discovery finds them, once.
fn plugins() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_cdylib("cohort-plugin-csv", false).unwrap();
        build_cdylib("cohort-plugin-outbox", false).unwrap();
    });
}

/// A shop of `n` customers: every third has no marketing consent, every fifth has spent over
/// $100, customer 7 unsubscribed by email.
fn write_shop(dir: &Dir, n: u32, no_consent: &BTreeSet<u32>) {
    let mut customers = String::from("id,email,first_name,accepts_marketing,created_at\n");
    let mut orders = String::from("id,customer_id,created_at,total_price,items\n");
    for i in 1..=n {
        let consent = i % 3 != 0 && !no_consent.contains(&i);
        let name = if i % 4 == 0 { "" } else { "Ann" };
        writeln!(
            customers,
            "{i},c{i}@example.com,{name},{consent},2024-01-01 10:00:00"
        )
        .unwrap();
        let total = if i % 5 == 0 { "150.00" } else { "20.00" };
        writeln!(orders, "{i},{i},2024-03-01 12:00:00,{total},1").unwrap();
    }
    let events = "customer_id,kind,occurred_at\n7,email_unsubscribe,2024-03-02 09:00:00\n";
    std::fs::create_dir_all(dir.path("data")).unwrap();
    dir.write("data/customers.csv", &customers);
    dir.write("data/orders.csv", &orders);
    dir.write("data/events.csv", events);
}

const CONFIG: &str = r#"
[workspace]
id = "shop"
timezone = "UTC"
as_of = "2024-04-01"
unsubscribe_url = "https://shop.example/u/{{customer_id}}"

[[sources]]
name = "files"
plugin = "csv"
config = { base_dir = "data", customers = { paths = ["customers.csv"] }, orders = { paths = ["orders.csv"] }, events = { paths = ["events.csv"] } }

[[segments]]
name = "buyers"
where = "orders_count >= 1"

[[segments]]
name = "big_spenders"
where = "total_spent > 100"

[[destinations]]
name = "out"
plugin = "outbox"
config = { dir = "outbox", fsync = false }
batch_size = 7

[[campaigns]]
name = "thanks"
segments = ["buyers"]
destination = "out"
mode = "send"
[campaigns.email]
from = "Shop <hi@shop.example>"
subject = "Thanks, {{default first_name \"friend\"}}"
html = "<p>You spent {{money total_spent}}.</p><a href=\"{{unsubscribe_url}}\">unsubscribe</a>"

[[campaigns]]
name = "vip_audience"
segments = ["big_spenders"]
destination = "out"
mode = "mirror"
[campaigns.fields]
email = "{{email}}"
spent = "{{total_spent}}"
"#;

fn setup(n: u32) -> Dir {
    plugins();
    let dir = Dir::new();
    write_shop(&dir, n, &BTreeSet::new());
    dir.write("cohort.toml", CONFIG);
    dir
}

fn run(dir: &Dir, extra: &[&str]) -> Run {
    let mut args = vec!["run", "--config", "cohort.toml"];
    args.extend_from_slice(extra);
    dir.run(&args)
}

/// Every file the outbox holds, by folder (`messages`, `audiences/NAME`), as key file names.
fn outbox(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let root = dir.join("outbox");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                let folder = path
                    .parent()
                    .unwrap()
                    .strip_prefix(&root)
                    .unwrap()
                    .display()
                    .to_string();
                out.entry(folder)
                    .or_insert_with(BTreeSet::new)
                    .insert(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Customer ids an outbox folder holds files for.
fn customers_in(files: &BTreeSet<String>) -> BTreeSet<u32> {
    files
        .iter()
        .map(|f| {
            // demo%2Fthanks%2F12%2F1-send.eml: the customer is the third path segment.
            let parts: Vec<&str> = f.split("%2F").collect();
            parts[2].parse().unwrap()
        })
        .collect()
}

#[test]
fn a_run_pushes_consented_members_and_a_second_run_pushes_nothing() {
    let dir = setup(30);
    let first = run(&dir, &[]).ok();
    assert!(first.stdout.contains("run 1 succeeded"), "{}", first.stdout);
    let files = outbox(dir.tmp.path());
    let sent = customers_in(&files["messages"]);
    let expected: BTreeSet<u32> = (1..=30).filter(|i| i % 3 != 0 && *i != 7).collect();
    assert_eq!(sent, expected, "consenting, unsuppressed buyers only");
    let audience = customers_in(&files["audiences/vip_audience"]);
    let vips: BTreeSet<u32> = (1..=30).filter(|i| i % 5 == 0 && i % 3 != 0).collect();
    assert_eq!(audience, vips);
    // The message is rendered with the customer's data and the unsubscribe link.
    let eml = std::fs::read_to_string(
        dir.path("outbox/messages").join(
            files["messages"]
                .iter()
                .find(|f| f.contains("%2F5%2F"))
                .unwrap(),
        ),
    )
    .unwrap();
    assert!(eml.contains("Subject: Thanks, Ann"), "{eml}");
    assert!(eml.contains("$150.00"), "{eml}");
    assert!(
        eml.contains("List-Unsubscribe: <https://shop.example/u/5>"),
        "{eml}"
    );

    let second = run(&dir, &[]).ok();
    assert_eq!(outbox(dir.tmp.path()), files, "nothing new was written");
    let pushed: Vec<&str> = second
        .stdout
        .lines()
        .filter(|l| l.contains("→ out"))
        .collect();
    assert_eq!(pushed.len(), 2, "{}", second.stdout);
    for line in pushed {
        let cells: Vec<&str> = line.split_whitespace().collect();
        // campaign → out, mode, members, pushed, ...
        assert_eq!(cells[5], "0", "second run pushed something: {line}");
    }

    let list = dir.run(&["runs", "list", "--config", "cohort.toml"]).ok();
    assert_eq!(
        list.stdout
            .lines()
            .filter(|l| l.contains("succeeded"))
            .count(),
        2,
        "{}",
        list.stdout
    );
    let show = dir
        .run(&["runs", "show", "1", "--config", "cohort.toml"])
        .ok();
    assert!(show.stdout.contains("thanks → out"), "{}", show.stdout);
    assert!(show.stdout.contains("pulled"), "{}", show.stdout);
}

#[test]
fn withdrawn_consent_removes_the_customer_from_the_audience_and_stops_messages() {
    let dir = setup(30);
    run(&dir, &[]).ok();
    // Customer 10 is a VIP with consent; they withdraw it.
    write_shop(&dir, 30, &BTreeSet::from([10]));
    let second = run(&dir, &[]).ok();
    let files = outbox(dir.tmp.path());
    let removals: Vec<&String> = files["audiences/vip_audience"]
        .iter()
        .filter(|f| f.contains("-remove-"))
        .collect();
    assert_eq!(removals.len(), 1, "{files:?}");
    assert!(removals[0].contains("%2F10%2F2-remove-"), "{removals:?}");
    assert!(second.stdout.contains("updated"), "{}", second.stdout);
}

#[test]
fn a_dry_run_pushes_nothing_and_changes_no_state() {
    let dir = setup(20);
    let dry = run(&dir, &["--dry-run"]).ok();
    assert!(dry.stdout.contains("(dry run)"), "{}", dry.stdout);
    assert!(dry.stdout.contains("would push"), "{}", dry.stdout);
    assert!(outbox(dir.tmp.path()).is_empty());
    // The real run then pushes everything the dry run would have.
    run(&dir, &[]).ok();
    assert!(!outbox(dir.tmp.path()).is_empty());
}

#[test]
fn campaign_preview_renders_without_pushing() {
    let dir = setup(12);
    run(&dir, &["--dry-run"]).ok();
    let preview = dir
        .run(&[
            "campaign",
            "preview",
            "--config",
            "cohort.toml",
            "--campaign",
            "thanks",
            "--customer",
            "3",
        ])
        .ok();
    assert!(
        preview
            .stdout
            .contains("NOT contacted: no marketing consent"),
        "{}",
        preview.stdout
    );
    assert!(
        preview.stdout.contains("Subject: Thanks, Ann"),
        "{}",
        preview.stdout
    );
    assert!(outbox(dir.tmp.path()).is_empty());
}

/// The outbox a run of the same shop produces when nothing interrupts it.
fn clean_outbox(n: u32) -> BTreeMap<String, BTreeSet<String>> {
    let dir = setup(n);
    run(&dir, &[]).ok();
    outbox(dir.tmp.path())
}

#[test]
fn a_run_killed_at_each_stage_and_run_again_delivers_each_change_exactly_once() {
    let expected = clean_outbox(60);
    // 60 customers make 8 batches of 7: 6 for the messages, 2 for the audience.
    for failpoint in [
        "after-pull",
        "after-segments",
        "after-push:1",
        "after-push:4",
        "after-push:6",
        "after-push:7",
        "after-push:8",
    ] {
        let dir = setup(60);
        let killed = dir
            .command()
            .args(["run", "--config", "cohort.toml"])
            .env("COHORT_FAILPOINT", failpoint)
            .output()
            .unwrap();
        assert!(
            !killed.status.success(),
            "{failpoint}: the run should have died: {}",
            String::from_utf8_lossy(&killed.stdout)
        );
        let again = run(&dir, &[]).ok();
        assert_eq!(
            outbox(dir.tmp.path()),
            expected,
            "{failpoint}: the outbox differs from an uninterrupted run's\n{}",
            again.stdout
        );
        // The killed run is on record as interrupted.
        let list = dir.run(&["runs", "list", "--config", "cohort.toml"]).ok();
        assert!(
            list.stdout.contains("failed"),
            "{failpoint}: {}",
            list.stdout
        );
        // And a third run has nothing left to do.
        run(&dir, &[]).ok();
        assert_eq!(outbox(dir.tmp.path()), expected, "{failpoint}: third run");
    }
}

#[test]
fn a_run_killed_with_sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let expected = clean_outbox(60);
    // A whole run takes a few hundred milliseconds here; these land in every stage.
    for delay_ms in [15, 40, 70, 100, 140, 200] {
        let dir = setup(60);
        let mut child = dir
            .command()
            .args(["run", "--config", "cohort.toml"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
        let _ = child.wait();
        run(&dir, &[]).ok();
        assert_eq!(
            outbox(dir.tmp.path()),
            expected,
            "killed after {delay_ms} ms"
        );
    }
}

/// PostgreSQL at 127.0.0.1:5432, database `test` (or `COHORT_TEST_POSTGRES_URL`), in a schema
/// of the test's own, dropped at the end.
struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    fn new(tag: &str) -> PgSchema {
        let base = std::env::var("COHORT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("cohort_run_{tag}_{}", std::process::id());
        let schema = PgSchema { base, name };
        schema.psql(&format!(
            "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}",
            schema.name
        ));
        schema
    }

    fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([self.base.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("psql (PostgreSQL's client) must be installed for this test");
        assert!(
            out.status.success(),
            "PostgreSQL must be running at {} (.ci/run starts it): {}",
            self.base,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A URL whose connections use the schema.
    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.base.as_str(),
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

#[test]
fn the_same_job_runs_on_postgresql_and_a_killed_run_resumes_there_too() {
    let expected = clean_outbox(60);
    let pg = PgSchema::new("resume");
    let dir = setup(60);
    let killed = dir
        .command()
        .args(["run", "--config", "cohort.toml"])
        .env("COHORT_DATABASE_URL", pg.url())
        .env("COHORT_FAILPOINT", "after-push:3")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let again = dir
        .command()
        .args(["run", "--config", "cohort.toml"])
        .env("COHORT_DATABASE_URL", pg.url())
        .output()
        .unwrap();
    let again = Run::from(again).ok();
    assert_eq!(outbox(dir.tmp.path()), expected, "{}", again.stdout);
    assert!(
        !dir.path("cohort.db").exists(),
        "the run used PostgreSQL, not SQLite"
    );
    let list = dir
        .command()
        .args(["runs", "list", "--config", "cohort.toml"])
        .env("COHORT_DATABASE_URL", pg.url())
        .output()
        .unwrap();
    let list = Run::from(list).ok();
    assert!(list.stdout.contains("succeeded"), "{}", list.stdout);
    assert!(
        list.stdout.contains("failed"),
        "the killed run is recorded: {}",
        list.stdout
    );
}

#[test]
fn output_piped_into_a_command_that_stops_reading_ends_quietly() {
    let dir = setup(12);
    run(&dir, &[]).ok();
    run(&dir, &[]).ok();
    // `cohort runs list | head -1`, with a reader that closes the pipe at once.
    let mut child = dir
        .command()
        .args(["runs", "list", "--config", "cohort.toml", "--limit", "1000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_destination_that_cannot_open_fails_the_run_but_not_the_other_campaigns() {
    let dir = setup(12);
    // The first campaign's destination writes into a "folder" that is a file.
    dir.write("blocker", "not a folder");
    let config = CONFIG.replace(
        "[[campaigns]]\nname = \"thanks\"\nsegments = [\"buyers\"]\ndestination = \"out\"",
        "[[destinations]]\nname = \"broken\"\nplugin = \"outbox\"\nconfig = { dir = \"blocker\" }\n\n\
         [[campaigns]]\nname = \"thanks\"\nsegments = [\"buyers\"]\ndestination = \"broken\"",
    );
    assert_ne!(config, CONFIG);
    dir.write("cohort.toml", &config);
    let failed = run(&dir, &[]).failed();
    assert!(
        failed.stderr.contains("campaign `thanks`"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("not a folder"), "{}", failed.stderr);
    let files = outbox(dir.tmp.path());
    assert!(
        !files["audiences/vip_audience"].is_empty(),
        "the other campaign ran: {files:?}"
    );
    let show = dir
        .run(&["runs", "show", "1", "--config", "cohort.toml"])
        .ok();
    assert!(show.stdout.contains("failed"), "{}", show.stdout);
    assert!(
        show.stdout.contains("vip_audience → out"),
        "{}",
        show.stdout
    );
}
