//! `cargo xtask bench shopify`: the shopify source against the fake Shopify, a shop of 100,000
//! customers and 200,000 orders on the standard plan's bucket (1,000 points, 100 a second).
//! The fake holds its records as JSON in memory: 1,000,000 orders (`--orders 1000000`) take
//! about 17 GB, more than a shared machine should give it.
//!
//! Prints records per second and the share of the rate budget used, points used over (bucket +
//! restore rate × elapsed), for a bulk first sync of everything and a paged first sync run for
//! a fixed time (the target: at least 90% with no THROTTLED reply). The fake's bucket leaks in
//! real time, so the paged figures are what a real shop would see, less the network.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths;

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut driver = Vec::new();
    for (name, default) in [
        ("--customers", "100000"),
        ("--orders", "200000"),
        ("--paged-seconds", "60"),
        ("--bucket", "1000"),
        ("--restore", "100"),
    ] {
        driver.push(name.to_owned());
        driver.push(super::arg(args, name, default));
    }
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args(["run", "--quiet", "--release", "-p", "cohort-plugin-shopify"])
        .args(["--example", "shopify_bench", "--"])
        .args(&driver)
        .output()
        .context("running the shopify bench driver")?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("the benchmark failed");
    }
    println!(
        "| sync | plan (bucket, restore/s) | records | seconds | records/s | requests | points used | budget | share | THROTTLED |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        println!(
            "| {} | {:.0}, {:.0} | {} | {:.1} | {:.0} | {} | {:.0} | {:.0} | {:.1}% | {} |",
            v["sync"].as_str().unwrap_or_default(),
            f("bucket"),
            f("restore"),
            v["records"],
            f("seconds"),
            f("records_per_second"),
            v["requests"],
            f("points"),
            f("budget"),
            100.0 * f("share"),
            v["throttled"],
        );
    }
    Ok(())
}
