//! Reusing a job's last clean result when nothing it depends on has changed.
//!
//! A run computes every customer's features, evaluates the segments and plans every
//! campaign. When the records, the suppression list and the config are those of the job's
//! last clean run, and the clock has not reached the instant that run's result stands until
//! (`cohort_core::segment::Stability`), the run would compute the same memberships and find
//! nothing to push: it skips both and reports the last result instead.
//!
//! Invariants:
//! - A result is reused only if it is whole: the store keeps a job's result only after a run
//!   that finished clean (no failed stage, no record error, nothing left pending), and deletes
//!   it before any run changes memberships or destinations (see `cohort_store::results`). A
//!   run killed halfway leaves nothing to reuse.
//! - Reuse is never later than a full run would notice a change: the clock must be in
//!   `as_of..stable_until`, the inputs equal, the fingerprint equal. Being early only costs a
//!   full run.
//! - Dry runs, `--resync` and `--recompute` always compute; dry runs neither read nor write
//!   the stored result.
//!
//! The decision is pure; `run` reads its facts from the store and carries it out.

use cohort_config::Workspace;
use cohort_core::Timestamp;
use cohort_store::{Inputs, JobResult};
use xxhash_rust::xxh3::xxh3_128;

use crate::select::JobPlan;
use crate::summary::RunSummary;

/// Why a run computes rather than reuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Why {
    /// `--recompute`, `--resync` or a dry run.
    Asked,
    /// The job has no clean result (never ran, or its last run failed or did not finish).
    NoCleanResult,
    /// A record or a suppression changed since.
    InputsChanged,
    /// The segments, campaigns, templates or job changed since.
    ConfigChanged,
    /// The clock reached the instant the result stood until.
    ClockPassed(Timestamp),
    /// The clock is before the result's own (a run `as_of` the past).
    ClockBehind,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::Asked => f.write_str("asked to compute"),
            Why::NoCleanResult => f.write_str("no clean result of the job to reuse"),
            Why::InputsChanged => f.write_str("records or suppressions changed"),
            Why::ConfigChanged => f.write_str("the config changed"),
            Why::ClockPassed(at) => write!(f, "the result stood until {at}"),
            Why::ClockBehind => f.write_str("the clock is before the last result's"),
        }
    }
}

/// What a run does with its segments and campaigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Skip them: this result stands.
    Reuse(JobResult),
    /// Compute them.
    Compute(Why),
}

/// Whether `last` stands for a run at `now` whose inputs are `inputs` under config `config`.
pub(crate) fn decide(
    last: Option<JobResult>,
    inputs: &Inputs,
    config: &str,
    now: Timestamp,
) -> Decision {
    let Some(last) = last else {
        return Decision::Compute(Why::NoCleanResult);
    };
    if last.inputs != *inputs {
        Decision::Compute(Why::InputsChanged)
    } else if last.config != config {
        Decision::Compute(Why::ConfigChanged)
    } else if now < last.as_of {
        Decision::Compute(Why::ClockBehind)
    } else if now >= last.stable_until {
        Decision::Compute(Why::ClockPassed(last.stable_until))
    } else {
        Decision::Reuse(last)
    }
}

/// A fingerprint of what a job's result depends on in the config: the workspace's zone,
/// currency and pinned clock, its segments, campaigns (with their templates' text), identity
/// rules, the unsubscribe link, which destinations there are, and the job's sources and
/// campaigns. Plugin settings are left out: they hold secrets, and the store does not keep
/// a digest of a secret.
pub(crate) fn fingerprint(workspace: &Workspace, job: &JobPlan<'_>) -> String {
    let destinations: Vec<(&str, &str)> = workspace
        .destinations
        .iter()
        .map(|d| (d.name.as_str(), d.plugin.as_str()))
        .collect();
    let sources: Vec<&str> = job.sources.iter().map(|s| s.name.as_str()).collect();
    let text = format!(
        "{:?}",
        (
            workspace.timezone,
            &workspace.currency,
            workspace.as_of,
            &workspace.unsubscribe_url,
            &workspace.segments,
            &workspace.campaigns,
            &workspace.identity,
            destinations,
            (&job.name, sources, &job.campaigns),
        )
    );
    format!("{:032x}", xxh3_128(text.as_bytes()))
}

