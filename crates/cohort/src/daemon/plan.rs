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
use cohort_scheduler::{JobTimes, Policy, job_key};
use cohort_store::Tick;

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
        // Every tick due in this pass is queued in one batch: the cursors move only once it
        // is stored.
        let mut due_now: Vec<Due> = Vec::new();
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
                    &job_key(&w.id, &job.name),
                );
                let due = times.due(since, now);
                if let Some(next) = due.next_start {
                    wake_at = wake_at.min(next);
                }
                due_now.push(Due {
                    key,
                    misfire: job.misfire.as_str(),
                    due,
                });
            }
        }
        let (ticks, late): (Vec<Tick>, Vec<bool>) = due_now
            .iter()
            .filter_map(|d| {
                let tick = Tick {
                    workspace: d.key.0.clone(),
                    job: d.key.1.clone(),
                    scheduled_for: d.due.fire?,
                };
                Some((tick, d.due.late))
            })
            .unzip();
        let queued = if ticks.is_empty() {
            Ok(Vec::new())
        } else {
            daemon.store().enqueue_ticks(&ticks, now).await
        };
        match queued {
            Ok(created) => {
                for &(i, run_id) in &created {
                    let t = &ticks[i];
                    tracing::info!(
                        workspace = %t.workspace,
                        job = %t.job,
                        run_id,
                        scheduled_for = %t.scheduled_for.to_rfc3339(),
                        late = late[i],
                        "Tick queued"
                    );
                }
                if !created.is_empty() {
                    // Every free worker, not one: they claim in parallel.
                    daemon.wake.notify_waiters();
                    daemon.wake.notify_one();
                }
                for d in due_now {
                    settle_due(&daemon, &mut cursors, d);
                }
            }
            Err(e) => {
                tracing::warn!(ticks = ticks.len(), error = %e, "Queueing the ticks failed; trying again");
                // The jobs with nothing to queue may still move on.
                for d in due_now.into_iter().filter(|d| d.due.fire.is_none()) {
                    settle_due(&daemon, &mut cursors, d);
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

/// What one job's schedule said in a pass.
struct Due {
    key: (String, String),
    misfire: &'static str,
    due: cohort_scheduler::Due,
}

/// Counts the ticks a job missed and moves its cursor, once its tick (if any) is stored.
fn settle_due(daemon: &Daemon, cursors: &mut HashMap<(String, String), DateTime<Utc>>, d: Due) {
    let (ws, job) = (&d.key.0, &d.key.1);
    if d.due.missed > 0 {
        daemon.metrics.add(
            "cohort_ticks_missed_total",
            &[("workspace", ws), ("job", job)],
            d.due.missed,
        );
        tracing::warn!(
            workspace = %ws,
            job = %job,
            missed = d.due.missed,
            misfire = d.misfire,
            "Ticks missed"
        );
    }
    if let Some(t) = d.due.through {
        cursors.insert(d.key, t);
    }
}
