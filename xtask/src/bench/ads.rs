//! `cargo xtask bench ads`: the ad destinations at scale. First, normalising and hashing 1M
//! customers with six keys for each vendor (`cohort-adkeys`, the target: under 2 s); then
//! 1M members pushed through each built plugin and the host's HTTP service to its fake vendor
//! (the tests' fakes, which check every request): members per second, requests made, and how
//! full they were against the vendor's 10,000 a request.

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
    let n = arg("--members", "1000000");
    let hashing = driver("cohort-adkeys", "adkeys_bench", &["--customers", &n])?;
    println!("| hashing | customers | keys each | seconds | customers/s | target |");
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for v in &hashing {
        let seconds = v["seconds"].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {} | {} | {seconds:.2} | {:.0} | {} |",
            v["vendor"].as_str().unwrap_or_default(),
            v["customers"],
            v["keys"],
            v["per_second"].as_f64().unwrap_or(0.0),
            if seconds < 2.0 {
                "under 2 s: met"
            } else {
                "under 2 s: missed"
            },
        );
    }
    println!();
    println!("| push | members | seconds | members/s | requests | full (10,000) | fill |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (package, example) in [
        ("cohort-plugin-meta-ads", "meta_ads_bench"),
        ("cohort-plugin-google-ads", "google_ads_bench"),
    ] {
        for v in driver(package, example, &["--members", &n])? {
            println!(
                "| {} | {} | {:.1} | {:.0} | {} | {} | {:.1}% |",
                v["vendor"].as_str().unwrap_or_default(),
                v["members"],
                v["seconds"].as_f64().unwrap_or(0.0),
                v["rows_per_second"].as_f64().unwrap_or(0.0),
                v["requests"],
                v["full_requests"],
                100.0 * v["fill"].as_f64().unwrap_or(0.0),
            );
        }
    }
    Ok(())
}

/// Runs a package's `bench` example in release and reads its JSON lines.
fn driver(package: &str, example: &str, args: &[&str]) -> Result<Vec<serde_json::Value>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            package,
            "--example",
            example,
            "--",
        ])
        .args(args)
        .output()
        .with_context(|| format!("running the bench driver of {package}"))?;
    if !out.status.success() {
        bail!(
            "the {package} benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).context("reading the driver's figures"))
        .collect()
}
