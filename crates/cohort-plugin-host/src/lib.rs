//! The host side of Cohort's plugin ABI: loading, checking, driving and serving plugins.
//!
//! - [`LoadedPlugin`] loads a library with `libloading`, refuses another ABI major version with a
//!   message naming both versions and the file, and checks the manifest.
//! - Config is validated against the plugin's JSON Schema *before* the plugin sees it, and every
//!   problem is reported with its config path.
//! - [`Instance`] calls a plugin synchronously; [`AsyncInstance`] runs the same calls on tokio's
//!   blocking pool with timeouts; [`pull`] and [`pull_prefetched`] drive a source's paging.
//! - [`HostServices`] are what a plugin may ask of the host: logs (into `tracing`), progress,
//!   cancellation and HTTP ([`HttpService`], one per process: timeouts, retries honouring
//!   `Retry-After`, rate limits and caps on requests in flight per plugin and account, a body
//!   limit, secrets redacted).
//! - [`retry()`] retries a plugin call that answered "retry" (a source page, a push) with the same
//!   rules: `Retry-After` honoured, backoff with jitter, cancellation, a last error that says why.
//! - [`discovery`] finds plugins beside the executable, in `plugins.dir`, then in
//!   `COHORT_PLUGIN_PATH`; [`conformance`] checks any plugin file against the ABI's promises.
//!
//! This crate keeps `libloading`, `reqwest` and `tokio` out of `cohort-core` and out of plugins:
//! a plugin links only `cohort-plugin-api`.
#![warn(missing_docs)]

pub mod conformance;
mod connections;
pub mod dev;
pub mod discovery;
mod drive;
mod error;
pub mod http;
mod plugin;
pub mod redact;
pub mod retry;
mod services;

pub use drive::{AsyncInstance, pull, pull_prefetched};
pub use error::{CallError, LoadError};
pub use http::{HttpPolicy, HttpService, RateLimit};
pub use plugin::{Instance, LoadedPlugin, RawPage, describe_issues, tally};
pub use retry::{RetryError, RetryPolicy, retry};
pub use services::{HostServices, LogSink, ProgressFn, StateStore, TracingSink};
pub use tokio_util::sync::CancellationToken;

pub use cohort_plugin_api::{abi, schema, wire};
