//! Per-customer totals, kept up to date as orders and events are upserted (see `totals`), so
//! that a run reads one row per customer and source instead of the whole order history.
//!
//! - `order_totals`: one row per (source, customer) with live orders: record and order
//!   counts, items, spend net of refunds, first and last order, latest fact of any kind.
//! - `event_totals`: one row per (source, customer, kind): how many events, and the latest.
//! - An index on `(source_id, customer_id)` of `orders` and `events`: when a change removes a
//!   customer's extreme (the last order is cancelled) or records are deleted, that customer is
//!   recomputed from their records, found through it.
//! - `sources.totals_ready`: 0 for a source whose records predate this migration. The store
//!   computes those sources' totals once, when it is next opened (`Store::migrate`), and sets
//!   it; a source created since starts ready, as its totals are kept from its first record.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum OrderTotals {
    Table,
    SourceId,
    CustomerId,
    Records,
    Orders,
    Items,
    Spent,
    FirstAt,
    LastAt,
    LatestAt,
}

#[derive(DeriveIden)]
enum EventTotals {
    Table,
    SourceId,
    CustomerId,
    Kind,
    Count,
    LastAt,
}

#[derive(DeriveIden)]
enum Sources {
    Table,
    TotalsReady,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite: clustered on the key, as the record tables are, so a customer's row is one
        // B-tree descent and a source's rows one range.
        let clustered = |t: &mut TableCreateStatement| {
            if m.get_database_backend() == sea_orm::DbBackend::Sqlite {
                t.extra("WITHOUT ROWID");
            }
            t.to_owned()
        };
        m.create_table(clustered(
            Table::create()
                .if_not_exists()
                .table(OrderTotals::Table)
                .col(big_integer(OrderTotals::SourceId))
                .col(string(OrderTotals::CustomerId))
                .col(big_integer(OrderTotals::Records))
                .col(big_integer(OrderTotals::Orders))
                .col(big_integer(OrderTotals::Items))
                .col(big_integer(OrderTotals::Spent))
                .col(big_integer_null(OrderTotals::FirstAt))
                .col(big_integer_null(OrderTotals::LastAt))
                .col(big_integer_null(OrderTotals::LatestAt))
                .primary_key(
                    Index::create()
                        .col(OrderTotals::SourceId)
                        .col(OrderTotals::CustomerId),
                ),
        ))
        .await?;
        m.create_table(clustered(
            Table::create()
                .if_not_exists()
                .table(EventTotals::Table)
                .col(big_integer(EventTotals::SourceId))
                .col(string(EventTotals::CustomerId))
                .col(string(EventTotals::Kind))
                .col(big_integer(EventTotals::Count))
                .col(big_integer_null(EventTotals::LastAt))
                .primary_key(
                    Index::create()
                        .col(EventTotals::SourceId)
                        .col(EventTotals::CustomerId)
                        .col(EventTotals::Kind),
                ),
        ))
        .await?;
        for table in ["orders", "events"] {
            m.create_index(
                Index::create()
                    .if_not_exists()
                    .name(format!("{table}_customer"))
                    .table(Alias::new(table))
                    .col(Alias::new("source_id"))
                    .col(Alias::new("customer_id"))
                    .to_owned(),
            )
            .await?;
        }
        if !m.has_column("sources", "totals_ready").await? {
            m.alter_table(
                Table::alter()
                    .table(Sources::Table)
                    .add_column(integer(Sources::TotalsReady).default(0))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
