//! What a run did, in numbers: printed at the end of `cohort run`, stored with the run, and
//! read back by `cohort runs show`.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// Counts of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub workspace: String,
    pub job: String,
    pub dry_run: bool,
    /// The run's clock (RFC 3339).
    pub as_of: String,
    pub sources: Vec<SourceSummary>,
    pub customers: u64,
    pub segments: Vec<SegmentSummary>,
    pub campaigns: Vec<CampaignSummary>,
    /// Per-record errors recorded (bad rows, render failures, rejected pushes).
    pub record_errors: u64,
    pub warnings: Vec<String>,
    /// Milliseconds per stage.
    pub timings_ms: Vec<(String, u64)>,
    /// With `[identity]`: how the records became persons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySummary>,
    /// Unsubscribes the destinations reported (ABI 1.3), read before anything was pushed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vendor_suppressions: Vec<VendorSuppressions>,
    /// Set when nothing had changed since the job's last clean run, whose segments and
    /// campaigns this run reports instead of computing them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<Reused>,
}

/// The result a run reused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reused {
    /// The run that computed it.
    pub run: i64,
    /// Until when it stands with no new data (RFC 3339): the next run after that computes.
    pub stable_until: String,
}

/// The addresses one destination's vendor reported it will not email.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorSuppressions {
    pub destination: String,
    /// Addresses read this run (each once).
    pub read: u64,
    /// Of those, the ones Cohort's suppression list did not hold yet.
    pub new: u64,
}

/// How a run's customer records became persons (`[identity]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySummary {
    /// Live customer records, every source.
    pub records: u64,
    /// The persons they make.
    pub persons: u64,
    /// Persons retired into another this run.
    pub merged: u64,
    /// Persons that split this run.
    pub split: u64,
}

impl IdentitySummary {
    /// The counts of `people`.
    pub fn of(people: &crate::identity::People) -> IdentitySummary {
        IdentitySummary {
            records: people.records.len() as u64,
            persons: people.resolution.members.len() as u64,
            merged: people.resolution.merged.len() as u64,
            split: people.resolution.split.len() as u64,
        }
    }
}

/// One stream of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub source: String,
    pub stream: String,
    pub pulled: u64,
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub bad: u64,
    /// Records marked deleted: named gone by the source, or left out of a full pass.
    #[serde(default)]
    pub deleted: u64,
}

/// One segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub name: String,
    pub members: u64,
    pub added: u64,
    pub removed: u64,
}

/// One campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSummary {
    pub name: String,
    pub destination: String,
    pub mode: String,
    /// Members of the campaign's segments.
    pub members: u64,
    /// Operations planned (pushed, or that would be pushed in a dry run).
    pub planned: u64,
    /// Operations the destination acknowledged.
    pub pushed: u64,
    /// Of the planned ones, removals from the audience.
    pub removals: u64,
    /// Members whose destination state was already current.
    pub unchanged: u64,
    pub skipped_no_consent: u64,
    pub skipped_suppressed: u64,
    pub skipped_no_address: u64,
    /// Rejected by the destination, failed to render, or still failing after retries.
    pub failed: u64,
}

