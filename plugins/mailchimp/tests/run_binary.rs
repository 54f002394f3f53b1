//! The real `cohort` binary with the built csv and mailchimp plugins, against the fake
//! Mailchimp: a mirror campaign whose segment members join the list with the audience's tag,
//! then a leaver and a customer who withdrew consent lose it, and a run with nothing new
//! sends nothing.
#![allow(clippy::unwrap_used)]

mod fake;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake::{API_KEY, Fake, Fault, LIST};

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-mailchimp", "cohort-plugin-csv"])
}

const HEADER: &str = "id,email,first_name,last_name,country,tags,accepts_marketing,created_at\n";

fn customers(dir: &Path, rows: &[&str]) {
    let mut text = HEADER.to_owned();
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(dir.join("customers.csv"), text).unwrap();
}

fn setup(fake: &Fake) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[workspace]
id = "shop"
timezone = "UTC"
unsubscribe_url = "https://shop.example/u/{{{{customer_id}}}}"

[[sources]]
name = "files"
plugin = "csv"
config = {{ customers = {{ paths = ["customers.csv"] }} }}

[[segments]]
name = "vips"
where = "tags contains 'vip'"

[[destinations]]
name = "mc"
plugin = "mailchimp"
config = {{ api_key = "{API_KEY}", list_id = "{LIST}", base_url = "{url}" }}

[[campaigns]]
name = "vip_sync"
segments = ["vips"]
destination = "mc"
mode = "mirror"
audience = "vip"
[campaigns.fields]
email = "{{{{lower email}}}}"
first_name = "{{{{default first_name \"\"}}}}"
country = "{{{{default country \"\"}}}}"
"#,
        url = fake.url(),
    );
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    dir
}

fn run(dir: &Path) -> Output {
    Command::new(cohort())
        .args(["run", "--config", "cohort.toml"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_mirror_campaign_keeps_the_tag_on_exactly_the_eligible_segment_members() {
    let fake = Fake::start();
    let dir = setup(&fake);
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,A,DE,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,B,FR,vip,true,2024-01-01 10:00:00",
            "3,cem@example.com,Cem,C,TR,vip,false,2024-01-01 10:00:00",
            "4,dora@example.com,Dora,D,AT,,true,2024-01-01 10:00:00",
            "5,eli@example.com,Eli,E,DE,vip,true,2024-01-01 10:00:00",
        ],
    );
    let first = run(dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(
        fake.tagged("vip"),
        ["ann@example.com", "bob@example.com", "eli@example.com"],
        "segment members with consent only: {}",
        text(&first)
    );
    assert!(
        fake.member("cem@example.com").is_none(),
        "no consent, never added"
    );
    assert_eq!(
        fake.member("ann@example.com").unwrap().merge_fields["FNAME"],
        "Ann"
    );

    // Bob leaves the segment, Eli withdraws consent, Dora joins.
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,A,DE,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,B,FR,,true,2024-01-01 10:00:00",
            "3,cem@example.com,Cem,C,TR,vip,false,2024-01-01 10:00:00",
            "4,dora@example.com,Dora,D,AT,vip,true,2024-01-01 10:00:00",
            "5,eli@example.com,Eli,E,DE,vip,false,2024-01-01 10:00:00",
        ],
    );
    let second = run(dir.path());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(
        fake.tagged("vip"),
        ["ann@example.com", "dora@example.com"],
        "{}",
        text(&second)
    );
    assert_eq!(
        fake.member("bob@example.com").unwrap().status,
        "subscribed",
        "a leaver keeps their subscription, only the tag goes"
    );

    // Each run reads the list's unsubscribes first (GETs); nothing else may be sent.
    let before = writes(&fake);
    let third = run(dir.path());
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert_eq!(writes(&fake), before, "nothing changed, nothing pushed");
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

#[test]
fn a_member_who_unsubscribed_at_mailchimp_is_suppressed_at_the_next_run_and_loses_the_tag() {
    let fake = Fake::start();
    let dir = setup(&fake);
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,A,DE,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,B,FR,vip,true,2024-01-01 10:00:00",
            "3,cem@example.com,Cem,C,TR,vip,true,2024-01-01 10:00:00",
        ],
    );
    let first = run(dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(
        fake.tagged("vip"),
        ["ann@example.com", "bob@example.com", "cem@example.com"]
    );

    // Bob unsubscribes through Mailchimp's link; Cem's address is cleaned after bounces.
    fake.set_status(
        "bob@example.com",
        "unsubscribed",
        "2026-12-01T10:00:00+00:00",
    );
    fake.set_status("cem@example.com", "cleaned", "2026-12-01T11:00:00+00:00");
    let second = run(dir.path());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        text(&second).contains("mc: 2 unsubscribes read back from the vendor (2 new"),
        "{}",
        text(&second)
    );
    assert_eq!(
        fake.tagged("vip"),
        ["ann@example.com"],
        "suppressed before anything was pushed, then untagged: {}",
        text(&second)
    );
    assert_eq!(
        fake.member("bob@example.com").unwrap().status,
        "unsubscribed",
        "Cohort never resubscribes"
    );
    let third = run(dir.path());
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    let reads: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/members"))
        .collect();
    assert_eq!(
        reads.last().unwrap().query("since_last_changed"),
        Some("2026-12-01T11:00:00+00:00"),
        "the next read starts at the last change seen"
    );
    assert!(
        !text(&third).contains("unsubscribes read back"),
        "{}",
        text(&third)
    );
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}

