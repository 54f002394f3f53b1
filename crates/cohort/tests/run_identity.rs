//! One customer across sources, end to end: a shop and a CRM (two CSV sources) whose records
//! share emails become one person each, with the most restrictive consent, the shop's orders
//! only (`order_sources`), ids that stay put from run to run, and no second welcome when a new
//! record joins a person already welcomed. The real binary, the real plugins.
#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use std::collections::BTreeSet;

use util::Dir;
use util::shop::{customers_in, outbox, plugins};

const CONFIG: &str = r#"
[workspace]
id = "shop"
timezone = "UTC"
as_of = "2024-04-01"
unsubscribe_url = "https://shop.example/u/{{customer_id}}"

[identity]
match_on = ["email", "phone"]
prefer = ["shop", "crm"]
order_sources = ["shop"]

[[sources]]
name = "shop"
plugin = "csv"
config = { base_dir = "shop", customers = { paths = ["customers.csv"] }, orders = { paths = ["orders.csv"] } }

[[sources]]
name = "crm"
plugin = "csv"
config = { base_dir = "crm", customers = { paths = ["customers.csv"] }, orders = { paths = ["orders.csv"] } }

[[segments]]
name = "buyers"
where = "orders_count >= 1"

[[segments]]
name = "big_spenders"
where = "total_spent > 300"

[[destinations]]
name = "out"
plugin = "outbox"
config = { dir = "outbox", fsync = false }

[[campaigns]]
name = "thanks"
segments = ["buyers"]
destination = "out"
mode = "send"
[campaigns.email]
from = "Shop <hi@shop.example>"
subject = "Thanks, {{default first_name \"friend\"}}"
html = "<p>You spent {{money total_spent}}.</p><a href=\"{{unsubscribe_url}}\">unsubscribe</a>"
"#;

const SHOP_CUSTOMERS: &str = "id,email,first_name,phone,accepts_marketing,created_at
1,ann@example.com,Ann,,true,2024-01-01 10:00:00
2,bob@example.com,Bob,,true,2024-01-01 10:00:00
3,cat@example.com,,,true,2024-01-01 10:00:00
";

/// The CRM knows Ann (who opted out there, and wrote her address differently), Bob (with a
/// phone the shop lacks) and Dan, whom the shop does not know yet.
const CRM_CUSTOMERS: &str = "id,email,first_name,phone,accepts_marketing,created_at
901, ANN@example.com ,Annie,,false,2023-06-01 10:00:00
902,bob@example.com,Robert,+1 555 010 0100,true,2023-06-01 10:00:00
903,dan@example.com,Dan,,true,2023-06-01 10:00:00
";

const SHOP_ORDERS: &str = "id,customer_id,created_at,total_price,items
o1,1,2024-03-01 12:00:00,150.00,1
o2,2,2024-03-01 12:00:00,150.00,1
o3,3,2024-03-01 12:00:00,150.00,1
";

/// The CRM's closed deals repeat the shop's sales: they must not count twice.
const CRM_ORDERS: &str = "id,customer_id,created_at,total_price,items
d1,902,2024-03-01 12:00:00,500.00,1
";

fn setup() -> Dir {
    plugins();
    let dir = Dir::new();
    std::fs::create_dir_all(dir.path("shop")).unwrap();
    std::fs::create_dir_all(dir.path("crm")).unwrap();
    dir.write("shop/customers.csv", SHOP_CUSTOMERS);
    dir.write("shop/orders.csv", SHOP_ORDERS);
    dir.write("crm/customers.csv", CRM_CUSTOMERS);
    dir.write("crm/orders.csv", CRM_ORDERS);
    dir.write("cohort.toml", CONFIG);
    dir
}

