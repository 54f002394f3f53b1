//! What a run may reuse when nothing changed since the last clean run of its job.
//!
//! - `sources.data_version`: raised by every ingest that inserts, changes or deletes a record
//!   of the source (an ingest that finds everything unchanged leaves it), so "has anything
//!   this workspace holds changed" is one indexed read of its sources, not a scan.
//! - `job_results`: one row per (workspace, job), the last clean run's: the inputs it saw
//!   (source versions, suppressions), its config's fingerprint, its clock and the instant
//!   until which its result stands. A run that may change state without finishing cleanly
//!   deletes the row first, so a row is only ever there for a result that is whole.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum JobResults {
    Table,
    WorkspaceId,
    Job,
    RunId,
    Inputs,
    Config,
    AsOf,
    StableUntil,
}

#[derive(DeriveIden)]
enum Sources {
    Table,
    DataVersion,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if !m.has_column("sources", "data_version").await? {
            m.alter_table(
                Table::alter()
                    .table(Sources::Table)
                    .add_column(big_integer(Sources::DataVersion).default(0))
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(JobResults::Table)
                .col(string(JobResults::WorkspaceId))
                .col(string(JobResults::Job))
                .col(big_integer(JobResults::RunId))
                .col(text(JobResults::Inputs))
                .col(string(JobResults::Config))
                .col(big_integer(JobResults::AsOf))
                .col(big_integer(JobResults::StableUntil))
                .primary_key(
                    Index::create()
                        .col(JobResults::WorkspaceId)
                        .col(JobResults::Job),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
