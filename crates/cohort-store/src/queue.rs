//! The daemon's queue: ticks as run rows, claims with leases, fencing by the claim's token.
//!
//! A tick that falls due becomes one `job_runs` row (`status = 'queued'`), unique per
//! (workspace, job, scheduled time): however many daemons see the tick, one insert wins, so a
//! tick is never run twice. A manual trigger is a queued row without a tick.
//!
//! A daemon claims the oldest claimable row in one statement: on PostgreSQL the row is picked
//! with `FOR UPDATE SKIP LOCKED`, so daemons racing for work each get a different row without
//! waiting on one another; SQLite runs one statement at a time anyway (and one daemon, see
//! [`Store::register_daemon`]). The claim writes a fresh token and a lease expiry; the run's
//! heartbeats push the expiry forward, and every write that follows (heartbeat, end, retry,
//! release) is conditional on the token. A daemon that stalled past its lease finds its token
//! replaced by the daemon that took the run over, and its writes change nothing (fencing).
//!
//! Claimable: a queued row whose `not_before` has passed and that no live claim holds, or a
//! running row whose claim's lease ran out (its daemon died: the run is resumed; the run
//! pipeline's exactly-once rules make running it again safe).
//!
//! Claims read across the workspaces the daemon serves (it names them); every other query of
//! the crate stays inside one workspace.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    Statement, Value,
};

use crate::Store;
use crate::entity::{daemons, job_runs};
use crate::error::StoreError;
use crate::runs::{Owner, expiry, new_token};
use crate::types::{Backend, RunId, RunStatus};
use crate::workspace::WorkspaceStore;

/// When a claimable run is due: the order claims take runs in (the key of the
/// `job_runs_claimable` index, m0009).
const DUE: &str = "COALESCE(not_before, scheduled_for, started_at)";

/// A daemon's claim on one run row: the right to run it until the lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The run row.
    pub run_id: RunId,
    /// Its workspace.
    pub workspace: String,
    /// Its job.
    pub job: String,
    /// `schedule`, `manual`, `retry`.
    pub trigger: String,
    /// The tick, for a scheduled run.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// 1 for a first try, then +1 per retry.
    pub attempt: u32,
    /// The row was running under a daemon whose lease ran out: this claim resumes it.
    pub resumed: bool,
    token: String,
    lease: Duration,
}

impl Claim {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// How long the claim lasts without a heartbeat.
    pub fn lease(&self) -> Duration {
        self.lease
    }
}

/// How a daemon lets go of a claimed run it did not finish through the run pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Queue the run again (a retry) for `not_before`, as attempt + 1.
    Retry {
        /// When it may start.
        not_before: DateTime<Utc>,
        /// Why the last attempt failed.
        error: String,
    },
    /// Give the run back unstarted (shutdown, or its workspace is busy): queued again for
    /// `not_before`, same attempt.
    Release {
        /// When it may start.
        not_before: DateTime<Utc>,
    },
    /// Record a final status the pipeline could not (`timed_out`), with why.
    Status {
        /// The status.
        status: RunStatus,
        /// Why.
        error: String,
    },
}

/// A daemon's registration in the store: kept by [`Store::daemon_heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonLease {
    id: String,
    token: String,
    lease: Duration,
}

/// The key of the one daemon a SQLite store allows.
const SQLITE_DAEMON: &str = "sqlite";

