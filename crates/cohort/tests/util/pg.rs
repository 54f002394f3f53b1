//! A PostgreSQL schema of a test's own, for running the binary against PostgreSQL.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::process::Command;

/// PostgreSQL at 127.0.0.1:5432, database `test` (or `COHORT_TEST_POSTGRES_URL`), in a schema
/// of the test's own, dropped at the end.
pub struct PgSchema {
    base: String,
    name: String,
}

impl PgSchema {
    pub fn new(tag: &str) -> PgSchema {
        let base = std::env::var("COHORT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let name = format!("cohort_run_{tag}_{}", std::process::id());
        let schema = PgSchema { base, name };
        schema.psql(&format!(
            "DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}",
            schema.name
        ));
        schema
    }

    pub fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([self.base.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .expect("psql (PostgreSQL's client) must be installed for this test");
        assert!(
            out.status.success(),
            "PostgreSQL must be running at {} (.ci/run starts it): {}",
            self.base,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A URL whose connections use the schema.
    pub fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.base.as_str(),
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
            ])
            .output();
    }
}

impl PgSchema {
    /// Every row of every table of the schema, as `pg_dump` prints them.
    pub fn dump(&self) -> String {
        let out = Command::new("pg_dump")
            .args([self.base.as_str(), "--data-only", "--schema", &self.name])
            .output()
            .expect("pg_dump (PostgreSQL's client) must be installed for this test");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
