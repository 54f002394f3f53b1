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
//! - [`OpenApi`]: checks a request against a vendor's OpenAPI file, so a fake refuses what the
//!   vendor would.
//! - [`plugin`]: builds a plugin package's `cdylib` and returns its path.
//!
//! It is a dev-dependency of plugin crates and a dependency of the `cohort` binary (for `plugins
//! check`); nothing in a run depends on it.
#![warn(missing_docs)]

mod example;
pub mod openapi;
mod server;

use std::path::PathBuf;
use std::sync::Mutex;

use cohort_plugin_api::sdk::Level;
use cohort_plugin_host::LogSink;
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
