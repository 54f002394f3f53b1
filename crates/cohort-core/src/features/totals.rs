//! Per-customer totals that a store keeps up to date as records are upserted, so a run reads
//! one row per customer instead of the whole order history.
//!
//! Counts and sums are kept by deltas: replacing an order's facts `A` by `B` subtracts `A` and
//! adds `B` ([`OrderChange`]). First and last instants are a minimum and a maximum, which no
//! subtraction can undo: when a removed fact held the stored extreme, [`OrderChange::apply`]
//! says so (`None`) and the caller recomputes that one customer from their records
//! ([`OrderTotals::of`]). A removed fact never sits *beyond* the stored extreme (it was part
//! of it), so comparing the removed extremes with the stored ones is exact.
//!
//! Spend is summed in `i128`: a delta may pass through a value no `i64` holds (a large order
//! added before a large refund is taken away), and the stored total must stay exact whatever
//! the order of changes. Whether it fits the features' `i64` is decided when it is read
//! ([`OrderTotals::spent_money`]).
//!
//! Nothing here knows about time windows: counts over the last 30 or 90 days depend on the
//! run's clock and are read from the events themselves.

use crate::money::Money;
use crate::record::OrderFacts;
use crate::time::Timestamp;

/// What a customer's orders add up to (in one source). Also each half of an [`OrderChange`].
///
/// Refunds recorded on their own count in `spent` and `latest` only, as in the feature
/// builder. Void facts (a cancelled or undated order) count for nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderTotals {
    /// Order records of any kind, void ones too: a customer with records but nothing that
    /// counts still has a row (a run reports their records when the customer is unknown).
    pub records: u64,
    /// Orders (refunds left out).
    pub orders: u64,
    /// Items over those orders.
    pub items: u64,
    /// Spend net of refunds, in money's raw units.
    pub spent: i128,
    /// The earliest order.
    pub first: Option<Timestamp>,
    /// The latest order.
    pub last: Option<Timestamp>,
    /// The latest fact of any kind, refunds included: a run whose clock is before it must not
    /// use these totals (the builder leaves out what is dated after its clock).
    pub latest: Option<Timestamp>,
}

impl OrderTotals {
    /// The totals of `facts`.
    pub fn of(facts: impl IntoIterator<Item = Option<OrderFacts>>) -> OrderTotals {
        let mut totals = OrderTotals::default();
        for f in facts {
            totals.add(f);
        }
        totals
    }

    /// Counts one order record in, with its facts (`None`: void).
    pub fn add(&mut self, facts: Option<OrderFacts>) {
        self.records += 1;
        let Some(f) = facts else { return };
        self.spent += i128::from(f.net_total.raw());
        self.latest = max(self.latest, Some(f.created_at));
        if f.refund {
            return;
        }
        self.orders += 1;
        self.items += u64::from(f.item_count);
        self.first = min(self.first, Some(f.created_at));
        self.last = max(self.last, Some(f.created_at));
    }

    /// The totals of two disjoint sets of orders together.
    pub fn merge(&mut self, other: &OrderTotals) {
        self.records += other.records;
        self.orders += other.orders;
        self.items += other.items;
        self.spent += other.spent;
        self.first = min(self.first, other.first);
        self.last = max(self.last, other.last);
        self.latest = max(self.latest, other.latest);
    }

    /// Whether there is no record at all (a customer whose stored row can go).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The spend as money, or `None` when it does not fit (more than 922 trillion).
    pub fn spent_money(&self) -> Option<Money> {
        i64::try_from(self.spent).ok().map(Money::from_raw)
    }
}

/// The facts taken out of, and put into, one customer's orders by a batch of upserts and
/// deletions.
///
/// What is removed must be in the stored totals: a record is changed at most once per
/// change (a batch that writes a record and then deletes it is two changes, applied in turn).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderChange {
    /// What was there before and is gone (an old version, a deleted order).
    pub removed: OrderTotals,
    /// What is there now and was not (a new order, a new version).
    pub added: OrderTotals,
}

impl OrderChange {
    /// Records that an order record with facts `old` was replaced by one with facts `new`
    /// (`None`: void): a new version of the same order.
    pub fn replace(&mut self, old: Option<OrderFacts>, new: Option<OrderFacts>) {
        self.removed.add(old);
        self.added.add(new);
    }

