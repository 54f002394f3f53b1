//! A partial index of the runs a daemon may claim, in the order it claims them.
//!
//! `job_runs` keeps every run ever made; with a thousand workspaces on one-minute schedules
//! that is a thousand finished rows a minute, against a handful queued or running. The claim
//! takes the oldest claimable run first, so without this index every claim sorted the whole
//! queue (and scanned past the finished rows). The index holds only the rows whose status is
//! `queued` or `running`, keyed by the claim's own order, so the oldest is its first entry.
//! The key is the same expression the claim sorts by; both backends support partial indexes
//! on expressions.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS job_runs_claimable ON job_runs \
                 ((COALESCE(not_before, scheduled_for, started_at)), id) \
                 WHERE status IN ('queued', 'running')",
            )
            .await?;
        Ok(())
    }
}
