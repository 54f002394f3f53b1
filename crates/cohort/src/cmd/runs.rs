//! `cohort runs list|show`: the run history kept in the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use cohort_store::RunRow;

use cohort_engine::RunSummary;

#[derive(Debug, Subcommand)]
pub(crate) enum RunsCommand {
    /// The latest runs, newest first.
    List {
        #[command(flatten)]
        scope: Scope,
        /// How many runs per workspace.
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Print `{"runs": [...]}` as the HTTP API's `GET .../runs` does (each run with its
        /// `workspace`).
        #[arg(long)]
        json: bool,
    },
    /// One run: its counts, its error, and every per-record error.
    Show {
        /// The run's id (as `cohort run` and `cohort runs list` print it).
        id: i64,
        #[command(flatten)]
        scope: Scope,
        /// Print the run as the HTTP API's `GET .../runs/{id}` does.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Scope {
    /// Config file or folder (it says where the store is).
    #[arg(long, short, value_name = "PATH")]
    config: PathBuf,
    /// Only this workspace [default: every workspace of the config].
    #[arg(long, short, value_name = "ID")]
    workspace: Option<String>,
}

pub(crate) fn run(cmd: &RunsCommand) -> Result<ExitCode> {
    let scope = match cmd {
        RunsCommand::List { scope, .. } | RunsCommand::Show { scope, .. } => scope,
    };
    let config = super::load_config(&scope.config)?;
    let workspaces = cohort_engine::workspaces(&config, scope.workspace.as_deref())?;
    super::runtime()?.block_on(async {
        let store = cohort_engine::open_store(&config).await?;
        match cmd {
            RunsCommand::List {
                limit, json: true, ..
            } => {
                let mut runs = Vec::new();
                for w in &workspaces {
                    for run in store.workspace(&w.id).runs(*limit).await? {
                        let mut v = cohort_server::run_json(&run);
                        v["workspace"] = serde_json::Value::String(w.id.clone());
                        runs.push(v);
                    }
                }
                println!("{}", serde_json::json!({ "runs": runs }));
            }
            RunsCommand::List { limit, .. } => {
                println!(
                    "{:>6}  {:<12} {:<12} {:<17} {:<20} {:>9}  summary",
                    "id", "workspace", "job", "status", "started (UTC)", "took"
                );
                for w in &workspaces {
                    for run in store.workspace(&w.id).runs(*limit).await? {
                        println!("{}", list_line(&w.id, &run));
                    }
                }
            }
            RunsCommand::Show { id, .. } => {
                let mut found = None;
                for w in &workspaces {
                    if let Some(run) = store.workspace(&w.id).run(*id).await? {
                        found = Some((w.id.clone(), run));
                        break;
                    }
                }
                let Some((workspace, (run, errors))) = found else {
                    bail!(
                        "no run {id} in this config's workspaces (`cohort runs list` shows them)"
                    );
                };
                if matches!(cmd, RunsCommand::Show { json: true, .. }) {
                    let mut v = cohort_server::run_detail_json(&run, &errors);
                    v["workspace"] = serde_json::Value::String(workspace);
                    println!("{v}");
                    store.close().await;
                    return Ok(ExitCode::SUCCESS);
                }
                println!(
                    "run {} · workspace {workspace} · job {} · {}{}",
                    run.id,
                    run.job,
                    run.status.as_str(),
                    if run.dry_run { " (dry run)" } else { "" }
                );
                println!(
                    "started {} · finished {} · trigger {}",
                    run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    run.finished_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_else(|| "never (still running, or interrupted)".to_owned()),
                    run.trigger
                );
                if let Some(error) = &run.error {
                    println!("error: {error}");
                }
                if let Some(summary) = run
                    .summary
                    .and_then(|s| serde_json::from_value::<RunSummary>(s).ok())
                {
                    println!("\n{summary}");
                }
                if !errors.is_empty() {
                    println!("{} record error(s):", errors.len());
                    for e in &errors {
                        println!("  [{}] {}: {}", e.stage, e.location, e.message);
                    }
                }
            }
        }
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

fn list_line(workspace: &str, run: &RunRow) -> String {
    let took = run
        .finished_at
        .map(|f| {
            let ms = (f - run.started_at).num_milliseconds().max(0);
            format!("{:.1} s", ms as f64 / 1000.0)
        })
        .unwrap_or_else(|| "-".to_owned());
    let summary = run
        .summary
        .clone()
        .and_then(|s| serde_json::from_value::<RunSummary>(s).ok())
        .map(|s| {
            let pulled: u64 = s.sources.iter().map(|x| x.pulled).sum();
            let pushed: u64 = s.campaigns.iter().map(|c| c.pushed).sum();
            format!(
                "pulled {pulled}, pushed {pushed}, {} record errors",
                s.record_errors
            )
        })
        .unwrap_or_default();
    let status = format!(
        "{}{}",
        run.status.as_str(),
        if run.dry_run { " (dry)" } else { "" }
    );
    format!(
        "{:>6}  {:<12} {:<12} {:<17} {:<20} {:>9}  {summary}",
        run.id,
        workspace,
        run.job,
        status,
        run.started_at.format("%Y-%m-%d %H:%M:%S"),
        took
    )
}
