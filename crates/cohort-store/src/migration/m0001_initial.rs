//! The first schema: workspaces, records, cursors, segments, destination state, runs and
//! suppressions.
//!
//! Record instants are `BIGINT` seconds since the epoch and money is `BIGINT` ten-thousandths
//! (`cohort_core::money`), so values round-trip exactly and scan cheaply on both backends.
//! Operational instants (runs, memberships, state) are timestamps with a time zone, for people
//! reading the tables. The record tables' JSON columns are `json` on PostgreSQL, not `jsonb`:
//! they are written in bulk and read back whole, never queried inside, and `jsonb` parsed and
//! key-sorted every customer on the way in (sorting alone was a tenth of the server's time).
//! The record tables carry no foreign key to `workspaces`: PostgreSQL
//! checks one per inserted row, which costs a bulk load dearly, so ingest checks the workspace
//! once per call instead. For the same reason the record tables have no index but their key:
//! every read path today scans a workspace whole (the key's prefix). A per-customer read
//! (`orders of customer X`) would add `(workspace_id, customer_id)` in a later migration.
//!
//! Every statement is `IF NOT EXISTS`: SQLite runs these DDL statements one by one, so a
//! process killed halfway through the first start leaves some tables behind, and the next
//! start must finish the migration instead of failing on them.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    Name,
    Timezone,
    Currency,
    CreatedAt,
    UpdatedAt,
}

/// Columns shared by the three record tables.
#[derive(DeriveIden)]
enum Rec {
    WorkspaceId,
    Source,
    ExternalId,
    CustomerId,
    Hash,
    Revision,
}

#[derive(DeriveIden)]
enum Customers {
    Table,
    Email,
    AcceptsEmailMarketing,
    AcceptsSmsMarketing,
    CreatedAt,
    UpdatedAt,
    Data,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    CreatedAt,
    Total,
    Refunded,
    Currency,
    ItemCount,
    CancelledAt,
    LineItems,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Kind,
    OccurredAt,
    Properties,
}

