//! `cargo xtask bench hubspot`: the hubspot source against the fake HubSpot, a full sync of
//! 100,000 contacts and an incremental sync of 1%.
//!
//! Prints records per second and the share of HubSpot's 10-second budget used: the requests
//! that count toward it over what the tier allows in the time the sync took (the target: at
//! least 90% for the full sync, with no 429). The fake paces in real time, so the full sync
//! takes about as long as it would against HubSpot (a minute on `professional`).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let arg = |name: &str, default: &str| -> String {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
            .unwrap_or_else(|| default.to_owned())
    };
    let contacts = arg("--contacts", "100000");
    let tier = arg("--tier", "professional");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args(["run", "--quiet", "--release", "-p", "cohort-plugin-hubspot"])
        .args(["--example", "hubspot_bench", "--"])
        .args(["--contacts", &contacts, "--tier", &tier])
        .output()
        .context("running the hubspot bench driver")?;
    if !out.status.success() {
        bail!(
            "the benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!(
        "| sync | tier | records | seconds | records/s | requests | budget (10 s windows) | share | searches | 429s |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "| {} | {} ({}/10 s) | {} | {:.1} | {:.0} | {} | {:.0} | {:.1}% | {} | {} |",
            v["sync"].as_str().unwrap_or_default(),
            v["tier"].as_str().unwrap_or_default(),
            v["per_ten"],
            v["records"],
            v["seconds"].as_f64().unwrap_or(0.0),
            v["records_per_second"].as_f64().unwrap_or(0.0),
            v["requests"],
            v["budget"].as_f64().unwrap_or(0.0),
            100.0 * v["share"].as_f64().unwrap_or(0.0),
            v["searches"],
            v["throttled"],
        );
    }
    Ok(())
}
