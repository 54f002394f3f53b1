//! The sent-ledger: SMTP has no idempotency keys, so the plugin remembers, in the host's
//! durable state (ABI 1.2), every operation whose message the server accepted with a 250. A
//! resumed run, or the host retrying a batch whose outcomes it never heard, finds the key there
//! and answers `ok` without sending again.
//!
//! One window is left: a crash after the server's 250 and before the ledger's write commits.
//! The message is then sent again at the next run, with the same `Message-ID` (it is derived
//! from the operation's key), so a receiver that deduplicates on it drops the copy. The write
//! follows the 250 at once, on the thread that reads the replies, so the window is one state
//! write long.
//!
//! The ledger itself is the SDK's (`cohort_plugin_api::sdk::ledger`).

pub use cohort_plugin_api::sdk::ledger::Ledger;
