//! The [`Engine`] and one run of a job, end to end: check, pull, segment, plan, render, push,
//! record.
//!
//! Each stage is a module ([`crate::pull`], [`crate::segments`], [`crate::campaigns`]); this one
//! chooses what to run, sequences the stages and owns the run record:
//!
//! - A run takes its workspace's lock before anything else (see `cohort_store::runs`): one run
//!   per workspace at a time, across processes and hosts. A heartbeat keeps the lock while the
//!   run works; a run that loses it (it stalled past the lease and another process took over)
//!   stops, and cannot record its end over the other's.
//! - The workspace is checked as `cohort validate` checks it before anything is pulled: a
//!   broken template or a missing file fails the run before a single push.
//! - A stage that fails fails its run, which is recorded with the error; per-record problems
//!   (bad rows, render errors, rejected pushes) are recorded and skipped, and the run finishes
//!   as partially failed. Every message recorded passes through `cohort_config::mask`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cohort_config::{Config, Diagnostics, Workspace};
use cohort_core::{AsOf, Timestamp};
use cohort_plugin_host::{CancellationToken, HostServices, HttpPolicy, HttpService};
use cohort_store::{
    Begun, Claim, Inputs, JobResult, Owner, RecordError, RunId, RunLease, RunStatus, Store,
    SuppressionReason, WorkspaceInfo, WorkspaceStore,
};

use crate::campaigns::{self, Pushing, Shared};
use crate::clock::Clock;
use crate::error::{Context as _, EngineError, ErrorKind, Result};
use crate::failpoint::Failpoint;
use crate::logs::RunLog;
use crate::observer::{Observer, Stage};
use crate::plugins::Plugins;
use crate::pull::{self, PullContext};
use crate::reuse::{self, Decision, Why};
use crate::segments;
use crate::select::JobPlan;
use crate::summary::{IdentitySummary, Reused, RunSummary};
use crate::{preflight, templates, vendor_suppressions};

/// How long a run holds its workspace without a heartbeat before others may take it over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// How often a run waiting for its workspace looks again.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Do everything but push; change no membership or destination state.
    pub dry_run: bool,
    /// What started the run (`manual`, `schedule`).
    pub trigger: String,
    /// When the workspace is busy with another run: wait up to this long for it, or (`None`)
    /// refuse at once.
    pub wait: Option<Duration>,
    /// Replace each audience wholesale: every eligible member is pushed again, in replace
    /// sessions where the destination supports them.
    pub resync: bool,
    /// Compute even when the job's last clean result could be reused (see [`crate::reuse`]).
    pub recompute: bool,
    /// The daemon's claim on a queued run row: the run records itself in that row (resuming
    /// it when a dead daemon left it running), fenced by the claim's token.
    pub claim: Option<Claim>,
    /// Cancels the run from outside (the daemon's `timeout`, a shutdown): the plugins see it
    /// through their cancellation service.
    pub cancel: Option<CancellationToken>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            dry_run: false,
            trigger: "manual".to_owned(),
            wait: None,
            resync: false,
            recompute: false,
            claim: None,
            cancel: None,
        }
    }
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Finished {
    /// The run's id.
    pub id: RunId,
    /// How it ended.
    pub status: RunStatus,
    /// What it did.
    pub summary: RunSummary,
    /// Why it failed, redacted, when it did.
    pub error: Option<EngineError>,
}

/// Runs jobs: the store, the plugins and the HTTP service a process shares, and its clock.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    plugins: Plugins,
    http: HttpService,
    clock: Arc<dyn Clock>,
    owner: Owner,
    lease: Duration,
}

