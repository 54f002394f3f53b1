//! Cohort's store: everything Cohort keeps between runs, in SQLite or PostgreSQL.
//!
//! It owns persistence (sea-orm entities and the bulk SQL beside them), the schema and its
//! migrations (run at every connect), and workspace scoping: [`Store::workspace`] hands out a
//! [`WorkspaceStore`], the only way to reach a workspace's rows, and every one of its queries
//! filters on the workspace id. Nothing else in the crate is public that could build a query.
//!
//! It must not decide anything about the data: no segment logic, no features, no diffing of
//! memberships, no templates, no HTTP. It stores records as the sources sent them (keyed by
//! workspace, source and external id, with a content hash to tell changes from repeats) and
//! reads them back in bulk for the core to compute on.
//!
//! Backends: SQLite by default (`sqlite://cohort.db?mode=rwc`, WAL, `synchronous=NORMAL`, a busy
//! timeout, foreign keys on) and PostgreSQL by URL. Bulk ingest uses multi-row upserts on
//! SQLite (sized to its parameter limit) and, on PostgreSQL, a key lookup then binary `COPY`
//! for new rows (see `ingest`); reads stream rows so memory stays flat however many orders
//! there are.
#![warn(missing_docs)]

mod entity;
mod error;
mod identity;
mod ingest;
mod migration;
mod queue;
mod read;
mod results;
mod runs;
mod state;
mod totals;
mod types;
mod workspace;

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, EntityTrait, Set, Statement,
};
use sea_orm_migration::MigratorTrait;

pub use error::StoreError;
pub use identity::{IdentityUpdate, RecordKey, StoredIdentity};
pub use queue::{Claim, DaemonLease, Settle, Tick};
pub use results::{Inputs, JobResult};
pub use runs::{Begun, Holder, Owner, RunLease};
pub use types::{
    Backend, DestinationState, DestinationStatus, PendingPush, RecordError, Records, RunId, RunRow,
    RunStatus, SegmentVersion, Stream, SuppressionReason, Sweep, Upserted, WorkspaceInfo,
};
pub use workspace::WorkspaceStore;

use crate::entity::workspaces;
pub use crate::error::redact_url;
use crate::error::scrub;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that overrides the configured database URL.
pub const DATABASE_URL_ENV: &str = "COHORT_DATABASE_URL";

