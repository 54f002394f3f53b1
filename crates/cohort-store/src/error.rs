//! What can go wrong in the store, sorted by what the caller can do about it.

use sea_orm::DbErr;
use sea_orm::sqlx;

use crate::types::RunId;

/// An error from the store.
///
/// The variants say what to do next: [`StoreError::is_retryable`] errors may pass if the same
/// call is made again later; the others will not until something (config, data, the caller's
/// code) changes. No variant ever shows a database password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names no backend this build knows. Fix the config or `COHORT_DATABASE_URL`.
    #[error(
        "unsupported database URL `{url}`: expected sqlite://PATH?mode=rwc or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl {
        /// The URL with any password replaced by `***`.
        url: String,
    },
    /// The database could not be reached or refused the login. Often passes on retry (server
    /// starting); otherwise check the URL and credentials.
    #[error("cannot connect to the database at {url}: {message}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the driver said, with the password scrubbed out.
        message: String,
    },
    /// Bringing the schema up to date failed. Not retryable: the database may be newer than
    /// this build, or was changed by hand.
    #[error("migrating the database schema failed: {0}")]
    Migration(String),
    /// The database is busy, locked or the connection dropped mid-call. Retry later.
    #[error("the database is busy or unreachable: {0}")]
    Unavailable(String),
    /// Data was written for a workspace that `Store::ensure_workspace` never created.
    #[error("workspace `{0}` is not in the store (call Store::ensure_workspace first)")]
    UnknownWorkspace(String),
    /// A run id that this workspace does not own.
    #[error("run {0} does not exist in this workspace")]
    UnknownRun(RunId),
    /// A stored value cannot be read back into its type: the row was written by something
    /// else, or by a newer build.
    #[error("stored {what} `{key}` cannot be read back: {reason}")]
    Corrupt {
        /// The kind of row (`customer`, `order`, `cursor`, …).
        what: &'static str,
        /// Its key.
        key: String,
        /// Why it failed.
        reason: String,
    },
    /// The run's lease on its workspace ran out and another process took the workspace over:
    /// this run was declared dead and must stop without writing its end.
    #[error(
        "this run lost its lease on the workspace (it was silent longer than the lease, and another run took over); its end was not recorded"
    )]
    LeaseLost,
    /// A second daemon on a SQLite store: SQLite has one writer and no row locks to share
    /// work with, so one daemon per database. Stop the other, or move to PostgreSQL.
    #[error(
        "another daemon ({owner}, started {since} UTC, last alive {alive} UTC) already runs on this SQLite database; SQLite allows one daemon per database, because it has no row locks (FOR UPDATE SKIP LOCKED) for daemons to share work with. Stop that daemon, or use PostgreSQL ([store] url = \"postgres://USER@HOST/DB\" or COHORT_DATABASE_URL) to run several"
    )]
    DaemonRunning {
        /// The running daemon (`host/pid`).
        owner: String,
        /// When it started.
        since: String,
        /// When it last proved alive.
        alive: String,
    },
    /// The caller passed something the store refuses (a bad schema name, an absurd value).
    #[error("invalid input to the store: {0}")]
    Invalid(String),
    /// Any other database error; not expected to pass on retry.
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// Whether the same call may succeed if made again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::Connect { .. }
        )
    }
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
                StoreError::Unavailable(err.to_string())
            }
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => classify_sqlx(e),
            _ => StoreError::Database(err.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        classify_sqlx(&err)
    }
}

/// SQLite BUSY/LOCKED and PostgreSQL serialization, deadlock, shutdown and connection classes
/// are worth a retry; the rest are not.
fn classify_sqlx(err: &sqlx::Error) -> StoreError {
    let retry = match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            let code = code.as_ref();
            // SQLite primary codes 5 (BUSY) and 6 (LOCKED), possibly extended (5 + 256·n).
            let sqlite_busy = code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6));
            let pg_transient = matches!(
                code,
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
            ) || code.starts_with("08");
            sqlite_busy || pg_transient
        }),
        _ => false,
    };
    if retry {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Database(err.to_string())
    }
}

/// The URL with the password of its userinfo replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

/// The password in the URL's userinfo, if any, so it can be scrubbed from driver messages.
pub(crate) fn password_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, _) = rest[..end].rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

/// `message` with every occurrence of the URL's password replaced by `***`.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    match password_of(url) {
        Some(password) => message.replace(password, "***"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_the_password_but_keeps_user_host_and_path() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db.internal:5432/cohort?sslmode=disable"),
            "postgres://app:***@db.internal:5432/cohort?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("sqlite://cohort.db?mode=rwc"),
            "sqlite://cohort.db?mode=rwc"
        );
    }

    #[test]
    fn scrubbing_removes_the_password_from_driver_messages() {
        let url = "postgres://app:hunter22@host/db";
        assert_eq!(
            scrub("password authentication failed: hunter22", url),
            "password authentication failed: ***"
        );
    }
}