impl RunSummary {
    pub fn failed_records(&self) -> u64 {
        self.campaigns.iter().map(|c| c.failed).sum::<u64>()
            + self.sources.iter().map(|s| s.bad).sum::<u64>()
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dry = if self.dry_run { " (dry run)" } else { "" };
        writeln!(
            f,
            "workspace {} · job {}{dry} · as of {}",
            self.workspace, self.job, self.as_of
        )?;
        if !self.sources.is_empty() {
            let mut t = Table::new(["source", "stream", "pulled", "new", "updated", "bad"]);
            for s in &self.sources {
                t.row([
                    s.source.clone(),
                    s.stream.clone(),
                    s.pulled.to_string(),
                    s.new.to_string(),
                    s.updated.to_string(),
                    s.bad.to_string(),
                ]);
            }
            write!(f, "\n{t}")?;
            // Below the table, so the table's columns stay what scripts expect.
            for s in self.sources.iter().filter(|s| s.deleted > 0) {
                writeln!(
                    f,
                    "{} {}: {} gone from the source, marked deleted",
                    s.source, s.stream, s.deleted
                )?;
            }
        }
        if let Some(i) = &self.identity {
            writeln!(
                f,
                "\nidentity: {} records are {} persons ({} merged, {} split this run)",
                i.records, i.persons, i.merged, i.split
            )?;
        }
        if !self.segments.is_empty() {
            let mut t = Table::new(["segment", "members", "added", "removed"]);
            for s in &self.segments {
                t.row([
                    s.name.clone(),
                    s.members.to_string(),
                    format!("+{}", s.added),
                    format!("-{}", s.removed),
                ]);
            }
            write!(f, "\n{t}")?;
        }
        if !self.campaigns.is_empty() {
            let pushed = if self.dry_run { "would push" } else { "pushed" };
            let mut t = Table::new([
                "campaign",
                "mode",
                "members",
                pushed,
                "unchanged",
                "no consent",
                "suppressed",
                "no address",
                "failed",
            ]);
            for c in &self.campaigns {
                t.row([
                    format!("{} → {}", c.name, c.destination),
                    c.mode.clone(),
                    c.members.to_string(),
                    if self.dry_run {
                        c.planned.to_string()
                    } else {
                        c.pushed.to_string()
                    },
                    c.unchanged.to_string(),
                    c.skipped_no_consent.to_string(),
                    c.skipped_suppressed.to_string(),
                    c.skipped_no_address.to_string(),
                    c.failed.to_string(),
                ]);
            }
            write!(f, "\n{t}")?;
        }
        // Below the tables, so their columns stay what scripts expect.
        if let Some(r) = &self.reused {
            writeln!(
                f,
                "\nnothing changed since run {}: its segments stand until {} and nothing was left to push",
                r.run, r.stable_until
            )?;
        }
        for v in self.vendor_suppressions.iter().filter(|v| v.read > 0) {
            let added = if self.dry_run { "would be new" } else { "new" };
            writeln!(
                f,
                "{}: {} unsubscribes read back from the vendor ({} {added} to the suppression list)",
                v.destination, v.read, v.new
            )?;
        }
        for w in &self.warnings {
            writeln!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

/// A plain text table: the first column left-aligned, the others right-aligned.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new<const N: usize>(header: [&str; N]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows.push(Vec::from(cells));
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    let _ = write!(line, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(line, "  {}{cell}", " ".repeat(pad));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_stage_and_survives_a_json_round_trip() {
        let summary = RunSummary {
            workspace: "demo".into(),
            job: "nightly".into(),
            as_of: "1998-07-01T00:00:00Z".into(),
            sources: vec![SourceSummary {
                source: "shop".into(),
                stream: "orders".into(),
                pulled: 70_195,
                new: 70_195,
                ..SourceSummary::default()
            }],
            segments: vec![SegmentSummary {
                name: "champions".into(),
                members: 3_000,
                added: 3_000,
                removed: 0,
            }],
            campaigns: vec![CampaignSummary {
                name: "thanks".into(),
                destination: "outbox".into(),
                mode: "send".into(),
                members: 3_000,
                pushed: 1_800,
                skipped_no_consent: 1_200,
                ..CampaignSummary::default()
            }],
            vendor_suppressions: vec![VendorSuppressions {
                destination: "sendgrid".into(),
                read: 4,
                new: 3,
            }],
            ..RunSummary::default()
        };
        let text = summary.to_string();
        for needle in [
            "shop",
            "70195",
            "champions",
            "+3000",
            "thanks → outbox",
            "1800",
            "sendgrid: 4 unsubscribes read back from the vendor (3 new",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        let json = serde_json::to_value(&summary).unwrap();
        let back: RunSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back, summary);
    }
}
