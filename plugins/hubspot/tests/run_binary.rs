//! The real `cohort` binary with the built hubspot and outbox plugins, against the fake HubSpot:
//! a job from the CRM through a segment on its tags to an audience, archived contacts leaving
//! it, and a run killed with SIGKILL mid-pull then run again, leaving the store a clean run
//! leaves.
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cohort_plugin_hubspot::client::SEARCH_SETTLE_MS;
use cohort_plugin_testkit::plugin;
use fake::{Fake, TOKEN};

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-hubspot", "cohort-plugin-outbox"])
}

fn setup(fake: &Fake) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[workspace]
id = "crm"
timezone = "UTC"
unsubscribe_url = "https://shop.example/u/{{{{customer_id}}}}"

[[sources]]
name = "crm"
plugin = "hubspot"
config = {{ access_token = "{TOKEN}", base_url = "{url}", tier = "free", consent_property = "marketing_opt_in", tags_property = "interests", deals_as_orders = true }}

[[segments]]
name = "runners"
where = "tags contains 'running'"

[[destinations]]
name = "out"
plugin = "outbox"
config = {{ dir = "outbox", fsync = false }}

[[campaigns]]
name = "runners_audience"
segments = ["runners"]
destination = "out"
mode = "mirror"
audience = "runners"
[campaigns.fields]
email = "{{{{email}}}}"
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

