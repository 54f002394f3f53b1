//! The real `cohort` binary with the built csv and sendgrid plugins against the fake SendGrid:
//! a dry run sends nothing, a run sends each consenting buyer one message and records the one
//! address SendGrid refuses with its reason, and a second run sends nothing. In mirror mode the
//! list holds exactly the eligible segment members, leavers and withdrawn consent leave it, and
//! a run with nothing new pushes nothing.
#![allow(clippy::unwrap_used)]

mod fake;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake::{Fake, KEY, LIST};

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-sendgrid", "cohort-plugin-csv"])
}

/// Six buyers; the fourth has no consent, the fifth an address SendGrid refuses.
fn setup(fake: &Fake) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut customers = String::from("id,email,first_name,accepts_marketing,created_at\n");
    let mut orders = String::from("id,customer_id,created_at,total_price,items\n");
    for i in 1..=6 {
        let email = if i == 5 {
            "c5@invalid.example".to_owned()
        } else {
            format!("c{i}@example.com")
        };
        writeln!(customers, "{i},{email},Ann,{},2024-01-01 10:00:00", i != 4).unwrap();
        writeln!(orders, "{i},{i},2024-03-01 12:00:00,20.00,1").unwrap();
    }
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/customers.csv"), customers).unwrap();
    std::fs::write(dir.path().join("data/orders.csv"), orders).unwrap();
    let config = format!(
        r#"
[workspace]
id = "shop"
timezone = "UTC"
as_of = "2024-04-01"
unsubscribe_url = "https://shop.example/u/{{{{customer_id}}}}"

[[sources]]
name = "files"
plugin = "csv"
config = {{ base_dir = "data", customers = {{ paths = ["customers.csv"] }}, orders = {{ paths = ["orders.csv"] }} }}

[[segments]]
name = "buyers"
where = "orders_count >= 1"

[[destinations]]
name = "sendgrid"
plugin = "sendgrid"
config = {{ api_key = "{KEY}", base_url = "{url}" }}

[[campaigns]]
name = "thanks"
segments = ["buyers"]
destination = "sendgrid"
mode = "send"
[campaigns.email]
from = "Shop <hi@shop.example>"
subject = "Thanks, {{{{first_name}}}}"
html = "<p>Thank you.</p>"
"#,
        url = fake.url(),
    );
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    dir
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    Command::new(cohort())
        .args(["run", "--config", "cohort.toml"])
        .args(extra)
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
fn a_run_sends_each_consenting_buyer_once_and_records_what_sendgrid_refused() {
    let fake = Fake::start();
    let dir = setup(&fake);
    let dry = run(dir.path(), &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        fake.server.requests_to("/v3/mail/send").is_empty(),
        "a dry run sent mail"
    );

    let first = run(dir.path(), &[]);
    let copies = fake.copies();
    assert_eq!(
        copies.keys().collect::<Vec<_>>(),
        [
            "c1@example.com",
            "c2@example.com",
            "c3@example.com",
            "c6@example.com"
        ],
        "{}",
        text(&first)
    );
    assert!(copies.values().all(|&n| n == 1));
    assert!(text(&first).contains("1 record errors"), "{}", text(&first));
    let show = Command::new(cohort())
        .args(["runs", "show", "2", "--config", "cohort.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        text(&show).contains("Does not contain a valid address"),
        "the refusal is recorded with SendGrid's reason: {}",
        text(&show)
    );
    assert!(!text(&first).contains(KEY), "the key leaked");
    assert_eq!(fake.violations(), Vec::<String>::new());

    let requests = fake.server.requests_to("/v3/mail/send").len();
    let second = run(dir.path(), &[]);
    assert!(
        matches!(second.status.code(), Some(0 | 3)),
        "{}",
        text(&second)
    );
    assert_eq!(fake.accepted().len(), 4, "a second run sent again");
    // Only the refused address is tried again (Cohort plans a rejected record again).
    for r in &fake.server.requests_to("/v3/mail/send")[requests..] {
        assert_eq!(
            r.json()["personalizations"][0]["to"][0]["email"],
            "c5@invalid.example",
            "{}",
            text(&second)
        );
    }
}

const HEADER: &str = "id,email,first_name,tags,accepts_marketing,created_at\n";

fn customers(dir: &Path, rows: &[&str]) {
    let mut text = HEADER.to_owned();
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(dir.join("customers.csv"), text).unwrap();
}

/// A mirror campaign of the `vips` segment into the fake's list, with a custom field.
fn setup_mirror(fake: &Fake) -> tempfile::TempDir {
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
name = "sg"
plugin = "sendgrid"
config = {{ api_key = "{KEY}", base_url = "{url}", list_id = "{LIST}", poll_interval = 0 }}

[[campaigns]]
name = "vip_sync"
segments = ["vips"]
destination = "sg"
mode = "mirror"
[campaigns.fields]
email = "{{{{lower email}}}}"
first_name = "{{{{default first_name \"\"}}}}"
tier = "vip"
"#,
        url = fake.url(),
    );
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    dir
}

