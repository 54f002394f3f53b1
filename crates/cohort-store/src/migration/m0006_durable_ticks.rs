//! Durable ticks for the daemon: a scheduled run is a `job_runs` row before it starts.
//!
//! - `job_runs.scheduled_for` is the tick a run is for; a unique index on
//!   (`workspace_id`, `job`, `scheduled_for`) makes a tick one row however many daemons see it
//!   fall due (manual runs have none, and NULLs never collide).
//! - A queued row (`status = 'queued'`) waits until `not_before` (a retry's backoff). A daemon
//!   claims it by writing a fresh `lease_token` and a `lease_expires_at` that heartbeats push
//!   forward; every later write to the row is conditional on that token (fencing), so a daemon
//!   that lost its lease cannot overwrite the run another daemon took over.
//! - `attempt` counts tries of the same tick (`retries`).
//! - `daemons` lists the daemons attached to the store, with a lease like a run's: on SQLite
//!   a second daemon refuses while a live one is listed.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    WorkspaceId,
    Job,
    Status,
    ScheduledFor,
    Attempt,
    NotBefore,
    LeaseToken,
    LeaseExpiresAt,
}

#[derive(DeriveIden)]
enum Daemons {
    Table,
    Id,
    Owner,
    Token,
    StartedAt,
    HeartbeatAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER: each is added only when missing, so a migration
        // killed half way finishes on the next start.
        let columns: [(&str, ColumnDef); 5] = [
            (
                "scheduled_for",
                timestamp_with_time_zone_null(JobRuns::ScheduledFor),
            ),
            ("attempt", integer_null(JobRuns::Attempt)),
            (
                "not_before",
                timestamp_with_time_zone_null(JobRuns::NotBefore),
            ),
            ("lease_token", string_null(JobRuns::LeaseToken)),
            (
                "lease_expires_at",
                timestamp_with_time_zone_null(JobRuns::LeaseExpiresAt),
            ),
        ];
        for (name, mut def) in columns {
            if !m.has_column("job_runs", name).await? {
                m.alter_table(
                    Table::alter()
                        .table(JobRuns::Table)
                        .add_column(&mut def)
                        .to_owned(),
                )
                .await?;
            }
        }
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("job_runs_tick")
                .table(JobRuns::Table)
                .col(JobRuns::WorkspaceId)
                .col(JobRuns::Job)
                .col(JobRuns::ScheduledFor)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("job_runs_queue")
                .table(JobRuns::Table)
                .col(JobRuns::Status)
                .col(JobRuns::NotBefore)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(Daemons::Table)
                .col(string(Daemons::Id).primary_key())
                .col(string(Daemons::Owner))
                .col(string(Daemons::Token))
                .col(timestamp_with_time_zone(Daemons::StartedAt))
                .col(timestamp_with_time_zone(Daemons::HeartbeatAt))
                .col(timestamp_with_time_zone(Daemons::ExpiresAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
