//! The workers: claim a queued run, run it through the engine, settle it.
//!
//! At most `[server] workers` runs at once. A run is its own task inside a span carrying its
//! workspace, job and run ids, so every line it logs names them. What can happen to it:
//!
//! - it finishes: recorded by the engine in its row (fenced by the claim's token);
//! - it fails and the job has `retries` left: queued again as the next attempt, after
//!   `retry_backoff` doubled per attempt (at most an hour);
//! - it outlives the job's `timeout`: cancelled through the plugins' cancellation service,
//!   then recorded as `timed_out`;
//! - it panics: caught here, recorded as failed; the daemon goes on;
//! - its workspace is busy with another run: given back, to be claimed again shortly;
//! - the daemon drains past its grace period: cancelled and given back, for another daemon.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use cohort_config::Workspace;
use cohort_engine::{ErrorKind, Finished, Quiet, RunOptions};
use cohort_plugin_host::CancellationToken;
use cohort_store::{Claim, RunStatus, Settle};
use futures_util::FutureExt as _;
use tracing::Instrument as _;

use super::Daemon;

/// How long a run given back (its workspace busy) waits before it may be claimed again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// The longest backoff between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// How long a cancelled run may take to stop before the worker stops waiting for it.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// The most runs one claim statement takes.
const MAX_CLAIM_BATCH: usize = 64;

