//! Beginning and finishing runs: one run per workspace at a time, on any number of processes.
//!
//! A workspace is run by whoever holds its row in `workspace_locks`. The row carries a random
//! token and an expiry; the holder pushes the expiry forward with [`WorkspaceStore::heartbeat`]
//! and removes the row when the run finishes. Everything that changes the row is a
//! compare-and-set on the token it last read, so two processes racing for a workspace cannot
//! both win, on SQLite or PostgreSQL, and a process that lost its lease (it stalled longer than
//! the lease, another took over) cannot finish a run it no longer owns: its
//! [`WorkspaceStore::finish_run`] fails with [`StoreError::LeaseLost`] (fencing).
//!
//! A holder is dead when its lease has expired, or, sooner, when it ran on this host and its
//! process is gone (a `kill -9` followed by a new run need not wait for the lease). Taking the
//! lock from a dead holder marks the runs it left `running` as failed, saying whose they were
//! and when they were last seen alive: the only way a run is ever declared interrupted.
//!
//! Times come from the caller's clock, so leases can be tested without sleeping.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde_json::Value;

use crate::entity::{job_runs, workspace_locks};
use crate::error::StoreError;
use crate::types::{RunId, RunStatus};
use crate::workspace::WorkspaceStore;

/// The process that runs (or ran) a run: a host and a process id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    host: String,
    pid: u32,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned());
        Owner {
            host,
            pid: std::process::id(),
        }
    }

    /// An owner as stored (`host/pid`).
    pub fn parse(text: &str) -> Option<Owner> {
        let (host, pid) = text.rsplit_once('/')?;
        Some(Owner {
            host: host.to_owned(),
            pid: pid.parse().ok()?,
        })
    }

    /// Whether this owner is a process of this host that no longer exists. `false` when that
    /// cannot be told (another host, or no `/proc`): then only its lease's expiry tells.
    pub fn is_gone(&self) -> bool {
        let here = Owner::current();
        if self.host != here.host || self.pid == here.pid {
            return false;
        }
        std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.pid)
    }
}

/// The right to run a workspace, held by the run that took it. Heartbeats keep it; finishing
/// the run gives it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLease {
    /// The run that holds it.
    pub run_id: RunId,
    token: String,
    lease: Duration,
    /// The daemon's claim on the run row, when a daemon claimed it (`crate::queue`):
    /// heartbeats and the end are fenced by it too.
    claim: Option<String>,
}

impl RunLease {
    /// How long the lease lasts without a heartbeat.
    pub fn duration(&self) -> Duration {
        self.lease
    }
}

/// Who holds a workspace that another run wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The run holding it (none while it is being started).
    pub run_id: Option<RunId>,
    /// That run's job, when known.
    pub job: Option<String>,
    /// The process (`host/pid`).
    pub owner: String,
    /// When it took the workspace.
    pub since: DateTime<Utc>,
    /// When it last proved alive.
    pub heartbeat_at: DateTime<Utc>,
    /// When its lease runs out unless it beats again.
    pub expires_at: DateTime<Utc>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.run_id, &self.job) {
            (Some(id), Some(job)) => write!(f, "run {id} (job `{job}`)")?,
            (Some(id), None) => write!(f, "run {id}")?,
            (None, _) => f.write_str("a run that is starting")?,
        }
        write!(
            f,
            " of {}, started {} UTC, last alive {} UTC",
            self.owner,
            self.since.format("%Y-%m-%d %H:%M:%S"),
            self.heartbeat_at.format("%H:%M:%S")
        )
    }
}

/// What [`WorkspaceStore::begin_run`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The run was recorded and holds the workspace.
    Started(RunLease),
    /// Another live run holds the workspace; nothing was recorded.
    Busy(Holder),
}

/// A token nobody else will draw: this process, the time, and a counter, hashed.
pub(crate) fn new_token(owner: &Owner, now: DateTime<Utc>) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = format!(
        "{owner}/{}/{n}",
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(seed.as_bytes()))
}