/// A connection pool to one database, with its schema migrated.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    backend: Backend,
    /// The URL with the password redacted, for messages.
    location: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or `postgres://USER[:PASSWORD]@HOST/DB`)
    /// and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::open(url, None).await
    }

    /// Like [`Store::connect`], inside PostgreSQL schema `schema`: creates it if needed and
    /// sets `search_path` on every pooled connection. Tests and benchmarks use it to isolate
    /// themselves; several deployments may share a database this way. SQLite has no schemas:
    /// use another file.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Store, StoreError> {
        Store::open(url, Some(schema)).await
    }

    /// Drops PostgreSQL schema `schema` and everything in it (tests and benchmarks clean up
    /// with it).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        check_schema_name(schema)?;
        if backend_of(url)? != Backend::Postgres {
            return Err(StoreError::Invalid(
                "schemas exist only on PostgreSQL".to_owned(),
            ));
        }
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        preflight_postgres(url, Some(&drop)).await
    }

    async fn open(url: &str, schema: Option<&str>) -> Result<Store, StoreError> {
        let backend = backend_of(url)?;
        if let Some(schema) = schema {
            check_schema_name(schema)?;
            if backend != Backend::Postgres {
                return Err(StoreError::Invalid(format!(
                    "schema `{schema}` asked for, but schemas exist only on PostgreSQL"
                )));
            }
        }
        if backend == Backend::Postgres {
            let create = schema.map(|s| format!("CREATE SCHEMA IF NOT EXISTS \"{s}\""));
            preflight_postgres(url, create.as_deref()).await?;
        }
        let pool_size = match backend {
            // Every connection to an in-memory SQLite database opens a database of its own.
            Backend::Sqlite if url.contains(":memory:") || url.contains("mode=memory") => 1,
            // WAL lets readers run beside the one writer.
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        };
        // SQLite has no advisory locks, and two processes opening a new store together (two
        // runs, a run and `cohort runs list`) race twice: the first connection turns a new
        // file to WAL, which fails at once with "database is locked" while the other holds
        // the file (no busy wait applies), and both would create the tables. A lock file
        // beside the database serialises opening and migrating; dropping it releases it.
        let _opening = match (backend, sqlite_file(url)) {
            (Backend::Sqlite, Some(db)) => {
                Some(lock_file(db.with_extension("migrate-lock")).await?)
            }
            _ => None,
        };
        let store = Store::open_pool(url, schema, pool_size).await?;
        store.migrate().await?;
        Ok(store)
    }

    async fn open_pool(
        url: &str,
        schema: Option<&str>,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        let backend = backend_of(url)?;
        let location = redact_url(url);
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .max_connections(max_connections)
            .min_connections(0)
            .connect_timeout(CONNECT_TIMEOUT)
            .acquire_timeout(Duration::from_secs(60))
            // Statements are not logged: they may carry customer data.
            .sqlx_logging(false);
        if let Some(schema) = schema {
            options.set_schema_search_path(schema.to_owned());
        }
        if backend == Backend::Sqlite {
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
                    // 64 MiB of page cache per connection (the default is 2 MiB): a bulk load
                    // updates indexes far larger than that.
                    .pragma("cache_size", "-65536")
            });
        }
        let db = Database::connect(options)
            .await
            .map_err(|err| StoreError::Connect {
                url: location.clone(),
                message: scrub(&err.to_string(), url),
            })?;
        Ok(Store {
            db,
            backend,
            location,
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migration_error = |err: sea_orm::DbErr| StoreError::Migration(err.to_string());
        if self.backend == Backend::Postgres {
            // Two daemons starting together must not both create the tables: a session lock,
            // keyed by schema, held on one pinned connection while the pool migrates.
            let pool = self.db.get_postgres_connection_pool();
            let mut conn = pool.acquire().await?;
            sea_orm::sqlx::query(
                "SELECT pg_advisory_lock(hashtextextended('cohort-migrate:' || current_schema(), 0))",
            )
            .execute(&mut *conn)
            .await?;
            let result = match migration::Migrator::up(&self.db, None).await {
                Ok(()) => totals::ensure_ready(&self.db, None).await,
                Err(e) => Err(migration_error(e)),
            };
            sea_orm::sqlx::query(
                "SELECT pg_advisory_unlock(hashtextextended('cohort-migrate:' || current_schema(), 0))",
            )
            .execute(&mut *conn)
            .await?;
            result
        } else {
            // `open` holds the store's lock file meanwhile.
            migration::Migrator::up(&self.db, None)
                .await
                .map_err(migration_error)?;
            totals::ensure_ready(&self.db, None).await
        }
    }

    /// Creates the workspace, or updates its name, time zone and currency. A workspace that
    /// is already as given is not written: every run calls this, and a write is a commit.
    pub async fn ensure_workspace(&self, w: &WorkspaceInfo) -> Result<(), StoreError> {
        let now = Utc::now();
        let differs = |c: workspaces::Column| {
            Expr::col((workspaces::Entity, c)).ne(Expr::col((Alias::new("excluded"), c)))
        };
        let row = workspaces::ActiveModel {
            id: Set(w.id.clone()),
            name: Set(w.name.clone()),
            timezone: Set(w.timezone.clone()),
            currency: Set(w.currency.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        workspaces::Entity::insert(row)
            .on_conflict(
                OnConflict::column(workspaces::Column::Id)
                    .update_columns([
                        workspaces::Column::Name,
                        workspaces::Column::Timezone,
                        workspaces::Column::Currency,
                        workspaces::Column::UpdatedAt,
                    ])
                    .action_and_where(
                        differs(workspaces::Column::Name)
                            .or(differs(workspaces::Column::Timezone))
                            .or(differs(workspaces::Column::Currency)),
                    )
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Every workspace the store knows, by id.
    pub async fn workspaces(&self) -> Result<Vec<WorkspaceInfo>, StoreError> {
        use sea_orm::QueryOrder;
        let rows = workspaces::Entity::find()
            .order_by_asc(workspaces::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| WorkspaceInfo {
                id: r.id,
                name: r.name,
                timezone: r.timezone,
                currency: r.currency,
            })
            .collect())
    }

    /// The handle to workspace `id`'s data; every query through it is scoped to `id`.
    pub fn workspace(&self, id: &str) -> WorkspaceStore {
        WorkspaceStore::new(self.db.clone(), self.backend, id)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL, password redacted, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Bytes the database takes on disk: the SQLite file with its WAL, or the PostgreSQL
    /// tables and indexes of the current schema.
    pub async fn size_bytes(&self) -> Result<u64, StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
            }
            Backend::Postgres => {
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r'"
            }
        };
        let row = self
            .db
            .query_one_raw(Statement::from_string(self.db.get_database_backend(), sql))
            .await?;
        let bytes: i64 = match row {
            Some(row) => row.try_get_by_index(0)?,
            None => 0,
        };
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    /// Closes the pool, waiting for connections to finish (SQLite checkpoints its WAL).
    pub async fn close(self) {
        let _ = self.db.close().await;
    }
}

/// One direct connection before the pool: a server that is down fails here at once (the pool
/// would keep retrying until its acquire timeout), and schema DDL runs before any pooled
/// connection sets its `search_path`.
async fn preflight_postgres(url: &str, sql: Option<&str>) -> Result<(), StoreError> {
    use sea_orm::sqlx::postgres::PgConnectOptions;
    use sea_orm::sqlx::{ConnectOptions as _, Connection as _, Executor as _};

    let connect_error = |message: String| StoreError::Connect {
        url: redact_url(url),
        message: scrub(&message, url),
    };
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e: sea_orm::sqlx::Error| connect_error(e.to_string()))?;
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
        .await
        .map_err(|_| connect_error(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| connect_error(e.to_string()))?;
    if let Some(sql) = sql {
        conn.execute(sea_orm::sqlx::AssertSqlSafe(sql)).await?;
    }
    conn.close().await?;
    Ok(())
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// The file of a SQLite URL (`sqlite://PATH?…`, `sqlite:PATH`); `None` in memory.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path.starts_with(":memory:") || url.contains("mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// Takes an exclusive lock on `path` (created if missing), waiting for another process to
/// release it.
async fn lock_file(path: std::path::PathBuf) -> Result<std::fs::File, StoreError> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| StoreError::Migration(format!("taking the migration lock: {e}")))?
    .map_err(|e| StoreError::Migration(format!("taking the migration lock: {e}")))
}

/// Schema names are spliced into SQL, so only plain identifiers pass.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "schema name `{schema}`: use lower-case letters, digits and `_`, not starting with a digit"
        )))
    }
}
