//! `cohort validate`: every check before any run, every problem at once.
//!
//! cohort-config checks what the config alone can tell (syntax, keys, names, references, time
//! zones, schedules); the engine's preflight adds what needs the rest of Cohort (plugins and
//! their configs, segments, templates), the same checks `cohort run` makes before it pulls
//! anything. Nothing is pulled, stored or pushed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use cohort_config::Config;
use cohort_engine::Plugins;

/// Arguments of `cohort validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// The config: a TOML file, or a folder whose *.toml files hold one workspace each.
    #[arg(long, short, value_name = "PATH")]
    pub(crate) config: PathBuf,
}

pub(crate) fn run(args: &ValidateArgs) -> Result<ExitCode> {
    let (config, mut diags) = cohort_config::check(&args.config);
    if !config.files.is_empty() {
        let plugins = Plugins::discover(&config);
        for ws in &config.workspaces {
            diags.extend(cohort_engine::check_workspace(ws, &plugins));
        }
    }
    diags.sort();
    if diags.is_empty() {
        print_summary(&args.config, &config);
        return Ok(ExitCode::SUCCESS);
    }
    for d in &diags {
        eprintln!("{}", cohort_config::mask::redact(&d.to_string()));
    }
    eprintln!(
        "\n{} problem{} in {}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" },
        args.config.display()
    );
    Ok(ExitCode::FAILURE)
}

fn print_summary(path: &Path, config: &Config) {
    println!("{}: OK", path.display());
    let now = chrono::Utc::now();
    for ws in &config.workspaces {
        println!(
            "workspace {} \"{}\" ({}, {}) in {}",
            ws.id,
            ws.name,
            ws.timezone.name(),
            ws.currency,
            ws.file.display()
        );
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "none".to_owned()
            } else {
                items.join(", ")
            }
        };
        println!(
            "  sources:      {}",
            list(
                ws.sources
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.plugin))
                    .collect()
            )
        );
        println!(
            "  segments:     {}",
            list(ws.segments.iter().map(|s| s.name.clone()).collect())
        );
        println!(
            "  destinations: {}",
            list(
                ws.destinations
                    .iter()
                    .map(|d| format!("{} ({})", d.name, d.plugin))
                    .collect()
            )
        );
        println!(
            "  campaigns:    {}",
            list(
                ws.campaigns
                    .iter()
                    .map(|c| format!("{} ({} to {})", c.name, c.mode, c.destination))
                    .collect()
            )
        );
        if ws.jobs.is_empty() {
            println!("  jobs:         none");
        }
        for (i, j) in ws.jobs.iter().enumerate() {
            let label = if i == 0 {
                "  jobs:         "
            } else {
                "                "
            };
            let when = match (&j.schedule, j.enabled) {
                (_, false) => "disabled".to_owned(),
                (None, true) => "on demand".to_owned(),
                (Some(s), true) => {
                    let next = s
                        .after(&now.with_timezone(&ws.timezone))
                        .next()
                        .map_or_else(
                            || "never".to_owned(),
                            |t| t.format("%Y-%m-%d %H:%M %Z").to_string(),
                        );
                    format!("`{}`, next {next}", s.as_written())
                }
            };
            println!("{label}{} ({when})", j.name);
        }
    }
}