/// Claims runs for free worker slots and starts them.
///
/// Every free slot is claimed for in one statement: when many ticks fall due at once, a
/// claim a run would make the claims, not the runs, the daemon's serial step.
pub(super) async fn claim_loop(daemon: Arc<Daemon>) {
    loop {
        let Some(first) = daemon.workers.acquire().await else {
            return;
        };
        if daemon.draining() {
            return;
        }
        let mut permits = vec![first];
        while permits.len() < MAX_CLAIM_BATCH {
            match daemon.workers.try_acquire() {
                Some(p) => permits.push(p),
                None => break,
            }
        }
        let ids = daemon.workspace_ids();
        match daemon
            .store()
            .claim_many(&ids, &daemon.owner, daemon.lease, Utc::now(), permits.len())
            .await
        {
            Ok(claims) if !claims.is_empty() => {
                for (claim, permit) in claims.into_iter().zip(permits.drain(..)) {
                    daemon.in_flight.fetch_add(1, Ordering::SeqCst);
                    let d = daemon.clone();
                    tokio::spawn(async move {
                        work(&d, claim).await;
                        drop(permit);
                        d.in_flight.fetch_sub(1, Ordering::SeqCst);
                        d.idle.notify_waiters();
                        d.wake.notify_one();
                    });
                }
            }
            Ok(_) => {
                drop(permits);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = daemon.wake.notified() => {}
                }
            }
            Err(e) => {
                drop(permits);
                tracing::warn!(error = %e, "Claiming a run failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn work(daemon: &Arc<Daemon>, claim: Claim) {
    let span = tracing::info_span!(
        "run",
        workspace = %claim.workspace,
        job = %claim.job,
        run_id = claim.run_id
    );
    run_claimed(daemon, claim).instrument(span).await;
}

async fn run_claimed(daemon: &Arc<Daemon>, claim: Claim) {
    let config = daemon.config();
    let Some(workspace) = config.workspace(&claim.workspace) else {
        give_up(daemon, &claim, "its workspace is no longer in the config").await;
        return;
    };
    let plan = match cohort_engine::job_plan(workspace, Some(&claim.job)) {
        Ok(plan) => plan,
        Err(e) => {
            give_up(daemon, &claim, &e.to_string()).await;
            return;
        }
    };
    let job = workspace.job(&claim.job);
    let labels = [
        ("workspace", claim.workspace.as_str()),
        ("job", claim.job.as_str()),
    ];
    // Tick lag is the scheduler's own latency: only a tick's first start counts (a retry or a
    // resumed run starts late on purpose), and it counts from the tick's start, which the
    // job's `jitter` moves after the tick on purpose too.
    let jitter = job.map_or(Duration::ZERO, |j| {
        cohort_scheduler::jitter_offset(
            j.jitter,
            &cohort_scheduler::job_key(&claim.workspace, &claim.job),
        )
    });
    let lag = claim
        .scheduled_for
        .filter(|_| claim.attempt == 1 && !claim.resumed)
        .map(|tick| {
            let start = tick + chrono::Duration::from_std(jitter).unwrap_or_default();
            (Utc::now() - start).num_milliseconds().max(0) as f64 / 1000.0
        });
    if let Some(lag) = lag {
        daemon
            .metrics
            .observe("cohort_tick_lag_seconds", &labels, lag);
    }
    tracing::info!(
        trigger = %claim.trigger,
        attempt = claim.attempt,
        resumed = claim.resumed,
        scheduled_for = claim.scheduled_for.map(|t| t.to_rfc3339()),
        tick_lag_seconds = lag,
        "Run starting"
    );
    let cancel = CancellationToken::new();
    daemon
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(claim.run_id, cancel.clone());
    let options = RunOptions {
        trigger: claim.trigger.clone(),
        claim: Some(claim.clone()),
        cancel: Some(cancel.clone()),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let timeout = job.and_then(|j| j.timeout);
    let run = AssertUnwindSafe(
        daemon
            .engine
            .run(workspace, &plan, &options, Arc::new(Quiet)),
    )
    .catch_unwind();
    tokio::pin!(run);
    let mut timed_out = false;
    let result = match timeout {
        None => run.await,
        Some(limit) => {
            tokio::select! {
                r = &mut run => r,
                _ = tokio::time::sleep(limit) => {
                    timed_out = true;
                    tracing::warn!(timeout_seconds = limit.as_secs_f64(), "Run timed out; cancelling it");
                    cancel.cancel();
                    match tokio::time::timeout(CANCEL_GRACE, &mut run).await {
                        Ok(r) => r,
                        Err(_) => Ok(Err(cohort_engine::EngineError::fatal(
                            "the run did not stop within 30 s of its cancellation",
                        ))),
                    }
                }
            }
        }
    };
    daemon
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&claim.run_id);
    let took = started.elapsed();
    let cancelled_by_drain = daemon.draining() && cancel.is_cancelled() && !timed_out;
    let now = Utc::now();
    let settle = match result {
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(panic = %why, "Run panicked; the daemon goes on");
            count(daemon, &claim, "failed", took);
            Some(Settle::Status {
                status: RunStatus::Failed,
                error: format!("the job panicked: {why}"),
            })
        }
        Ok(Err(e)) if e.kind() == ErrorKind::Busy => {
            tracing::info!(reason = %e, "Workspace busy; run given back");
            Some(Settle::Release {
                not_before: now + chrono::Duration::from_std(BUSY_RETRY).unwrap_or_default(),
            })
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "Run could not be recorded; giving it back");
            Some(Settle::Release {
                not_before: now + chrono::Duration::seconds(5),
            })
        }
        Ok(Ok(_)) if cancelled_by_drain => {
            tracing::warn!("Run cancelled by the shutdown; given back for another daemon");
            Some(Settle::Release { not_before: now })
        }
        Ok(Ok(finished)) => {
            observe(daemon, workspace, &finished);
            if timed_out {
                count(daemon, &claim, RunStatus::TimedOut.as_str(), took);
                Some(Settle::Status {
                    status: RunStatus::TimedOut,
                    error: format!(
                        "timed out after {}s (job timeout); cancelled",
                        timeout.map_or(0, |t| t.as_secs())
                    ),
                })
            } else {
                count(daemon, &claim, finished.status.as_str(), took);
                let retries = job.map_or(0, |j| j.retries);
                if finished.status == RunStatus::Failed && claim.attempt <= retries {
                    let base = job.map_or(Duration::from_secs(30), |j| j.retry_backoff);
                    let wait = base
                        .saturating_mul(1 << (claim.attempt - 1).min(16))
                        .min(MAX_BACKOFF);
                    let error = finished
                        .error
                        .as_ref()
                        .map_or_else(String::new, |e| e.message().to_owned());
                    tracing::warn!(
                        attempt = claim.attempt,
                        retries,
                        retry_in_seconds = wait.as_secs_f64(),
                        error = %error,
                        "Run failed; retrying"
                    );
                    Some(Settle::Retry {
                        not_before: now + chrono::Duration::from_std(wait).unwrap_or_default(),
                        error: format!("attempt {} failed: {error}", claim.attempt),
                    })
                } else {
                    tracing::info!(
                        status = finished.status.as_str(),
                        seconds = took.as_secs_f64(),
                        error = finished.error.as_ref().map(|e| e.message()).unwrap_or(""),
                        "Run finished"
                    );
                    None
                }
            }
        }
    };
    if let Some(how) = settle
        && let Err(e) = daemon.store().settle(&claim, &how, Utc::now()).await
    {
        tracing::error!(error = %e, "Settling the run failed");
    }
}

/// Records a run that cannot start at all (its job or workspace left the config).
async fn give_up(daemon: &Daemon, claim: &Claim, why: &str) {
    tracing::error!(reason = why, "Run cannot start");
    let how = Settle::Status {
        status: RunStatus::Failed,
        error: format!("cannot run: {why}"),
    };
    if let Err(e) = daemon.store().settle(claim, &how, Utc::now()).await {
        tracing::error!(error = %e, "Recording the run's failure failed");
    }
}

fn count(daemon: &Daemon, claim: &Claim, status: &str, took: Duration) {
    let ws = claim.workspace.as_str();
    let job = claim.job.as_str();
    daemon.metrics.add(
        "cohort_runs_total",
        &[("workspace", ws), ("job", job), ("status", status)],
        1,
    );
    daemon.metrics.observe(
        "cohort_run_duration_seconds",
        &[("workspace", ws), ("job", job)],
        took.as_secs_f64(),
    );
}

/// Record counts and segment sizes of a finished run.
fn observe(daemon: &Daemon, workspace: &Workspace, finished: &Finished) {
    let ws = workspace.id.as_str();
    let m = &daemon.metrics;
    for s in &finished.summary.sources {
        let plugin = workspace
            .source(&s.source)
            .map_or(s.source.as_str(), |src| src.plugin.as_str());
        let labels = [("workspace", ws), ("plugin", plugin)];
        m.add("cohort_records_pulled_total", &labels, s.pulled);
        m.add("cohort_records_failed_total", &labels, s.bad);
    }
    for c in &finished.summary.campaigns {
        let plugin = workspace
            .destination(&c.destination)
            .map_or(c.destination.as_str(), |d| d.plugin.as_str());
        let labels = [("workspace", ws), ("plugin", plugin)];
        m.add("cohort_records_pushed_total", &labels, c.pushed);
        m.add(
            "cohort_records_skipped_total",
            &labels,
            c.skipped_no_consent + c.skipped_suppressed + c.skipped_no_address,
        );
        m.add("cohort_records_failed_total", &labels, c.failed);
    }
    for s in &finished.summary.segments {
        m.set(
            "cohort_segment_size",
            &[("workspace", ws), ("segment", &s.name)],
            s.members as f64,
        );
    }
}