/// The summary of a run that reused `last`'s result: its segments and campaigns as they
/// stand, with nothing added, removed or pushed. What the last run pushed is current now.
pub(crate) fn reused_summary(summary: &mut RunSummary, last: &RunSummary) {
    summary.customers = last.customers;
    summary.identity = last.identity.clone().map(|mut i| {
        i.merged = 0;
        i.split = 0;
        i
    });
    summary.segments = last
        .segments
        .iter()
        .map(|s| crate::summary::SegmentSummary {
            added: 0,
            removed: 0,
            ..s.clone()
        })
        .collect();
    summary.campaigns = last
        .campaigns
        .iter()
        .map(|c| crate::summary::CampaignSummary {
            planned: 0,
            pushed: 0,
            removals: 0,
            failed: 0,
            unchanged: c.unchanged + c.pushed.saturating_sub(c.removals),
            ..c.clone()
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(secs)
    }

    fn inputs(version: i64, suppressions: u64) -> Inputs {
        Inputs {
            sources: vec![("shop".to_owned(), version)],
            suppressions,
        }
    }

    fn last() -> JobResult {
        JobResult {
            run_id: 7,
            inputs: inputs(3, 1),
            config: "c1".to_owned(),
            as_of: at(1_000),
            stable_until: at(2_000),
        }
    }

    #[test]
    fn a_clean_result_stands_while_nothing_changed_and_the_clock_is_before_its_end() {
        assert_eq!(
            decide(Some(last()), &inputs(3, 1), "c1", at(1_999)),
            Decision::Reuse(last())
        );
        assert_eq!(
            decide(Some(last()), &inputs(3, 1), "c1", at(1_000)),
            Decision::Reuse(last())
        );
    }

    #[test]
    fn a_job_without_a_clean_result_computes() {
        assert_eq!(
            decide(None, &inputs(3, 1), "c1", at(1_500)),
            Decision::Compute(Why::NoCleanResult)
        );
    }

    #[test]
    fn a_changed_record_source_or_suppression_list_computes() {
        for changed in [
            inputs(4, 1),
            inputs(3, 2),
            Inputs {
                sources: vec![("shop".to_owned(), 3), ("crm".to_owned(), 1)],
                suppressions: 1,
            },
        ] {
            assert_eq!(
                decide(Some(last()), &changed, "c1", at(1_500)),
                Decision::Compute(Why::InputsChanged)
            );
        }
    }

    #[test]
    fn a_changed_config_computes() {
        assert_eq!(
            decide(Some(last()), &inputs(3, 1), "c2", at(1_500)),
            Decision::Compute(Why::ConfigChanged)
        );
    }

    #[test]
    fn the_clock_reaching_the_end_of_the_result_computes_at_that_very_instant() {
        assert_eq!(
            decide(Some(last()), &inputs(3, 1), "c1", at(2_000)),
            Decision::Compute(Why::ClockPassed(at(2_000)))
        );
    }

    #[test]
    fn a_clock_before_the_results_own_computes() {
        assert_eq!(
            decide(Some(last()), &inputs(3, 1), "c1", at(999)),
            Decision::Compute(Why::ClockBehind)
        );
    }

    #[test]
    fn a_reused_summary_counts_what_the_last_run_pushed_as_current() {
        let last = RunSummary {
            customers: 10,
            segments: vec![crate::summary::SegmentSummary {
                name: "vip".to_owned(),
                members: 4,
                added: 2,
                removed: 1,
            }],
            campaigns: vec![crate::summary::CampaignSummary {
                name: "welcome".to_owned(),
                members: 4,
                planned: 3,
                pushed: 3,
                removals: 1,
                unchanged: 1,
                skipped_no_consent: 1,
                ..Default::default()
            }],
            ..RunSummary::default()
        };
        let mut now = RunSummary::default();
        reused_summary(&mut now, &last);
        assert_eq!(now.customers, 10);
        assert_eq!((now.segments[0].members, now.segments[0].added), (4, 0));
        let c = &now.campaigns[0];
        assert_eq!(
            (c.members, c.pushed, c.unchanged, c.skipped_no_consent),
            (4, 0, 3, 1)
        );
    }
}
