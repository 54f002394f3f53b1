//! `cargo xtask demo`: builds Cohort in release and runs it on the shipped demo shop.
//!
//! This is the README's first command, so it must work on a fresh clone with nothing but a
//! Rust toolchain: it only builds and runs, and says what it runs.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::{repo_root, target_dir};

pub(crate) fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "Usage: cargo xtask demo [EXTRA COHORT ARGS]\n\n\
             Builds the workspace in release and evaluates config/demo/segments.toml over the\n\
             demo shop as of 1998-07-01. Extra arguments go to `cohort segment eval`, e.g.\n\
             `cargo xtask demo --explain 1234` or `cargo xtask demo --output json`."
        );
        return Ok(());
    }
    let root = repo_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    println!("==> building Cohort (release; the first build takes a few minutes)");
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "--workspace", "--exclude", "xtask"])
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("the release build failed");
    }
    let cohort = target_dir().join("release").join("cohort");
    let demo = |name: &str| root.join("config/demo").join(name).display().to_string();
    let mut command = Command::new(&cohort);
    command.current_dir(&root).args([
        "segment".to_owned(),
        "eval".to_owned(),
        "--customers".to_owned(),
        demo("customers.csv"),
        "--orders".to_owned(),
        demo("orders.csv"),
        "--events".to_owned(),
        demo("events.csv"),
        "--segments".to_owned(),
        demo("segments.toml"),
        "--as-of".to_owned(),
        "1998-07-01".to_owned(),
    ]);
    command.args(args);
    println!(
        "==> {} segment eval --customers config/demo/customers.csv --orders config/demo/orders.csv \
         --events config/demo/events.csv --segments config/demo/segments.toml --as-of 1998-07-01 {}\n",
        cohort.strip_prefix(&root).unwrap_or(&cohort).display(),
        args.join(" ")
    );
    let status = command
        .status()
        .with_context(|| format!("running {}", cohort.display()))?;
    if !status.success() {
        bail!("cohort failed");
    }
    println!(
        "\nThe segments are defined in config/demo/segments.toml; edit them and run again.\n\
         Why is a customer in or out? cargo xtask demo --explain 1234\n\
         Who is in? cargo xtask demo --output members\n\
         The binary itself: {} --help",
        cohort.strip_prefix(&root).unwrap_or(&cohort).display()
    );
    Ok(())
}