impl WorkspaceStore {
    /// Records tick `scheduled_for` of `job` as a queued run, unless a row for that tick
    /// exists. `Some(id)` when this call created it; `None` when another daemon (or an
    /// earlier pass) already did.
    pub async fn enqueue_tick(
        &self,
        job: &str,
        scheduled_for: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<RunId>, StoreError> {
        let row = queued_row(&self.id, job, "schedule", Some(scheduled_for), now);
        let tick = OnConflict::columns([
            job_runs::Column::WorkspaceId,
            job_runs::Column::Job,
            job_runs::Column::ScheduledFor,
        ])
        .do_nothing()
        .to_owned();
        match job_runs::Entity::insert(row)
            .on_conflict(tick)
            .try_insert()
            .exec(&self.db)
            .await?
        {
            sea_orm::TryInsertResult::Inserted(r) => Ok(Some(r.last_insert_id)),
            _ => Ok(None),
        }
    }

    /// Queues a run of `job` now (`trigger`: `manual`), for a daemon to claim.
    pub async fn enqueue(
        &self,
        job: &str,
        trigger: &str,
        now: DateTime<Utc>,
    ) -> Result<RunId, StoreError> {
        let row = queued_row(&self.id, job, trigger, None, now);
        Ok(job_runs::Entity::insert(row)
            .exec(&self.db)
            .await?
            .last_insert_id)
    }

    /// The latest tick of `job` that has a run row: the scheduler's cursor.
    pub async fn last_tick(&self, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = job_runs::Entity::find()
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .filter(job_runs::Column::Job.eq(job))
            .filter(job_runs::Column::ScheduledFor.is_not_null())
            .order_by_desc(job_runs::Column::ScheduledFor)
            .limit(1)
            .one(&self.db)
            .await?;
        Ok(row.and_then(|r| r.scheduled_for))
    }

    /// Runs of the workspace, newest first, filtered by job and status.
    pub async fn runs_where(
        &self,
        job: Option<&str>,
        status: Option<RunStatus>,
        limit: u64,
    ) -> Result<Vec<crate::RunRow>, StoreError> {
        let mut q = job_runs::Entity::find().filter(job_runs::Column::WorkspaceId.eq(&*self.id));
        if let Some(job) = job {
            q = q.filter(job_runs::Column::Job.eq(job));
        }
        if let Some(status) = status {
            q = q.filter(job_runs::Column::Status.eq(status.as_str()));
        }
        let rows = q
            .order_by_desc(job_runs::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter().map(crate::workspace::run_row).collect()
    }
}

fn queued_row(
    workspace: &str,
    job: &str,
    trigger: &str,
    scheduled_for: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> job_runs::ActiveModel {
    job_runs::ActiveModel {
        workspace_id: Set(workspace.to_owned()),
        job: Set(job.to_owned()),
        trigger: Set(trigger.to_owned()),
        dry_run: Set(false),
        status: Set(RunStatus::Queued.as_str().to_owned()),
        started_at: Set(now),
        finished_at: Set(None),
        summary: Set(None),
        error: Set(None),
        owner: Set(None),
        heartbeat_at: Set(None),
        scheduled_for: Set(scheduled_for),
        attempt: Set(Some(1)),
        not_before: Set(Some(now)),
        lease_token: Set(None),
        lease_expires_at: Set(None),
        ..Default::default()
    }
}

/// A tick of one job of one workspace, for [`Store::enqueue_ticks`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tick {
    /// The workspace.
    pub workspace: String,
    /// The job.
    pub job: String,
    /// The scheduled time.
    pub scheduled_for: DateTime<Utc>,
}

/// Rows per `INSERT` of [`Store::enqueue_ticks`]: 9 values a row stays far under SQLite's and
/// PostgreSQL's limits on bound values.
const TICKS_PER_INSERT: usize = 500;

impl Store {
    /// Records many ticks as queued runs, as [`WorkspaceStore::enqueue_tick`] does one, in one
    /// statement per 500 ticks. With 1,000 workspaces on the same minute, a statement (and a
    /// commit) per tick made the last tick wait seconds for its row before a worker could
    /// claim it. Returns the ticks this call created, as (index in `ticks`, run id); a tick
    /// already queued (by another daemon, or an earlier pass) is left out.
    pub async fn enqueue_ticks(
        &self,
        ticks: &[Tick],
        now: DateTime<Utc>,
    ) -> Result<Vec<(usize, RunId)>, StoreError> {
        let mut created = Vec::new();
        for (chunk_no, chunk) in ticks.chunks(TICKS_PER_INSERT).enumerate() {
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 9);
            let mut rows = Vec::with_capacity(chunk.len());
            for tick in chunk {
                let n = values.len();
                rows.push(format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7,
                    n + 8,
                    n + 9
                ));
                values.extend([
                    Value::from(tick.workspace.clone()),
                    tick.job.clone().into(),
                    "schedule".into(),
                    false.into(),
                    RunStatus::Queued.as_str().into(),
                    now.into(),
                    tick.scheduled_for.into(),
                    1i32.into(),
                    now.into(),
                ]);
            }
            let sql = format!(
                "INSERT INTO job_runs (workspace_id, job, trigger, dry_run, status, started_at, \
                 scheduled_for, attempt, not_before) VALUES {} \
                 ON CONFLICT (workspace_id, job, scheduled_for) DO NOTHING \
                 RETURNING id, workspace_id, job, scheduled_for",
                rows.join(", ")
            );
            let inserted = self.db.query_all_raw(self.statement(&sql, values)).await?;
            // RETURNING names the rows, not their place in the list: find each by its key.
            let base = chunk_no * TICKS_PER_INSERT;
            let place: HashMap<(&str, &str, DateTime<Utc>), usize> = chunk
                .iter()
                .enumerate()
                .map(|(i, t)| ((t.workspace.as_str(), t.job.as_str(), t.scheduled_for), i))
                .collect();
            for row in inserted {
                let id: RunId = row.try_get("", "id")?;
                let workspace: String = row.try_get("", "workspace_id")?;
                let job: String = row.try_get("", "job")?;
                let at: DateTime<Utc> = row.try_get("", "scheduled_for")?;
                if let Some(i) = place.get(&(workspace.as_str(), job.as_str(), at)) {
                    created.push((base + i, id));
                }
            }
        }
        created.sort_unstable();
        Ok(created)
    }
}

