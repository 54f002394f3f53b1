//! The real `cohort` binary with the built csv and klaviyo plugins, against the fake Klaviyo:
//! a mirror campaign whose segment members join the list, then a leaver and a customer who
//! withdrew consent are taken off it, and a run with nothing new sends nothing.
#![allow(clippy::unwrap_used)]

mod fake;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake::{API_KEY, Fake, LIST};

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-klaviyo", "cohort-plugin-csv"])
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
name = "kl"
plugin = "klaviyo"
config = {{ api_key = "{API_KEY}", list_id = "{LIST}", base_url = "{url}", revision = "2026-07-15" }}

[[campaigns]]
name = "vip_sync"
segments = ["vips"]
destination = "kl"
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
fn a_mirror_campaign_keeps_exactly_the_eligible_segment_members_on_the_list() {
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
        fake.members(),
        ["ann@example.com", "bob@example.com", "eli@example.com"],
        "segment members with consent only: {}",
        text(&first)
    );
    assert!(
        fake.profile("cem@example.com").is_none(),
        "no consent, never added"
    );
    assert_eq!(
        fake.profile("ann@example.com").unwrap().attributes["first_name"],
        "Ann"
    );
    assert_eq!(
        fake.profile("ann@example.com").unwrap().attributes["properties"]["country"],
        "DE"
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
        fake.members(),
        ["ann@example.com", "dora@example.com"],
        "{}",
        text(&second)
    );
    assert!(
        fake.profile("bob@example.com").is_some(),
        "a leaver's profile stays, only the list membership goes"
    );

    // Each run reads Klaviyo's suppressions first (GETs); nothing else may be sent.
    let writes = |fake: &Fake| fake.requests().iter().filter(|r| r.method != "GET").count();
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
fn a_profile_klaviyo_suppressed_is_suppressed_at_the_next_run_and_leaves_the_list() {
    let fake = Fake::start();
    let dir = setup(&fake);
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,A,DE,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,B,FR,vip,true,2024-01-01 10:00:00",
        ],
    );
    let first = run(dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(fake.members(), ["ann@example.com", "bob@example.com"]);

    // Bob unsubscribes through Klaviyo's link.
    fake.suppress(
        "bob@example.com",
        "UNSUBSCRIBE",
        "2026-12-01T10:00:00+00:00",
    );
    let second = run(dir.path());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        text(&second).contains("kl: 1 unsubscribes read back from the vendor (1 new"),
        "{}",
        text(&second)
    );
    assert_eq!(
        fake.members(),
        ["ann@example.com"],
        "suppressed before anything was pushed, then taken off the list: {}",
        text(&second)
    );
    let third = run(dir.path());
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    let reads: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/profiles")
        .filter_map(|r| r.query("filter").map(str::to_owned))
        .collect();
    assert_eq!(
        reads.last().map(String::as_str),
        Some(
            "greater-or-equal(subscriptions.email.marketing.suppression.timestamp,2026-12-01T10:00:00+00:00)"
        ),
        "the next read starts at the last suppression seen"
    );
    assert_eq!(
        fake.stats().invalid,
        0,
        "{:?}",
        fake.stats().invalid_reasons
    );
}