    /// The stored totals after this change, or `None` when they cannot be derived from
    /// `stored` alone: a removed fact held one of its extremes (first, last or latest), or
    /// more was removed than `stored` holds (the stored row is not what the records say). The
    /// caller then recomputes the customer from their records.
    pub fn apply(&self, stored: &OrderTotals) -> Option<OrderTotals> {
        let (r, a) = (&self.removed, &self.added);
        let hits = |removed: Option<Timestamp>, held: Option<Timestamp>| {
            removed.is_some() && removed == held
        };
        if hits(r.first, stored.first) || hits(r.last, stored.last) || hits(r.latest, stored.latest)
        {
            return None;
        }
        let records = stored.records.checked_sub(r.records)?;
        let orders = stored.orders.checked_sub(r.orders)?;
        let items = stored.items.checked_sub(r.items)?;
        if r.latest.is_some() && stored.latest.is_none() {
            return None;
        }
        let mut next = OrderTotals {
            records,
            orders,
            items,
            spent: stored.spent - r.spent,
            first: stored.first.filter(|_| orders > 0),
            last: stored.last.filter(|_| orders > 0),
            latest: stored.latest,
        };
        if next.orders == 0 && stored.orders > 0 {
            // Every order went, and none of them was first or last: impossible unless the
            // stored row disagrees with the records.
            return None;
        }
        next.merge(a);
        Some(next)
    }
}

/// What a customer's events of one kind add up to (in one source).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTotals {
    /// Events.
    pub count: u64,
    /// The latest of them.
    pub last: Option<Timestamp>,
}

impl EventTotals {
    /// Counts one event in.
    pub fn add(&mut self, at: Timestamp) {
        self.count += 1;
        self.last = max(self.last, Some(at));
    }

    /// The totals of two disjoint sets of events together.
    pub fn merge(&mut self, other: &EventTotals) {
        self.count += other.count;
        self.last = max(self.last, other.last);
    }
}

/// The events of one kind taken out of, and put into, a customer's by a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventChange {
    /// Events gone (an old version, a deleted event).
    pub removed: EventTotals,
    /// Events new.
    pub added: EventTotals,
}

impl EventChange {
    /// The stored totals after this change, or `None` when the removed events held the
    /// stored last instant (or `stored` holds fewer than were removed): recompute them.
    pub fn apply(&self, stored: &EventTotals) -> Option<EventTotals> {
        let r = &self.removed;
        if r.last.is_some() && r.last == stored.last {
            return None;
        }
        let count = stored.count.checked_sub(r.count)?;
        if count == 0 && r.count > 0 {
            return None;
        }
        let mut next = EventTotals {
            count,
            last: stored.last.filter(|_| count > 0),
        };
        next.merge(&self.added);
        Some(next)
    }
}