impl Store {
    /// Claims the oldest claimable run of `workspaces` for `owner`, for `lease`.
    pub async fn claim(
        &self,
        workspaces: &[String],
        owner: &Owner,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>, StoreError> {
        Ok(self
            .claim_many(workspaces, owner, lease, now, 1)
            .await?
            .into_iter()
            .next())
    }

    /// Claims up to `limit` of the oldest claimable runs of `workspaces` for `owner`, for
    /// `lease`, in one statement, oldest first. Each claim gets a token of its own.
    ///
    /// One statement for many runs is what keeps a daemon's claims from being its serial
    /// step when a thousand ticks fall on one second: the statement's cost (a round trip, a
    /// commit) is paid once per batch. The workspaces go in as one JSON array, so the
    /// statement's text, and its plan, do not grow with the number of workspaces.
    pub async fn claim_many(
        &self,
        workspaces: &[String],
        owner: &Owner,
        lease: Duration,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        if workspaces.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let batch = new_token(owner, now);
        let listed = serde_json::Value::from(workspaces.to_vec()).to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // PostgreSQL evaluates the pick once (`ARRAY(...)`): as an `IN (subquery)` the planner
        // may run it again per row, and with `SKIP LOCKED` a second run can pick other rows.
        let (in_listed, pick_into, lock) = match self.backend {
            Backend::Postgres => (
                "SELECT jsonb_array_elements_text($5::jsonb)",
                "id = ANY(ARRAY(",
                " FOR UPDATE SKIP LOCKED))",
            ),
            Backend::Sqlite => ("SELECT value FROM json_each($5)", "id IN (", ")"),
        };
        let sql = format!(
            "UPDATE job_runs SET lease_token = $1 || '-' || CAST(id AS TEXT), \
               lease_expires_at = $2, owner = $3 \
             WHERE {pick_into}SELECT id FROM job_runs \
               WHERE status IN ('queued', 'running') AND workspace_id IN ({in_listed}) AND ( \
                 (status = 'queued' AND (not_before IS NULL OR not_before <= $4) \
                   AND (lease_expires_at IS NULL OR lease_expires_at < $4)) \
                 OR (status = 'running' AND lease_token IS NOT NULL AND lease_expires_at < $4)) \
               ORDER BY {DUE}, id \
               LIMIT $6{lock} \
             RETURNING id, workspace_id, job, trigger, scheduled_for, attempt, status, {DUE} AS due"
        );
        let expires = expiry(now, lease);
        let rows: Vec<sea_orm::QueryResult> = match self.backend {
            Backend::Postgres => {
                // Planned afresh at each claim (an unnamed statement), not cached per
                // connection: a generic plan keeps the table size it saw when it was made,
                // and one made while `job_runs` held a few rows seq-scanned the whole table
                // at every claim from then on, until statistics changed (never, on a server
                // without autovacuum). Planning costs a fraction of a millisecond.
                // The text is made of constants only; every value is bound.
                sea_orm::sqlx::query(sea_orm::sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(&batch)
                    .bind(expires)
                    .bind(owner.to_string())
                    .bind(now)
                    .bind(&listed)
                    .bind(limit)
                    .persistent(false)
                    .fetch_all(self.db.get_postgres_connection_pool())
                    .await?
                    .into_iter()
                    .map(sea_orm::QueryResult::from)
                    .collect()
            }
            Backend::Sqlite => {
                let values: Vec<Value> = vec![
                    batch.clone().into(),
                    expires.into(),
                    owner.to_string().into(),
                    now.into(),
                    listed.into(),
                    limit.into(),
                ];
                self.db.query_all_raw(self.statement(&sql, values)).await?
            }
        };
        let mut claims = Vec::with_capacity(rows.len());
        for row in rows {
            let run_id: RunId = row.try_get("", "id")?;
            let status: String = row.try_get("", "status")?;
            let attempt: Option<i32> = row.try_get("", "attempt")?;
            let due: Option<DateTime<Utc>> = row.try_get("", "due")?;
            let claim = Claim {
                run_id,
                workspace: row.try_get("", "workspace_id")?,
                job: row.try_get("", "job")?,
                trigger: row.try_get("", "trigger")?,
                scheduled_for: row.try_get("", "scheduled_for")?,
                attempt: attempt.map_or(1, |a| a.max(1) as u32),
                resumed: status == RunStatus::Running.as_str(),
                token: format!("{batch}-{run_id}"),
                lease,
            };
            claims.push((due, claim));
        }
        // `RETURNING` keeps no order.
        claims.sort_by(|(a, x), (b, y)| a.cmp(b).then(x.run_id.cmp(&y.run_id)));
        Ok(claims.into_iter().map(|(_, c)| c).collect())
    }

    /// Keeps `claim` alive until `now + lease`. `Ok(false)`: it was taken over; stop.
    pub async fn heartbeat_claim(
        &self,
        claim: &Claim,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let kept = job_runs::Entity::update_many()
            .col_expr(
                job_runs::Column::LeaseExpiresAt,
                Expr::value(expiry(now, claim.lease)),
            )
            .filter(job_runs::Column::Id.eq(claim.run_id))
            .filter(job_runs::Column::LeaseToken.eq(&claim.token))
            .exec(&self.db)
            .await?;
        Ok(kept.rows_affected == 1)
    }

    /// Lets go of `claim` as `how` says, fenced by its token: [`StoreError::LeaseLost`] when
    /// another daemon holds the run now.
    pub async fn settle(
        &self,
        claim: &Claim,
        how: &Settle,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let q = job_runs::Entity::update_many()
            .filter(job_runs::Column::Id.eq(claim.run_id))
            .filter(job_runs::Column::LeaseToken.eq(&claim.token));
        let q = match how {
            Settle::Retry { not_before, error } => q
                .col_expr(
                    job_runs::Column::Status,
                    Expr::value(RunStatus::Queued.as_str()),
                )
                .col_expr(job_runs::Column::NotBefore, Expr::value(*not_before))
                .col_expr(
                    job_runs::Column::Attempt,
                    Expr::value(claim.attempt as i32 + 1),
                )
                .col_expr(job_runs::Column::Trigger, Expr::value("retry"))
                .col_expr(job_runs::Column::Error, Expr::value(error.clone()))
                .col_expr(
                    job_runs::Column::FinishedAt,
                    Expr::value(None::<DateTime<Utc>>),
                )
                .col_expr(job_runs::Column::LeaseToken, Expr::value(None::<String>))
                .col_expr(
                    job_runs::Column::LeaseExpiresAt,
                    Expr::value(None::<DateTime<Utc>>),
                ),
            Settle::Release { not_before } => q
                .col_expr(job_runs::Column::NotBefore, Expr::value(*not_before))
                .col_expr(job_runs::Column::LeaseToken, Expr::value(None::<String>))
                .col_expr(
                    job_runs::Column::LeaseExpiresAt,
                    Expr::value(None::<DateTime<Utc>>),
                )
                .col_expr(
                    job_runs::Column::Status,
                    Expr::value(RunStatus::Queued.as_str()),
                ),
            Settle::Status { status, error } => q
                .col_expr(job_runs::Column::Status, Expr::value(status.as_str()))
                .col_expr(job_runs::Column::Error, Expr::value(error.clone()))
                .col_expr(job_runs::Column::FinishedAt, Expr::value(now)),
        };
        if q.exec(&self.db).await?.rows_affected == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost)
        }
    }

