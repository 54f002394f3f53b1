//! Record tables keyed by `(source_id, id_len, external_id)` instead of
//! `(workspace_id, source, external_id)`.
//!
//! - A new `sources` table gives each (workspace, source) pair a `BIGINT` id. The key was three
//!   text columns; every row of a bulk load compared all three in every index node it passed
//!   (the first two are equal within a load), and PostgreSQL's key index was half again as
//!   large.
//! - `id_len`, the external id's length in bytes, sorts ids shorter first, so numeric ids sort
//!   as numbers and a source's ids sort in the order it issues them. A load of increasing ids
//!   (order numbers, CSV row ids, Shopify ids) then appends to the key's B-tree instead of
//!   writing all over it, and PostgreSQL can look a batch's stored rows up with one range scan
//!   (see `ingest`). Byte order put "10" before "9", scattering every batch of ids.
//!
//! Figures are in docs/store.md. Workspace scoping is unchanged in meaning: a workspace's
//! records are those whose source belongs to it, and every read goes through `sources`.
//!
//! Existing stores are converted in place: per record table, a new table is created, rows are
//! copied with their source's id, the old table is dropped and the new one renamed. The
//! migration runs in one transaction on every backend, so a process killed halfway leaves the
//! store as it was.

// async_trait hides the manager's lifetime; naming it breaks the trait's signature.
#![allow(elided_lifetimes_in_paths)]

use sea_orm::{ConnectionTrait, DbBackend};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(Debug, DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Sources {
    Table,
    Id,
    WorkspaceId,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
}

/// A record table's data columns (after the key) as `(name, type)`, per backend: the same
/// columns m0001 created, in the same order.
struct RecordTable {
    name: &'static str,
    columns: &'static [(&'static str, Type)],
}

#[derive(Clone, Copy)]
enum Type {
    Text,
    TextNull,
    Int,
    IntNull,
    Bool,
    Json,
    JsonNull,
}

const RECORD_TABLES: [RecordTable; 3] = [
    RecordTable {
        name: "customers",
        columns: &[
            ("email", Type::TextNull),
            ("accepts_email_marketing", Type::Bool),
            ("accepts_sms_marketing", Type::Bool),
            ("created_at", Type::IntNull),
            ("updated_at", Type::IntNull),
            ("data", Type::Json),
        ],
    },
    RecordTable {
        name: "orders",
        columns: &[
            ("customer_id", Type::Text),
            ("created_at", Type::IntNull),
            ("total", Type::Int),
            ("refunded", Type::Int),
            ("currency", Type::TextNull),
            ("item_count", Type::Int),
            ("cancelled_at", Type::IntNull),
            ("line_items", Type::JsonNull),
        ],
    },
    RecordTable {
        name: "events",
        columns: &[
            ("customer_id", Type::Text),
            ("kind", Type::Text),
            ("occurred_at", Type::Int),
            ("properties", Type::Json),
        ],
    },
];

/// A record table named `name`: `(source_id, id_len, external_id, …columns, hash, revision)`,
/// with
/// the same column types m0001 gave the old one.
///
/// SQLite: `WITHOUT ROWID`, so a source's rows lie together in key order and a workspace
/// streams in one range scan per source. PostgreSQL: `COLLATE "C"` on the key, so index
/// comparisons are bytewise, as SQLite's are. The key constraint is named `{name}_pkey` so
/// that after the rename it can be given the name PostgreSQL gives a new table's key.
fn record_table(backend: DbBackend, name: &str, t: &RecordTable) -> TableCreateStatement {
    let postgres = backend == DbBackend::Postgres;
    let mut external_id = string(Alias::new("external_id"));
    if postgres {
        external_id.extra("COLLATE \"C\"");
    }
    let mut table = Table::create();
    table
        .table(Alias::new(name))
        .col(big_integer(Alias::new("source_id")))
        .col(integer(Alias::new("id_len")))
        .col(external_id);
    for &(column, ty) in t.columns {
        let column = Alias::new(column);
        table.col(match ty {
            Type::Text => string(column),
            Type::TextNull => string_null(column),
            Type::Int => big_integer(column),
            Type::IntNull => big_integer_null(column),
            Type::Bool => boolean(column),
            Type::Json => json(column),
            Type::JsonNull => json_null(column),
        });
    }
    table
        .col(big_integer(Alias::new("hash")))
        .col(big_integer(Alias::new("revision")))
        .primary_key(
            Index::create()
                .name(format!("{name}_pkey"))
                .col(Alias::new("source_id"))
                .col(Alias::new("id_len"))
                .col(Alias::new("external_id")),
        );
    if !postgres {
        table.extra("WITHOUT ROWID");
    }
    table.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on every backend (sea-orm-migration runs SQLite migrations without
    /// one by default): the copy and the drop must happen together or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let backend = m.get_database_backend();
        m.create_table(
            Table::create()
                .table(Sources::Table)
                .col(big_pk_auto(Sources::Id))
                .col(string(Sources::WorkspaceId))
                .col(string(Sources::Name))
                .col(timestamp_with_time_zone(Sources::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("sources_workspace")
                        .from(Sources::Table, Sources::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("sources_by_name")
                .table(Sources::Table)
                .col(Sources::WorkspaceId)
                .col(Sources::Name)
                .unique()
                .to_owned(),
        )
        .await?;

        let db = m.get_connection();
        for t in &RECORD_TABLES {
            let name = t.name;
            db.execute_unprepared(&format!(
                "INSERT INTO sources (workspace_id, name, created_at) \
                 SELECT DISTINCT workspace_id, source, CURRENT_TIMESTAMP FROM {name} \
                 WHERE true ON CONFLICT (workspace_id, name) DO NOTHING"
            ))
            .await?;
            let staged = format!("{name}_m0002");
            m.create_table(record_table(backend, &staged, t)).await?;
            let columns: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
            let columns = columns.join(", ");
            let from_old: Vec<String> = t.columns.iter().map(|(c, _)| format!("r.{c}")).collect();
            let bytes = match backend {
                DbBackend::Postgres => "octet_length(r.external_id)",
                _ => "length(CAST(r.external_id AS BLOB))",
            };
            db.execute_unprepared(&format!(
                "INSERT INTO {staged} (source_id, id_len, external_id, {columns}, hash, revision) \
                 SELECT s.id, {bytes}, r.external_id, {}, r.hash, r.revision FROM {name} r \
                 JOIN sources s ON s.workspace_id = r.workspace_id AND s.name = r.source",
                from_old.join(", ")
            ))
            .await?;
            db.execute_unprepared(&format!("DROP TABLE {name}")).await?;
            db.execute_unprepared(&format!("ALTER TABLE {staged} RENAME TO {name}"))
                .await?;
            if backend == DbBackend::Postgres {
                // A renamed table keeps its constraint's name; give the key its usual one.
                db.execute_unprepared(&format!(
                    "ALTER TABLE {name} RENAME CONSTRAINT {staged}_pkey TO {name}_pkey"
                ))
                .await?;
            }
        }
        Ok(())
    }
}
