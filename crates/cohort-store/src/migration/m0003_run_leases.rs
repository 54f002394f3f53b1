//! Runs for many processes: run owners and heartbeats, a lock per workspace, and the payload a
//! destination last acknowledged.
//!
//! - `job_runs.owner` names the process running it (`host/pid`), `job_runs.heartbeat_at` is
//!   when it last proved alive. A run is dead only when its heartbeat is older than its lease,
//!   never because another run started.
//! - `workspace_locks` holds at most one row per workspace: the run that owns the workspace
//!   now, with a random token and an expiry that heartbeats push forward. Taking the lock is
//!   one conditional upsert (free, expired, or a token known dead), so two processes racing
//!   for it cannot both win, on SQLite or on PostgreSQL, and daemons on several hosts share it.
//! - `destination_state.payload` keeps the payload a destination last acknowledged, so a
//!   removal can say what to remove (an ad platform removes the hashed identifiers it was
//!   given, not the customer's current ones).

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    Owner,
    HeartbeatAt,
}

#[derive(DeriveIden)]
enum DestinationState {
    Table,
    Payload,
}

#[derive(DeriveIden)]
enum WorkspaceLocks {
    Table,
    WorkspaceId,
    RunId,
    Owner,
    Token,
    AcquiredAt,
    HeartbeatAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER; a process killed between two of them leaves some
        // columns added, so each is added only when missing.
        if !m.has_column("job_runs", "owner").await? {
            m.alter_table(
                Table::alter()
                    .table(JobRuns::Table)
                    .add_column(string_null(JobRuns::Owner))
                    .to_owned(),
            )
            .await?;
        }
        if !m.has_column("job_runs", "heartbeat_at").await? {
            m.alter_table(
                Table::alter()
                    .table(JobRuns::Table)
                    .add_column(timestamp_with_time_zone_null(JobRuns::HeartbeatAt))
                    .to_owned(),
            )
            .await?;
        }
        if !m.has_column("destination_state", "payload").await? {
            m.alter_table(
                Table::alter()
                    .table(DestinationState::Table)
                    .add_column(text_null(DestinationState::Payload))
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(WorkspaceLocks::Table)
                .col(string(WorkspaceLocks::WorkspaceId).primary_key())
                .col(big_integer_null(WorkspaceLocks::RunId))
                .col(string(WorkspaceLocks::Owner))
                .col(string(WorkspaceLocks::Token))
                .col(timestamp_with_time_zone(WorkspaceLocks::AcquiredAt))
                .col(timestamp_with_time_zone(WorkspaceLocks::HeartbeatAt))
                .col(timestamp_with_time_zone(WorkspaceLocks::ExpiresAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("workspace_locks_workspace")
                        .from(WorkspaceLocks::Table, WorkspaceLocks::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
