//! Schema migrations, applied in order at every connect.
//!
//! A migration, once released, is never edited: a change to the schema is a new file here.
//! The tests run every migration on both SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m0001_initial;

/// Every migration of the store, oldest first.
#[derive(Debug)]
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m0001_initial::Migration)]
    }

    fn migration_table_name() -> DynIden {
        "cohort_migrations".into_iden()
    }
}