#[derive(DeriveIden)]
enum SourceCursors {
    Table,
    WorkspaceId,
    Source,
    Stream,
    Cursor,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SegmentDefinitions {
    Table,
    Id,
    WorkspaceId,
    Name,
    Version,
    Hash,
    Expression,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    WorkspaceId,
    Segment,
    CustomerId,
    Since,
}

#[derive(DeriveIden)]
enum DestinationState {
    Table,
    WorkspaceId,
    Campaign,
    CustomerId,
    Status,
    PayloadHash,
    IdempotencyKey,
    Entries,
    PendingAction,
    PendingKey,
    PendingHash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobRuns {
    Table,
    Id,
    WorkspaceId,
    Job,
    Trigger,
    DryRun,
    Status,
    StartedAt,
    FinishedAt,
    Summary,
    Error,
}

#[derive(DeriveIden)]
enum RunErrors {
    Table,
    Id,
    RunId,
    WorkspaceId,
    Stage,
    Location,
    Message,
}

#[derive(DeriveIden)]
enum Suppressions {
    Table,
    WorkspaceId,
    Email,
    Reason,
    Source,
    CreatedAt,
}

fn workspace_fk(table: impl IntoIden, name: &str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(table, Rec::WorkspaceId)
        .to(Workspaces::Table, Workspaces::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

/// A record table: keyed by (workspace, source, external id), clustered on that key.
///
/// No surrogate id: the key is the only index a bulk load maintains, and on SQLite the table
/// is `WITHOUT ROWID`, so a workspace's rows lie together and stream in one range scan. On
/// PostgreSQL the key columns compare bytewise (`COLLATE "C"`, as SQLite's do): ids are opaque,
/// never sorted for people, and the database's locale collation made every index comparison
/// of a bulk load go through `strcoll`.
fn record_table(
    m: &SchemaManager<'_>,
    table: impl IntoIden,
    columns: Vec<ColumnDef>,
) -> TableCreateStatement {
    let postgres = m.get_database_backend() == sea_orm::DbBackend::Postgres;
    let key = |column: Rec| {
        let mut c = string(column);
        if postgres {
            c.extra("COLLATE \"C\"");
        }
        c
    };
    let mut t = Table::create();
    t.if_not_exists()
        .table(table)
        .col(key(Rec::WorkspaceId))
        .col(key(Rec::Source))
        .col(key(Rec::ExternalId));
    for c in columns {
        t.col(c);
    }
    t.col(big_integer(Rec::Hash))
        .col(big_integer(Rec::Revision))
        .primary_key(
            Index::create()
                .col(Rec::WorkspaceId)
                .col(Rec::Source)
                .col(Rec::ExternalId),
        );
    if m.get_database_backend() == sea_orm::DbBackend::Sqlite {
        t.extra("WITHOUT ROWID");
    }
    t.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(Workspaces::Table)
                .col(string(Workspaces::Id).primary_key())
                .col(string(Workspaces::Name))
                .col(string(Workspaces::Timezone))
                .col(string(Workspaces::Currency))
                .col(timestamp_with_time_zone(Workspaces::CreatedAt))
                .col(timestamp_with_time_zone(Workspaces::UpdatedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(record_table(
            m,
            Customers::Table,
            vec![
                string_null(Customers::Email),
                boolean(Customers::AcceptsEmailMarketing),
                boolean(Customers::AcceptsSmsMarketing),
                big_integer_null(Customers::CreatedAt),
                big_integer_null(Customers::UpdatedAt),
                json(Customers::Data),
            ],
        ))
        .await?;

        m.create_table(record_table(
            m,
            Orders::Table,
            vec![
                string(Rec::CustomerId),
                big_integer_null(Orders::CreatedAt),
                big_integer(Orders::Total),
                big_integer(Orders::Refunded),
                string_null(Orders::Currency),
                big_integer(Orders::ItemCount),
                big_integer_null(Orders::CancelledAt),
                json_null(Orders::LineItems),
            ],
        ))
        .await?;

        m.create_table(record_table(
            m,
            Events::Table,
            vec![
                string(Rec::CustomerId),
                string(Events::Kind),
                big_integer(Events::OccurredAt),
                json(Events::Properties),
            ],
        ))
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(SourceCursors::Table)
                .col(string(SourceCursors::WorkspaceId))
                .col(string(SourceCursors::Source))
                .col(string(SourceCursors::Stream))
                .col(json_binary(SourceCursors::Cursor))
                .col(timestamp_with_time_zone(SourceCursors::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(SourceCursors::WorkspaceId)
                        .col(SourceCursors::Source)
                        .col(SourceCursors::Stream),
                )
                .foreign_key(&mut workspace_fk(
                    SourceCursors::Table,
                    "source_cursors_workspace",
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(SegmentDefinitions::Table)
                .col(big_pk_auto(SegmentDefinitions::Id))
                .col(string(SegmentDefinitions::WorkspaceId))
                .col(string(SegmentDefinitions::Name))
                .col(big_integer(SegmentDefinitions::Version))
                .col(string(SegmentDefinitions::Hash))
                .col(text(SegmentDefinitions::Expression))
                .col(timestamp_with_time_zone(SegmentDefinitions::CreatedAt))
                .foreign_key(&mut workspace_fk(
                    SegmentDefinitions::Table,
                    "segment_definitions_workspace",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("segment_definitions_version")
                .table(SegmentDefinitions::Table)
                .col(SegmentDefinitions::WorkspaceId)
                .col(SegmentDefinitions::Name)
                .col(SegmentDefinitions::Version)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(Memberships::Table)
                .col(string(Memberships::WorkspaceId))
                .col(string(Memberships::Segment))
                .col(string(Memberships::CustomerId))
                .col(timestamp_with_time_zone(Memberships::Since))
                .primary_key(
                    Index::create()
                        .col(Memberships::WorkspaceId)
                        .col(Memberships::Segment)
                        .col(Memberships::CustomerId),
                )
                .foreign_key(&mut workspace_fk(
                    Memberships::Table,
                    "memberships_workspace",
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(DestinationState::Table)
                .col(string(DestinationState::WorkspaceId))
                .col(string(DestinationState::Campaign))
                .col(string(DestinationState::CustomerId))
                .col(string(DestinationState::Status))
                .col(string(DestinationState::PayloadHash))
                .col(string(DestinationState::IdempotencyKey))
                .col(big_integer(DestinationState::Entries))
                .col(string_null(DestinationState::PendingAction))
                .col(string_null(DestinationState::PendingKey))
                .col(string_null(DestinationState::PendingHash))
                .col(timestamp_with_time_zone(DestinationState::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(DestinationState::WorkspaceId)
                        .col(DestinationState::Campaign)
                        .col(DestinationState::CustomerId),
                )
                .foreign_key(&mut workspace_fk(
                    DestinationState::Table,
                    "destination_state_workspace",
                ))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(JobRuns::Table)
                .col(big_pk_auto(JobRuns::Id))
                .col(string(JobRuns::WorkspaceId))
                .col(string(JobRuns::Job))
                .col(string(JobRuns::Trigger))
                .col(boolean(JobRuns::DryRun))
                .col(string(JobRuns::Status))
                .col(timestamp_with_time_zone(JobRuns::StartedAt))
                .col(timestamp_with_time_zone_null(JobRuns::FinishedAt))
                .col(json_binary_null(JobRuns::Summary))
                .col(text_null(JobRuns::Error))
                .foreign_key(&mut workspace_fk(JobRuns::Table, "job_runs_workspace"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("job_runs_workspace_job")
                .table(JobRuns::Table)
                .col(JobRuns::WorkspaceId)
                .col(JobRuns::Job)
                .col(JobRuns::Status)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(RunErrors::Table)
                .col(big_pk_auto(RunErrors::Id))
                .col(big_integer(RunErrors::RunId))
                .col(string(RunErrors::WorkspaceId))
                .col(string(RunErrors::Stage))
                .col(text(RunErrors::Location))
                .col(text(RunErrors::Message))
                .foreign_key(
                    ForeignKey::create()
                        .name("run_errors_run")
                        .from(RunErrors::Table, RunErrors::RunId)
                        .to(JobRuns::Table, JobRuns::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(&mut workspace_fk(RunErrors::Table, "run_errors_workspace"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("run_errors_by_run")
                .table(RunErrors::Table)
                .col(RunErrors::WorkspaceId)
                .col(RunErrors::RunId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .if_not_exists()
                .table(Suppressions::Table)
                .col(string(Suppressions::WorkspaceId))
                .col(string(Suppressions::Email))
                .col(string(Suppressions::Reason))
                .col(string(Suppressions::Source))
                .col(timestamp_with_time_zone(Suppressions::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(Suppressions::WorkspaceId)
                        .col(Suppressions::Email),
                )
                .foreign_key(&mut workspace_fk(
                    Suppressions::Table,
                    "suppressions_workspace",
                ))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
