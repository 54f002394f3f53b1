//! Records that are gone at their source, and durable state for plugins.
//!
//! - `deleted_at` (epoch seconds) on customers, orders and events: a tombstone. A record a
//!   source says is gone (an archived contact) or that a full pass did not send again (a row
//!   removed from an export) keeps its row, marked, so reads skip it and a record that comes
//!   back is revived rather than duplicated.
//! - `source_cursors.pass` names the full pass a stream is in, and `sweeps` holds, during a
//!   pass, the keys of the stream's live records the pass has not sent yet. A pass starts by
//!   copying every live key in; each page takes its keys out; the last page marks what is
//!   left deleted. Kept in tables, a pass survives a crash and resumes.
//! - `plugin_state` holds what plugins keep between runs (ABI 1.2 `state`), per workspace and
//!   config entry (`destination:NAME`, `source:NAME`).

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum SourceCursors {
    Table,
    Pass,
}

#[derive(DeriveIden)]
enum PluginState {
    Table,
    WorkspaceId,
    Scope,
    Key,
    Value,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER on SQLite; each is added only when missing, so a process killed
        // halfway leaves a store the next start completes.
        for table in ["customers", "orders", "events"] {
            if !m.has_column(table, "deleted_at").await? {
                m.alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(big_integer_null(Alias::new("deleted_at")))
                        .to_owned(),
                )
                .await?;
            }
        }
        if !m.has_column("source_cursors", "pass").await? {
            m.alter_table(
                Table::alter()
                    .table(SourceCursors::Table)
                    .add_column(string_null(SourceCursors::Pass))
                    .to_owned(),
            )
            .await?;
        }
        let postgres = m.get_database_backend() == DbBackend::Postgres;
        let mut external_id = string(Alias::new("external_id"));
        if postgres {
            external_id.extra("COLLATE \"C\"");
        }
        let mut sweeps = Table::create();
        sweeps
            .if_not_exists()
            .table(Alias::new("sweeps"))
            .col(big_integer(Alias::new("source_id")))
            .col(string(Alias::new("stream")))
            .col(integer(Alias::new("id_len")))
            .col(external_id)
            .primary_key(
                Index::create()
                    .col(Alias::new("source_id"))
                    .col(Alias::new("stream"))
                    .col(Alias::new("id_len"))
                    .col(Alias::new("external_id")),
            );
        if !postgres {
            sweeps.extra("WITHOUT ROWID");
        }
        m.create_table(sweeps.to_owned()).await?;
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(PluginState::Table)
                .col(string(PluginState::WorkspaceId))
                .col(string(PluginState::Scope))
                .col(string(PluginState::Key))
                .col(text(PluginState::Value))
                .col(timestamp_with_time_zone(PluginState::UpdatedAt))
                .primary_key(
                    Index::create()
                        .col(PluginState::WorkspaceId)
                        .col(PluginState::Scope)
                        .col(PluginState::Key),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("plugin_state_workspace")
                        .from(PluginState::Table, PluginState::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
