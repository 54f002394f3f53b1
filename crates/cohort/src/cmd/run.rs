//! `cohort run`: run a job once, print what it did, and record it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use cohort_store::RunStatus;

use crate::job::{self, Options, Plugins};

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
}

pub(crate) fn run(args: &RunArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let workspaces = job::workspaces(&config, args.workspace.as_deref())?;
    let plans = workspaces
        .iter()
        .map(|w| job::job_plan(w, args.job.as_deref()))
        .collect::<Result<Vec<_>>>()?;
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
    let options = Options {
        dry_run: args.dry_run,
        trigger: "manual",
    };
    super::runtime()?.block_on(async {
        let store = job::open_store(&config).await?;
        let plugins = Plugins::discover(&config);
        let mut failed = 0;
        for (workspace, plan) in workspaces.iter().zip(&plans) {
            let finished = job::run(&store, &plugins, workspace, plan, &options).await?;
            println!("{}", finished.summary);
            match finished.status {
                RunStatus::Succeeded => {
                    println!("run {} succeeded", finished.id);
                }
                RunStatus::PartiallyFailed => println!(
                    "run {} finished with {} record errors: cohort runs show {} --config {}",
                    finished.id,
                    finished.summary.record_errors,
                    finished.id,
                    args.config.display()
                ),
                RunStatus::Failed | RunStatus::Running => {
                    failed += 1;
                    eprintln!(
                        "error: run {} of workspace `{}` failed: {}",
                        finished.id,
                        workspace.id,
                        finished.error.as_deref().unwrap_or("unknown error")
                    );
                }
            }
        }
        store.close().await;
        if failed > 0 {
            return Err(anyhow!("{failed} run(s) failed"));
        }
        Ok(ExitCode::SUCCESS)
    })
}
