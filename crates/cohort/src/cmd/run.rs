//! `cohort run`: run a job once, print what it did, and record it.
//!
//! Exit status, for cron and monitoring: 0 when every run succeeded, 3 when every run finished
//! but some records failed (bad rows, rejected pushes; `cohort runs show ID` lists them), 1
//! when a run failed, the workspace was busy, or nothing could run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use cohort_engine::{Engine, Finished, RunOptions, SystemClock};
use cohort_store::RunStatus;
use serde_json::json;

use crate::progress::Terminal;

/// How a command's runs ended, worst last: the exit status reports the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// Every run succeeded: exit 0.
    Succeeded,
    /// Every run finished, some records failed: exit 3.
    Partial,
    /// A run failed, or none could start: exit 1.
    Failed,
}

impl Outcome {
    fn of(status: RunStatus) -> Outcome {
        match status {
            RunStatus::Succeeded => Outcome::Succeeded,
            RunStatus::PartiallyFailed => Outcome::Partial,
            RunStatus::Failed | RunStatus::Running | RunStatus::Queued | RunStatus::TimedOut => {
                Outcome::Failed
            }
        }
    }

    /// The process exit status.
    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Succeeded => 0,
            Outcome::Failed => 1,
            Outcome::Partial => 3,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Config file, or a folder of config files (one per workspace).
    #[arg(long, short, value_name = "PATH")]
    pub(crate) config: PathBuf,
    /// Run only this workspace [default: every workspace of the config].
    #[arg(long, short, value_name = "ID")]
    pub(crate) workspace: Option<String>,
    /// Run this job [default: every source and every campaign of the workspace].
    #[arg(long, short, value_name = "NAME")]
    pub(crate) job: Option<String>,
    /// Do everything but push: pull, compute, diff and render, then report what would be
    /// pushed. Memberships and destination state are left as they were.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// When another run holds the workspace, wait for it to finish (at most SECONDS, or as long
    /// as it takes) instead of refusing.
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "0"
    )]
    pub(crate) wait: Option<u64>,
    /// Print the runs as JSON on stdout instead of the tables.
    #[arg(long)]
    pub(crate) json: bool,
    /// Replace each audience (upsert and mirror campaigns) wholesale: push every eligible
    /// member again, in one replace session where the destination supports it (Meta's
    /// usersreplace), as upserts elsewhere. For an audience edited by hand at the vendor.
    #[arg(long)]
    pub(crate) resync: bool,
    /// Compute segments and plan campaigns even when nothing changed since the job's last
    /// clean run (which a run otherwise reuses: see docs/runs.md).
    #[arg(long)]
    pub(crate) recompute: bool,
}

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let workspaces = cohort_engine::workspaces(&config, args.workspace.as_deref())?;
    let plans = workspaces
        .iter()
        .map(|w| cohort_engine::job_plan(w, args.job.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(name) = &args.job {
        for w in &workspaces {
            if w.job(name).is_some_and(|j| !j.enabled) {
                eprintln!(
                    "note: job `{name}` of workspace `{}` is disabled (enabled = false): schedules skip it; running it once because you asked",
                    w.id
                );
            }
        }
    }
    let options = RunOptions {
        dry_run: args.dry_run,
        trigger: "manual".to_owned(),
        wait: args.wait.map(|s| match s {
            0 => Duration::MAX,
            s => Duration::from_secs(s),
        }),
        resync: args.resync,
        recompute: args.recompute,
        ..RunOptions::default()
    };
    let observer = Arc::new(Terminal::new(!args.json, workspaces.len()));
    super::runtime()?.block_on(async {
        let engine = Engine::open(&config, Arc::new(SystemClock)).await?;
        let mut outcome = Outcome::Succeeded;
        let mut records = Vec::new();
        for (workspace, plan) in workspaces.iter().zip(&plans) {
            let finished = match engine
                .run(workspace, plan, &options, observer.clone())
                .await
            {
                Ok(finished) => finished,
                Err(e) => {
                    // No run was recorded: the workspace is busy, or the store failed.
                    outcome = Outcome::Failed;
                    if args.json {
                        records.push(json!({
                            "workspace": workspace.id,
                            "job": plan.name,
                            "status": "not_started",
                            "error": e.message(),
                        }));
                    } else {
                        eprintln!("error: {e}");
                    }
                    continue;
                }
            };
            outcome = outcome.max(Outcome::of(finished.status));
            if args.json {
                records.push(run_json(&workspace.id, &finished));
            } else {
                print_finished(&workspace.id, &finished, &args.config);
            }
        }
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "runs": records }))?
            );
        }
        engine.close().await;
        Ok(outcome.code())
    })
}

fn print_finished(workspace: &str, finished: &Finished, config: &std::path::Path) {
    println!("{}", finished.summary);
    match finished.status {
        RunStatus::Succeeded => println!("run {} succeeded", finished.id),
        RunStatus::PartiallyFailed => println!(
            "run {} finished with {} record errors: cohort runs show {} --config {}",
            finished.id,
            finished.summary.record_errors,
            finished.id,
            config.display()
        ),
        RunStatus::Failed | RunStatus::Running | RunStatus::Queued | RunStatus::TimedOut => {
            eprintln!(
                "error: run {} of workspace `{workspace}` failed: {}",
                finished.id,
                finished
                    .error
                    .as_ref()
                    .map_or("unknown error", |e| e.message())
            );
        }
    }
}

fn run_json(workspace: &str, finished: &Finished) -> serde_json::Value {
    json!({
        "id": finished.id,
        "workspace": workspace,
        "job": finished.summary.job,
        "status": finished.status.as_str(),
        "error": finished.error.as_ref().map(|e| e.message()),
        "summary": finished.summary,
    })
}
