//! One run of a job, end to end: pull, store, segment, diff, render, push, record.
//!
//! Each stage is a module ([`pull`], [`segments`], [`campaigns`]); this one chooses what to
//! run, sequences the stages and owns the run record. A stage that fails fails its run, which
//! is recorded with the error; per-record problems (bad rows, render errors, rejected pushes)
//! are recorded and skipped, and the run finishes as partially failed.

pub(crate) mod campaigns;
mod plugins;
mod pull;
mod segments;
mod summary;
pub(crate) mod templates;

use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use cohort_config::{Campaign, Config, Source, Workspace};
use cohort_core::{AsOf, Timestamp};
use cohort_store::{
    RecordError, RunId, RunStatus, Store, SuppressionReason, WorkspaceInfo, WorkspaceStore,
};

pub(crate) use self::plugins::Plugins;
pub(crate) use self::segments::compute;
pub(crate) use self::summary::RunSummary;

/// What `cohort run` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) dry_run: bool,
    /// What started the run (`manual`, `schedule`).
    pub(crate) trigger: &'static str,
}

/// The job a run executes: which sources to pull and which campaigns to push.
#[derive(Debug)]
pub(crate) struct JobPlan<'c> {
    pub(crate) name: String,
    pub(crate) sources: Vec<&'c Source>,
    pub(crate) campaigns: Vec<&'c Campaign>,
}

/// The job `name` of `workspace`, or, without a name, the whole workspace: every source and
/// every campaign (the job called `run`).
pub(crate) fn job_plan<'c>(workspace: &'c Workspace, name: Option<&str>) -> Result<JobPlan<'c>> {
    let Some(name) = name else {
        return Ok(JobPlan {
            name: "run".to_owned(),
            sources: workspace.sources.iter().collect(),
            campaigns: workspace.campaigns.iter().collect(),
        });
    };
    let Some(job) = workspace.job(name) else {
        let known: Vec<&str> = workspace.jobs.iter().map(|j| j.name.as_str()).collect();
        bail!(
            "workspace `{}` has no job `{name}`{}",
            workspace.id,
            hint(name, &known, "jobs")
        );
    };
    let pick = |wanted: &Option<Vec<String>>| -> Option<Vec<String>> { wanted.clone() };
    let sources = match pick(&job.sources) {
        None => workspace.sources.iter().collect(),
        Some(names) => names.iter().filter_map(|n| workspace.source(n)).collect(),
    };
    let campaigns = match pick(&job.campaigns) {
        None => workspace.campaigns.iter().collect(),
        Some(names) => names.iter().filter_map(|n| workspace.campaign(n)).collect(),
    };
    Ok(JobPlan {
        name: job.name.clone(),
        sources,
        campaigns,
    })
}

/// The workspaces a command is about: the one named, or every one.
pub(crate) fn workspaces<'c>(config: &'c Config, id: Option<&str>) -> Result<Vec<&'c Workspace>> {
    match id {
        None if config.workspaces.is_empty() => bail!("the config defines no [workspace]"),
        None => Ok(config.workspaces.iter().collect()),
        Some(id) => match config.workspace(id) {
            Some(w) => Ok(vec![w]),
            None => {
                let ids: Vec<&str> = config.workspaces.iter().map(|w| w.id.as_str()).collect();
                bail!(
                    "no workspace `{id}` in the config{}",
                    hint(id, &ids, "workspaces")
                )
            }
        },
    }
}

/// What to add to "no such NAME": the nearest name, or those that exist (`what`, plural).
pub(crate) fn hint(name: &str, known: &[&str], what: &str) -> String {
    match cohort_config::did_you_mean(name, known.iter().copied()) {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None if known.is_empty() => format!(" (it defines no {what})"),
        None => format!(" ({what}: {})", known.join(", ")),
    }
}

/// Connects to the configured store (running migrations) and registers the workspace.
pub(crate) async fn open_store(config: &Config) -> Result<Store> {
    let url = config.database_url().context("reading the store URL")?;
    // A SQLite file is created on first use; so is the folder it is to live in.
    if let Some(path) = url
        .expose()
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the store's folder {}", dir.display()))?;
    }
    Store::connect(url.expose())
        .await
        .context("opening the store")
}

pub(crate) async fn ensure_workspace(
    store: &Store,
    workspace: &Workspace,
) -> Result<WorkspaceStore> {
    store
        .ensure_workspace(&WorkspaceInfo {
            id: workspace.id.clone(),
            name: workspace.name.clone(),
            timezone: workspace.timezone.name().to_owned(),
            currency: workspace.currency.clone(),
        })
        .await?;
    Ok(store.workspace(&workspace.id))
}

/// The run's clock: the workspace's pinned `as_of`, or now.
pub(crate) fn as_of(workspace: &Workspace) -> AsOf {
    let now = workspace.as_of.unwrap_or_else(Utc::now);
    AsOf {
        now: Timestamp::from(now),
        tz: workspace.timezone,
    }
}

/// The outcome of one run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) id: RunId,
    pub(crate) status: RunStatus,
    pub(crate) summary: RunSummary,
    pub(crate) error: Option<String>,
}

