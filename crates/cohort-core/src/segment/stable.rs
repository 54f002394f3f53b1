//! Until when a computed result stays true with no new data: the earliest instant after the
//! run's clock at which any feature or segment condition that depends on the clock could
//! change for any customer.
//!
//! The clock enters a result in three ways, and each gives its instants:
//!
//! - calendar days (`days_since_*`, `age`, RFM recency, `today`, dates): the next local
//!   midnight;
//! - the 30- and 90-day windows of engagement counts: an event at `t` leaves them at
//!   `t + 30d` and `t + 90d`; a record dated after the clock enters at its own instant;
//! - relative dates in conditions (`last_order_at > -90d`): the bound moves with the clock
//!   and crosses a customer's value `t` when `now + offset = t`. For months (whose length
//!   varies, and whose end clamps) the crossing is searched near the clock, and taken four
//!   days early further away, which can only make a result stand for less long.
//!
//! Being early is always safe (the next run recomputes); being late never happens. So a run
//! may reuse the previous result only while its clock is before [`Stability::until`].

use super::ast::{Expr, Lit, Test};
use super::set::SegmentSet;
use crate::features::Column;
use crate::time::{AsOf, CalendarOffset, Timestamp};

const DAY: i64 = 86_400;
/// How far a month-relative bound's crossing may be from a month's shift back (month ends
/// clamp, DST moves an hour).
const MONTH_SLACK: i64 = 4 * DAY;

/// The earliest instant at which a result computed at a clock could change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stability {
    as_of: AsOf,
    until: Timestamp,
}

impl Stability {
    /// At most until the next local midnight after `as_of`.
    pub fn new(as_of: AsOf) -> Stability {
        Stability {
            as_of,
            until: as_of.start_of_next(as_of.today()),
        }
    }

    /// The instant before which the result stands.
    pub fn until(&self) -> Timestamp {
        self.until
    }

    /// An engagement event at `at`: it leaves the 30- and 90-day windows then (or enters them
    /// when it is dated after the clock).
    pub fn event(&mut self, at: Timestamp) {
        self.candidate(at);
        for days in [30, 90] {
            self.candidate(Timestamp::from_secs(at.secs().saturating_add(days * DAY)));
        }
    }

    /// An order or refund at `at`: it counts from then on (nothing when it is past already).
    pub fn fact(&mut self, at: Timestamp) {
        self.candidate(at);
    }

    /// The conditions of `set` with relative dates, over the values of its table.
    pub fn segments(&mut self, set: &SegmentSet<'_>) {
        let names: Vec<String> = set.names().map(str::to_owned).collect();
        for name in names {
            if let Some(expr) = set.expr(&name) {
                self.expr(set, expr);
            }
        }
    }

    fn expr(&mut self, set: &SegmentSet<'_>, expr: &Expr) {
        match expr {
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|e| self.expr(set, e)),
            Expr::Not(inner) => self.expr(set, inner),
            Expr::InSegment(_) => {}
            Expr::Predicate(p) => {
                let offsets: Vec<CalendarOffset> = literals(&p.test)
                    .filter_map(|l| match l {
                        Lit::Relative(r) => Some(r.offset()),
                        _ => None,
                    })
                    .collect();
                if offsets.is_empty() {
                    return;
                }
                let Some((_, Column::Time(column))) = set.table().field(&p.field.name) else {
                    return;
                };
                for row in column.valid.iter() {
                    let value = column.values[row];
                    for &offset in &offsets {
                        self.crossing(value, offset);
                    }
                }
            }
        }
    }

    /// Where the bound `now + offset` reaches `value`, and where it passes it (the instants
    /// a `>=` and a `>` stop or start holding).
    fn crossing(&mut self, value: Timestamp, offset: CalendarOffset) {
        match offset {
            CalendarOffset::Days(d) => {
                let at = value.secs().saturating_sub(d.saturating_mul(DAY));
                self.candidate(Timestamp::from_secs(at));
                self.candidate(Timestamp::from_secs(at.saturating_add(1)));
            }
            CalendarOffset::Months(m) => {
                let tz = self.as_of.tz;
                let bound = |t: i64| {
                    AsOf {
                        now: Timestamp::from_secs(t),
                        tz,
                    }
                    .shift(offset)
                    .secs()
                };
                // Shifting back and forth by months lands within a few days of the start
                // (month ends clamp, DST moves an hour): the crossing is in `lo..=hi`.
                let back =
                    AsOf { now: value, tz }.shift(CalendarOffset::Months(m.saturating_neg()));
                let (lo, hi) = (
                    back.secs().saturating_sub(MONTH_SLACK),
                    back.secs().saturating_add(MONTH_SLACK),
                );
                let now = self.as_of.now.secs();
                if lo > now {
                    // Early, and so safe; the exact search is kept for the few near the clock.
                    self.candidate(Timestamp::from_secs(lo));
                } else if hi > now {
                    let v = value.secs();
                    for reached in [
                        first_after(now, hi, |t| bound(t) >= v),
                        first_after(now, hi, |t| bound(t) > v),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        self.candidate(Timestamp::from_secs(reached));
                    }
                }
            }
        }
    }

    fn candidate(&mut self, at: Timestamp) {
        if at > self.as_of.now && at < self.until {
            self.until = at;
        }
    }
}

