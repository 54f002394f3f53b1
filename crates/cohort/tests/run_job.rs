//! `cohort run` end to end: the real binary, the real csv and outbox plugins, a SQLite store in
//! a temporary folder. Covers idempotency, consent, dry runs, the run history, and runs killed
//! at any point and run again.
#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use util::Run;
use util::pg::PgSchema;
use util::shop::{CONFIG, customers_in, outbox, run, setup, write_shop};

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
fn a_destination_that_fails_fails_the_run_but_not_the_other_campaigns() {
    let dir = setup(12);
    util::shop::test_plugin(&dir);
    // A third campaign, whose destination panics on every push.
    let config = format!(
        "{CONFIG}\n[plugins]\ndir = \"plugins\"\n\n[[destinations]]\nname = \"broken\"\nplugin = \"test-panicking\"\nconfig = {{ panic_in = \"push\" }}\n\n\
         [[campaigns]]\nname = \"crm_sync\"\nsegments = [\"buyers\"]\ndestination = \"broken\"\nmode = \"upsert\"\n[campaigns.fields]\nemail = \"{{{{email}}}}\"\n"
    );
    dir.write("cohort.toml", &config);
    let failed = run(&dir, &[]).failed();
    assert!(
        failed.stderr.contains("campaign `crm_sync`"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("panic"), "{}", failed.stderr);
    let files = outbox(dir.tmp.path());
    assert!(
        !files["audiences/vip_audience"].is_empty() && !files["messages"].is_empty(),
        "the other campaigns ran: {files:?}"
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