#[test]
fn a_mirror_campaign_keeps_the_list_to_exactly_the_eligible_segment_members() {
    let fake = Fake::start();
    let dir = setup_mirror(&fake);
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,vip,true,2024-01-01 10:00:00",
            "3,cem@example.com,Cem,vip,false,2024-01-01 10:00:00",
            "4,dora@example.com,Dora,,true,2024-01-01 10:00:00",
            "5,eli@example.com,Eli,vip,true,2024-01-01 10:00:00",
        ],
    );
    let dry = run(dir.path(), &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        fake.server.requests_to("/v3/marketing/contacts").is_empty(),
        "a dry run pushed"
    );
    let first = run(dir.path(), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(
        fake.member_emails(),
        ["ann@example.com", "bob@example.com", "eli@example.com"],
        "segment members with consent only: {}",
        text(&first)
    );
    let ann = &fake.members()[0];
    assert_eq!(ann.first_name.as_deref(), Some("Ann"));
    assert_eq!(ann.custom_fields["e1_T"], "vip");

    // Bob leaves the segment, Eli withdraws consent, Dora joins.
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,,true,2024-01-01 10:00:00",
            "3,cem@example.com,Cem,vip,false,2024-01-01 10:00:00",
            "4,dora@example.com,Dora,vip,true,2024-01-01 10:00:00",
            "5,eli@example.com,Eli,vip,false,2024-01-01 10:00:00",
        ],
    );
    let second = run(dir.path(), &[]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(
        fake.member_emails(),
        ["ann@example.com", "dora@example.com"],
        "{}",
        text(&second)
    );
    assert_eq!(fake.contacts().len(), 4, "leavers stay contacts");

    let writes = |fake: &Fake| {
        fake.server
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" || r.method == "DELETE")
            .count()
    };
    let before = writes(&fake);
    let third = run(dir.path(), &[]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert_eq!(writes(&fake), before, "nothing changed, nothing pushed");
    assert!(!text(&third).contains(KEY), "the key leaked");
    assert_eq!(fake.violations(), Vec::<String>::new());
}

#[test]
fn an_address_unsubscribed_at_sendgrid_is_suppressed_at_the_next_run_and_leaves_the_list() {
    let fake = Fake::start();
    let dir = setup_mirror(&fake);
    customers(
        dir.path(),
        &[
            "1,ann@example.com,Ann,vip,true,2024-01-01 10:00:00",
            "2,bob@example.com,Bob,vip,true,2024-01-01 10:00:00",
        ],
    );
    let first = run(dir.path(), &[]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(fake.member_emails(), ["ann@example.com", "bob@example.com"]);

    // Bob clicks SendGrid's unsubscribe link.
    fake.unsubscribe("Bob@Example.com", 1_764_930_000);
    let dry = run(dir.path(), &["--dry-run", "--json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        report["runs"][0]["summary"]["vendor_suppressions"],
        serde_json::json!([{"destination": "sg", "read": 1, "new": 1}]),
        "a dry run reads and reports: {}",
        text(&dry)
    );
    assert_eq!(
        fake.member_emails(),
        ["ann@example.com", "bob@example.com"],
        "a dry run changes nothing"
    );

    let second = run(dir.path(), &[]);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        text(&second).contains(
            "sg: 1 unsubscribes read back from the vendor (1 new to the suppression list)"
        ),
        "the dry run stored nothing, so the real run reads it again: {}",
        text(&second)
    );
    assert_eq!(
        fake.member_emails(),
        ["ann@example.com"],
        "suppressed before anything was pushed, then taken off the list: {}",
        text(&second)
    );
    assert_eq!(fake.contacts().len(), 2, "the contact stays");

    // The cursor moved on: the same unsubscribe is asked for from its own second only.
    let third = run(dir.path(), &[]);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    let reads = fake.server.requests_to("/v3/suppression/unsubscribes");
    assert_eq!(
        reads.last().unwrap().query("start_time"),
        Some("1764930000"),
        "{reads:?}"
    );
    assert_eq!(fake.member_emails(), ["ann@example.com"]);
    assert_eq!(fake.violations(), Vec::<String>::new());
}