/// The store's records: ids, content hashes and tombstones.
fn store(dir: &Path) -> String {
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
                  for t in ('customers','orders'):\n\
                  \x20   print(t, sorted(c.execute(f'select external_id, hash, deleted_at is not null from {t}').fetchall()))\n";
    let out = Command::new("python3")
        .args(["-c", script, dir.join("cohort.db").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The audience's members, as the outbox holds them (upserts not removed since).
fn audience(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("outbox/audiences/runners"))
        .map(|d| d.flatten().count())
        .unwrap_or(0)
}

/// A CRM of `n` contacts, each tenth with a closed-won deal, unchanged for a day.
fn crm(n: usize) -> Fake {
    let fake = Fake::start(100, 1_000_000);
    // A fixed clock: both fakes of a comparison hold the same records to the millisecond.
    let day = 1_714_521_600_000; // 2024-05-01T00:00:00Z
    let ids = fake.add_contacts(n, day);
    for id in ids.iter().step_by(10) {
        fake.add_deal(true, "99.90", &[*id], day);
    }
    fake
}

#[test]
fn a_job_reads_the_crm_and_an_archived_contact_leaves_the_audience() {
    let fake = crm(40);
    let dir = setup(&fake);
    let first = run(dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // Tags cycle running, yoga;running, cycling, none: half are runners; those who consent
    // (every fifth, unless opted out) are in the audience.
    let members = audience(dir.path());
    assert_eq!(members, 4, "{}", text(&first));
    fake.advance(Duration::from_secs(300));
    let runner = fake
        .live_contacts()
        .into_iter()
        .find(|id| {
            let c = fake.contact(*id);
            c["interests"].contains("running")
                && c["marketing_opt_in"] == "true"
                && c["hs_email_optout"] == "false"
        })
        .unwrap();
    fake.archive_contact(runner);
    fake.advance(Duration::from_millis(
        u64::try_from(SEARCH_SETTLE_MS).unwrap() + 1000,
    ));
    let second = run(dir.path());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    let kept = store(dir.path());
    assert!(
        kept.contains(&format!("('{runner}', ")) && kept.contains(", 1)"),
        "the archived contact is a tombstone: {kept}"
    );
    let removed = std::fs::read_dir(dir.path().join("outbox/audiences/runners"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().contains("-remove-"))
        .count();
    assert_eq!(removed, 1, "the mirror audience drops the archived runner");
    assert_eq!(fake.stats().throttled, 0);
}

#[test]
fn a_run_killed_mid_pull_and_run_again_leaves_the_store_a_clean_run_leaves() {
    let clean = {
        let fake = crm(1500);
        let dir = setup(&fake);
        let out = run(dir.path());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        store(dir.path())
    };
    let fake = crm(1500);
    let dir = setup(&fake);
    let mut child = Command::new(cohort())
        .args(["run", "--config", "cohort.toml"])
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    // Free tier: 15 list pages take well over a second; kill it a few pages in.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fake.stats().windowed < 6 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal, not finished");
    let again = run(dir.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(store(dir.path()), clean);
    assert_eq!(fake.stats().throttled, 0);
}

/// The shop (CSV) and the CRM (HubSpot) know some customers both: with `[identity]` each is one
/// person, whose tags come from the CRM, orders from the shop only, and consent from both.
#[test]
fn the_shop_and_the_crm_make_one_person_of_a_customer_both_know() {
    plugin("cohort-plugin-csv");
    let fake = crm(40);
    let ids = fake.live_contacts();
    let pick = |f: &dyn Fn(&BTreeMap<String, String>) -> bool| {
        *ids.iter().find(|id| f(&fake.contact(**id))).unwrap()
    };
    let consents = |c: &BTreeMap<String, String>| {
        c["marketing_opt_in"] == "true" && c["hs_email_optout"] == "false"
    };
    let runner_consenting = pick(&|c| c["interests"].contains("running") && consents(c));
    let runner_withheld = pick(&|c| c["interests"].contains("running") && !consents(c));
    let cyclist = pick(&|c| c["interests"] == "cycling" && consents(c));
    let dir = setup(&fake);
    let config = std::fs::read_to_string(dir.path().join("cohort.toml"))
        .unwrap()
        .replace(
            "[[sources]]",
            "[identity]\nprefer = [\"shop\", \"crm\"]\norder_sources = [\"shop\"]\n\n\
             [[sources]]\nname = \"shop\"\nplugin = \"csv\"\n\
             config = { customers = { paths = [\"customers.csv\"] }, orders = { paths = [\"orders.csv\"] } }\n\n\
             [[sources]]",
        )
        .replace("where = \"tags contains 'running'\"", "where = \"tags contains 'running' and orders_count >= 1\"");
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    // The shop writes addresses in capitals, and every shop customer consents there.
    let mut customers = String::from("id,email,accepts_marketing,created_at\n");
    let mut orders = String::from("id,customer_id,created_at,total_price,items\n");
    for (i, id) in [runner_consenting, runner_withheld, cyclist]
        .iter()
        .enumerate()
    {
        customers.push_str(&format!(
            "s{i},CONTACT{id}@EXAMPLE.COM,true,2024-01-01 10:00:00\n"
        ));
        orders.push_str(&format!("o{i},s{i},2024-04-01 10:00:00,25.00,1\n"));
    }
    customers.push_str("s9,new@example.com,true,2024-01-01 10:00:00\n");
    std::fs::write(dir.path().join("customers.csv"), customers).unwrap();
    std::fs::write(dir.path().join("orders.csv"), orders).unwrap();

    let out = Command::new(cohort())
        .args(["run", "--config", "cohort.toml", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = &doc["runs"][0]["summary"];
    assert_eq!(summary["identity"]["records"], 44, "{summary:#}");
    assert_eq!(summary["identity"]["persons"], 41, "{summary:#}");
    assert_eq!(summary["identity"]["merged"], 3, "{summary:#}");
    let runners = summary["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "runners")
        .unwrap();
    // Tags from the CRM, orders from the shop: only persons make runners who bought.
    assert_eq!(runners["members"], 2, "{summary:#}");
    // The CRM withheld the second runner's consent: only the first reaches the audience.
    let files: Vec<String> = std::fs::read_dir(dir.path().join("outbox/audiences/runners"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap().to_lowercase())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].contains(&format!("contact{runner_consenting}@example.com")),
        "{files:?}"
    );
}
