//! The values the store takes and returns.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Which database a [`crate::Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (the default; no server).
    Sqlite,
    /// A PostgreSQL server (several daemons may share it).
    Postgres,
}

/// What the store keeps about a workspace itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceInfo {
    /// The workspace id (`[a-z0-9][a-z0-9_-]*`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// IANA time zone name (`America/New_York`).
    pub timezone: String,
    /// ISO 4217 currency code.
    pub currency: String,
}

/// Which record stream of a source a cursor belongs to: the core's one `Stream`, stored as
/// its name (`source_cursors.stream`).
pub use cohort_core::record::Stream;

/// What an ingest call did, by record, compared by content hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Keys the store had not seen.
    pub new: u64,
    /// Keys whose content changed; the row was rewritten.
    pub updated: u64,
    /// Keys whose content was identical; the row was not touched.
    pub unchanged: u64,
    /// Records marked deleted: named gone by the source, or left out of a full pass.
    pub deleted: u64,
}

/// A page of records of one stream, for [`crate::WorkspaceStore::ingest`].
#[derive(Debug, Clone, Copy)]
pub enum Records<'a> {
    /// Customers.
    Customers(&'a [cohort_core::record::Customer]),
    /// Orders.
    Orders(&'a [cohort_core::record::Order]),
    /// Events.
    Events(&'a [cohort_core::record::Event]),
}

/// What a page says besides its records (ABI 1.2 pages): records gone at the source, and the
/// full pass it belongs to. [`Sweep::NONE`] for a page that says neither.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sweep<'a> {
    /// External ids of the stream's records that are gone.
    pub deleted: &'a [String],
    /// The full pass the page belongs to, if any.
    pub pass: Option<&'a str>,
    /// Whether this is the stream's last page for now (a pass's last page ends the pass).
    pub done: bool,
}

impl Sweep<'_> {
    /// A page that says nothing about deletions.
    pub const NONE: Sweep<'static> = Sweep {
        deleted: &[],
        pass: None,
        done: false,
    };
}

impl Upserted {
    /// Every record counted.
    pub fn total(&self) -> u64 {
        self.new + self.updated + self.unchanged
    }

    /// Whether the call changed what the store holds: a record inserted, rewritten or deleted.
    pub fn changed(&self) -> bool {
        self.new + self.updated + self.deleted > 0
    }
}

impl std::ops::AddAssign for Upserted {
    fn add_assign(&mut self, other: Upserted) {
        self.new += other.new;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
    }
}

/// A saved segment definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentVersion {
    /// Hex hash of the expression text.
    pub hash: String,
    /// 1 for the first definition of the name, then +1 at each change.
    pub version: i64,
    /// Whether this call created the version (the expression changed or is new).
    pub is_new: bool,
}

/// Where a customer stands with a campaign's destination: the core's delivery status, stored
/// as its name (`member`, `removed`, `sent`).
pub use cohort_core::delivery::Status as DestinationStatus;

/// What a destination last acknowledged for one customer of one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationState {
    /// The customer's id.
    pub customer_id: String,
    /// Where the customer stands.
    pub status: DestinationStatus,
    /// Hash of the last payload the destination acknowledged.
    pub payload_hash: String,
    /// The idempotency key of that push.
    pub idempotency_key: String,
    /// Times the customer entered the audience; send keys use it so a re-entry sends again.
    /// (`cohort run` numbers every acknowledged change here, see `cohort_core::delivery`.)
    pub entries: i64,
    /// A push whose outcome is not known yet: recorded before pushing, cleared when the
    /// destination answers. A run that died in between leaves it for the next run to retry.
    pub pending: Option<PendingPush>,
    /// When the state was committed.
    pub updated_at: DateTime<Utc>,
    /// The payload the destination acknowledged, to replace the stored one on commit; `None`
    /// keeps what is stored. [`crate::WorkspaceStore::destination_state`] does not read it back
    /// (a large audience's payloads are read only for the customers that need them, with
    /// [`crate::WorkspaceStore::destination_payloads`]).
    pub payload: Option<Value>,
}

/// An operation pushed (or about to be) whose outcome is not recorded yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPush {
    /// What it does.
    pub action: cohort_core::delivery::Action,
    /// Its idempotency key.
    pub key: String,
    /// Hash of its payload.
    pub payload_hash: String,
}

/// A run's id, unique across the store.
pub type RunId = i64;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Started and not finished. A run whose process died stays so until another run takes
    /// the workspace's lock after the lease ran out, which marks it [`RunStatus::Failed`].
    Running,
    /// Everything done.
    Succeeded,
    /// Stopped by an error.
    Failed,
    /// Finished, with some records or pushes failing.
    PartiallyFailed,
    /// Waiting for a daemon to claim it (a scheduled tick, a manual trigger, a retry).
    Queued,
    /// Cancelled by the daemon after the job's `timeout`.
    TimedOut,
}

impl RunStatus {
    /// The name stored in `job_runs.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::PartiallyFailed => "partially_failed",
            RunStatus::Queued => "queued",
            RunStatus::TimedOut => "timed_out",
        }
    }

    /// Reads a stored (or typed) status name.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "partially_failed" => RunStatus::PartiallyFailed,
            "queued" => RunStatus::Queued,
            "timed_out" => RunStatus::TimedOut,
            _ => return None,
        })
    }
}

/// One recorded run of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The run's id.
    pub id: RunId,
    /// The job's name.
    pub job: String,
    /// What started it (`manual`, `schedule`, …).
    pub trigger: String,
    /// Whether pushes were skipped.
    pub dry_run: bool,
    /// Where it stands.
    pub status: RunStatus,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished, if it did.
    pub finished_at: Option<DateTime<Utc>>,
    /// The counts the run recorded at its end.
    pub summary: Option<Value>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The process that ran it (`host/pid`), when recorded.
    pub owner: Option<String>,
    /// When its process last proved alive.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// The tick it was scheduled for, for a scheduled run.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Which try of its tick this is (1 for the first).
    pub attempt: u32,
}

/// One record-level error of a run: a bad row, a rejected push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The pipeline stage (`pull`, `segment`, `render`, `push`).
    pub stage: String,
    /// Where: file:line:col, source and record id, campaign and customer.
    pub location: String,
    /// What went wrong.
    pub message: String,
}

/// Why an email address may not be sent marketing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuppressionReason {
    /// The person unsubscribed.
    Unsubscribed,
    /// The address bounced.
    Bounced,
    /// The person marked a message as spam.
    Complained,
}

impl SuppressionReason {
    /// The name stored in `suppressions.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::Bounced => "bounced",
            SuppressionReason::Complained => "complained",
        }
    }
}
