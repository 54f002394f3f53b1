//! The real `cohort` binary with the built csv and google-ads plugins, against the fake Data
//! Manager API: a mirror campaign whose list follows the segment across three runs (a join, a
//! leave, a consent withdrawn), and a run killed between an ingestion and its record.
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cohort_adkeys::sha256_hex;
use fake::{ACCOUNT, CLIENT_ID, CLIENT_SECRET, Fake, REFRESH_TOKEN};

const AUDIENCE: &str = "9000000042";

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-google-ads", "cohort-plugin-csv"])
}

/// Customers `(id, consent, spent)`: the segment is whoever spent over 100.
fn write_shop(dir: &Path, customers: &[(u32, bool, &str)]) {
    let mut c = String::from("id,email,first_name,accepts_marketing,created_at\n");
    let mut o = String::from("id,customer_id,created_at,total_price,items\n");
    for (id, consent, spent) in customers {
        c.push_str(&format!(
            "{id},C{id}@Example.com,Ann,{consent},2024-01-01 10:00:00\n"
        ));
        o.push_str(&format!("{id},{id},2024-03-01 12:00:00,{spent},1\n"));
    }
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/customers.csv"), c).unwrap();
    std::fs::write(dir.join("data/orders.csv"), o).unwrap();
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
config = {{ base_dir = "data", customers = {{ paths = ["customers.csv"] }}, orders = {{ paths = ["orders.csv"] }} }}

[[segments]]
name = "big_spenders"
where = "total_spent > 100"

[[destinations]]
name = "google"
plugin = "google-ads"
config = {{ operating_account_id = "{ACCOUNT}", client_id = "{CLIENT_ID}", client_secret = "{CLIENT_SECRET}", refresh_token = "{REFRESH_TOKEN}", base_url = "{url}", token_url = "{token_url}" }}

[[campaigns]]
name = "retargeting"
segments = ["big_spenders"]
destination = "google"
mode = "mirror"
audience = "{AUDIENCE}"
[campaigns.fields]
email = "{{{{email}}}}"
given_name = "{{{{first_name}}}}"
"#,
        url = fake.url(),
        token_url = fake.token_url(),
    );
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    dir
}

fn run(dir: &Path, failpoint: Option<&str>) -> Output {
    let mut cmd = Command::new(cohort());
    cmd.args(["run", "--config", "cohort.toml"])
        .current_dir(dir);
    if let Some(f) = failpoint {
        cmd.env("COHORT_FAILPOINT", f);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn hashes(ids: &[u32]) -> BTreeSet<String> {
    ids.iter()
        .map(|id| sha256_hex(&format!("c{id}@example.com")))
        .collect()
}

#[test]
fn the_audience_follows_joins_leaves_and_consent_withdrawals_across_three_runs() {
    let fake = Fake::start();
    fake.list(AUDIENCE);
    let dir = setup(&fake);
    // 4 spent enough but never consented: never sent.
    write_shop(
        dir.path(),
        &[
            (1, true, "150.00"),
            (2, true, "150.00"),
            (3, true, "150.00"),
            (4, false, "150.00"),
            (5, true, "20.00"),
        ],
    );
    let first = run(dir.path(), None);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert_eq!(fake.keys(AUDIENCE), hashes(&[1, 2, 3]));
    let member = &fake.members(AUDIENCE)[&sha256_hex("c1@example.com")];
    assert_eq!(member["consent"]["adUserData"], "CONSENT_GRANTED");

    // 2 leaves the segment (a refund brings them under 100), 5 joins.
    write_shop(
        dir.path(),
        &[
            (1, true, "150.00"),
            (2, true, "20.00"),
            (3, true, "150.00"),
            (4, false, "150.00"),
            (5, true, "300.00"),
        ],
    );
    let second = run(dir.path(), None);
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert_eq!(fake.keys(AUDIENCE), hashes(&[1, 3, 5]));

    // 3 withdraws consent while still in the segment: removed at the next run.
    write_shop(
        dir.path(),
        &[
            (1, true, "150.00"),
            (2, true, "20.00"),
            (3, false, "150.00"),
            (4, false, "150.00"),
            (5, true, "300.00"),
        ],
    );
    let third = run(dir.path(), None);
    assert_eq!(third.status.code(), Some(0), "{}", text(&third));
    assert_eq!(fake.keys(AUDIENCE), hashes(&[1, 5]));

    let adds = fake.stats(|s| s.ingests);
    let again = run(dir.path(), None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        fake.stats(|s| s.ingests),
        adds,
        "an unchanged member is not pushed again"
    );
    assert!(fake.stats(|s| s.violations.is_empty()));
}

#[test]
fn a_run_killed_between_a_request_and_its_record_sends_nothing_twice_when_run_again() {
    let fake = Fake::start();
    fake.list(AUDIENCE);
    let dir = setup(&fake);
    write_shop(
        dir.path(),
        &[
            (1, true, "150.00"),
            (2, true, "150.00"),
            (3, true, "150.00"),
        ],
    );
    let killed = run(dir.path(), Some("after-push"));
    assert_ne!(killed.status.code(), Some(0), "{}", text(&killed));
    assert!(
        text(&killed).contains("COHORT_FAILPOINT"),
        "{}",
        text(&killed)
    );
    assert_eq!(
        fake.keys(AUDIENCE),
        hashes(&[1, 2, 3]),
        "Google took the request"
    );
    assert_eq!(fake.stats(|s| s.ingests), 1);

    let again = run(dir.path(), None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(fake.keys(AUDIENCE), hashes(&[1, 2, 3]));
    assert_eq!(
        fake.stats(|s| s.ingests),
        1,
        "the ledger answered the repeated request without sending it"
    );
}
