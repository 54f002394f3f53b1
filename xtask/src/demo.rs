//! `cargo xtask demo`: builds Cohort in release and runs the demo shop's job on SQLite.
//!
//! This is the README's first command, so it must work on a fresh clone with nothing but a
//! Rust toolchain: it builds, starts from an empty store, checks the config, runs the job, and
//! says what it ran and where to look.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::{repo_root, target_dir};

const CONFIG: &str = "config/demo.toml";
/// Where config/demo.toml puts the store and the outbox.
const OUTPUT: &str = "target/demo";

pub(crate) fn run(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "Usage: cargo xtask demo [--keep] [EXTRA COHORT RUN ARGS]\n\n\
             Builds the workspace in release, then runs the demo shop's job (config/demo.toml)\n\
             on a fresh SQLite store: pull the CSVs, segment as of 1998-07-01, render the\n\
             campaigns and push them to the outbox in target/demo/outbox.\n\
             --keep keeps the store and outbox of the last demo (a second run pushes nothing new).\n\
             Extra arguments go to `cohort run`, e.g. `cargo xtask demo --dry-run`."
        );
        return Ok(());
    }
    let keep = args.iter().any(|a| a == "--keep");
    let extra: Vec<&String> = args.iter().filter(|a| *a != "--keep").collect();
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
    let shown = cohort
        .strip_prefix(&root)
        .unwrap_or(&cohort)
        .display()
        .to_string();
    let output = root.join(OUTPUT);
    if !keep && output.exists() {
        println!("==> starting afresh: removing {OUTPUT} (keep it with --keep)");
        std::fs::remove_dir_all(&output)
            .with_context(|| format!("removing {}", output.display()))?;
    }
    step(&root, &cohort, &shown, &["validate", "--config", CONFIG])?;
    let mut run_args = vec!["run", "--config", CONFIG];
    run_args.extend(extra.iter().map(|a| a.as_str()));
    step(&root, &cohort, &shown, &run_args)?;
    let messages = count_files(&output.join("outbox/messages"));
    let audiences = count_files(&output.join("outbox/audiences"));
    println!(
        "\nWhere to look:\n\
         - {OUTPUT}/outbox/messages/: {messages} rendered emails (.eml), one per customer and campaign\n\
         - {OUTPUT}/outbox/audiences/: {audiences} audience operations (JSON)\n\
         - {OUTPUT}/cohort.db: the SQLite store (customers, memberships, destination state, runs)\n\
         - {CONFIG}: the workspace: sources, segments, campaigns; config/templates/: the emails\n\
         \nNext:\n\
         - {shown} run --config {CONFIG}        again: nothing new is pushed\n\
         - {shown} runs list --config {CONFIG}  the run history; `runs show ID` for one run\n\
         - {shown} campaign preview --config {CONFIG} --campaign winback\n\
         - {shown} segment eval ... --explain 1234  why a customer is in or out (README)"
    );
    Ok(())
}

/// Runs `cohort ARGS` in the repository, saying so first.
fn step(root: &Path, cohort: &Path, shown: &str, args: &[&str]) -> Result<()> {
    println!("\n==> {shown} {}", args.join(" "));
    let status = Command::new(cohort)
        .current_dir(root)
        .args(args)
        .status()
        .with_context(|| format!("running {}", cohort.display()))?;
    if !status.success() {
        bail!("`cohort {}` failed", args.join(" "));
    }
    Ok(())
}

/// Files under `dir`, recursively (0 when it does not exist).
fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}