fn run_json(dir: &Dir) -> serde_json::Value {
    let run = dir.run(&["run", "--config", "cohort.toml", "--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    doc["runs"][0]["summary"].clone()
}

fn welcomed(dir: &Dir) -> BTreeSet<u32> {
    customers_in(&outbox(dir.tmp.path())["messages"])
}

fn segment(summary: &serde_json::Value, name: &str) -> (u64, u64) {
    let s = summary["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap();
    (s["members"].as_u64().unwrap(), s["added"].as_u64().unwrap())
}

#[test]
fn records_sharing_an_address_are_one_person_with_the_strictest_consent_and_one_sources_orders() {
    let dir = setup();
    let first = run_json(&dir);
    let identity = &first["identity"];
    assert_eq!(identity["records"], 6, "{first:#}");
    assert_eq!(identity["persons"], 4, "ann, bob, cat, dan: {first:#}");
    assert_eq!(
        identity["merged"], 2,
        "ann's and bob's CRM records: {first:#}"
    );
    assert_eq!(first["customers"], 4);
    // Three shop buyers; the CRM's deal counts for no one, so Bob spent 150, not 650.
    assert_eq!(segment(&first, "buyers"), (3, 3));
    assert_eq!(segment(&first, "big_spenders"), (0, 0));
    // Ann withdrew consent in the CRM: the shop's consent does not outweigh it. The persons
    // keep the shop's ids (the shop is preferred and its ids came first).
    assert_eq!(welcomed(&dir), BTreeSet::from([2, 3]));

    // The same data again: the same persons, nothing merged, nothing sent.
    let again = run_json(&dir);
    assert_eq!(again["identity"]["merged"], 0, "{again:#}");
    assert_eq!(segment(&again, "buyers"), (3, 0));
    assert_eq!(welcomed(&dir), BTreeSet::from([2, 3]));
}

#[test]
fn a_record_joining_a_welcomed_person_keeps_their_id_and_sends_nothing_twice() {
    let dir = setup();
    run_json(&dir);
    // Dan buys in the shop under a new shop id, with the address the CRM knows him by, and
    // Bob opens a second shop account by phone only.
    dir.write(
        "shop/customers.csv",
        &format!(
            "{SHOP_CUSTOMERS}4,dan@example.com,Daniel,,true,2024-03-10 10:00:00\n\
             5,,Bobby,+15550100100,true,2024-03-10 10:00:00\n"
        ),
    );
    dir.write(
        "shop/orders.csv",
        &format!(
            "{SHOP_ORDERS}o4,4,2024-03-11 12:00:00,400.00,1\no5,5,2024-03-11 12:00:00,200.00,1\n"
        ),
    );
    let second = run_json(&dir);
    assert_eq!(second["identity"]["persons"], 4, "{second:#}");
    // Dan is the CRM's person 903, now a buyer and a big spender; Bob's two shop accounts are
    // one person who spent 350.
    assert_eq!(segment(&second, "buyers"), (4, 1));
    assert_eq!(segment(&second, "big_spenders"), (2, 2));
    assert_eq!(welcomed(&dir), BTreeSet::from([2, 3, 903]));
    let explained = dir
        .run(&[
            "segment",
            "explain",
            "--config",
            "cohort.toml",
            "--customer",
            "shop:5",
        ])
        .ok();
    assert!(
        explained.stdout.starts_with("customer 2\n"),
        "{}",
        explained.stdout
    );
    for line in [
        "shop:2",
        "shop:5",
        "crm:902",
        "first_name",
        "Bob  (from shop)",
    ] {
        assert!(
            explained.stdout.contains(line),
            "{line}: {}",
            explained.stdout
        );
    }
    let json = dir
        .run(&[
            "segment",
            "explain",
            "--config",
            "cohort.toml",
            "--customer",
            "crm:901",
            "--json",
        ])
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["customer"], "1");
    assert_eq!(
        doc["fields"]["accepts_email_marketing"]["source"],
        "withheld by crm"
    );
    assert_eq!(doc["fields"]["first_name"]["value"], "Ann");
}

#[test]
fn an_unsubscribe_under_one_address_suppresses_the_person_everywhere() {
    let dir = setup();
    // Bob unsubscribed from the CRM's newsletter, recorded against the CRM's contact.
    std::fs::write(
        dir.path("crm/events.csv"),
        "customer_id,kind,occurred_at\n902,email_unsubscribe,2024-02-01 09:00:00\n",
    )
    .unwrap();
    dir.write(
        "cohort.toml",
        &CONFIG.replace(
            "config = { base_dir = \"crm\", customers = { paths = [\"customers.csv\"] },",
            "config = { base_dir = \"crm\", events = { paths = [\"events.csv\"] }, customers = { paths = [\"customers.csv\"] },",
        ),
    );
    let first = run_json(&dir);
    assert_eq!(segment(&first, "buyers"), (3, 3), "{first:#}");
    assert_eq!(welcomed(&dir), BTreeSet::from([3]));
}

#[test]
fn turning_identity_on_merges_audience_members_and_the_survivor_is_pushed_last() {
    let dir = setup();
    // Ann consents in both sources and both her records bought: before identity, the audience
    // holds her twice (shop customer 1, CRM contact 901).
    dir.write(
        "crm/customers.csv",
        &CRM_CUSTOMERS.replace("Annie,,false", "Annie,,true"),
    );
    dir.write("crm/orders.csv", &CRM_ORDERS.replace("d1,902", "d1,901"));
    let mirror = "\n[[campaigns]]\nname = \"audience\"\nsegments = [\"buyers\"]\ndestination = \"out\"\nmode = \"mirror\"\n[campaigns.fields]\nemail = \"{{email}}\"\n";
    let without = CONFIG.replace(
        "[identity]\nmatch_on = [\"email\", \"phone\"]\nprefer = [\"shop\", \"crm\"]\norder_sources = [\"shop\"]\n",
        "",
    );
    dir.write("cohort.toml", &format!("{without}{mirror}"));
    dir.run(&["run", "--config", "cohort.toml"]).ok();
    let audience = |dir: &Dir| outbox(dir.tmp.path())["audiences/audience"].clone();
    assert_eq!(
        customers_in(&audience(&dir)),
        BTreeSet::from([1, 2, 3, 901])
    );

    dir.write("cohort.toml", &format!("{CONFIG}{mirror}"));
    let summary = run_json(&dir);
    assert_eq!(summary["identity"]["merged"], 2, "{summary:#}");
    let files = audience(&dir);
    let find = |prefix: &str| {
        let name = files
            .iter()
            .find(|f| f.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix}: {files:?}"));
        let path = dir.path("outbox/audiences/audience").join(name);
        std::fs::metadata(path).unwrap().modified().unwrap()
    };
    // 901 retired into 1: 901 leaves the audience, 1 is pushed again, after the removal.
    let removed = find("shop%2Faudience%2F901%2F2-remove-");
    let pushed_again = find("shop%2Faudience%2F1%2F2-upsert-");
    assert!(removed <= pushed_again, "{files:?}");
    // Ann is not welcomed again under her merged id.
    assert_eq!(
        customers_in(&outbox(dir.tmp.path())["messages"]),
        BTreeSet::from([1, 2, 3, 901])
    );
}

#[test]
fn a_run_killed_after_persons_are_saved_pushes_what_a_clean_run_pushes_when_run_again() {
    let clean = setup();
    run_json(&clean);
    let dir = setup();
    let killed = dir
        .command()
        .args(["run", "--config", "cohort.toml"])
        .env("COHORT_FAILPOINT", "after-segments")
        .output()
        .unwrap();
    assert!(!killed.status.success(), "the failpoint aborts the run");
    assert!(!dir.path("outbox/messages").exists(), "nothing was pushed");
    let again = run_json(&dir);
    assert_eq!(again["identity"]["persons"], 4, "{again:#}");
    assert_eq!(
        again["identity"]["merged"], 0,
        "saved by the killed run: {again:#}"
    );
    assert_eq!(outbox(dir.tmp.path()), outbox(clean.tmp.path()));
}
