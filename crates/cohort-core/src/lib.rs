//! Cohort's pure core.
//!
//! This crate owns the domain: the canonical records (customers, orders, events), the
//! per-customer features computed from them (aggregates, RFM, engagement), the segment
//! language (parse, check, compile, evaluate, explain) and membership diffs.
//!
//! It must not do I/O, spawn threads that outlive a call, or be async: every adapter (CSV
//! files, plugins, databases, HTTP) lives in another crate and hands this one plain values.
//! That keeps the rules of segmentation testable in microseconds and identical everywhere
//! they run.
#![warn(missing_docs)]

pub mod bitset;
pub mod delivery;
pub mod features;
pub mod hash;
pub mod identity;
pub mod membership;
pub mod money;
pub mod record;
pub mod segment;
pub mod text;
pub mod time;

pub use bitset::Bitset;
pub use membership::{Membership, MembershipDiff};
pub use money::Money;
pub use record::{Customer, CustomerId, Event, EventKind, Order, Stream};
pub use time::{AsOf, Timestamp};