/// Connects to the configured store (running migrations).
pub async fn open_store(config: &Config) -> Result<Store> {
    let url = config.database_url().context("reading the store URL")?;
    if config
        .store
        .url
        .as_ref()
        .is_some_and(|u| u.has_placeholders())
    {
        // A URL that is wholly a secret stays one in the form messages show it in.
        cohort_config::mask::register(url.expose());
        cohort_config::mask::register(&cohort_store::redact_url(url.expose()));
    }
    // A SQLite file is created on first use; so is the folder it is to live in.
    if let Some(path) = url
        .expose()
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))
        && let Some(dir) = std::path::Path::new(path).parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            EngineError::config(format!(
                "creating the store's folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    Store::connect(url.expose())
        .await
        .context("opening the store")
}

impl Engine {
    /// Opens the store the config names, finds the plugins it can use, and starts the HTTP
    /// service every plugin of this process shares (on the current tokio runtime).
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Engine> {
        let store = open_store(config).await?;
        let http =
            HttpService::with_runtime(HttpPolicy::default(), tokio::runtime::Handle::current())
                .map_err(|e| EngineError::fatal(format!("starting the HTTP service: {e}")))?;
        Ok(Engine {
            store,
            plugins: Plugins::discover(config),
            http,
            clock,
            owner: Owner::current(),
            lease: DEFAULT_LEASE,
        })
    }

    /// The same engine with another lease length (tests of takeover use short ones).
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Engine {
        self.lease = lease;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The plugins found.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// The engine's clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The run's clock for `workspace`: its pinned `as_of`, or now.
    pub fn as_of(&self, workspace: &Workspace) -> AsOf {
        let now = workspace.as_of.unwrap_or_else(|| self.clock.now());
        AsOf {
            now: Timestamp::from(now),
            tz: workspace.timezone,
        }
    }

    /// The store's handle on `workspace`, created (or its name, zone and currency updated).
    pub async fn workspace(&self, workspace: &Workspace) -> Result<WorkspaceStore> {
        self.store
            .ensure_workspace(&WorkspaceInfo {
                id: workspace.id.clone(),
                name: workspace.name.clone(),
                timezone: workspace.timezone.name().to_owned(),
                currency: workspace.currency.clone(),
            })
            .await?;
        Ok(self.store.workspace(&workspace.id))
    }

    /// Every check `cohort validate` makes that needs plugins, features and templates.
    pub fn check(&self, workspace: &Workspace) -> Diagnostics {
        preflight::check_workspace(workspace, &self.plugins)
    }

    /// Closes the store.
    pub async fn close(self) {
        self.store.close().await;
    }

    /// Runs `job` of `workspace` once and records it.
    ///
    /// A failure of the run is recorded and returned in [`Finished`]. `Err` means there is no
    /// run to record: the workspace is busy ([`ErrorKind::Busy`]), or the store cannot record.
    pub async fn run(
        &self,
        workspace: &Workspace,
        job: &JobPlan<'_>,
        options: &RunOptions,
        observer: Arc<dyn Observer>,
    ) -> Result<Finished> {
        let ws = self.workspace(workspace).await?;
        let lease = self.take(&ws, job, options).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let cancel = options
            .cancel
            .as_ref()
            .map_or_else(CancellationToken::new, CancellationToken::child_token);
        // Aborted when the run ends, and also when its future is dropped (a caller's timeout,
        // a panic caught by the daemon): a run that is gone must not keep its lease alive.
        let heartbeat = AbortOnDrop(self.heartbeat(&ws, &lease, &lost, &cancel));
        let log = RunLog::new(&workspace.id, observer.clone());
        let mut summary = RunSummary {
            workspace: workspace.id.clone(),
            job: job.name.clone(),
            dry_run: options.dry_run,
            ..RunSummary::default()
        };
        let mut errors = Vec::new();
        let services = HostServices {
            cancel: cancel.clone(),
            ..HostServices::default()
        }
        .with_log(log.clone());
        let run = RunContext {
            ws: &ws,
            workspace,
            job,
            options,
            observer: observer.as_ref(),
            services,
            lost: &lost,
            run_id: lease.run_id,
        };
        let result = self.stages(&run, &mut summary, &mut errors).await;
        drop(heartbeat);
        summary.warnings.extend(log.take_warnings());
        for e in &mut errors {
            e.location = cohort_config::mask::redact(&e.location).into_owned();
            e.message = cohort_config::mask::redact(&e.message).into_owned();
        }
        summary.record_errors = errors.len() as u64;
        ws.record_errors(lease.run_id, &errors).await?;
        let (status, error) = match &result {
            Ok(_) if summary.failed_records() > 0 || !errors.is_empty() => {
                (RunStatus::PartiallyFailed, None)
            }
            Ok(_) => (RunStatus::Succeeded, None),
            Err(e) => {
                let message = cohort_config::mask::redact(e.message()).into_owned();
                (RunStatus::Failed, Some(EngineError::new(e.kind(), message)))
            }
        };
        if let (Ok(Some(fresh)), RunStatus::Succeeded) = (result, status) {
            self.keep_result(&ws, &job.name, lease.run_id, fresh)
                .await?;
        }
        let json = serde_json::to_value(&summary)?;
        ws.finish_run(
            &lease,
            status,
            &json,
            error.as_ref().map(EngineError::message),
            self.clock.now(),
        )
        .await?;
        Ok(Finished {
            id: lease.run_id,
            status,
            summary,
            error,
        })
    }

    /// Takes the workspace for a run, waiting for it as `options` allow.
    async fn take(
        &self,
        ws: &WorkspaceStore,
        job: &JobPlan<'_>,
        options: &RunOptions,
    ) -> Result<RunLease> {
        let started = Instant::now();
        loop {
            let begun = match &options.claim {
                Some(claim) => {
                    ws.begin_claimed_run(claim, &self.owner, self.lease, self.clock.now())
                        .await?
                }
                None => {
                    ws.begin_run(
                        &job.name,
                        &options.trigger,
                        options.dry_run,
                        &self.owner,
                        self.lease,
                        self.clock.now(),
                    )
                    .await?
                }
            };
            match begun {
                Begun::Started(lease) => return Ok(lease),
                Begun::Busy(holder) => match options.wait {
                    Some(wait) if started.elapsed() < wait => tokio::time::sleep(WAIT_POLL).await,
                    Some(wait) => {
                        return Err(EngineError::new(
                            ErrorKind::Busy,
                            format!(
                                "workspace `{}` is still busy after waiting {}s: {holder}",
                                ws.id(),
                                wait.as_secs()
                            ),
                        ));
                    }
                    None => {
                        return Err(EngineError::new(
                            ErrorKind::Busy,
                            format!(
                                "workspace `{}` is busy: {holder}. One run per workspace runs at a time; wait for it (cohort run --wait), or run again later",
                                ws.id()
                            ),
                        ));
                    }
                },
            }
        }
    }

    /// Keeps the run's lease alive in the background; a lease found lost sets `lost` and
    /// cancels the run's plugin calls.
    fn heartbeat(
        &self,
        ws: &WorkspaceStore,
        lease: &RunLease,
        lost: &Arc<AtomicBool>,
        cancel: &CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (ws, lease, lost, cancel) = (ws.clone(), lease.clone(), lost.clone(), cancel.clone());
        let clock = self.clock.clone();
        let every = (lease.duration() / 3).max(Duration::from_millis(50));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match ws.heartbeat(&lease, clock.now()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(
                            workspace = ws.id(),
                            run_id = lease.run_id,
                            "Run lost its lease on the workspace; stopping"
                        );
                        lost.store(true, Ordering::SeqCst);
                        cancel.cancel();
                        return;
                    }
                    // A database hiccup: the next beat may pass, and the lease is longer than
                    // one interval.
                    Err(e) => tracing::warn!(
                        workspace = ws.id(),
                        run_id = lease.run_id,
                        error = %e,
                        "Heartbeat failed"
                    ),
                }
            }
        })
    }

    /// Keeps a clean run's result for later runs to reuse, unless records changed while it
    /// ran (another process ingested): then it is not known to be what they say. The run's
    /// own changes (suppressing who unsubscribed) are part of its result.
    async fn keep_result(
        &self,
        ws: &WorkspaceStore,
        job: &str,
        run_id: RunId,
        fresh: Fresh,
    ) -> Result<()> {
        let now = ws.inputs().await?;
        if now.sources != fresh.inputs.sources {
            return Ok(());
        }
        let result = JobResult {
            run_id,
            inputs: now,
            config: fresh.config,
            as_of: fresh.as_of,
            stable_until: fresh.stable_until,
        };
        ws.save_job_result(job, &result).await?;
        Ok(())
    }

    /// The summary stored with run `id`, if it can be read.
    async fn summary_of(&self, ws: &WorkspaceStore, id: RunId) -> Result<Option<RunSummary>> {
        Ok(ws
            .run(id)
            .await?
            .and_then(|(row, _)| row.summary)
            .and_then(|json| serde_json::from_value(json).ok()))
    }

    async fn stages(
        &self,
        run: &RunContext<'_>,
        summary: &mut RunSummary,
        errors: &mut Vec<RecordError>,
    ) -> Result<Option<Fresh>> {
        let RunContext {
            ws,
            workspace,
            job,
            options,
            observer,
            ..
        } = *run;
        let failpoint = Failpoint::from_env();
        let mut timer = Timer::new();
        let id = workspace.id.as_str();

        observer.stage(id, &Stage::Checks);
        let problems = self.check(workspace);
        if !problems.is_empty() {
            return Err(EngineError::config(format!(
                "{} problem{} in the config (`cohort validate` lists them too):\n{problems}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            )));
        }
        observer.stage_done(id, &Stage::Checks, "ok");

        let pulling = PullContext {
            ws,
            plugins: &self.plugins,
            http: &self.http,
            services: run.services.clone(),
            observer,
        };
        for source in &job.sources {
            run.still_ours()?;
            let pulled = pull::pull_source(&pulling, source, errors)
                .await
                .with_context(|| format!("source `{}`", source.name))?;
            summary.sources.extend(pulled);
        }
        summary.timings_ms.push(timer.lap("pull"));
        failpoint.hit("after-pull");
        run.still_ours()?;

        let pushing = Pushing {
            plugins: &self.plugins,
            http: &self.http,
            services: run.services.clone(),
            observer,
        };
        // Before anything is computed or planned: whoever unsubscribed at a destination is
        // suppressed here too (stored, unless this is a dry run, which only counts them). A
        // new one changes the run's inputs, so the run computes.
        let vendor = vendor_suppressions::read_back(
            ws,
            workspace,
            &job.campaigns,
            &pushing,
            options.dry_run,
            errors,
        )
        .await?;
        summary.vendor_suppressions = vendor.summaries;
        run.still_ours()?;

        observer.stage(id, &Stage::Segments);
        let clock = self.as_of(workspace);
        summary.as_of = clock.now.to_string();
        let config = reuse::fingerprint(workspace, job);
        let inputs = match options.dry_run {
            true => None,
            false => Some(ws.inputs().await?),
        };
        let decision = match &inputs {
            Some(inputs) if !options.resync && !options.recompute => {
                reuse::decide(ws.job_result(&job.name).await?, inputs, &config, clock.now)
            }
            _ => Decision::Compute(Why::Asked),
        };
        if let Decision::Reuse(last) = &decision
            && let Some(previous) = self.summary_of(ws, last.run_id).await?
        {
            reuse::reused_summary(summary, &previous);
            summary.reused = Some(Reused {
                run: last.run_id,
                stable_until: last.stable_until.to_string(),
            });
            summary.timings_ms.push(timer.lap("reuse"));
            observer.stage_done(
                id,
                &Stage::Segments,
                &format!("nothing changed since run {}", last.run_id),
            );
            return Ok(None);
        }
        if let Decision::Compute(why) = &decision {
            tracing::debug!(workspace = id, job = %job.name, reason = %why, "Computing segments");
        }
        if !options.dry_run {
            // Memberships and destinations are about to change: until this run finishes
            // clean, there is no whole result to reuse.
            ws.forget_job_result(&job.name).await?;
        }
        let (renderer, template_errors) = templates::renderer(workspace);
        if let Some(e) = template_errors.first() {
            return Err(EngineError::config(format!(
                "{e} (`cohort validate` checks templates before a run)"
            )));
        }
        let wanted = templates::Wanted::by(&renderer, &templates::all(workspace));
        let computed = segments::compute(ws, workspace, clock, wanted, errors).await?;
        summary.customers = computed.customers.len() as u64;
        if let Some(people) = &computed.people {
            // Saved before the memberships: they name persons, and a merge moves the retired
            // person's memberships and destination state to the survivor first.
            if !options.dry_run && !people.update.is_empty() {
                ws.save_identity(&people.update).await?;
            }
            summary.identity = Some(IdentitySummary::of(people));
        }
        let (segment_summaries, warnings) = segments::record_memberships(
            ws,
            workspace,
            &computed,
            clock.now.to_datetime(),
            options.dry_run,
        )
        .await?;
        for w in &warnings {
            observer.warn(id, w);
        }
        summary.segments = segment_summaries;
        summary.warnings.extend(warnings);
        summary.timings_ms.push(timer.lap("segments"));
        observer.stage_done(
            id,
            &Stage::Segments,
            &format!("{} customers", summary.customers),
        );
        failpoint.hit("after-segments");
        run.still_ours()?;

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
        let mut suppressed = computed.suppressed(ws).await?;
        suppressed.extend(vendor.emails);
        let shared = Shared {
            ws,
            workspace,
            computed: &computed,
            renderer: &renderer,
            suppressed: &suppressed,
            now: clock.now,
            dry_run: options.dry_run,
            resync: options.resync,
            run_id: run.run_id,
            failpoint: &failpoint,
        };
        // A campaign that cannot go on (its destination is down) fails the run, but not the other
        // campaigns: their customers are not held hostage by another platform's outage.
        let mut failed: Vec<EngineError> = Vec::new();
        for campaign in &job.campaigns {
            run.still_ours()?;
            let stage = Stage::Campaign {
                name: campaign.name.clone(),
            };
            observer.stage(id, &stage);
            match campaigns::run_campaign(&shared, &pushing, campaign, errors).await {
                Ok(done) => {
                    observer.stage_done(
                        id,
                        &stage,
                        &format!("{} pushed, {} failed", done.pushed, done.failed),
                    );
                    summary.campaigns.push(done);
                }
                Err(e) => failed.push(e.context(format!("campaign `{}`", campaign.name))),
            }
        }
        summary.timings_ms.push(timer.lap("campaigns"));
        match failed.len() {
            0 => Ok(inputs.map(|inputs| Fresh {
                inputs,
                config,
                as_of: clock.now,
                stable_until: computed.stable_until,
            })),
            1 => Err(failed.remove(0)),
            _ => {
                // The run failed for several reasons; it is retryable only if all of them are.
                let kind = if failed.iter().all(EngineError::is_retryable) {
                    failed[0].kind()
                } else {
                    ErrorKind::Fatal
                };
                let message: Vec<&str> = failed.iter().map(EngineError::message).collect();
                Err(EngineError::new(kind, message.join("; ")))
            }
        }
    }
}

/// A result a run computed, and what from: kept when the run finishes clean.
struct Fresh {
    inputs: Inputs,
    config: String,
    as_of: Timestamp,
    stable_until: Timestamp,
}

/// What the stages of one run share.
struct RunContext<'a> {
    ws: &'a WorkspaceStore,
    workspace: &'a Workspace,
    job: &'a JobPlan<'a>,
    options: &'a RunOptions,
    observer: &'a dyn Observer,
    services: HostServices,
    lost: &'a AtomicBool,
    run_id: RunId,
}

impl RunContext<'_> {
    /// `Err` once the run lost its lease: whoever took the workspace over owns it now.
    fn still_ours(&self) -> Result<()> {
        if self.services.cancel.is_cancelled() && !self.lost.load(Ordering::SeqCst) {
            return Err(EngineError::retryable(
                "the run was cancelled (the daemon's timeout or shutdown)",
                None,
            ));
        }
        if self.lost.load(Ordering::SeqCst) {
            return Err(EngineError::retryable(
                "the run lost its lease on the workspace (it was silent longer than the lease) and stopped",
                None,
            ));
        }
        Ok(())
    }
}

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
