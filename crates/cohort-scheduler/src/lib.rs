//! When Cohort's jobs fire: the pure half of the daemon's scheduler.
//!
//! This crate turns a job's `schedule` (read by `cohort_config::schedule`) into the instants
//! its ticks fire at, in the workspace's time zone, and decides what a daemon does about the
//! ticks that fell due while it looked away: fire the latest once, or skip them (`misfire`),
//! and how late is still on time (`misfire_grace`). It also spreads jobs over a window
//! (`jitter`), the same way for a job on every daemon.
//!
//! It must not read a clock, sleep, or touch the store: "now" and "the last tick recorded"
//! are arguments, so every rule here is tested at any instant (DST nights included) without
//! waiting. Turning a due tick into a durable run row, claiming it and running it belong to
//! `cohort-store` and the daemon.

mod due;
mod fire;

pub use due::{
    DEFAULT_GRACE, Due, JobTimes, MAX_LOOKBACK, Misfire, Policy, jitter_offset, job_key,
};
pub use fire::{Ticks, ticks_after};
