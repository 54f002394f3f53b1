//! Requests Meta already took, kept in the host's durable state (ABI 1.2): a run killed after
//! a request and before Cohort recorded its outcome finds it here when it runs again, and
//! answers the same operations without sending them twice.
//!
//! One entry per request, under the chunk's key (the same operations give the same key in
//! every run). On a host without state the ledger is off, and a repeated request only sends
//! again what Meta already holds: adding or removing the same hashes twice changes nothing.

use cohort_plugin_api::prelude::*;
use serde_json::json;

/// The ledger of requests sent.
#[derive(Debug)]
pub struct Ledger {
    host: Host,
    enabled: bool,
}

impl Ledger {
    /// A ledger in the host's state, if it has one.
    pub fn new(host: Host) -> Ledger {
        Ledger {
            host,
            enabled: true,
        }
    }

    /// Whether the request under `key` was sent and taken before.
    pub fn holds(&mut self, key: &str) -> bool {
        if !self.enabled {
            return false;
        }
        match self.host.state_get(key) {
            Ok(found) => found.is_some(),
            // No state here (an older host, the conformance kit), or none that answers: the
            // request is sent again, which is harmless (see the module doc).
            Err(e) => {
                self.off(&e);
                false
            }
        }
    }

    /// Records that the request under `key` was taken, with its row count.
    pub fn record(&mut self, key: &str, rows: usize) {
        if !self.enabled {
            return;
        }
        if let Err(e) = self.host.state_put(key, Some(&json!({"rows": rows}))) {
            self.off(&e);
        }
    }

    /// Turns the ledger off for this instance, saying why once.
    fn off(&mut self, why: &PluginError) {
        self.enabled = false;
        if !matches!(why, PluginError::Unsupported(_)) {
            self.host.log_with(
                Level::Warn,
                "No request ledger: a run killed mid-push may send some requests again",
                &json!({"error": why.to_string()}),
            );
        }
    }
}
