//! The planner: ticks that fell due become queued run rows.
//!
//! For each scheduled, enabled job it keeps a cursor (the last tick handled, first read from
//! the store, so a restarted daemon knows what it missed) and asks `cohort_scheduler` what is
//! due. A tick to fire is inserted as a queued row unique per (workspace, job, tick): when two
//! daemons plan the same tick, one insert wins and the other finds it there. A job that has
//! never run starts from now: a new daemon does not backfill history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cohort_scheduler::{JobTimes, Policy};

use super::Daemon;

/// The longest the planner sleeps: it also notices reloads and clock jumps this often.
const MAX_SLEEP: Duration = Duration::from_secs(1);

pub(super) async fn run(daemon: Arc<Daemon>) {
    let mut cursors: HashMap<(String, String), DateTime<Utc>> = HashMap::new();
    let mut known: std::collections::HashSet<String> = std::collections::HashSet::new();
    while !daemon.draining() {
        let config = daemon.config();
        let now = Utc::now();
        let mut wake_at = now + chrono::Duration::from_std(MAX_SLEEP).unwrap_or_default();
        for w in &config.workspaces {
            // A workspace added by a reload is created in the store before its first tick.
            if !known.contains(&w.id) {
                if let Err(e) = daemon.engine.workspace(w).await {
                    tracing::warn!(workspace = %w.id, error = %e, "Could not register the workspace");
                    continue;
                }
                known.insert(w.id.clone());
            }
            let ws = daemon.store().workspace(&w.id);
            for job in &w.jobs {
                let Some(schedule) = job.schedule.as_ref().filter(|_| job.enabled) else {
                    continue;
                };
                let key = (w.id.clone(), job.name.clone());
                let since = match cursors.get(&key) {
                    Some(t) => *t,
                    None => match ws.last_tick(&job.name).await {
                        Ok(last) => *cursors.entry(key.clone()).or_insert(last.unwrap_or(now)),
                        Err(e) => {
                            tracing::warn!(workspace = %w.id, job = %job.name, error = %e, "Reading the job's last tick failed");
                            continue;
                        }
                    },
                };
                let times = JobTimes::new(
                    schedule.clone(),
                    w.timezone,
                    Policy::of(job),
                    &format!("{}/{}", w.id, job.name),
                );
                let due = times.due(since, now);
                if let Some(tick) = due.fire {
                    match ws.enqueue_tick(&job.name, tick, now).await {
                        Ok(Some(run_id)) => {
                            tracing::info!(
                                workspace = %w.id,
                                job = %job.name,
                                run_id,
                                scheduled_for = %tick.to_rfc3339(),
                                late = due.late,
                                "Tick queued"
                            );
                            daemon.wake.notify_one();
                        }
                        // Another daemon queued it first.
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(workspace = %w.id, job = %job.name, error = %e, "Queueing a tick failed; trying again");
                            continue;
                        }
                    }
                }
                if due.missed > 0 {
                    daemon.metrics.add(
                        "cohort_ticks_missed_total",
                        &[("workspace", &w.id), ("job", &job.name)],
                        due.missed,
                    );
                    tracing::warn!(
                        workspace = %w.id,
                        job = %job.name,
                        missed = due.missed,
                        misfire = job.misfire.as_str(),
                        "Ticks missed"
                    );
                }
                if let Some(t) = due.through {
                    cursors.insert(key, t);
                }
                if let Some(next) = due.next_start {
                    wake_at = wake_at.min(next);
                }
            }
        }
        let sleep = (wake_at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = daemon.replan.notified() => {}
        }
    }
}
