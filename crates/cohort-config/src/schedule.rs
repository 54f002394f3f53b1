//! Job schedules: crontab expressions, evaluated in the workspace's time zone.
//!
//! Cohort reads the standard 5-field crontab (`minute hour day-of-month month day-of-week`)
//! and a 6-field form with seconds first. In both, day of week 0 and 7 are Sunday, 1 is Monday
//! … 6 is Saturday, as in crontab(5); names `SUN`..`SAT` work too. The `cron` crate that
//! computes fire times numbers days from Sunday = 1, so this module parses every field itself
//! and hands the crate day *names*, never day numbers: the numbering cannot slip.
//!
//! As in Vixie cron, when both day-of-month and day-of-week are restricted (neither starts
//! with `*`), a day matches when EITHER matches (`0 9 1 * MON` fires on the 1st and on
//! Mondays). The `cron` crate would require both, so such a schedule is kept as two and their
//! fire times are merged.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

/// A schedule could not be read. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    message: String,
}

impl ScheduleError {
    fn new(message: impl Into<String>) -> ScheduleError {
        ScheduleError {
            message: message.into(),
        }
    }
}

/// A job's schedule: the expression as written and the fire times it means.
#[derive(Clone)]
pub struct Schedule {
    written: String,
    /// One schedule, or two when day-of-month and day-of-week are both restricted.
    crons: Vec<cron::Schedule>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.written).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.written == other.written
    }
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
/// 0..=7 with 7 folded onto 0 (Sunday) after parsing.
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    /// Reads a 5-field crontab, a 6-field one with seconds first, or `@hourly`, `@daily`
    /// (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`).
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        let expanded = match trimmed.to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(ScheduleError::new(format!(
                    "`{trimmed}` is not a schedule; use @hourly, @daily, @weekly, @monthly, @yearly or a crontab such as `0 3 * * *`"
                )));
            }
            _ => trimmed,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let (second, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(ScheduleError::new(format!(
                    "`{trimmed}` has {n} field{}; a schedule has 5 (minute hour day-of-month month day-of-week) or 6 (second first)",
                    if n == 1 { "" } else { "s" }
                )));
            }
        };
        let seconds = parse_field(second, &SECOND)?;
        let minutes = parse_field(rest[0], &MINUTE)?;
        let hours = parse_field(rest[1], &HOUR)?;
        let dom = parse_field(rest[2], &DAY_OF_MONTH)?;
        let months = parse_field(rest[3], &MONTH)?;
        let mut dow = parse_field(rest[4], &DAY_OF_WEEK)?;
        if dow.remove(&7) {
            dow.insert(0);
        }
        let dom_any = is_any(rest[2]);
        let dow_any = is_any(rest[4]);

        let numbers = |set: &BTreeSet<u32>, spec: &FieldSpec| -> String {
            if set.len() as u32 == spec.max - spec.min + 1 {
                "*".to_owned()
            } else {
                join(set.iter().map(u32::to_string))
            }
        };
        let days = if dow.len() == 7 {
            "*".to_owned()
        } else {
            join(dow.iter().map(|d| DAY_NAMES[*d as usize].to_owned()))
        };
        let head = format!(
            "{} {} {}",
            numbers(&seconds, &SECOND),
            numbers(&minutes, &MINUTE),
            numbers(&hours, &HOUR)
        );
        let month = numbers(&months, &MONTH);
        let dom_text = numbers(&dom, &DAY_OF_MONTH);
        let lines: Vec<String> = if !dom_any && !dow_any {
            vec![
                format!("{head} {dom_text} {month} *"),
                format!("{head} * {month} {days}"),
            ]
        } else {
            vec![format!("{head} {dom_text} {month} {days}")]
        };
        let crons = lines
            .iter()
            .map(|l| {
                cron::Schedule::from_str(l).map_err(|e| {
                    ScheduleError::new(format!("`{trimmed}` cannot be scheduled: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if crons.iter().all(|c| c.after(&Utc::now()).next().is_none()) {
            return Err(ScheduleError::new(format!(
                "`{trimmed}` never fires (no such date, e.g. 31 February)"
            )));
        }
        Ok(Schedule {
            written: expr.to_owned(),
            crons,
        })
    }

    /// The expression as written in the config.
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// The next fire times from now, in `tz` (the workspace's time zone: `0 9 * * *` is 09:00
    /// there, whatever the daylight saving time).
    pub fn upcoming<Tz: TimeZone>(&self, tz: &Tz) -> impl Iterator<Item = DateTime<Tz>> + use<Tz> {
        self.after(&Utc::now().with_timezone(tz))
    }

    /// The fire times strictly after `after`, in `after`'s time zone.
    pub fn after<Tz: TimeZone>(
        &self,
        after: &DateTime<Tz>,
    ) -> impl Iterator<Item = DateTime<Tz>> + use<Tz> {
        let mut iters: Vec<std::iter::Peekable<cron::OwnedScheduleIterator<Tz>>> = self
            .crons
            .iter()
            .map(|c| c.after_owned(after.clone()).peekable())
            .collect();
        let mut last: Option<DateTime<Tz>> = None;
        std::iter::from_fn(move || {
            loop {
                let next_index = iters
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(i, it)| it.peek().map(|t| (i, t.clone())))
                    .min_by(|a, b| a.1.cmp(&b.1))
                    .map(|(i, _)| i)?;
                let t = iters[next_index].next()?;
                if last.as_ref().is_some_and(|l| *l == t) {
                    continue;
                }
                last = Some(t.clone());
                return Some(t);
            }
        })
    }
}

fn is_any(field: &str) -> bool {
    field.starts_with('*') || field == "?"
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// Reads one field into the set of values it allows.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<BTreeSet<u32>, ScheduleError> {
    let name = spec.name;
    let bad = |why: String| ScheduleError::new(format!("{name} field `{text}`: {why}"));
    let mut set = BTreeSet::new();
    let wildcard_allowed = spec.name == "day of month" || spec.name == "day of week";
    for item in text.split(',') {
        if item.is_empty() {
            return Err(bad("empty list item".to_owned()));
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| bad(format!("step `{s}` is not a number")))?;
                if step == 0 {
                    return Err(bad("a step of 0 never advances".to_owned()));
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" || (range == "?" && wildcard_allowed) {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec, &bad)?, value(b, spec, &bad)?)
        } else {
            let v = value(range, spec, &bad)?;
            // `5/15` means from 5 to the end, every 15.
            (v, if step.is_some() { spec.max } else { v })
        };
        if lo > hi {
            return Err(bad(format!(
                "range {lo}-{hi} runs backwards; write it from low to high"
            )));
        }
        let step = step.unwrap_or(1) as usize;
        set.extend((lo..=hi).step_by(step));
    }
    Ok(set)
}

fn value(
    text: &str,
    spec: &FieldSpec,
    bad: &dyn Fn(String) -> ScheduleError,
) -> Result<u32, ScheduleError> {
    if let Ok(n) = text.parse::<u32>() {
        if n < spec.min || n > spec.max {
            return Err(bad(format!(
                "{n} is out of range {}-{}",
                spec.min, spec.max
            )));
        }
        return Ok(n);
    }
    let upper = text.to_ascii_uppercase();
    let short = upper.get(..3).unwrap_or(&upper);
    if let Some(i) = spec.names.iter().position(|n| *n == short) {
        // Accept `MON` and `MONDAY`, not `MONKEY`.
        let full_ok = upper.len() == 3 || full_name(spec, i).is_some_and(|f| f == upper);
        if full_ok {
            let base = if spec.name == "month" { 1 } else { 0 };
            return Ok(i as u32 + base);
        }
    }
    let hint = if spec.names.is_empty() {
        format!("expected a number {}-{}", spec.min, spec.max)
    } else {
        format!(
            "expected a number {}-{} or a name ({})",
            spec.min,
            spec.max,
            spec.names.join(", ")
        )
    };
    Err(bad(format!("`{text}` is not valid: {hint}")))
}

fn full_name(spec: &FieldSpec, i: usize) -> Option<&'static str> {
    const DAYS: [&str; 7] = [
        "SUNDAY",
        "MONDAY",
        "TUESDAY",
        "WEDNESDAY",
        "THURSDAY",
        "FRIDAY",
        "SATURDAY",
    ];
    const MONTHS: [&str; 12] = [
        "JANUARY",
        "FEBRUARY",
        "MARCH",
        "APRIL",
        "MAY",
        "JUNE",
        "JULY",
        "AUGUST",
        "SEPTEMBER",
        "OCTOBER",
        "NOVEMBER",
        "DECEMBER",
    ];
    if spec.name == "month" {
        MONTHS.get(i).copied()
    } else {
        DAYS.get(i).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Timelike, Weekday};

    /// A Wednesday.
    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn weekdays(expr: &str, n: usize) -> Vec<Weekday> {
        let s = Schedule::parse(expr).unwrap();
        s.after(&start()).take(n).map(|t| t.weekday()).collect()
    }

    #[test]
    fn day_one_is_monday() {
        let s = Schedule::parse("0 9 * * 1").unwrap();
        let times: Vec<DateTime<Utc>> = s.after(&start()).take(3).collect();
        for t in &times {
            assert_eq!(t.weekday(), Weekday::Mon, "{t}");
            assert_eq!((t.hour(), t.minute(), t.second()), (9, 0, 0));
        }
        assert_eq!(
            times[0].date_naive(),
            NaiveDate::from_ymd_opt(2025, 1, 6).unwrap()
        );
    }

    #[test]
    fn day_zero_and_day_seven_are_both_sunday() {
        assert_eq!(weekdays("0 9 * * 0", 3), vec![Weekday::Sun; 3]);
        assert_eq!(weekdays("0 9 * * 7", 3), vec![Weekday::Sun; 3]);
        assert_eq!(weekdays("0 9 * * SUN", 2), vec![Weekday::Sun; 2]);
        assert_eq!(weekdays("0 9 * * 0,7", 2), vec![Weekday::Sun; 2]);
    }

    #[test]
    fn weekday_ranges_follow_crontab_numbering() {
        use Weekday::*;
        // From Wednesday 1 January 2025.
        assert_eq!(
            weekdays("0 9 * * 1-5", 7),
            vec![Wed, Thu, Fri, Mon, Tue, Wed, Thu]
        );
        assert_eq!(weekdays("0 9 * * MON-FRI", 3), vec![Wed, Thu, Fri]);
        assert_eq!(weekdays("0 9 * * 5-7", 4), vec![Fri, Sat, Sun, Fri]);
        assert_eq!(weekdays("0 9 * * 0-6/2", 4), vec![Thu, Sat, Sun, Tue]);
        assert_eq!(weekdays("0 9 * * mon,wed", 3), vec![Wed, Mon, Wed]);
        assert_eq!(weekdays("0 9 * * Saturday", 1), vec![Sat]);
    }

    #[test]
    fn every_fifteen_minutes() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        let mins: Vec<u32> = s.after(&start()).take(5).map(|t| t.minute()).collect();
        assert_eq!(mins, vec![15, 30, 45, 0, 15]);
    }

    #[test]
    fn six_fields_put_seconds_first_with_the_same_weekdays() {
        let s = Schedule::parse("30 0 9 * * 1").unwrap();
        let t = s.after(&start()).next().unwrap();
        assert_eq!(t.weekday(), Weekday::Mon);
        assert_eq!((t.hour(), t.minute(), t.second()), (9, 0, 30));
        let sunday = Schedule::parse("0 0 9 * * 7").unwrap();
        assert_eq!(
            sunday.after(&start()).next().unwrap().weekday(),
            Weekday::Sun
        );
    }

    #[test]
    fn shorthands_expand_to_crontab() {
        let at = |e: &str| {
            let s = Schedule::parse(e).unwrap();
            s.after(&start()).nth(1).unwrap()
        };
        assert_eq!(
            at("@hourly"),
            Utc.with_ymd_and_hms(2025, 1, 1, 2, 0, 0).unwrap()
        );
        assert_eq!(
            at("@daily"),
            Utc.with_ymd_and_hms(2025, 1, 3, 0, 0, 0).unwrap()
        );
        assert_eq!(
            at("@weekly"),
            Utc.with_ymd_and_hms(2025, 1, 12, 0, 0, 0).unwrap()
        );
        assert_eq!(
            at("@monthly"),
            Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(Schedule::parse("@daily").unwrap().as_written(), "@daily");
    }

    #[test]
    fn day_of_month_and_day_of_week_together_mean_either() {
        let s = Schedule::parse("0 9 13 * FRI").unwrap();
        let days: Vec<(u32, Weekday)> = s
            .after(&start())
            .take(4)
            .map(|t| (t.day(), t.weekday()))
            .collect();
        assert_eq!(
            days,
            vec![
                (3, Weekday::Fri),
                (10, Weekday::Fri),
                (13, Weekday::Mon),
                (17, Weekday::Fri)
            ]
        );
        // A day that is both fires once.
        let both = Schedule::parse("0 9 6 * 1").unwrap();
        let first: Vec<u32> = both.after(&start()).take(2).map(|t| t.day()).collect();
        assert_eq!(first, vec![6, 13]);
    }

    #[test]
    fn fire_times_follow_the_workspace_clock_across_daylight_saving() {
        let tz = chrono_tz::America::New_York;
        let s = Schedule::parse("0 9 * * *").unwrap();
        // DST starts on Sunday 9 March 2025 in New York.
        let from = tz.with_ymd_and_hms(2025, 3, 8, 12, 0, 0).unwrap();
        let times: Vec<_> = s.after(&from).take(2).collect();
        assert!(times.iter().all(|t| t.hour() == 9));
        assert_eq!(
            times[0].with_timezone(&Utc),
            Utc.with_ymd_and_hms(2025, 3, 9, 13, 0, 0).unwrap()
        );
        assert_eq!(
            times[1].with_timezone(&Utc),
            Utc.with_ymd_and_hms(2025, 3, 10, 13, 0, 0).unwrap()
        );
        let before = s
            .after(&tz.with_ymd_and_hms(2025, 3, 7, 12, 0, 0).unwrap())
            .next();
        assert_eq!(
            before.unwrap().with_timezone(&Utc),
            Utc.with_ymd_and_hms(2025, 3, 8, 14, 0, 0).unwrap(),
            "09:00 EST is 14:00 UTC"
        );
        let next = s.upcoming(&tz).next().unwrap();
        assert_eq!(next.timezone(), tz);
    }

    #[test]
    fn mistakes_name_the_field() {
        let err = |e: &str| Schedule::parse(e).unwrap_err().to_string();
        assert!(err("61 * * * *").starts_with("minute field `61`: 61 is out of range 0-59"));
        assert!(err("0 24 * * *").starts_with("hour field `24`"));
        assert!(err("0 9 0 * *").starts_with("day of month field `0`"));
        assert!(err("0 9 * 13 *").starts_with("month field `13`"));
        assert!(err("0 9 * * 8").starts_with("day of week field `8`: 8 is out of range 0-7"));
        assert!(
            err("0 9 * * MONKEY").contains("`MONKEY` is not valid"),
            "{}",
            err("0 9 * * MONKEY")
        );
        assert!(err("*/0 * * * *").contains("step of 0"));
        assert!(err("0 9 * * 5-1").contains("runs backwards"));
        assert!(err("0 9 * *").contains("has 4 fields"));
        assert!(err("@sometimes").contains("not a schedule"));
        assert!(err("61 0 9 * * 1").starts_with("second field `61`"));
        assert!(err("0 0 30 2 *").contains("never fires"));
    }
}
