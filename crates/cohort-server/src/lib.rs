//! The daemon's HTTP API and metrics: `/healthz`, `/readyz`, `/metrics`, and `/api/v1`.
//!
//! It owns the routes, the JSON shapes (docs/api.md is their reference), bearer-token auth
//! and the Prometheus text. It reads runs from the store and the config through a
//! [`Control`] the daemon implements; it must not run jobs, plan ticks or parse configs
//! itself: a trigger queues a run row and wakes the daemon, a reload asks the daemon.
//!
//! Auth: an admin token (`[server] admin_tokens`) sees every workspace; a workspace token
//! (`[workspace] api_tokens`, one per agency client) sees its own. Tokens are compared in
//! constant time. A request without a valid token gets 401; a client asking for another
//! client's workspace gets 404, exactly as for a workspace that does not exist, so that its
//! existence is not revealed.

mod api;
mod auth;
mod metrics;

pub use api::{ApiError, Control, router, run_detail_json, run_json};
pub use metrics::{HELP, Metrics};
