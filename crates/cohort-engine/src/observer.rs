//! What a run tells the person or process watching it, while it runs.
//!
//! The engine never draws on a terminal: it reports stages, progress and warnings to an
//! [`Observer`]. The CLI draws progress bars when stderr is a terminal and stays quiet when
//! piped; the daemon turns the same reports into log lines and metrics.

use std::fmt;

/// A stage of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Checking the workspace before anything is pulled.
    Checks,
    /// Pulling one stream of one source.
    Pull {
        /// The source.
        source: String,
        /// The stream (`customers`, `orders`, `events`).
        stream: String,
    },
    /// Computing features and evaluating segments.
    Segments,
    /// Planning, rendering and pushing one campaign.
    Campaign {
        /// The campaign.
        name: String,
    },
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Checks => f.write_str("checking the workspace"),
            Stage::Pull { source, stream } => write!(f, "pulling {stream} from {source}"),
            Stage::Segments => f.write_str("computing segments"),
            Stage::Campaign { name } => write!(f, "campaign {name}"),
        }
    }
}

/// Receives a run's reports. Every method has a default that ignores the report.
pub trait Observer: Send + Sync {
    /// A stage starts.
    fn stage(&self, workspace: &str, stage: &Stage) {
        let _ = (workspace, stage);
    }

    /// Progress within the current stage: `done` units (records, operations) of `total`, when
    /// known.
    fn progress(&self, done: u64, total: Option<u64>) {
        let _ = (done, total);
    }

    /// The current stage ended.
    fn stage_done(&self, workspace: &str, stage: &Stage, summary: &str) {
        let _ = (workspace, stage, summary);
    }

    /// Something the person running Cohort should know (a plugin's warning, a segment below
    /// its minimum size). Already redacted.
    fn warn(&self, workspace: &str, message: &str) {
        let _ = (workspace, message);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}
