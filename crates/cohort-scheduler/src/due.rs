//! What is due now: the tick to fire, the ticks missed, and when to look again.
//!
//! A daemon asks [`JobTimes::due`] with the last tick it knows was handled (`since`, from the
//! store) and the time. Whatever fell due in between is settled in one answer:
//!
//! - at most one tick fires: the latest due one. After downtime a `run_once` job runs once,
//!   not once per missed tick; the earlier ticks are counted as missed;
//! - a tick later than `misfire_grace` is *late*: `run_once` still fires it, `skip` does not;
//! - `jitter` delays every tick of a job by the same offset in `0..jitter`, drawn from the
//!   job's name, so all daemons agree on it and many jobs on one schedule spread out. The
//!   tick keeps its scheduled time (the run row's key); only the start moves.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
pub use cohort_config::Misfire;
use cohort_config::{Job, Schedule};

use crate::fire::ticks_after;

/// A job's misfire and jitter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `misfire`.
    pub misfire: Misfire,
    /// `misfire_grace`: how late a tick may start and still count as on time.
    pub grace: Duration,
    /// `jitter`: the window the job's start is spread over.
    pub jitter: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            misfire: Misfire::RunOnce,
            grace: DEFAULT_GRACE,
            jitter: Duration::ZERO,
        }
    }
}

/// `misfire_grace` when none is set: enough for a busy daemon to be a little late.
pub const DEFAULT_GRACE: Duration = cohort_config::DEFAULT_MISFIRE_GRACE;

impl Policy {
    /// A job's settings as configured.
    pub fn of(job: &Job) -> Policy {
        Policy {
            misfire: job.misfire,
            grace: job.misfire_grace,
            jitter: job.jitter,
        }
    }
}

/// How far back a daemon looks for missed ticks. Older ones only add to the missed count,
/// which walking a per-second schedule over months would take long to produce.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(2 * 24 * 3600);

/// The answer of [`JobTimes::due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The tick to run now (its scheduled time), if any.
    pub fire: Option<DateTime<Utc>>,
    /// The latest due tick, fired or not: the next call's `since`. `None` when nothing was due.
    pub through: Option<DateTime<Utc>>,
    /// Due ticks that will not run (missed while down, or skipped as late).
    pub missed: u64,
    /// `fire` is past its grace and runs because of `misfire = "run_once"`.
    pub late: bool,
    /// When the next tick after these starts (its scheduled time plus the job's jitter).
    pub next_start: Option<DateTime<Utc>>,
}

/// A job's schedule placed in its workspace's zone, with its policy and jitter offset.
#[derive(Debug, Clone)]
pub struct JobTimes {
    schedule: Schedule,
    tz: Tz,
    policy: Policy,
    offset: chrono::Duration,
}

impl JobTimes {
    /// The times of a job; `key` names it uniquely (`workspace/job`) and seeds its jitter.
    pub fn new(schedule: Schedule, tz: Tz, policy: Policy, key: &str) -> JobTimes {
        let offset = jitter_offset(policy.jitter, key);
        JobTimes {
            schedule,
            tz,
            policy,
            offset: chrono::Duration::from_std(offset).unwrap_or(chrono::Duration::zero()),
        }
    }

    /// The delay this job's starts get from `jitter`.
    pub fn offset(&self) -> Duration {
        self.offset.to_std().unwrap_or(Duration::ZERO)
    }

    /// The next scheduled tick strictly after `after`.
    pub fn next_tick(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        ticks_after(&self.schedule, self.tz, after).next()
    }

    /// What is due at `now`, given that every tick up to `since` was handled.
    pub fn due(&self, since: DateTime<Utc>, now: DateTime<Utc>) -> Due {
        let horizon = now - chrono::Duration::from_std(MAX_LOOKBACK).unwrap_or_default();
        let (from, mut missed) = if since < horizon {
            // Ticks before the horizon are missed; count the ones a cheap walk can count.
            let old = ticks_after(&self.schedule, self.tz, since)
                .take_while(|t| *t <= horizon)
                .take(10_000)
                .count() as u64;
            (horizon, old)
        } else {
            (since, 0)
        };
        let mut latest = None;
        let mut next_start = None;
        for tick in ticks_after(&self.schedule, self.tz, from) {
            if tick + self.offset > now {
                next_start = Some(tick + self.offset);
                break;
            }
            if latest.is_some() {
                missed += 1;
            }
            latest = Some(tick);
        }
        let Some(tick) = latest else {
            return Due {
                fire: None,
                through: None,
                missed,
                late: false,
                next_start,
            };
        };
        let grace = chrono::Duration::from_std(self.policy.grace).unwrap_or_default();
        let late = now - (tick + self.offset) > grace;
        let fire = !late || self.policy.misfire == Misfire::RunOnce;
        Due {
            fire: fire.then_some(tick),
            through: Some(tick),
            missed: missed + u64::from(!fire),
            late: late && fire,
            next_start,
        }
    }
}

