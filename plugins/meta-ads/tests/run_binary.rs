//! The real `cohort` binary with the built csv and meta-ads plugins, against the fake Graph
//! API: a mirror campaign whose audience follows the segment across three runs (a join, a
//! leave, a consent withdrawn), and a run killed between a request and its record.
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cohort_adkeys::sha256_hex;
use fake::{APP_SECRET, Fake, TOKEN};

const AUDIENCE: &str = "23850000000042";

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-meta-ads", "cohort-plugin-csv"])
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
name = "meta"
plugin = "meta-ads"
config = {{ access_token = "{TOKEN}", app_secret = "{APP_SECRET}", base_url = "{url}" }}

[[campaigns]]
name = "lookalike_seed"
segments = ["big_spenders"]
destination = "meta"
mode = "mirror"
audience = "{AUDIENCE}"
[campaigns.fields]
EMAIL = "{{{{email}}}}"
FN = "{{{{first_name}}}}"
LOOKALIKE_VALUE = "{{{{total_spent}}}}"
"#,
        url = fake.url(),
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
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
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
    let seed = &fake.members(AUDIENCE)[&sha256_hex("c1@example.com")];
    assert_eq!(seed["LOOKALIKE_VALUE"], serde_json::json!(150.0));

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

    let adds = fake.stats(|s| s.adds);
    let again = run(dir.path(), None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(
        fake.stats(|s| s.adds),
        adds,
        "an unchanged member is not pushed again"
    );
    assert!(fake.stats(|s| s.violations.is_empty()));
}

#[test]
fn a_run_killed_between_a_request_and_its_record_sends_nothing_twice_when_run_again() {
    let fake = Fake::start(true);
    fake.audience(AUDIENCE);
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
        "Meta took the request"
    );
    assert_eq!(fake.stats(|s| s.adds), 1);

    let again = run(dir.path(), None);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(fake.keys(AUDIENCE), hashes(&[1, 2, 3]));
    assert_eq!(
        fake.stats(|s| s.adds),
        1,
        "the ledger answered the repeated request without sending it"
    );
}
