//! `cargo xtask bench email`: the email destinations against local servers. SMTP: 50,000
//! messages through the smtp plugin to a real SMTP server (aiosmtpd) on 127.0.0.1, messages
//! per second by number of connections (target: at least 500/s).

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
    let messages = arg("--messages", "50000");
    let connections = arg("--connections", "1,4");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(paths::repo_root())
        .args(["run", "--quiet", "--release", "-p", "cohort-plugin-smtp"])
        .args(["--example", "bench", "--"])
        .args(["--messages", &messages, "--connections", &connections])
        .output()
        .context("running the smtp bench driver")?;
    if !out.status.success() {
        bail!(
            "the benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("| destination | connections | messages | seconds | messages/s |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "| {} | {} | {} | {:.1} | {:.0} |",
            v["part"].as_str().unwrap_or_default(),
            v["connections"],
            v["messages"],
            v["seconds"].as_f64().unwrap_or(0.0),
            v["per_second"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}
