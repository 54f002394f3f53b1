//! Ledgers in the host's durable state (ABI 1.2) for destinations whose vendor takes no
//! idempotency key.
//!
//! [`Ledger`], the sent-ledger of message senders (SMTP, SendGrid's Mail Send): the plugin remembers, in the host's durable state (ABI 1.2), every operation whose
//! message the vendor accepted. A resumed run, or the host retrying a batch whose outcomes it
//! never heard, finds the key there and answers `ok` without sending again.
//!
//! One window is always left: a crash after the vendor accepted and before the ledger's write
//! commits. Each plugin documents what tells the copy apart there (the same `Message-ID`, the
//! same key in the vendor's custom arguments).
//!
//! [`RequestLedger`], for audience pushes (Meta, Google): one entry per request, under the
//! chunk's key (the same operations give the same key in every run), so a run killed after a
//! request and before Cohort recorded its outcome answers those operations without sending them
//! again. There a repeated request is harmless (adding or removing the same member twice
//! changes nothing), so a host without state only costs requests: the ledger turns itself off
//! with one warning instead of failing the push.

use serde_json::{Value, json};
use xxhash_rust::xxh3::xxh3_128;

use crate::sdk::{Host, Level, PluginError};

/// The longest key the host's state service accepts.
const MAX_KEY: usize = 512;

/// The ledger of one instance.
#[derive(Debug)]
pub struct Ledger {
    host: Host,
    enabled: bool,
}

impl Ledger {
    /// Opens the ledger. A host without a state service (Cohort before ABI 1.2, a test harness
    /// that offers none) leaves it off, with a warning: messages are then sent at least once.
    pub fn open(host: Host) -> Result<Ledger, PluginError> {
        match host.state_get("ledger-probe") {
            Ok(_) => Ok(Ledger {
                host,
                enabled: true,
            }),
            Err(e @ PluginError::Retry { .. }) => Err(e),
            Err(e) => {
                host.warn(&format!(
                    "no sent-ledger ({e}): a batch pushed again after a crash may send some \
                     messages twice"
                ));
                Ok(Ledger {
                    host,
                    enabled: false,
                })
            }
        }
    }

    /// Whether the server already accepted the message of this operation.
    pub fn was_sent(&self, op_key: &str) -> Result<bool, PluginError> {
        if !self.enabled {
            return Ok(false);
        }
        Ok(self.host.state_get(&state_key(op_key))?.is_some())
    }

    /// Records that the server accepted this operation's message.
    pub fn record(&self, op_key: &str, message_id: &str, reply: &str) -> Result<(), PluginError> {
        if !self.enabled {
            return Ok(());
        }
        let value: Value = json!({"message_id": message_id, "reply": reply});
        self.host.state_put(&state_key(op_key), Some(&value))
    }
}

/// The requests an audience push already had taken, by the chunk's key.
#[derive(Debug)]
pub struct RequestLedger {
    host: Host,
    enabled: bool,
}

impl RequestLedger {
    /// A ledger in the host's state; it turns itself off at the first sign of no state.
    pub fn new(host: Host) -> RequestLedger {
        RequestLedger {
            host,
            enabled: true,
        }
    }

    /// Whether the request under `key` was sent and taken before.
    pub fn holds(&mut self, key: &str) -> bool {
        if !self.enabled {
            return false;
        }
        match self.host.state_get(&state_key(key)) {
            Ok(found) => found.is_some(),
            // No state here (an older host, the conformance kit), or none that answers: the
            // request is sent again, which is harmless (see the module doc).
            Err(e) => {
                self.off(&e);
                false
            }
        }
    }

    /// Records that the request under `key` was taken, with what to remember of it.
    pub fn record(&mut self, key: &str, value: &Value) {
        if !self.enabled {
            return;
        }
        if let Err(e) = self.host.state_put(&state_key(key), Some(value)) {
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

/// `sent/KEY`, or `sent/#HASH` for a key too long for the state service.
pub fn state_key(op_key: &str) -> String {
    let key = format!("sent/{op_key}");
    if key.len() <= MAX_KEY {
        key
    } else {
        format!("sent/#{:032x}", xxh3_128(op_key.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_hashed_to_fit_the_state_service() {
        assert_eq!(state_key("a/b/1-send"), "sent/a/b/1-send");
        let long = "k".repeat(600);
        let key = state_key(&long);
        assert!(key.len() <= MAX_KEY && key.starts_with("sent/#"), "{key}");
        assert_eq!(key, state_key(&long));
    }
}
