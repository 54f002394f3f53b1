//! The sent-ledger: SendGrid's Mail Send takes no idempotency key, so the plugin remembers, in
//! the host's durable state (ABI 1.2), every operation whose message SendGrid accepted (202). A
//! resumed run, or the host retrying a batch whose outcomes it never heard, finds the key there
//! and answers `ok` without sending again.
//!
//! One window is left: a crash after SendGrid's 202 and before the ledger's write commits (it
//! follows the 202 at once). The message is then sent again at the next run; its `custom_args`
//! carry the same `cohort_key`, so the two are told apart in SendGrid's activity and events.
//!
//! The ledger itself is the SDK's (`cohort_plugin_api::sdk::ledger`).

pub use cohort_plugin_api::sdk::ledger::Ledger;
