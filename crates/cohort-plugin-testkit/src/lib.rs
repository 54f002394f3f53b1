//! Testing Cohort plugins for real: real libraries, through the real ABI, against real HTTP on
//! 127.0.0.1.
//!
//! - [`FakeServer`]: an in-process HTTP server, one per test, with routes, request recording and
//!   fault injection (any status, `Retry-After`, delays, dropped connections). A connector's tests
//!   point its config at [`FakeServer::url`] and drive the built `cdylib` through the host, so the
//!   host's retries, rate limits and redaction are part of what is tested.
//! - [`check_example`]: the conformance kit run on the example a plugin ships in its manifest,
//!   exactly as `cohort plugins check PATH` runs it.
//! - [`Logs`]: collects what plugins log, to assert on it (that a secret never appears, say).
//! - [`MemoryState`]: the host's plugin state kept in memory, as the store keeps it across runs.
//! - [`OpenApi`]: checks a request against a vendor's OpenAPI file, so a fake refuses what the
//!   vendor would.
//! - [`plugin`]: builds a plugin package's `cdylib` and returns its path; [`cohort_binary`]
//!   builds the `cohort` CLI beside them, for end-to-end runs.
//! - [`bench`]: a destination's benchmark driven as the engine drives it (release build, host
//!   batches, timed pushes), shared by the vendors' bench examples.
//!
//! It is a dev-dependency of plugin crates and a dependency of the `cohort` binary (for `plugins
//! check`); nothing in a run depends on it.
#![warn(missing_docs)]

pub mod bench;
mod example;
pub mod openapi;
mod server;

use std::path::PathBuf;
use std::sync::Mutex;

use cohort_plugin_api::sdk::Level;
use cohort_plugin_host::{LogSink, StateStore};
use serde_json::Value;

pub use example::{Checked, Prepared, check_example};
pub use openapi::OpenApi;
pub use server::{FakeServer, Recorded, Reply};

/// Builds `package`'s `cdylib` (debug) and returns its path.
///
/// # Panics
/// When cargo cannot build it: the test cannot go on.
pub fn plugin(package: &str) -> PathBuf {
    cohort_plugin_host::dev::build_cdylib(package, false).unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the `cohort` binary (debug) beside the `plugins` packages' `cdylib`s, where it
/// discovers them, and returns its path: an end-to-end test runs the real CLI with them.
///
/// # Panics
/// When cargo cannot build them: the test cannot go on.
pub fn cohort_binary(plugins: &[&str]) -> PathBuf {
    let mut dir = None;
    for package in plugins {
        dir = plugin(package).parent().map(PathBuf::from);
    }
    let dir = dir.unwrap_or_else(|| panic!("name at least one plugin to build cohort beside"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let built = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "cohort", "--bin", "cohort"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(built, "building cohort failed");
    dir.join("cohort")
}

/// Collects log lines as `LEVEL plugin: message fields`.
#[derive(Debug, Default)]
pub struct Logs(Mutex<Vec<String>>);

impl Logs {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every line so far, joined.
    pub fn all(&self) -> String {
        self.lines().join("\n")
    }
}

impl LogSink for Logs {
    fn log(&self, plugin: &str, level: Level, message: &str, fields: &Value) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{level:?} {plugin}: {message} {fields}"));
    }
}

/// A plugin's state ([`StateStore`]) kept in memory: share one between instances to stand for
/// the store keeping it across runs (a bulk operation's id, a send ledger).
#[derive(Debug, Default)]
pub struct MemoryState(Mutex<std::collections::BTreeMap<String, Value>>);

impl StateStore for MemoryState {
    fn get(&self, key: &str) -> Result<Option<Value>, String> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned())
    }

    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match value {
            Some(v) => map.insert(key.to_owned(), v.clone()),
            None => map.remove(key),
        };
        Ok(())
    }
}