/// The first second in `after+1..=last` where `holds` (monotone: false, then true) holds.
fn first_after(after: i64, last: i64, holds: impl Fn(i64) -> bool) -> Option<i64> {
    if !holds(last) {
        return None;
    }
    let (mut lo, mut hi) = (after, last);
    // Invariant: `holds(hi)`, and `lo` is `after` or a second where it does not hold.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if holds(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

fn literals(test: &Test) -> Box<dyn Iterator<Item = &Lit> + '_> {
    match test {
        Test::Compare(_, l)
        | Test::Contains { value: l, .. }
        | Test::StartsWith(l)
        | Test::EndsWith(l) => Box::new(std::iter::once(&l.lit)),
        Test::In { values, .. } => Box::new(values.iter().map(|l| &l.lit)),
        Test::Between(a, b) => Box::new([&a.lit, &b.lit].into_iter()),
        Test::IsNull { .. } | Test::IsTrue => Box::new(std::iter::empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureBuilder;
    use crate::money::Money;
    use crate::record::{Customer, OrderFacts};
    use crate::segment::SegmentDef;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("test instant")
    }

    fn table(now: &str, last_orders: &[&str]) -> crate::features::FeatureTable {
        let mut b = FeatureBuilder::new(AsOf::utc(ts(now)));
        for (i, at) in last_orders.iter().enumerate() {
            let id = i.to_string();
            b.add_customer(&Customer::new(id.clone()))
                .expect("customer");
            let facts = OrderFacts {
                created_at: ts(at),
                net_total: Money::from_whole(1),
                item_count: 1,
                refund: false,
            };
            b.add_order(&id, Some(facts)).expect("order");
        }
        b.finish()
    }

    fn until(now: &str, last_orders: &[&str], expr: &str) -> Timestamp {
        let t = table(now, last_orders);
        let defs = [SegmentDef::new("s", expr)];
        let set = SegmentSet::compile(&defs, &t).expect("compiles");
        let mut s = Stability::new(t.as_of());
        s.segments(&set);
        s.until()
    }

    #[test]
    fn without_clock_dependent_conditions_a_result_stands_until_midnight() {
        let s = Stability::new(AsOf::utc(ts("2024-07-01T15:30:00Z")));
        assert_eq!(s.until(), ts("2024-07-02T00:00:00Z"));
        let got = until(
            "2024-07-01T15:30:00Z",
            &["2024-05-01T10:00:00Z"],
            "orders_count >= 1",
        );
        assert_eq!(got, ts("2024-07-02T00:00:00Z"));
    }

    #[test]
    fn midnight_is_local_to_the_workspace() {
        let tz: chrono_tz::Tz = "America/New_York".parse().expect("zone");
        let s = Stability::new(AsOf {
            now: ts("2024-07-01T15:30:00Z"),
            tz,
        });
        assert_eq!(s.until(), ts("2024-07-02T04:00:00Z"));
    }

    #[test]
    fn a_relative_day_bound_flips_when_it_reaches_a_customers_value() {
        // 90 days after 2024-04-02T20:00 is 2024-07-01T20:00: the customer leaves then.
        let got = until(
            "2024-07-01T15:30:00Z",
            &["2024-04-02T20:00:00Z", "2024-06-01T00:00:00Z"],
            "last_order_at > -90d",
        );
        assert_eq!(got, ts("2024-07-01T20:00:00Z"));
        // The flip instant itself is where the result changes: a clock there differs.
        let before = table("2024-07-01T19:59:59Z", &["2024-04-02T20:00:00Z"]);
        let at = table("2024-07-01T20:00:00Z", &["2024-04-02T20:00:00Z"]);
        let members = |t: &crate::features::FeatureTable| {
            let defs = [SegmentDef::new("s", "last_order_at > -90d")];
            let set = SegmentSet::compile(&defs, t).expect("compiles");
            set.evaluate()[0].1.count()
        };
        assert_eq!((members(&before), members(&at)), (1, 0));
    }

    #[test]
    fn a_relative_month_bound_flips_where_the_calendar_says() {
        // Three months after 2024-04-01T18:00 is 2024-07-01T18:00.
        let got = until(
            "2024-07-01T15:30:00Z",
            &["2024-04-01T18:00:00Z"],
            "last_order_at > -3m",
        );
        assert_eq!(got, ts("2024-07-01T18:00:00Z"));
        // Far from the clock: midnight stands.
        let got = until(
            "2024-07-01T15:30:00Z",
            &["2024-04-20T18:00:00Z"],
            "last_order_at > -3m and orders_count > 0",
        );
        assert_eq!(got, ts("2024-07-02T00:00:00Z"));
    }

    #[test]
    fn events_leave_their_windows_thirty_and_ninety_days_on() {
        let mut s = Stability::new(AsOf::utc(ts("2024-07-01T15:30:00Z")));
        s.event(ts("2024-06-01T16:00:00Z"));
        assert_eq!(s.until(), ts("2024-07-01T16:00:00Z"));
        let mut s = Stability::new(AsOf::utc(ts("2024-07-01T15:30:00Z")));
        s.event(ts("2024-04-02T15:45:00Z"));
        assert_eq!(s.until(), ts("2024-07-01T15:45:00Z"));
    }

    #[test]
    fn a_record_dated_after_the_clock_enters_at_its_instant() {
        let mut s = Stability::new(AsOf::utc(ts("2024-07-01T15:30:00Z")));
        s.fact(ts("2024-07-01T17:00:00Z"));
        s.fact(ts("2024-06-01T17:00:00Z"));
        assert_eq!(s.until(), ts("2024-07-01T17:00:00Z"));
    }
}