#[test]
fn a_large_audience_goes_through_batch_jobs_when_the_config_sets_no_batch_size() {
    let fake = Fake::start();
    let dir = setup(&fake);
    // Jobs are polled back to back, so the test does not wait out the 5 s default.
    let config = std::fs::read_to_string(dir.path().join("cohort.toml")).unwrap();
    let config = config.replace(
        &format!("base_url = \"{}\" }}", fake.url()),
        &format!("base_url = \"{}\", poll_interval = 0 }}", fake.url()),
    );
    assert!(config.contains("poll_interval = 0"));
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    let rows: Vec<String> = (0..1200)
        .map(|i| format!("{i},m{i}@example.com,M,N,DE,vip,true,2024-01-01 10:00:00"))
        .collect();
    customers(
        dir.path(),
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let out = run(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fake.tagged("vip").len(), 1200, "{}", text(&out));
    let stats = fake.stats();
    // The host's default of 500 per push would stay under `batch_threshold` (500): member by
    // member, two requests each. The plugin's preferred push holds all 1,200: two jobs.
    assert_eq!(stats.jobs, 2, "{}", text(&out));
    assert_eq!((stats.puts, stats.tag_posts), (0, 0));
    assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
}

/// A workspace of 2,400 VIPs pushed 600 at a time (four pushes, one batch job each), whose
/// jobs are polled a few times before they finish, each answer after 50 ms as across a
/// network: a push lasts long enough for the next ones to start beside it.
fn pushes_of_600(fake: &Fake) -> tempfile::TempDir {
    fake.set_polls_before_done(4);
    fake.set_latency(std::time::Duration::from_millis(50));
    let dir = setup(fake);
    let config = std::fs::read_to_string(dir.path().join("cohort.toml")).unwrap();
    let config = config.replace(
        &format!("base_url = \"{}\" }}", fake.url()),
        &format!(
            "base_url = \"{}\", poll_interval = 0 }}\nbatch_size = 600",
            fake.url()
        ),
    );
    assert!(config.contains("batch_size = 600"));
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    let rows: Vec<String> = (0..2400)
        .map(|i| format!("{i},m{i}@example.com,M,N,DE,vip,true,2024-01-01 10:00:00"))
        .collect();
    customers(
        dir.path(),
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    dir
}

/// Requests that change the list (every run first reads its unsubscribes with GETs).
fn writes(fake: &Fake) -> usize {
    fake.requests().iter().filter(|r| r.method != "GET").count()
}

#[test]
fn three_pushes_are_in_flight_at_once_and_every_member_lands_once() {
    let fake = Fake::start();
    let dir = pushes_of_600(&fake);
    let out = run(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(fake.tagged("vip").len(), 2400, "{}", text(&out));
    let stats = fake.stats();
    // Four pushes of 600, one job each (above `batch_threshold`). The plugin takes three
    // pushes at once: one at a time would never have two jobs open, and the fourth waits.
    assert_eq!(stats.jobs, 4, "{}", text(&out));
    assert_eq!(stats.open_jobs_peak, 3, "{}", text(&out));
    assert_eq!(stats.invalid, 0, "{:?}", stats.invalid_reasons);
    // Every outcome was recorded: the next run pushes nothing.
    let before = writes(&fake);
    let again = run(dir.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(writes(&fake), before, "{}", text(&again));
}

#[test]
fn a_run_killed_with_pushes_in_flight_is_finished_by_the_next_and_then_nothing_is_pushed() {
    let fake = Fake::start();
    let dir = pushes_of_600(&fake);
    // The process aborts (no cleanup, as on kill -9) when the first push lands, before its
    // outcomes are recorded, while the second and third are still out.
    let killed = Command::new(cohort())
        .args(["run", "--config", "cohort.toml"])
        .env("COHORT_FAILPOINT", "after-push")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_ne!(killed.status.code(), Some(0), "{}", text(&killed));
    assert!(
        fake.tagged("vip").len() < 2400,
        "the fourth push never started: {}",
        text(&killed)
    );
    let resumed = run(dir.path());
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(fake.tagged("vip").len(), 2400, "{}", text(&resumed));
    assert_eq!(fake.member_count(), 2400);
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
    // The resumed run recorded every outcome, its own and those the killed run never did.
    let before = writes(&fake);
    let again = run(dir.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(writes(&fake), before, "{}", text(&again));
}

#[test]
fn a_push_that_fails_starts_no_more_and_the_pushes_in_flight_are_recorded() {
    let fake = Fake::start();
    let dir = pushes_of_600(&fake);
    // The first job submitted is refused as a whole (the key was revoked, say): that push
    // fails while the other two are out.
    fake.inject("/batches", Fault::Revoked, 1);
    let failed = run(dir.path());
    assert_ne!(failed.status.code(), Some(0), "{}", text(&failed));
    assert!(
        text(&failed).contains("api_key"),
        "the error names the key: {}",
        text(&failed)
    );
    // The two pushes in flight landed; the fourth never started.
    assert_eq!(fake.tagged("vip").len(), 1200, "{}", text(&failed));
    assert_eq!(fake.stats().jobs, 2, "{}", text(&failed));
    // Their outcomes were recorded: the next run pushes only the 1,200 that never landed (a
    // member and a tag operation each), not the 2,400 again.
    let before = fake.stats().job_operations;
    let resumed = run(dir.path());
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(fake.tagged("vip").len(), 2400, "{}", text(&resumed));
    assert_eq!(
        fake.stats().job_operations - before,
        2 * 1200,
        "{}",
        text(&resumed)
    );
}
