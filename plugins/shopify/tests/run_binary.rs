//! The real `cohort` binary with the built shopify and outbox plugins, against the fake Shopify:
//! the cart reminder the docs show, from abandoned checkouts through a segment to emails that
//! link back to the cart and list what was left, with consent respected, a completed checkout
//! taking its customer out of the segment, and a run with nothing new sending nothing.
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cohort_plugin_testkit::cohort_binary;
use fake::{Fake, SHOP, TOKEN};
use serde_json::Value;

fn cohort() -> PathBuf {
    cohort_binary(&["cohort-plugin-shopify", "cohort-plugin-outbox"])
}

/// The cart reminder of docs/connectors/shopify.md, with the token from the environment.
fn setup(fake: &Fake) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[workspace]
id = "acme"
timezone = "UTC"
currency = "EUR"
unsubscribe_url = "https://acme.example/u/{{{{customer_id}}}}"

[[sources]]
name = "shop"
plugin = "shopify"
config = {{ shop = "{SHOP}", access_token = "${{env:SHOPIFY_ACCESS_TOKEN}}", base_url = "{url}" }}

[[segments]]
name = "cart_abandoners"
where = "cart_abandonments_30d > 0"

[[segments]]
name = "buyers"
where = "orders_count >= 1"

[[destinations]]
name = "out"
plugin = "outbox"
config = {{ dir = "outbox", fsync = false }}

[[campaigns]]
name = "cart_reminder"
segments = ["cart_abandoners"]
destination = "out"
mode = "send"
[campaigns.email]
from = "Acme <hello@acme.example>"
subject = "{{{{default first_name \"Hi\"}}}}, your cart is waiting"
html = """<p>You left {{{{money cart.total cart.currency}}}} in your cart:</p>
<ul>{{{{#each cart.line_items}}}}<li>{{{{quantity}}}} x {{{{title}}}} at {{{{money price}}}}</li>{{{{/each}}}}</ul>
<p><a href="{{{{cart.url}}}}">Back to your cart</a></p>"""

[[campaigns]]
name = "buyers_audience"
segments = ["buyers"]
destination = "out"
mode = "mirror"
audience = "buyers"
[campaigns.fields]
email = "{{{{email}}}}"
"#,
        url = fake.url(),
    );
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    dir
}

/// `cohort run --json`, and its summary.
fn run(dir: &Path) -> (Output, Value) {
    let out = Command::new(cohort())
        .args(["run", "--config", "cohort.toml", "--json"])
        .env("SHOPIFY_ACCESS_TOKEN", TOKEN)
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(TOKEN), "the token is never shown");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary = doc["runs"][0]["summary"].clone();
    (out, summary)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The emails in the outbox, by recipient.
