//! Runs one test body on SQLite and on PostgreSQL.
//!
//! SQLite: a fresh file in a temp dir. PostgreSQL: a schema of its own in the database at
//! `COHORT_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped
//! when the test ends, panicking or not. A PostgreSQL that is down fails the test with a
//! message saying so: the suite never passes by skipping half of itself.

use std::sync::atomic::{AtomicU64, Ordering};

use cohort_store::{Store, WorkspaceInfo};

pub(crate) const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub(crate) fn postgres_url() -> String {
    std::env::var("COHORT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// A store for one test, and what must be cleaned up after it.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    pub(crate) url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

impl TestDb {
    pub(crate) async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("cohort.db").display()
        );
        let store = Store::connect(&url).await.unwrap();
        TestDb {
            store,
            url,
            _dir: Some(dir),
            schema: None,
        }
    }

    pub(crate) async fn postgres() -> TestDb {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let url = postgres_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "cohort_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let store = match Store::connect_in_schema(&url, &schema).await {
            Ok(store) => store,
            Err(err) => panic!(
                "PostgreSQL is needed for the store tests and is not usable: {err}\n\
                 Start it (CI's .ci/run does: pg_ctlcluster ... main start), make sure database \
                 `test` exists with trust auth for 127.0.0.1, or point COHORT_TEST_POSTGRES_URL \
                 at another server."
            ),
        };
        TestDb {
            store,
            url,
            _dir: None,
            schema: Some(schema),
        }
    }

    /// Opens a second store on the same database (and schema), as another process would.
    #[allow(dead_code, reason = "not every test file opens a second store")]
    pub(crate) async fn reopen(&self) -> Store {
        match &self.schema {
            Some(schema) => Store::connect_in_schema(&self.url, schema).await.unwrap(),
            None => Store::connect(&self.url).await.unwrap(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(schema) = self.schema.take() else {
            return;
        };
        let url = self.url.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: clean up from a
        // thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(Store::drop_schema(&url, &schema))
        });
        if let Ok(Err(err)) = cleanup.join() {
            eprintln!("could not drop the test schema: {err}");
        }
    }
}

pub(crate) fn workspace(id: &str) -> WorkspaceInfo {
    WorkspaceInfo {
        id: id.to_owned(),
        name: format!("Workspace {id}"),
        timezone: "America/New_York".to_owned(),
        currency: "USD".to_owned(),
    }
}

/// `both!(name, |db| async { ... })` defines `name::sqlite` and `name::postgres`, each running
/// the body against a fresh database of that kind (`db: &TestDb`).
#[macro_export]
macro_rules! both {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($db: &$crate::util::TestDb) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::util::TestDb::sqlite().await;
                body(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = $crate::util::TestDb::postgres().await;
                body(&db).await;
            }
        }
    };
}