fn min(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    a.max(b)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn facts(at: i64, total: i64, items: u32, refund: bool) -> Option<OrderFacts> {
        Some(OrderFacts {
            created_at: Timestamp::from_secs(at),
            net_total: Money::from_raw(total),
            item_count: items,
            refund,
        })
    }

    #[test]
    fn a_changed_total_moves_the_sum_and_keeps_the_extremes() {
        let old = facts(20, 500, 1, false);
        let stored = OrderTotals::of([facts(10, 100, 2, false), old, facts(30, 7, 1, false)]);
        let mut change = OrderChange::default();
        change.replace(old, facts(20, 800, 3, false));
        let next = change
            .apply(&stored)
            .expect("the middle order held no extreme");
        assert_eq!(next.spent, 907);
        assert_eq!((next.orders, next.items), (3, 6));
        assert_eq!(next.first, Some(Timestamp::from_secs(10)));
        assert_eq!(next.last, Some(Timestamp::from_secs(30)));
    }

    #[test]
    fn cancelling_the_last_order_asks_for_a_recompute() {
        let last = facts(30, 7, 1, false);
        let stored = OrderTotals::of([facts(10, 100, 2, false), last]);
        let mut change = OrderChange::default();
        change.replace(last, None);
        assert_eq!(change.apply(&stored), None);
        // Cancelled, it is still a record: the row stays.
        let truth = OrderTotals::of([facts(10, 100, 2, false), None]);
        assert_eq!((truth.records, truth.orders), (2, 1));
    }

    #[test]
    fn a_refund_counts_in_spend_only() {
        let t = OrderTotals::of([facts(10, 100, 2, false), facts(40, -30, 0, true), None]);
        assert_eq!((t.records, t.orders, t.items, t.spent), (3, 1, 2, 70));
        assert_eq!(t.last, Some(Timestamp::from_secs(10)));
        assert_eq!(t.latest, Some(Timestamp::from_secs(40)));
    }

    #[test]
    fn spend_beyond_i64_stays_exact_and_is_not_money() {
        let big = facts(1, i64::MAX - 10, 1, false);
        let stored = OrderTotals::of([facts(0, 0, 0, false), big, big, facts(2, 0, 0, false)]);
        assert_eq!(stored.spent_money(), None);
        let mut change = OrderChange::default();
        change.replace(big, facts(1, 5, 1, false));
        let next = change.apply(&stored).expect("neither extreme was removed");
        assert_eq!(next.spent_money(), Some(Money::from_raw(i64::MAX - 5)));
    }

    #[test]
    fn removing_the_last_event_asks_for_a_recompute() {
        let mut stored = EventTotals::default();
        stored.add(Timestamp::from_secs(5));
        stored.add(Timestamp::from_secs(9));
        let mut change = EventChange::default();
        change.removed.add(Timestamp::from_secs(9));
        assert_eq!(change.apply(&stored), None);
        let mut change = EventChange::default();
        change.removed.add(Timestamp::from_secs(5));
        change.added.add(Timestamp::from_secs(7));
        let next = change.apply(&stored).expect("the last stays");
        assert_eq!((next.count, next.last), (2, Some(Timestamp::from_secs(9))));
    }

    fn any_facts() -> impl Strategy<Value = Option<OrderFacts>> {
        prop_oneof![
            1 => Just(None),
            6 => (0i64..50, -1_000i64..10_000, 0u32..5, any::<bool>())
                .prop_map(|(at, total, items, refund)| facts(at, total, items, refund)),
        ]
    }

    proptest! {
        /// Adding, replacing and removing random orders, batch after batch, with a recompute
        /// whenever `apply` asks for one, keeps the totals equal to those of the orders.
        #[test]
        fn deltas_equal_a_recompute(
            start in prop::collection::vec(any_facts(), 0..12),
            batches in prop::collection::vec(
                prop::collection::vec((0usize..16, prop::option::weighted(0.8, any_facts())), 1..6),
                1..8),
        ) {
            // A slot holds an order record (with its facts) or nothing.
            let mut orders: Vec<Option<Option<OrderFacts>>> = start.into_iter().map(Some).collect();
            let totals = |orders: &[Option<Option<OrderFacts>>]| OrderTotals::of(orders.iter().flatten().copied());
            let mut stored = totals(&orders);
            for batch in batches {
                let mut change = OrderChange::default();
                let mut seen = std::collections::HashSet::new();
                for (slot, new) in batch {
                    // One version of a record per change (see `OrderChange`).
                    if !seen.insert(slot) {
                        continue;
                    }
                    if slot >= orders.len() {
                        orders.resize(slot + 1, None);
                    }
                    if let Some(old) = orders[slot] {
                        change.removed.add(old);
                    }
                    if let Some(new) = new {
                        change.added.add(new);
                    }
                    orders[slot] = new;
                }
                let truth = totals(&orders);
                stored = change.apply(&stored).unwrap_or(truth);
                prop_assert_eq!(stored, truth);
            }
        }

        /// The same for one kind of event: counts by delta, the last instant recomputed when
        /// the removed events held it.
        #[test]
        fn event_deltas_equal_a_recompute(
            start in prop::collection::vec(0i64..30, 0..10),
            batches in prop::collection::vec(
                prop::collection::vec((0usize..14, prop::option::of(0i64..30)), 1..5), 1..8),
        ) {
            let mut events: Vec<Option<i64>> = start.into_iter().map(Some).collect();
            let totals = |events: &[Option<i64>]| {
                let mut t = EventTotals::default();
                events.iter().flatten().for_each(|&at| t.add(Timestamp::from_secs(at)));
                t
            };
            let mut stored = totals(&events);
            for batch in batches {
                let mut change = EventChange::default();
                let mut seen = std::collections::HashSet::new();
                for (slot, new) in batch {
                    if !seen.insert(slot) {
                        continue;
                    }
                    if slot >= events.len() {
                        events.resize(slot + 1, None);
                    }
                    if let Some(at) = events[slot] {
                        change.removed.add(Timestamp::from_secs(at));
                    }
                    if let Some(at) = new {
                        change.added.add(Timestamp::from_secs(at));
                    }
                    events[slot] = new;
                }
                let truth = totals(&events);
                stored = change.apply(&stored).unwrap_or(truth);
                prop_assert_eq!(stored, truth);
            }
        }
    }
}