pub(crate) fn expiry(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

impl WorkspaceStore {
    /// Takes the workspace for a new run of `job` and records the run, or says who holds it.
    ///
    /// A holder whose lease expired before `now`, or whose process is gone from this host, is
    /// taken over: the runs it left running are marked failed, naming it.
    pub async fn begin_run(
        &self,
        job: &str,
        trigger: &str,
        dry_run: bool,
        owner: &Owner,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Begun, StoreError> {
        self.begin(job, trigger, dry_run, owner, lease, now, None)
            .await
    }

    /// Like [`WorkspaceStore::begin_run`], for a run row a daemon claimed (`Store::claim`):
    /// the row becomes the running run instead of a new one, and the lease carries the claim's
    /// token so that the run's heartbeats and end are fenced by it. A claim of a run whose
    /// daemon died resumes that run.
    pub async fn begin_claimed_run(
        &self,
        claim: &crate::queue::Claim,
        owner: &Owner,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Begun, StoreError> {
        if claim.workspace != *self.id {
            return Err(StoreError::UnknownRun(claim.run_id));
        }
        self.begin(
            &claim.job,
            &claim.trigger,
            false,
            owner,
            lease,
            now,
            Some(claim),
        )
        .await
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the one body of the two begin_* calls"
    )]
    async fn begin(
        &self,
        job: &str,
        trigger: &str,
        dry_run: bool,
        owner: &Owner,
        lease: Duration,
        now: DateTime<Utc>,
        claim: Option<&crate::queue::Claim>,
    ) -> Result<Begun, StoreError> {
        let token = new_token(owner, now);
        // Two rounds at most: a racer that took the row between our read and our write is read
        // again and reported.
        for _ in 0..2 {
            let current = workspace_locks::Entity::find_by_id(self.id.to_string())
                .one(&self.db)
                .await?;
            let taken = match &current {
                None => {
                    let row = lock_row(&self.id, owner, &token, now, lease);
                    matches!(
                        workspace_locks::Entity::insert(row)
                            .on_conflict_do_nothing()
                            .exec_without_returning(&self.db)
                            .await?,
                        sea_orm::TryInsertResult::Inserted(1)
                    )
                }
                Some(held) => {
                    let dead = held.expires_at <= now
                        || Owner::parse(&held.owner).is_some_and(|o| o.is_gone());
                    if !dead {
                        return Ok(Begun::Busy(self.holder(held).await?));
                    }
                    let row = lock_row(&self.id, owner, &token, now, lease);
                    workspace_locks::Entity::update_many()
                        .set(row)
                        .filter(workspace_locks::Column::WorkspaceId.eq(&*self.id))
                        .filter(workspace_locks::Column::Token.eq(&held.token))
                        .exec(&self.db)
                        .await?
                        .rows_affected
                        == 1
                }
            };
            if !taken {
                continue;
            }
            let run_id = self
                .record_start(
                    job,
                    trigger,
                    dry_run,
                    owner,
                    &token,
                    current.as_ref(),
                    now,
                    claim,
                )
                .await?;
            return Ok(Begun::Started(RunLease {
                run_id,
                token,
                lease,
                claim: claim.map(|c| c.token().to_owned()),
            }));
        }
        match workspace_locks::Entity::find_by_id(self.id.to_string())
            .one(&self.db)
            .await?
        {
            Some(held) => Ok(Begun::Busy(self.holder(&held).await?)),
            None => Err(StoreError::Unavailable(
                "the workspace lock changed hands twice while it was being taken; try again"
                    .to_owned(),
            )),
        }
    }

    /// Inserts the run row, marks the runs a dead holder left as failed, and ties the lock to
    /// the new run, in one transaction.
    #[allow(clippy::too_many_arguments, reason = "one private step of begin_run")]
    async fn record_start(
        &self,
        job: &str,
        trigger: &str,
        dry_run: bool,
        owner: &Owner,
        token: &str,
        previous: Option<&workspace_locks::Model>,
        now: DateTime<Utc>,
        claim: Option<&crate::queue::Claim>,
    ) -> Result<RunId, StoreError> {
        let tx = self.db.begin().await?;
        // Holding the lock, every other run of the workspace still marked running is dead.
        let why = match previous {
            Some(p) => format!(
                "interrupted: its process ({}) stopped (last alive {} UTC)",
                p.owner,
                p.heartbeat_at.format("%Y-%m-%d %H:%M:%S")
            ),
            None => "interrupted: its process stopped".to_owned(),
        };
        job_runs::Entity::update_many()
            .col_expr(
                job_runs::Column::Status,
                Expr::value(RunStatus::Failed.as_str()),
            )
            .col_expr(job_runs::Column::FinishedAt, Expr::value(now))
            .col_expr(job_runs::Column::Error, Expr::value(why))
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .filter(job_runs::Column::Status.eq(RunStatus::Running.as_str()))
            // A daemon's claimed run is not declared dead here: its claim's lease says when
            // it is, and another daemon then claims and resumes it.
            .filter(job_runs::Column::LeaseToken.is_null())
            .exec(&tx)
            .await?;
        let run_id = match claim {
            Some(claim) => {
                let started = job_runs::Entity::update_many()
                    .col_expr(
                        job_runs::Column::Status,
                        Expr::value(RunStatus::Running.as_str()),
                    )
                    .col_expr(job_runs::Column::StartedAt, Expr::value(now))
                    .col_expr(job_runs::Column::HeartbeatAt, Expr::value(now))
                    .col_expr(job_runs::Column::Owner, Expr::value(owner.to_string()))
                    .col_expr(
                        job_runs::Column::FinishedAt,
                        Expr::value(None::<DateTime<Utc>>),
                    )
                    .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
                    .filter(job_runs::Column::Id.eq(claim.run_id))
                    .filter(job_runs::Column::LeaseToken.eq(claim.token()))
                    .exec(&tx)
                    .await?;
                if started.rows_affected != 1 {
                    return Err(StoreError::LeaseLost);
                }
                claim.run_id
            }
            None => {
                self.insert_run(&tx, job, trigger, dry_run, owner, now)
                    .await?
            }
        };
        let tied = workspace_locks::Entity::update_many()
            .col_expr(workspace_locks::Column::RunId, Expr::value(run_id))
            .filter(workspace_locks::Column::WorkspaceId.eq(&*self.id))
            .filter(workspace_locks::Column::Token.eq(token))
            .exec(&tx)
            .await?;
        if tied.rows_affected != 1 {
            return Err(StoreError::LeaseLost);
        }
        tx.commit().await?;
        Ok(run_id)
    }

    async fn insert_run(
        &self,
        tx: &sea_orm::DatabaseTransaction,
        job: &str,
        trigger: &str,
        dry_run: bool,
        owner: &Owner,
        now: DateTime<Utc>,
    ) -> Result<RunId, StoreError> {
        let inserted = job_runs::Entity::insert(job_runs::ActiveModel {
            workspace_id: Set(self.id.to_string()),
            job: Set(job.to_owned()),
            trigger: Set(trigger.to_owned()),
            dry_run: Set(dry_run),
            status: Set(RunStatus::Running.as_str().to_owned()),
            started_at: Set(now),
            finished_at: Set(None),
            summary: Set(None),
            error: Set(None),
            owner: Set(Some(owner.to_string())),
            heartbeat_at: Set(Some(now)),
            ..Default::default()
        })
        .exec(tx)
        .await?;
        Ok(inserted.last_insert_id)
    }

    async fn holder(&self, lock: &workspace_locks::Model) -> Result<Holder, StoreError> {
        let job = match lock.run_id {
            Some(id) => job_runs::Entity::find_by_id(id)
                .one(&self.db)
                .await?
                .map(|r| r.job),
            None => None,
        };
        Ok(Holder {
            run_id: lock.run_id,
            job,
            owner: lock.owner.clone(),
            since: lock.acquired_at,
            heartbeat_at: lock.heartbeat_at,
            expires_at: lock.expires_at,
        })
    }

    /// Who holds the workspace now, if anyone (expired holders included).
    pub async fn lock_holder(&self) -> Result<Option<Holder>, StoreError> {
        match workspace_locks::Entity::find_by_id(self.id.to_string())
            .one(&self.db)
            .await?
        {
            Some(lock) => Ok(Some(self.holder(&lock).await?)),
            None => Ok(None),
        }
    }

    /// Proves the run holding `lease` alive until `now + lease`. `Ok(false)`: the lease was
    /// lost (it expired and another process took the workspace); the run must stop.
    pub async fn heartbeat(
        &self,
        lease: &RunLease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let kept = workspace_locks::Entity::update_many()
            .col_expr(workspace_locks::Column::HeartbeatAt, Expr::value(now))
            .col_expr(
                workspace_locks::Column::ExpiresAt,
                Expr::value(expiry(now, lease.lease)),
            )
            .filter(workspace_locks::Column::WorkspaceId.eq(&*self.id))
            .filter(workspace_locks::Column::Token.eq(&lease.token))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1;
        if !kept {
            return Ok(false);
        }
        let mut beat = job_runs::Entity::update_many()
            .col_expr(job_runs::Column::HeartbeatAt, Expr::value(now))
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .filter(job_runs::Column::Id.eq(lease.run_id));
        if let Some(claim) = &lease.claim {
            beat = beat
                .col_expr(
                    job_runs::Column::LeaseExpiresAt,
                    Expr::value(expiry(now, lease.lease)),
                )
                .filter(job_runs::Column::LeaseToken.eq(claim));
        }
        let rows = beat.exec(&self.db).await?.rows_affected;
        // A claimed run whose claim another daemon took over has lost, whatever the lock says.
        Ok(lease.claim.is_none() || rows == 1)
    }

    /// Records the end of the run holding `lease` and gives the workspace back, in one
    /// transaction. Fails with [`StoreError::LeaseLost`], writing nothing, when the lease was
    /// lost: the run was declared dead and its record belongs to whoever took over.
    pub async fn finish_run(
        &self,
        lease: &RunLease,
        status: RunStatus,
        summary: &Value,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin().await?;
        let released = workspace_locks::Entity::delete_many()
            .filter(workspace_locks::Column::WorkspaceId.eq(&*self.id))
            .filter(workspace_locks::Column::Token.eq(&lease.token))
            .exec(&tx)
            .await?;
        if released.rows_affected != 1 {
            return Err(StoreError::LeaseLost);
        }
        let mut done = job_runs::Entity::update_many()
            .col_expr(job_runs::Column::Status, Expr::value(status.as_str()))
            .col_expr(job_runs::Column::FinishedAt, Expr::value(now))
            .col_expr(job_runs::Column::HeartbeatAt, Expr::value(now))
            .col_expr(job_runs::Column::Summary, Expr::value(summary.clone()))
            .col_expr(
                job_runs::Column::Error,
                Expr::value(error.map(str::to_owned)),
            )
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .filter(job_runs::Column::Id.eq(lease.run_id));
        if let Some(claim) = &lease.claim {
            done = done.filter(job_runs::Column::LeaseToken.eq(claim));
        }
        let done = done.exec(&tx).await?;
        if done.rows_affected == 0 {
            // Dropping the transaction rolls back the lock's release too.
            return Err(match lease.claim {
                Some(_) => StoreError::LeaseLost,
                None => StoreError::UnknownRun(lease.run_id),
            });
        }
        tx.commit().await?;
        Ok(())
    }
}

fn lock_row(
    workspace: &str,
    owner: &Owner,
    token: &str,
    now: DateTime<Utc>,
    lease: Duration,
) -> workspace_locks::ActiveModel {
    workspace_locks::ActiveModel {
        workspace_id: Set(workspace.to_owned()),
        run_id: Set(None),
        owner: Set(owner.to_string()),
        token: Set(token.to_owned()),
        acquired_at: Set(now),
        heartbeat_at: Set(now),
        expires_at: Set(expiry(now, lease)),
    }
}
