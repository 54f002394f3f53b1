//! Fire times: a crontab read in the workspace's wall clock, mapped onto instants.
//!
//! The crontab is walked over *naive* local times (the wall clock, no zone), and each naive
//! tick is then placed in the zone by these rules, so daylight saving time never makes a job
//! fire twice or vanish:
//!
//! - a wall time that exists once is that instant;
//! - a wall time skipped by spring-forward (02:30 on a New York night in March) fires once,
//!   at the next valid instant (03:00 EDT, the end of the gap); several ticks in the gap, and
//!   a tick at the gap's end, are one fire;
//! - a wall time repeated by fall-back (01:30 on a November night) fires once, at its first
//!   occurrence; the repeated hour does not fire again.
//!
//! Fire times are strictly increasing, which the daemon relies on: "the last tick recorded"
//! is then a cursor, and "after the cursor" never yields a tick twice.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use cohort_config::Schedule;

/// The fire times of a schedule strictly after an instant, in order. See the module doc for
/// the daylight saving rules.
pub struct Ticks {
    naive: Box<dyn Iterator<Item = DateTime<Utc>> + Send>,
    tz: Tz,
    after: DateTime<Utc>,
}

impl std::fmt::Debug for Ticks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticks")
            .field("tz", &self.tz)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// The fire times of `schedule` in zone `tz` strictly after `after`.
pub fn ticks_after(schedule: &Schedule, tz: Tz, after: DateTime<Utc>) -> Ticks {
    // The crontab walks the wall clock: a naive local time dressed as UTC, which has no gaps
    // and no folds, so the `cron` crate sees every wall-clock tick exactly once.
    let local = after.with_timezone(&tz).naive_local();
    let start = Utc.from_utc_datetime(&local);
    Ticks {
        naive: Box::new(schedule.after(&start)),
        tz,
        after,
    }
}

impl Iterator for Ticks {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        loop {
            let wall = self.naive.next()?.naive_utc();
            let at = place(self.tz, wall)?;
            // A fold's earlier occurrence, or a gap's end already fired, lies at or before the
            // last instant given: skip it, so each instant is given once.
            if at <= self.after {
                continue;
            }
            self.after = at;
            return Some(at);
        }
    }
}

/// The instant a wall-clock time fires at in `tz`.
fn place(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(at) = tz.from_local_datetime(&wall).earliest() {
        return Some(at.with_timezone(&Utc));
    }
    // In a gap: walk forward minute by minute to its end (gaps end on a whole minute; the
    // longest is a day, when Samoa skipped 30 December 2011).
    let mut minute = wall.with_second(0)?.with_nanosecond(0)?;
    for _ in 0..(24 * 60 + 1) {
        minute += Duration::minutes(1);
        if let Some(at) = tz.from_local_datetime(&minute).earliest() {
            return Some(at.with_timezone(&Utc));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn fires(expr: &str, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        ticks_after(&Schedule::parse(expr).unwrap(), tz, after)
            .take(n)
            .collect()
    }

    #[test]
    fn a_time_skipped_by_spring_forward_fires_once_at_the_end_of_the_gap_in_new_york() {
        // 9 March 2025: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let got = fires("30 2 * * *", New_York, utc(2025, 3, 8, 12, 0), 2);
        assert_eq!(
            got[0],
            utc(2025, 3, 9, 7, 0),
            "03:00 EDT, the next valid instant"
        );
        assert_eq!(got[1], utc(2025, 3, 10, 6, 30), "02:30 EDT the next day");
    }

    #[test]
    fn every_tick_inside_the_gap_and_at_its_end_is_one_fire_in_berlin() {
        // 30 March 2025: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let got = fires("*/20 * * * *", Berlin, utc(2025, 3, 30, 0, 30), 4);
        assert_eq!(
            got,
            vec![
                utc(2025, 3, 30, 0, 40), // 01:40 CET
                utc(2025, 3, 30, 1, 0),  // 02:00, 02:20, 02:40 and 03:00: one fire at 03:00 CEST
                utc(2025, 3, 30, 1, 20), // 03:20 CEST
                utc(2025, 3, 30, 1, 40),
            ]
        );
    }

    #[test]
    fn a_repeated_hour_fires_once_in_new_york() {
        // 2 November 2025: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
        let got = fires("30 1 * * *", New_York, utc(2025, 11, 1, 12, 0), 2);
        assert_eq!(
            got[0],
            utc(2025, 11, 2, 5, 30),
            "01:30 EDT, the first occurrence"
        );
        assert_eq!(got[1], utc(2025, 11, 3, 6, 30), "01:30 EST the next day");
    }

    #[test]
    fn an_hourly_job_does_not_fire_again_in_berlins_repeated_hour() {
        // 26 October 2025: 03:00 CEST falls back to 02:00 CET; 02:00-03:00 happens twice.
        let got = fires("@hourly", Berlin, utc(2025, 10, 25, 23, 30), 4);
        assert_eq!(
            got,
            vec![
                utc(2025, 10, 26, 0, 0), // 02:00 CEST
                utc(2025, 10, 26, 2, 0), // 03:00 CET: 02:00 CET is not fired again
                utc(2025, 10, 26, 3, 0),
                utc(2025, 10, 26, 4, 0),
            ]
        );
    }

    #[test]
    fn starting_inside_the_repeated_hour_does_not_fire_its_first_pass_again() {
        // 01:20 EST, the second pass of New York's repeated hour.
        let after = utc(2025, 11, 2, 6, 20);
        let got = fires("*/30 * * * *", New_York, after, 2);
        assert_eq!(got, vec![utc(2025, 11, 2, 7, 0), utc(2025, 11, 2, 7, 30)]);
    }

    #[test]
    fn daily_runs_keep_the_wall_clock_across_daylight_saving() {
        let got = fires("@daily", New_York, utc(2025, 3, 8, 12, 0), 2);
        assert_eq!(got, vec![utc(2025, 3, 9, 5, 0), utc(2025, 3, 10, 4, 0)]);
    }

    #[test]
    fn six_fields_fire_every_few_seconds() {
        let got = fires("*/5 * * * * *", Berlin, utc(2025, 1, 1, 0, 0), 3);
        let secs: Vec<i64> = got.iter().map(|t| t.timestamp() % 60).collect();
        assert_eq!(secs, vec![5, 10, 15]);
    }
}