/// Runs `job` of `workspace` once and records it. A failure of the run is recorded and
/// returned in [`Finished`], not as an `Err`: only a store that cannot record is an error.
pub(crate) async fn run(
    store: &Store,
    plugins: &Plugins,
    workspace: &Workspace,
    job: &JobPlan<'_>,
    options: &Options,
) -> Result<Finished> {
    let ws = ensure_workspace(store, workspace).await?;
    let id = ws
        .start_run(&job.name, options.trigger, options.dry_run)
        .await?;
    let mut summary = RunSummary {
        workspace: workspace.id.clone(),
        job: job.name.clone(),
        dry_run: options.dry_run,
        ..RunSummary::default()
    };
    let mut errors = Vec::new();
    let result = stages(
        &ws,
        plugins,
        workspace,
        job,
        options,
        &mut summary,
        &mut errors,
    )
    .await;
    summary.record_errors = errors.len() as u64;
    ws.record_errors(id, &errors).await?;
    let (status, error) = match &result {
        Ok(()) if summary.failed_records() > 0 || !errors.is_empty() => {
            (RunStatus::PartiallyFailed, None)
        }
        Ok(()) => (RunStatus::Succeeded, None),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    let json = serde_json::to_value(&summary)?;
    ws.finish_run(id, status, &json, error.as_deref()).await?;
    Ok(Finished {
        id,
        status,
        summary,
        error,
    })
}

async fn stages(
    ws: &WorkspaceStore,
    plugins: &Plugins,
    workspace: &Workspace,
    job: &JobPlan<'_>,
    options: &Options,
    summary: &mut RunSummary,
    errors: &mut Vec<RecordError>,
) -> Result<()> {
    let failpoint = Failpoint::from_env();
    let mut timer = Timer::new();

    for source in &job.sources {
        let pulled = pull::pull_source(ws, plugins, source, errors)
            .await
            .with_context(|| format!("source `{}`", source.name))?;
        summary.sources.extend(pulled);
    }
    summary.timings_ms.push(timer.lap("pull"));
    failpoint.hit("after-pull");

    let clock = as_of(workspace);
    summary.as_of = clock.now.to_string();
    let (renderer, template_errors) = templates::renderer(workspace);
    if let Some(e) = template_errors.first() {
        bail!("{e} (`cohort validate` checks templates before a run)");
    }
    let want_products = templates::all(workspace)
        .iter()
        .any(|(t, _)| t.text.contains("top_products"));
    let computed = segments::compute(ws, workspace, clock, want_products, errors).await?;
    summary.customers = computed.customers.len() as u64;
    let (segment_summaries, warnings) = segments::record_memberships(
        ws,
        workspace,
        &computed,
        clock.now.to_datetime(),
        options.dry_run,
    )
    .await?;
    summary.segments = segment_summaries;
    summary.warnings.extend(warnings);
    summary.timings_ms.push(timer.lap("segments"));
    failpoint.hit("after-segments");

    if !options.dry_run {
        for email in &computed.unsubscribed {
            ws.suppress(
                email,
                SuppressionReason::Unsubscribed,
                "event:email_unsubscribe",
            )
            .await?;
        }
    }
    let suppressed = computed.suppressed(ws).await?;
    let shared = campaigns::Shared {
        ws,
        workspace,
        computed: &computed,
        renderer: &renderer,
        suppressed: &suppressed,
        now: clock.now,
        dry_run: options.dry_run,
        failpoint: &failpoint,
    };
    // A campaign that cannot go on (its destination is down) fails the run, but not the other
    // campaigns: their customers are not held hostage by another platform's outage.
    let mut failed = Vec::new();
    for campaign in &job.campaigns {
        match campaigns::run_campaign(&shared, plugins, campaign, errors).await {
            Ok(done) => summary.campaigns.push(done),
            Err(e) => failed.push(format!("campaign `{}`: {e:#}", campaign.name)),
        }
    }
    summary.timings_ms.push(timer.lap("campaigns"));
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// Times stages.
struct Timer(Instant);

impl Timer {
    fn new() -> Timer {
        Timer(Instant::now())
    }

    fn lap(&mut self, stage: &str) -> (String, u64) {
        let ms = self.0.elapsed().as_millis() as u64;
        self.0 = Instant::now();
        (stage.to_owned(), ms)
    }
}

/// A crash on purpose, for the tests that prove a killed run loses and duplicates nothing.
///
/// `COHORT_FAILPOINT=NAME` or `NAME:N` aborts the process (no unwinding, no cleanup, like a
/// `kill -9`) the N-th time (default 1st) the run passes the point NAME: `after-pull`,
/// `after-segments`, `after-push` (a batch was pushed, its outcomes not yet recorded).
#[derive(Debug, Default)]
pub(crate) struct Failpoint {
    armed: Option<(String, u32)>,
    hits: std::sync::atomic::AtomicU32,
}

impl Failpoint {
    fn from_env() -> Failpoint {
        let armed = std::env::var("COHORT_FAILPOINT")
            .ok()
            .map(|spec| match spec.split_once(':') {
                Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
                None => (spec, 1),
            });
        Failpoint {
            armed,
            hits: Default::default(),
        }
    }

    pub(crate) fn hit(&self, name: &str) {
        let Some((armed, at)) = &self.armed else {
            return;
        };
        if armed == name {
            let n = self.hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == *at {
                eprintln!("COHORT_FAILPOINT: aborting at {name} #{n}");
                std::process::abort();
            }
        }
    }
}
