//! Unified profiles (`[identity]`): which person each customer record belongs to.
//!
//! - `person_links` maps a live customer record (its source's name and its id there) to the
//!   person it was last resolved into. The next run resolves from it, so person ids stay put.
//! - `person_counters` holds the next person number of a workspace: ids are handed out in
//!   order and never reused, even when the highest one is retired in a merge. A workspace
//!   without a row here has never been resolved.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm::DbBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum PersonLinks {
    Table,
    WorkspaceId,
    Source,
    CustomerId,
    PersonId,
}

#[derive(DeriveIden)]
enum PersonCounters {
    Table,
    WorkspaceId,
    Next,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let postgres = m.get_database_backend() == DbBackend::Postgres;
        let mut customer_id = string(PersonLinks::CustomerId);
        if postgres {
            // Byte order, as the record tables: ids sort the same on both backends.
            customer_id.extra("COLLATE \"C\"");
        }
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(PersonLinks::Table)
                .col(string(PersonLinks::WorkspaceId))
                .col(string(PersonLinks::Source))
                .col(customer_id)
                .col(string(PersonLinks::PersonId))
                .primary_key(
                    Index::create()
                        .col(PersonLinks::WorkspaceId)
                        .col(PersonLinks::Source)
                        .col(PersonLinks::CustomerId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("person_links_workspace")
                        .from(PersonLinks::Table, PersonLinks::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("person_links_person")
                .table(PersonLinks::Table)
                .col(PersonLinks::WorkspaceId)
                .col(PersonLinks::PersonId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .if_not_exists()
                .table(PersonCounters::Table)
                .col(string(PersonCounters::WorkspaceId).primary_key())
                .col(big_integer(PersonCounters::Next))
                .foreign_key(
                    ForeignKey::create()
                        .name("person_counters_workspace")
                        .from(PersonCounters::Table, PersonCounters::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
