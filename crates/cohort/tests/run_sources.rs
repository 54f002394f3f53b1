//! What a run does when records leave a source, and what a destination learns late: a row
//! removed from a full export is deleted (it leaves every segment, mirror audiences drop it,
//! its orders count for no one) or kept, as `deletions` says; a push the destination refuses
//! after acknowledging it is reported and pushed again; a destination's state survives a
//! crash. The real binary, the real plugins.
#![allow(clippy::unwrap_used, reason = "tests")]

mod util;

use std::collections::BTreeSet;

use util::Dir;
use util::shop::{CONFIG, customers_in, late_plugin, outbox, run, setup};

/// The shop's customers file without the row of customer `id`.
fn without_customer(dir: &Dir, id: u32) {
    let customers = std::fs::read_to_string(dir.path("data/customers.csv")).unwrap();
    let kept: Vec<&str> = customers
        .lines()
        .filter(|l| !l.starts_with(&format!("{id},")))
        .collect();
    assert_eq!(kept.len() + 1, customers.lines().count());
    dir.write("data/customers.csv", &format!("{}\n", kept.join("\n")));
}

fn deletions(dir: &Dir, how: &str) {
    dir.write(
        "cohort.toml",
        &CONFIG.replace(
            "config = { base_dir = \"data\",",
            &format!("config = {{ deletions = \"{how}\", base_dir = \"data\","),
        ),
    );
}

/// Customers the mirror audience's remove files are for.
fn removed(dir: &Dir) -> BTreeSet<u32> {
    let files = outbox(dir.tmp.path());
    customers_in(
        &files["audiences/vip_audience"]
            .iter()
            .filter(|f| f.contains("-remove-"))
            .cloned()
            .collect(),
    )
}

#[test]
fn a_customer_gone_from_a_full_export_is_deleted_and_leaves_the_audience() {
    let dir = setup(12);
    deletions(&dir, "delete");
    let first = run(&dir, &[]).ok();
    assert!(first.stdout.contains("big_spenders"), "{}", first.stdout);
    // Customer 10 spent over $100 and consented: in the mirror audience.
    without_customer(&dir, 10);
    let second = run(&dir, &["--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    let summary = &doc["runs"][0]["summary"];
    let customers = summary["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "customers")
        .unwrap();
    assert_eq!(customers["deleted"], 1, "{summary}");
    assert_eq!(summary["customers"], 11);
    assert_eq!(
        summary["record_errors"], 0,
        "its orders are no one's error: {summary}"
    );
    assert_eq!(
        removed(&dir),
        BTreeSet::from([10]),
        "mirror drops the deleted customer"
    );
    let segments = &summary["segments"];
    let spenders = segments
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "big_spenders")
        .unwrap();
    assert_eq!(spenders["removed"], 1, "{segments}");

    // The tables say so too, below the sources table.
    let customers = std::fs::read_to_string(dir.path("data/customers.csv")).unwrap();
    dir.write(
        "data/customers.csv",
        &format!("{customers}10,c10@example.com,Ann,true,2024-01-01 10:00:00\n"),
    );
    let back = run(&dir, &[]).ok();
    assert!(
        back.stdout.contains("+1"),
        "customer 10 comes back: {}",
        back.stdout
    );
    without_customer(&dir, 10);
    let again = run(&dir, &[]).ok();
    assert!(
        again
            .stdout
            .contains("files customers: 1 gone from the source, marked deleted"),
        "{}",
        again.stdout
    );
}

#[test]
fn by_default_a_customer_gone_from_the_file_stays() {
    let dir = setup(12);
    run(&dir, &[]).ok();
    without_customer(&dir, 10);
    let second = run(&dir, &["--json"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(doc["runs"][0]["summary"]["customers"], 12);
    assert!(removed(&dir).is_empty());
}

/// The shop's config with a mirror campaign to the `test-late` destination.
fn late_shop(refuse: &[&str]) -> Dir {
    let dir = setup(12);
    late_plugin(&dir);
    let refuse: Vec<String> = refuse.iter().map(|r| format!("\"{r}\"")).collect();
    let config = format!(
        "{CONFIG}\n[plugins]\ndir = \"plugins\"\n\n[[destinations]]\nname = \"import\"\nplugin = \"test-late\"\nconfig = {{ refuse = [{}] }}\nbatch_size = 3\n\n\
         [[campaigns]]\nname = \"crm\"\nsegments = [\"buyers\"]\ndestination = \"import\"\nmode = \"mirror\"\n[campaigns.fields]\nemail = \"{{{{email}}}}\"\n",
        refuse.join(", ")
    );
    dir.write("cohort.toml", &config);
    dir
}

#[test]
fn a_push_refused_late_is_reported_and_pushed_again_next_run() {
    let dir = late_shop(&["2"]);
    let first = run(&dir, &[]);
    assert_eq!(first.code, Some(3), "{}\n{}", first.stdout, first.stderr);
    let show = dir
        .run(&["runs", "show", "1", "--config", "cohort.toml"])
        .ok();
    assert!(
        show.stdout.contains("shop/crm/2/1-upsert-")
            && show.stdout.contains(
                "refused by the destination after it was accepted: refused by the import job"
            ),
        "{}",
        show.stdout
    );
    // Next run: customer 2 again, under the next key of their sequence; nobody else.
    let second = run(&dir, &[]);
    assert_eq!(second.code, Some(3), "{}", second.stdout);
    let show = dir
        .run(&["runs", "show", "2", "--config", "cohort.toml"])
        .ok();
    assert!(
        show.stdout.contains("shop/crm/2/2-upsert-"),
        "{}",
        show.stdout
    );
    let pushed: Vec<&str> = second
        .stdout
        .lines()
        .filter(|l| l.contains("crm → import"))
        .collect();
    let cells: Vec<&str> = pushed[0].split_whitespace().collect();
    assert_eq!(
        cells[5], "1",
        "only the refused push goes again: {}",
        second.stdout
    );
}

#[test]
fn a_destinations_state_survives_a_crash_and_recognises_a_batch_pushed_again() {
    let dir = late_shop(&[]);
    // Killed after the first batch reached `import`, before its outcomes were recorded (the
    // third push of the run: `thanks` and `vip_audience` push one batch each first).
    let killed = dir
        .command()
        .args(["run", "--config", "cohort.toml"])
        .env("COHORT_FAILPOINT", "after-push:3")
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let again = run(&dir, &[]).ok();
    let show = dir
        .run(&["runs", "show", "2", "--config", "cohort.toml"])
        .ok();
    assert!(
        show.stdout.contains("already applied: shop/"),
        "the plugin found its keys in the state the first process left: {}\n{}",
        show.stdout,
        again.stdout
    );
}
