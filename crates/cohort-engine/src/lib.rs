//! One run of a Cohort job, as a library: check, pull, features, segments, plan, render, push,
//! record.
//!
//! The `cohort` binary and the daemon both drive runs through [`Engine`]. This crate owns the
//! sequencing of a run and its record: which stages run in what order, what is written before
//! and after each push, what a failure leaves behind, and the one-run-per-workspace lock with
//! its heartbeat.
//!
//! It must not decide delivery policy (who may be contacted, keys, what an outcome does to the
//! state: `cohort_core::delivery`), speak SQL (`cohort-store`), parse configs
//! (`cohort-config`) or touch a terminal: progress and warnings go to an [`Observer`] the
//! caller supplies. Its errors are [`EngineError`]s, sorted by what the caller should do (fix
//! the config, retry later, give up); its clock is a [`Clock`] the caller injects, so runs can
//! be tested at any instant.

mod campaigns;
pub mod clock;
pub mod error;
mod failpoint;
pub mod identity;
mod instance;
mod logs;
pub mod observer;
mod plugins;
pub mod preflight;
mod pull;
mod reuse;
mod run;
mod segments;
mod select;
mod state;
pub mod summary;
pub mod templates;
mod vendor_suppressions;

pub use campaigns::{Preview, Shared, member_ids, preview};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{EngineError, ErrorKind, Result};
pub use failpoint::Failpoint;
pub use observer::{Observer, Quiet, Stage};
pub use plugins::{Plugins, Prepared, prepare};
pub use preflight::check_workspace;
pub use run::{DEFAULT_LEASE, Engine, Finished, RunOptions, open_store};
pub use segments::{Computed, compute};
pub use select::{JobPlan, hint, job_plan, workspaces};
pub use summary::RunSummary;
