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
            Err(PluginError::Unsupported(_)) => {
                self.enabled = false;
                false
            }
            // A state that cannot be read sends again: harmless, see the module doc.
            Err(_) => false,
        }
    }

    /// Records that the request under `key` was taken, with its row count.
    pub fn record(&mut self, key: &str, rows: usize) {
        if !self.enabled {
            return;
        }
        match self.host.state_put(key, Some(&json!({"rows": rows}))) {
            Ok(()) => {}
            Err(PluginError::Unsupported(_)) => self.enabled = false,
            Err(e) => self.host.log_with(
                Level::Warn,
                "Could not record a request Meta took; a run killed now would send it again",
                &json!({"key": key, "error": e.to_string()}),
            ),
        }
    }
}
