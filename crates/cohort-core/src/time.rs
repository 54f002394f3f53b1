//! Instants, calendar days and the run's clock.
//!
//! Features are computed "as of" an instant, never from the wall clock, so a run is
//! reproducible and a test can pin time. Instants are whole seconds since the Unix epoch in an
//! `i64` (columns of them are cheap to scan); calendar questions (which day, how many days
//! between, "six months ago") are answered in the workspace's time zone.

use std::fmt;

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in whole seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

/// Why a text is not an instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a date or date-time (expected e.g. 2024-03-01, 2024-03-01T12:00:00, 2024-03-01 12:00:00+02:00 or 03/01/2024)"
)]
pub struct TimestampError(pub String);

impl Timestamp {
    /// The instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs)
    }

    /// Seconds since the epoch.
    pub const fn secs(self) -> i64 {
        self.0
    }

    /// The same instant as a chrono value.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Parses the date and date-time forms found in exports.
    ///
    /// Accepted: `YYYY-MM-DD`, `YYYYMMDD`, `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]]` with an
    /// optional `Z` or `±HH:MM` offset (no offset means UTC), RFC 2822, and US `MM/DD/YYYY`.
    /// Fractions of a second are dropped: features work in whole seconds.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let s = text.trim_ascii();
        if let Some(ts) = parse_iso_fast(s.as_bytes()) {
            return Ok(ts);
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
            return Ok(Timestamp(dt.timestamp()));
        }
        if let Ok(dt) = DateTime::parse_from_rfc2822(s) {
            return Ok(Timestamp(dt.timestamp()));
        }
        for format in [
            "%Y-%m-%d %H:%M:%S%.f %z",
            "%Y-%m-%d %H:%M:%S %z",
            "%Y-%m-%dT%H:%M:%S%.f%z",
        ] {
            if let Ok(dt) = DateTime::parse_from_str(s, format) {
                return Ok(Timestamp(dt.timestamp()));
            }
        }
        for format in ["%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M:%S"] {
            if let Ok(dt) = NaiveDateTime::parse_from_str(s, format) {
                return Ok(Timestamp(dt.and_utc().timestamp()));
            }
        }
        for format in ["%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d"] {
            if let Ok(d) = NaiveDate::parse_from_str(s, format) {
                return Ok(Timestamp::from_date(d));
            }
        }
        Err(TimestampError(text.to_owned()))
    }

    /// Midnight UTC at the start of `date`.
    pub fn from_date(date: NaiveDate) -> Timestamp {
        Timestamp(date.and_time(NaiveTime::MIN).and_utc().timestamp())
    }

    /// The calendar date of this instant in `tz`.
    pub fn date_in(self, tz: Tz) -> NaiveDate {
        tz.from_utc_datetime(&self.to_datetime().naive_utc())
            .date_naive()
    }

    /// Days since 1970-01-01 of this instant's calendar date in `tz`.
    ///
    /// UTC, the common case, is plain integer division; this runs once per customer and
    /// feature, so it matters.
    pub fn day_number_in(self, tz: Tz) -> i64 {
        if tz == Tz::UTC {
            return self.0.div_euclid(86_400);
        }
        let date = self.date_in(tz);
        days_from_civil(i64::from(date.year()), date.month(), date.day())
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's algorithm).
const fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// The ISO-like forms that make up nearly every export, without allocation. `None` sends the
/// text to the slower general parsers.
fn parse_iso_fast(b: &[u8]) -> Option<Timestamp> {
    let (y, mo, d, rest) = if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        (
            digits(&b[0..4])?,
            digits(&b[5..7])?,
            digits(&b[8..10])?,
            &b[10..],
        )
    } else if b.len() == 8 {
        (
            digits(&b[0..4])?,
            digits(&b[4..6])?,
            digits(&b[6..8])?,
            &b[8..],
        )
    } else {
        return None;
    };
    let y = i64::from(y);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let mut secs = days_from_civil(y, mo, d) * 86_400;
    if rest.is_empty() {
        return Some(Timestamp(secs));
    }
    if rest.len() < 6 || !(rest[0] == b'T' || rest[0] == b' ') || rest[3] != b':' {
        return None;
    }
    let (h, mi) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
    let mut rest = &rest[6..];
    let mut s = 0;
    if rest.first() == Some(&b':') {
        s = digits(rest.get(1..3)?)?;
        rest = &rest[3..];
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &rest[1 + n..];
    }
    secs += i64::from(h * 3600 + mi * 60 + s);
    match rest {
        [] | [b'Z'] => Some(Timestamp(secs)),
        [sign @ (b'+' | b'-'), hh0, hh1, b':', mm0, mm1] => {
            let off = i64::from(digits(&[*hh0, *hh1])? * 3600 + digits(&[*mm0, *mm1])? * 60);
            Some(Timestamp(if *sign == b'+' {
                secs - off
            } else {
                secs + off
            }))
        }
        _ => None,
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC: `2024-03-01T12:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A calendar offset back from the run's clock, as written in a segment: `-90d`, `-6m`, `-1y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CalendarOffset {
    /// Whole days (24 hours each; the unit `w` is seven of them).
    Days(i64),
    /// Calendar months; the day of month is clamped (March 31 minus one month is February 28/29).
    Months(i64),
}

/// The clock of one run: the instant features are computed at, and the zone its calendar uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsOf {
    /// The run's "now".
    pub now: Timestamp,
    /// The workspace's time zone, for calendar days and relative months.
    pub tz: Tz,
}

impl AsOf {
    /// A clock at `now`, with calendars in UTC.
    pub fn utc(now: Timestamp) -> Self {
        AsOf { now, tz: Tz::UTC }
    }

    /// The run's calendar date.
    pub fn today(&self) -> NaiveDate {
        self.now.date_in(self.tz)
    }

    /// The instant local midnight starts `date` (the first valid instant of the day when a
    /// daylight-saving jump skips midnight).
    pub fn start_of(&self, date: NaiveDate) -> Timestamp {
        let mut t = NaiveTime::MIN;
        for _ in 0..4 {
            if let Some(dt) = self.tz.from_local_datetime(&date.and_time(t)).earliest() {
                return Timestamp(dt.timestamp());
            }
            t += chrono::Duration::minutes(30);
        }
        Timestamp::from_date(date)
    }

    /// Whole calendar days from `then`'s local date to today's (0 on the same day).
    pub fn days_since(&self, then: Timestamp) -> i64 {
        self.now.day_number_in(self.tz) - then.day_number_in(self.tz)
    }

    /// `now` moved back (negative offset) or forward by a calendar offset.
    pub fn shift(&self, offset: CalendarOffset) -> Timestamp {
        match offset {
            CalendarOffset::Days(d) => {
                Timestamp(self.now.0.saturating_add(d.saturating_mul(86_400)))
            }
            CalendarOffset::Months(m) => {
                let local = self
                    .tz
                    .from_utc_datetime(&self.now.to_datetime().naive_utc())
                    .naive_local();
                let shifted = if m < 0 {
                    local.checked_sub_months(Months::new(m.unsigned_abs() as u32))
                } else {
                    local.checked_add_months(Months::new(m as u32))
                };
                let shifted = shifted.unwrap_or(local);
                self.tz
                    .from_local_datetime(&shifted)
                    .earliest()
                    .map_or(self.now, |dt| Timestamp(dt.timestamp()))
            }
        }
    }

    /// Age in whole years on the run's date for someone born on `birth`.
    pub fn age_on_today(&self, birth: NaiveDate) -> i64 {
        let today = self.today();
        let mut age = i64::from(today.year() - birth.year());
        if (today.month(), today.day()) < (birth.month(), birth.day()) {
            age -= 1;
        }
        age
    }

    /// The first instant of the day after `date`.
    pub fn start_of_next(&self, date: NaiveDate) -> Timestamp {
        self.start_of(date.checked_add_days(Days::new(1)).unwrap_or(date))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        for s in [
            "2024-02-29",
            "1997-01-01 00:00:00",
            "2024-03-01T12:34:56",
            "2024-03-01T12:34:56.123456",
            "2024-03-01T12:34:56Z",
            "2024-03-01T12:34:56+02:00",
            "2024-03-01T12:34:56-05:30",
            "1969-12-31T23:59:59",
        ] {
            let fast = parse_iso_fast(s.as_bytes()).unwrap_or_else(|| panic!("{s} not parsed"));
            let slow = DateTime::parse_from_rfc3339(&if s.len() == 10 {
                format!("{s}T00:00:00Z")
            } else if s.ends_with('Z') || s.contains('+') || s[10..].contains('-') {
                s.replace(' ', "T")
            } else {
                format!("{}Z", s.replace(' ', "T"))
            })
            .unwrap();
            assert_eq!(fast.secs(), slow.timestamp(), "{s}");
        }
    }

    #[test]
    fn parses_export_formats() {
        assert_eq!(ts("19970101"), ts("1997-01-01"));
        assert_eq!(ts("03/01/2024"), ts("2024-03-01"));
        assert_eq!(
            ts("Fri, 01 Mar 2024 12:00:00 +0000"),
            ts("2024-03-01T12:00:00Z")
        );
        assert_eq!(ts("2024-03-01 12:00:00 +0100"), ts("2024-03-01T11:00:00Z"));
        assert!(Timestamp::parse("2023-02-29").is_err());
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::parse("2024-13-01").is_err());
    }

    #[test]
    fn days_since_counts_calendar_days_in_the_zone() {
        let utc = AsOf::utc(ts("2024-03-02T00:30:00Z"));
        assert_eq!(utc.days_since(ts("2024-03-01T23:59:00Z")), 1);
        assert_eq!(utc.days_since(ts("2024-03-02T00:00:00Z")), 0);
        let ny = AsOf {
            now: ts("2024-03-02T00:30:00Z"),
            tz: chrono_tz::America::New_York,
        };
        // 00:30 UTC is still March 1st in New York.
        assert_eq!(ny.days_since(ts("2024-03-01T23:59:00Z")), 0);
    }

    #[test]
    fn day_numbers_agree_with_calendar_dates() {
        for s in [
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T12:00:00Z",
        ] {
            let t = ts(s);
            for tz in [
                Tz::UTC,
                chrono_tz::Asia::Tokyo,
                chrono_tz::America::Los_Angeles,
            ] {
                let date = t.date_in(tz);
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
                assert_eq!(
                    t.day_number_in(tz),
                    (date - epoch).num_days(),
                    "{s} in {tz}"
                );
            }
        }
    }

    #[test]
    fn month_offsets_clamp_to_the_end_of_month() {
        let clock = AsOf::utc(ts("2024-03-31T10:00:00Z"));
        assert_eq!(
            clock.shift(CalendarOffset::Months(-1)),
            ts("2024-02-29T10:00:00Z")
        );
        assert_eq!(
            clock.shift(CalendarOffset::Months(-12)),
            ts("2023-03-31T10:00:00Z")
        );
        assert_eq!(
            clock.shift(CalendarOffset::Days(-90)),
            ts("2024-01-01T10:00:00Z")
        );
    }

    #[test]
    fn ages_turn_on_the_birthday() {
        let clock = AsOf::utc(ts("2024-06-15"));
        assert_eq!(
            clock.age_on_today(NaiveDate::from_ymd_opt(2000, 6, 15).unwrap()),
            24
        );
        assert_eq!(
            clock.age_on_today(NaiveDate::from_ymd_opt(2000, 6, 16).unwrap()),
            23
        );
    }
}
