//! The real `cohort` binary with the built csv and smtp plugins against a real SMTP server: a
//! dry run sends nothing, and a run killed with SIGKILL mid-batch, then run again, leaves every
//! address with exactly one copy (the sent-ledger in Cohort's store).
#![allow(clippy::unwrap_used)]

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::SmtpServer;

/// Builds `cohort` beside the plugins (where it finds them) and returns its path.
fn cohort() -> PathBuf {
    cohort_plugin_testkit::cohort_binary(&["cohort-plugin-smtp", "cohort-plugin-csv"])
}

/// A shop of `n` consenting buyers, `c1@example.com` …, and a send campaign to them through
/// the server, in batches of 10 on one connection.
fn setup(server: &SmtpServer, n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut customers = String::from("id,email,first_name,accepts_marketing,created_at\n");
    let mut orders = String::from("id,customer_id,created_at,total_price,items\n");
    for i in 1..=n {
        writeln!(
            customers,
            "{i},c{i}@example.com,Ann,true,2024-01-01 10:00:00"
        )
        .unwrap();
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
name = "mail"
plugin = "smtp"
config = {{ host = "127.0.0.1", port = {port}, tls = "none", connections = 1, timeout = 60 }}
batch_size = 10

[[campaigns]]
name = "thanks"
segments = ["buyers"]
destination = "mail"
mode = "send"
[campaigns.email]
from = "Shop <hi@shop.example>"
subject = "Thanks, {{{{first_name}}}}"
html = "<p>Thank you.</p><a href=\"{{{{unsubscribe_url}}}}\">unsubscribe</a>"
"#,
        port = server.port,
    );
    std::fs::write(dir.path().join("cohort.toml"), config).unwrap();
    dir
}

fn command(dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(cohort());
    c.args(["run", "--config", "cohort.toml"])
        .args(extra)
        .current_dir(dir);
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_dry_run_sends_nothing_and_a_run_sends_each_buyer_one_message() {
    let server = SmtpServer::plain();
    let dir = setup(&server, 12);
    let dry = command(dir.path(), &["--dry-run"]).output().unwrap();
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(server.messages().is_empty(), "a dry run sent mail");
    let run = command(dir.path(), &[]).output().unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let copies = server.copies();
    assert_eq!(copies.len(), 12, "{copies:?}");
    assert!(copies.values().all(|&n| n == 1));
    let again = command(dir.path(), &[]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert_eq!(server.messages().len(), 12, "a second run sent again");
}

#[test]
fn a_run_killed_mid_batch_then_run_again_sends_no_address_a_second_copy() {
    let server = SmtpServer::plain();
    let dir = setup(&server, 30);
    // Batches of 10: the first is acknowledged to Cohort; in the second, two messages are
    // accepted, then the server holds the third unanswered and the run is killed there. The
    // host never heard the second batch's outcomes, so the next run pushes it again under the
    // same keys: only the ledger keeps the two accepted messages from going out twice.
    server.control(&json!({"hold_at": 13}));
    let mut child = command(dir.path(), &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !server.dir.path().join("held").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the run never reached the 13th message"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Message 12's ledger write follows its 250 at once; give it time to commit.
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(server.messages().len(), 12);

    server.control(&json!({}));
    let again = command(dir.path(), &[]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let copies = server.copies();
    assert_eq!(copies.len(), 30, "{copies:?}");
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
}