/// The key that names `job` of `workspace` among every workspace's jobs: what
/// [`JobTimes::new`] and [`jitter_offset`] take, so that whoever computes a job's offset (the
/// planner, the API's `next_run_at`, a run measuring its lag) gets the same one.
pub fn job_key(workspace: &str, job: &str) -> String {
    format!("{workspace}/{job}")
}

/// A delay in `0..jitter` (whole milliseconds) that depends only on `key`.
pub fn jitter_offset(jitter: Duration, key: &str) -> Duration {
    let window = jitter.as_millis() as u64;
    if window == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % window)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn utc(h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 2, h, mi, s).unwrap()
    }

    fn job(expr: &str, misfire: Misfire, grace: u64, jitter: u64) -> JobTimes {
        JobTimes::new(
            Schedule::parse(expr).unwrap(),
            chrono_tz::UTC,
            Policy {
                misfire,
                grace: Duration::from_secs(grace),
                jitter: Duration::from_secs(jitter),
            },
            "shop/nightly",
        )
    }

    #[test]
    fn nothing_is_due_before_the_tick() {
        let j = job("0 * * * *", Misfire::RunOnce, 60, 0);
        let due = j.due(utc(9, 0, 0), utc(9, 59, 59));
        assert_eq!(due.fire, None);
        assert_eq!(due.next_start, Some(utc(10, 0, 0)));
    }

    #[test]
    fn a_tick_fires_once_at_its_time() {
        let j = job("0 * * * *", Misfire::Skip, 60, 0);
        let due = j.due(utc(9, 0, 0), utc(10, 0, 2));
        assert_eq!(due.fire, Some(utc(10, 0, 0)));
        assert!(!due.late);
        // Asked again with the tick handled, nothing more is due.
        assert_eq!(j.due(due.through.unwrap(), utc(10, 0, 30)).fire, None);
    }

    #[test]
    fn after_downtime_run_once_runs_once_not_once_per_missed_tick() {
        let j = job("*/5 * * * *", Misfire::RunOnce, 60, 0);
        // Down from 09:00 to 10:02: 12 ticks fell due.
        let due = j.due(utc(9, 0, 0), utc(10, 2, 0));
        assert_eq!(due.fire, Some(utc(10, 0, 0)), "the latest tick, once");
        assert_eq!(due.missed, 11);
        assert!(due.late);
        assert_eq!(due.next_start, Some(utc(10, 5, 0)));
    }

    #[test]
    fn after_downtime_skip_drops_late_ticks_and_waits_for_the_next() {
        let j = job("*/5 * * * *", Misfire::Skip, 60, 0);
        let due = j.due(utc(9, 0, 0), utc(10, 2, 0));
        assert_eq!(due.fire, None);
        assert_eq!(due.missed, 12);
        assert_eq!(due.through, Some(utc(10, 0, 0)));
    }

    #[test]
    fn skip_still_fires_a_tick_within_its_grace() {
        let j = job("*/5 * * * *", Misfire::Skip, 90, 0);
        let due = j.due(utc(9, 0, 0), utc(10, 1, 0));
        assert_eq!(due.fire, Some(utc(10, 0, 0)));
        assert_eq!(due.missed, 11);
        assert!(!due.late);
    }

    #[test]
    fn jitter_delays_the_start_but_keeps_the_scheduled_time() {
        let j = job("0 * * * *", Misfire::Skip, 60, 600);
        let offset = j.offset();
        assert!(offset < Duration::from_secs(600));
        assert_eq!(
            offset,
            job("0 * * * *", Misfire::Skip, 60, 600).offset(),
            "the same on every daemon"
        );
        let start = utc(10, 0, 0) + chrono::Duration::from_std(offset).unwrap();
        let before = j.due(utc(9, 0, 0), start - chrono::Duration::milliseconds(1));
        assert_eq!(before.fire, None);
        assert_eq!(before.next_start, Some(start));
        assert_eq!(j.due(utc(9, 0, 0), start).fire, Some(utc(10, 0, 0)));
    }

    #[test]
    fn jitter_differs_between_jobs() {
        let a = jitter_offset(Duration::from_secs(3600), "a/nightly");
        let b = jitter_offset(Duration::from_secs(3600), "b/nightly");
        assert_ne!(a, b);
    }

    #[test]
    fn a_very_long_downtime_still_fires_once_and_counts_what_it_can() {
        let j = job("*/10 * * * * *", Misfire::RunOnce, 60, 0);
        let since = utc(0, 0, 0) - chrono::Duration::days(30);
        let due = j.due(since, utc(0, 0, 5));
        assert_eq!(due.fire, Some(utc(0, 0, 0)));
        assert!(due.missed > 17_000, "{}", due.missed);
    }

    fn schedules() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "* * * * *",
            "*/7 * * * *",
            "30 2 * * *",
            "0 1-3 * * *",
            "@hourly",
            "@daily",
            "*/15 * * * * *",
            "0 9 13 * FRI",
        ])
    }

    fn zones() -> impl Strategy<Value = Tz> {
        prop::sample::select(vec![
            chrono_tz::UTC,
            chrono_tz::America::New_York,
            chrono_tz::Europe::Berlin,
            chrono_tz::Australia::Lord_Howe,
        ])
    }

    proptest! {
        #[test]
        fn fire_times_strictly_increase_and_follow_the_start(
            expr in schedules(),
            tz in zones(),
            start in 1_700_000_000i64..1_800_000_000,
        ) {
            let after = Utc.timestamp_opt(start, 0).unwrap();
            let s = Schedule::parse(expr).unwrap();
            let mut last = after;
            for t in ticks_after(&s, tz, after).take(50) {
                prop_assert!(t > last, "{t} after {last}");
                last = t;
            }
        }

        #[test]
        fn no_tick_fires_twice_however_often_the_daemon_looks(
            expr in schedules(),
            tz in zones(),
            start in 1_700_000_000i64..1_800_000_000,
            steps in prop::collection::vec(1i64..400, 1..60),
            skip in any::<bool>(),
        ) {
            let misfire = if skip { Misfire::Skip } else { Misfire::RunOnce };
            let j = JobTimes::new(
                Schedule::parse(expr).unwrap(),
                tz,
                Policy { misfire, grace: Duration::from_secs(60), jitter: Duration::from_secs(30) },
                "w/j",
            );
            let mut since = Utc.timestamp_opt(start, 0).unwrap();
            let mut now = since;
            let mut fired = Vec::new();
            for step in steps {
                now += chrono::Duration::seconds(step);
                let due = j.due(since, now);
                if let Some(t) = due.fire {
                    prop_assert!(t > since);
                    prop_assert!(t <= now);
                    fired.push(t);
                }
                if let Some(t) = due.through {
                    prop_assert!(t > since);
                    since = t;
                }
            }
            let mut sorted = fired.clone();
            sorted.dedup();
            prop_assert_eq!(sorted, fired);
        }

        #[test]
        fn looking_often_enough_misses_nothing(
            tz in zones(),
            start in 1_700_000_000i64..1_800_000_000,
        ) {
            // A daemon that looks every 10 s never misses a minute tick.
            let s = Schedule::parse("* * * * *").unwrap();
            let j = JobTimes::new(s.clone(), tz, Policy::default(), "w/j");
            let begin = Utc.timestamp_opt(start, 0).unwrap();
            let mut since = begin;
            let mut fired = Vec::new();
            let mut now = begin;
            for _ in 0..60 {
                now += chrono::Duration::seconds(10);
                let due = j.due(since, now);
                prop_assert_eq!(due.missed, 0);
                if let Some(t) = due.fire { fired.push(t); since = t; }
            }
            let expected: Vec<_> = ticks_after(&s, tz, begin).take_while(|t| *t <= now).collect();
            prop_assert_eq!(fired, expected);
        }
    }
}