fn messages(dir: &Path) -> Vec<(String, String)> {
    let Ok(files) = std::fs::read_dir(dir.join("outbox/messages")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = files
        .flatten()
        .map(|f| {
            let eml = std::fs::read_to_string(f.path()).unwrap();
            let to = eml
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap()
                .to_owned();
            (to, eml)
        })
        .collect();
    out.sort();
    out
}

fn recipients(dir: &Path) -> BTreeSet<String> {
    messages(dir).into_iter().map(|(to, _)| to).collect()
}

fn segment<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no segment {name}: {summary:#}"))
}

fn campaign<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no campaign {name}: {summary:#}"))
}

fn pushed(summary: &Value, name: &str) -> u64 {
    campaign(summary, name)["pushed"].as_u64().unwrap()
}

fn email(id: u64) -> String {
    format!("c{id}@example.com")
}

#[test]
fn a_cart_reminder_links_the_recovery_url_lists_the_items_and_respects_consent() {
    let fake = Fake::start(1000.0, 100.0);
    let t = fake.now() - 3_600;
    let ann = fake.add_customer(t, true);
    let bob = fake.add_customer(t, false); // no marketing consent
    let cid = fake.add_customer(t, true);
    let dee = fake.add_customer(t, true);
    let ann_cart = fake.add_checkout(Some(ann), 3, t);
    fake.add_checkout(Some(bob), 1, t);
    let cid_cart = fake.add_checkout(Some(cid), 1, t);
    fake.add_checkout(None, 2, t); // a guest: no one to remind
    fake.add_order(Some(dee), 2, t);
    let dir = setup(&fake);

    let (_, first) = run(dir.path());
    assert_eq!(
        segment(&first, "cart_abandoners")["members"],
        3,
        "{first:#}"
    );
    assert_eq!(
        recipients(dir.path()),
        BTreeSet::from([email(ann), email(cid)]),
        "consenting abandoners only"
    );
    assert_eq!(
        campaign(&first, "cart_reminder")["skipped_no_consent"],
        1,
        "bob: {first:#}"
    );
    let (_, eml) = messages(dir.path())
        .into_iter()
        .find(|(to, _)| *to == email(ann))
        .unwrap();
    let checkout = fake.checkout(ann_cart);
    let url = checkout["abandonedCheckoutUrl"].as_str().unwrap();
    // The text part (derived from the HTML) carries the link as written.
    assert!(eml.contains(&format!("({url})")), "{eml}");
    assert!(eml.contains("€39.80"), "{eml}");
    for item in checkout["lineItems"].as_array().unwrap() {
        let line = format!(
            "{} x {} at €19.90",
            item["quantity"],
            item["title"].as_str().unwrap()
        );
        assert!(eml.contains(&line), "{line} missing: {eml}");
    }
    let (_, cid_eml) = messages(dir.path())
        .into_iter()
        .find(|(to, _)| *to == email(cid))
        .unwrap();
    let cid_url = fake.checkout(cid_cart)["abandonedCheckoutUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        cid_eml.contains(&cid_url),
        "each customer gets their own cart"
    );
    assert!(!cid_eml.contains(url), "{cid_eml}");

    // Cid completes the checkout; Dee leaves a cart; Eve leaves one and completes it before the
    // next run.
    fake.advance(5);
    fake.complete_checkout(cid_cart);
    let dee_cart = fake.add_checkout(Some(dee), 2, fake.now());
    let eve = fake.add_customer(fake.now(), true);
    let eve_cart = fake.add_checkout(Some(eve), 1, fake.now());
    fake.complete_checkout(eve_cart);
    fake.advance(5);
    let (_, second) = run(dir.path());
    let abandoners = segment(&second, "cart_abandoners");
    assert_eq!(abandoners["members"], 3, "ann, bob, dee: {second:#}");
    assert_eq!(abandoners["removed"], 1, "cid completed the checkout");
    assert_eq!(abandoners["added"], 1, "dee");
    assert_eq!(
        recipients(dir.path()),
        BTreeSet::from([email(ann), email(cid), email(dee)]),
        "one new reminder, to dee; none to eve, whose checkout was completed"
    );
    let (_, dee_eml) = messages(dir.path())
        .into_iter()
        .find(|(to, _)| *to == email(dee))
        .unwrap();
    let dee_url = fake.checkout(dee_cart)["abandonedCheckoutUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(dee_eml.contains(&dee_url), "{dee_eml}");
    assert_eq!(pushed(&second, "cart_reminder"), 1, "{second:#}");

    // Nothing changed in the shop: nothing is pulled as new, nothing is sent.
    let before = messages(dir.path());
    let (_, third) = run(dir.path());
    assert_eq!(pushed(&third, "cart_reminder"), 0, "{third:#}");
    assert_eq!(pushed(&third, "buyers_audience"), 0, "{third:#}");
    assert_eq!(messages(dir.path()), before);
    assert_eq!(segment(&third, "cart_abandoners")["added"], 0);
    assert_eq!(segment(&third, "cart_abandoners")["removed"], 0);
    for source in third["sources"].as_array().unwrap() {
        assert_eq!(source["new"], 0, "{source}");
        assert_eq!(source["updated"], 0, "{source}");
    }
    let stats = fake.stats();
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert_eq!(stats.invalid, 0, "{stats:?}");
}

/// The store's records: ids, content hashes and tombstones.
fn store(dir: &Path) -> String {
    let script = "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\n\
                  for t in ('customers','orders','events'):\n\
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

/// A shop whose first sync takes a while: `customers` customers, an order and a checkout for
/// every tenth. A fixed clock: the fakes of a comparison hold the same records to the second.
fn big_shop(customers: usize, restore: f64) -> Fake {
    let fake = Fake::start(1000.0, restore);
    let t = 1_714_521_600; // 2024-05-01T00:00:00Z
    for i in 0..customers {
        let id = fake.add_customer(t + (i as i64 % 50), i % 2 == 0);
        if i % 10 == 0 {
            fake.add_order(Some(id), 2, t);
            fake.add_checkout(Some(id), 1, t);
        }
    }
    fake
}

/// Runs `cohort run` in `dir` and kills it with SIGKILL once `ready` holds.
fn kill_when(dir: &Path, fake: &Fake, ready: impl Fn(&fake::Stats) -> bool) {
    let mut child = Command::new(cohort())
        .args(["run", "--config", "cohort.toml"])
        .env("SHOPIFY_ACCESS_TOKEN", TOKEN)
        .current_dir(dir)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !ready(&fake.stats()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        ready(&fake.stats()),
        "the run never got there: {:?}",
        fake.stats()
    );
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), None, "killed by a signal, not finished");
}

fn with_initial_sync(dir: &Path, mode: &str) {
    let path = dir.join("cohort.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "base_url = ",
        &format!("initial_sync = \"{mode}\", base_url = "),
    );
    std::fs::write(path, config).unwrap();
}

#[test]
fn a_run_killed_mid_pages_or_mid_bulk_file_and_run_again_stores_what_a_clean_run_stores() {
    // Paged: more customers than the run stores in one page (5,000), restored fast. Bulk: a
    // file of several 4 MiB chunks.
    for (mode, customers, restore) in [("paged", 12_000, 10_000.0), ("bulk", 20_000, 1000.0)] {
        let (clean, clean_bulks) = {
            let fake = big_shop(customers, restore);
            let dir = setup(&fake);
            with_initial_sync(dir.path(), mode);
            run(dir.path());
            (store(dir.path()), fake.stats().bulk_started)
        };
        let fake = big_shop(customers, restore);
        let dir = setup(&fake);
        with_initial_sync(dir.path(), mode);
        match mode {
            "paged" => kill_when(dir.path(), &fake, |s| s.nodes >= 7_000),
            _ => kill_when(dir.path(), &fake, |s| s.chunks >= 3),
        }
        let kept = store(dir.path());
        let kept = kept.lines().next().unwrap();
        assert!(
            kept.len() > 100 && kept.len() < clean.lines().next().unwrap().len(),
            "{mode}: the killed run stored some customers, not all"
        );
        let (_, again) = run(dir.path());
        assert_eq!(store(dir.path()), clean, "{mode}: {again:#}");
        let stats = fake.stats();
        assert_eq!(stats.throttled, 0, "{mode}: {stats:?}");
        assert_eq!(
            stats.bulk_started, clean_bulks,
            "{mode}: the killed run's operation was resumed, not run again"
        );
    }
}