    /// Queued runs of `workspaces` whose time has come and that nobody holds.
    pub async fn queue_depth(
        &self,
        workspaces: &[String],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait;
        if workspaces.is_empty() {
            return Ok(0);
        }
        let n = job_runs::Entity::find()
            .filter(job_runs::Column::WorkspaceId.is_in(workspaces.iter().cloned()))
            .filter(job_runs::Column::Status.eq(RunStatus::Queued.as_str()))
            .filter(job_runs::Column::NotBefore.lte(now))
            .filter(
                sea_orm::Condition::any()
                    .add(job_runs::Column::LeaseExpiresAt.is_null())
                    .add(job_runs::Column::LeaseExpiresAt.lt(now)),
            )
            .count(&self.db)
            .await?;
        Ok(n)
    }

    /// Lists this daemon in the store. On SQLite only one daemon may be listed while it is
    /// alive: a second gets [`StoreError::DaemonRunning`], saying to use PostgreSQL.
    pub async fn register_daemon(
        &self,
        owner: &Owner,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<DaemonLease, StoreError> {
        let token = new_token(owner, now);
        let id = match self.backend {
            Backend::Sqlite => SQLITE_DAEMON.to_owned(),
            Backend::Postgres => token.clone(),
        };
        let row = daemons::ActiveModel {
            id: Set(id.clone()),
            owner: Set(owner.to_string()),
            token: Set(token.clone()),
            started_at: Set(now),
            heartbeat_at: Set(now),
            expires_at: Set(expiry(now, lease)),
        };
        let inserted = matches!(
            daemons::Entity::insert(row.clone())
                .on_conflict_do_nothing()
                .exec_without_returning(&self.db)
                .await?,
            sea_orm::TryInsertResult::Inserted(1)
        );
        if !inserted {
            let Some(held) = daemons::Entity::find_by_id(id.clone())
                .one(&self.db)
                .await?
            else {
                return Err(StoreError::Unavailable(
                    "the daemon registration changed while it was read; start again".to_owned(),
                ));
            };
            let dead =
                held.expires_at <= now || Owner::parse(&held.owner).is_some_and(|o| o.is_gone());
            if !dead {
                return Err(StoreError::DaemonRunning {
                    owner: held.owner,
                    since: held.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    alive: held.heartbeat_at.format("%H:%M:%S").to_string(),
                });
            }
            let taken = daemons::Entity::update_many()
                .set(row)
                .filter(daemons::Column::Id.eq(&id))
                .filter(daemons::Column::Token.eq(&held.token))
                .exec(&self.db)
                .await?;
            if taken.rows_affected != 1 {
                return Err(StoreError::Unavailable(
                    "another daemon started at the same moment; only one may run on SQLite"
                        .to_owned(),
                ));
            }
        }
        // Daemons that died long ago are forgotten (PostgreSQL lists one row per daemon).
        daemons::Entity::delete_many()
            .filter(daemons::Column::ExpiresAt.lt(now - chrono::Duration::hours(24)))
            .exec(&self.db)
            .await?;
        Ok(DaemonLease { id, token, lease })
    }

    /// Keeps the daemon listed. `Ok(false)`: another daemon took its place (it was silent
    /// longer than its lease).
    pub async fn daemon_heartbeat(
        &self,
        d: &DaemonLease,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let kept = daemons::Entity::update_many()
            .col_expr(daemons::Column::HeartbeatAt, Expr::value(now))
            .col_expr(
                daemons::Column::ExpiresAt,
                Expr::value(expiry(now, d.lease)),
            )
            .filter(daemons::Column::Id.eq(&d.id))
            .filter(daemons::Column::Token.eq(&d.token))
            .exec(&self.db)
            .await?;
        Ok(kept.rows_affected == 1)
    }

    /// Removes the daemon from the list (a clean shutdown).
    pub async fn unregister_daemon(&self, d: &DaemonLease) -> Result<(), StoreError> {
        daemons::Entity::delete_many()
            .filter(daemons::Column::Id.eq(&d.id))
            .filter(daemons::Column::Token.eq(&d.token))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Whether the store answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.ping().await?;
        Ok(())
    }

    /// `sql` written with `$n` placeholders, for this backend.
    fn statement(&self, sql: &str, values: Vec<Value>) -> Statement {
        match self.backend {
            Backend::Postgres => {
                Statement::from_sql_and_values(sea_orm::DbBackend::Postgres, sql, values)
            }
            Backend::Sqlite => Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                sql.replace('$', "?"),
                values,
            ),
        }
    }
}
