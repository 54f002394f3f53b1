//! `cargo xtask bench email`: the email destinations against local servers.
//!
//! - SMTP: 50,000 messages through the smtp plugin to a real SMTP server on 127.0.0.1, the
//!   tests' aiosmtpd and a Rust sink (so the table shows when the server is the ceiling):
//!   messages per second by number of connections (target: at least 500/s).
//! - Audiences: 100,000 members upserted through each vendor's plugin and the host's HTTP
//!   service to its fake, which enforces the vendor's published limits (429 with
//!   `Retry-After` beyond them): members per second, requests, 429s, and the share of the
//!   limit used (target: at least 90%). Each driver is its plugin's `<vendor>_bench` example
//!   and prints one JSON line in the shape [`VENDORS`] documents; a vendor is one entry there.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

/// The audience drivers: (package, example). Each prints `{"vendor", "members", "seconds",
/// "members_per_second", "requests", "throttled", "limit", "used", "share"}`, and `"binding"`
/// when the limit may not have bound the run: `limit` names the published limit, `used` says
/// what the run used of it, `share` is the fraction. A run with `"binding": false` never used
/// up a limit, so its share says how much it needed, not how well it paced: the table says
/// "not rate-bound" there instead of a share.
const VENDORS: &[(&str, &str)] = &[
    ("cohort-plugin-mailchimp", "mailchimp_bench"),
    ("cohort-plugin-klaviyo", "klaviyo_bench"),
    ("cohort-plugin-sendgrid", "sendgrid_bench"),
];

pub(crate) fn run(args: &[String]) -> Result<()> {
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let only = arg("--only", "smtp,audiences");
    if only.contains("smtp") {
        let messages = arg("--messages", "50000");
        let connections = arg("--connections", "1,4");
        let servers = arg("--servers", "aiosmtpd,sink");
        let lines = driver(
            "cohort-plugin-smtp",
            "smtp_bench",
            &[
                "--messages",
                &messages,
                "--connections",
                &connections,
                "--servers",
                &servers,
            ],
        )?;
        println!("| destination | server | connections | messages | seconds | messages/s |");
        println!("| --- | --- | ---: | ---: | ---: | ---: |");
        for v in &lines {
            println!(
                "| {} | {} | {} | {} | {:.1} | {:.0} |",
                v["part"].as_str().unwrap_or_default(),
                match v["server"].as_str().unwrap_or_default() {
                    "sink" => "Rust sink (example)",
                    "aiosmtpd" => "aiosmtpd (Python)",
                    other => other,
                },
                v["connections"],
                v["messages"],
                v["seconds"].as_f64().unwrap_or(0.0),
                v["per_second"].as_f64().unwrap_or(0.0),
            );
        }
        println!();
    }
    if only.contains("audiences") {
        let members = arg("--members", "100000");
        println!(
            "| vendor | members | seconds | members/s | requests | 429s | published limit | used | share |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |");
        for (package, example) in VENDORS {
            for v in driver(package, example, &["--members", &members])? {
                let share = if v["binding"] == false {
                    "not rate-bound".to_owned()
                } else {
                    format!("{:.1}%", 100.0 * v["share"].as_f64().unwrap_or(0.0))
                };
                println!(
                    "| {} | {} | {:.1} | {:.0} | {} | {} | {} | {} | {} |",
                    v["vendor"].as_str().unwrap_or_default(),
                    v["members"],
                    v["seconds"].as_f64().unwrap_or(0.0),
                    v["members_per_second"].as_f64().unwrap_or(0.0),
                    v["requests"],
                    v["throttled"],
                    v["limit"].as_str().unwrap_or_default(),
                    v["used"].as_str().unwrap_or_default(),
                    share,
                );
            }
        }
    }
    Ok(())
}

/// Runs a package's bench example in release and reads its JSON lines.
fn driver(package: &str, example: &str, args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args(["run", "--quiet", "--release", "-p", package])
        .args(["--example", example, "--"])
        .args(args)
        .output()
        .with_context(|| format!("running {example} of {package}"))?;
    if !out.status.success() {
        bail!(
            "{example} of {package} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).context("reading the driver's figures"))
        .collect()
}
