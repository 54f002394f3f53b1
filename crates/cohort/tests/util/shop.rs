//! A small shop for end-to-end tests of `cohort run`: CSV files, a config with a send campaign
//! and a mirror campaign to the outbox, and helpers to read the outbox back.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use cohort_plugin_host::dev::build_cdylib;

use super::{Dir, Run};

/// Builds the plugins beside the `cohort` binary, where discovery finds them, once.
/// Puts the misbehaving test plugin (`test-panicking`) in `DIR/plugins`, under a name
/// discovery loads; a config finds it with `[plugins] dir = "plugins"`.
pub fn test_plugin(dir: &Dir) {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    let lib = BUILT.get_or_init(|| build_cdylib("cohort-testplugin-panicking", false).unwrap());
    install(dir, lib, "test_panicking");
}

/// Puts the test destination that keeps state and refuses late (`test-late`) in
/// `DIR/plugins`.
pub fn late_plugin(dir: &Dir) {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    let lib = BUILT.get_or_init(|| build_cdylib("cohort-testplugin-late", false).unwrap());
    install(dir, lib, "test_late");
}

fn install(dir: &Dir, lib: &Path, name: &str) {
    std::fs::create_dir_all(dir.path("plugins")).unwrap();
    let file = format!(
        "{}cohort_plugin_{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    std::fs::copy(lib, dir.path("plugins").join(file)).unwrap();
}

pub fn plugins() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        build_cdylib("cohort-plugin-csv", false).unwrap();
        build_cdylib("cohort-plugin-outbox", false).unwrap();
    });
}

/// A shop of `n` customers: every third has no marketing consent, every fifth has spent over
/// $100, customer 7 unsubscribed by email.
pub fn write_shop(dir: &Dir, n: u32, no_consent: &BTreeSet<u32>) {
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

pub const CONFIG: &str = r#"
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

pub fn setup(n: u32) -> Dir {
    plugins();
    let dir = Dir::new();
    write_shop(&dir, n, &BTreeSet::new());
    dir.write("cohort.toml", CONFIG);
    dir
}

pub fn run(dir: &Dir, extra: &[&str]) -> Run {
    let mut args = vec!["run", "--config", "cohort.toml"];
    args.extend_from_slice(extra);
    dir.run(&args)
}

/// Every file the outbox holds, by folder (`messages`, `audiences/NAME`), as key file names.
pub fn outbox(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
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
pub fn customers_in(files: &BTreeSet<String>) -> BTreeSet<u32> {
    files
        .iter()
        .map(|f| {
            // demo%2Fthanks%2F12%2F1-send.eml: the customer is the third path segment.
            let parts: Vec<&str> = f.split("%2F").collect();
            parts[2].parse().unwrap()
        })
        .collect()
}
