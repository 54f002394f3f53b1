//! Fills a [`FeatureTable`] in one pass over customers, orders and events.
//!
//! Orders and events are folded into fixed-size running aggregates as they arrive and are
//! never kept, so memory grows with customers, not with history, and a loader can stream ten
//! million orders through it. Anything dated after the run's clock is left out (and counted):
//! a run "as of" a past date sees exactly what was known then.

use std::collections::BTreeMap;

use super::catalog::{ENGAGEMENT_KINDS, FEATURES, Group};
use super::column::{BoolColumn, CategoryBuilder, Column, Nullable, TagsBuilder, TextColumn};
use super::ids::{IdIndex, order_keys};
use super::rfm::{RfmGroup, scores_by};
use super::table::{FeatureTable, FieldInfo};
use super::totals::OrderTotals;
use crate::bitset::Bitset;
use crate::money::Money;
use crate::record::{AttributeValue, Customer, CustomerId, EventKind, OrderFacts};
use crate::time::{AsOf, CalendarOffset, Timestamp};

/// Why a record was not taken. The record is skipped; everything else goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// An order or event names a customer that was not added.
    #[error("unknown customer `{0}`")]
    UnknownCustomer(String),
    /// A second customer with an id already added.
    #[error("customer `{0}` appears more than once; the first record was kept")]
    DuplicateCustomer(String),
    /// A customer without an id.
    #[error("customer has no id")]
    MissingId,
    /// Spend overflowed (more than 922 trillion).
    #[error("total spent by customer `{0}` overflows")]
    Overflow(String),
}

/// Counts of what the builder took and left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BuildStats {
    /// Customers added.
    pub customers: usize,
    /// Orders counted.
    pub orders: usize,
    /// Orders that count for nothing (cancelled, or without a date).
    pub orders_void: usize,
    /// Refunds recorded on their own: they lower spend and are not orders.
    pub refunds: usize,
    /// Orders dated after the run's clock.
    pub orders_after_as_of: usize,
    /// Events counted.
    pub events: usize,
    /// Events dated after the run's clock.
    pub events_after_as_of: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct OrderAgg {
    count: u32,
    items: u64,
    spent: i64,
    first: i64,
    last: i64,
}

impl OrderAgg {
    /// Adds the orders of `part` (one order, or a fold of many). Every field is a sum, a
    /// minimum or a maximum, so the result does not depend on the order of absorption.
    /// `None` when the spend overflows.
    #[inline]
    fn absorb(&mut self, part: &OrderAgg) -> Option<()> {
        // Refunds recorded on their own are spend without an order.
        self.spent = self.spent.checked_add(part.spent)?;
        if part.count == 0 {
            return Some(());
        }
        if self.count == 0 {
            (self.first, self.last) = (part.first, part.last);
        } else {
            self.first = self.first.min(part.first);
            self.last = self.last.max(part.last);
        }
        self.count += part.count;
        self.items += part.items;
        Some(())
    }
}

const KINDS: usize = ENGAGEMENT_KINDS.len();

#[derive(Debug, Clone, Copy, Default)]
struct EventAgg {
    in_30d: [u32; KINDS],
    in_90d: [u32; KINDS],
    last: [Option<Timestamp>; KINDS],
}

/// A custom attribute's column while it is being filled. The type is the first value's; a
/// later value of another type turns the column into text, so no value is ever lost.
#[derive(Debug)]
enum AttributeBuilder {
    Bool(Vec<Option<bool>>),
    Number(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
}

impl AttributeBuilder {
    fn new(first: &AttributeValue, rows_before: usize) -> Self {
        match first {
            AttributeValue::Bool(_) => AttributeBuilder::Bool(vec![None; rows_before]),
            AttributeValue::Number(_) => AttributeBuilder::Number(vec![None; rows_before]),
            AttributeValue::Text(_) => AttributeBuilder::Text(vec![None; rows_before]),
        }
    }

    fn len(&self) -> usize {
        match self {
            AttributeBuilder::Bool(v) => v.len(),
            AttributeBuilder::Number(v) => v.len(),
            AttributeBuilder::Text(v) => v.len(),
        }
    }

    fn push(&mut self, value: Option<&AttributeValue>) {
        match (&mut *self, value) {
            (AttributeBuilder::Bool(v), Some(AttributeValue::Bool(b))) => v.push(Some(*b)),
            (AttributeBuilder::Number(v), Some(AttributeValue::Number(n))) => v.push(Some(*n)),
            (AttributeBuilder::Text(v), Some(AttributeValue::Text(t))) => v.push(Some(t.clone())),
            (AttributeBuilder::Text(v), Some(other)) => v.push(Some(attribute_text(other))),
            (AttributeBuilder::Bool(v), None) => v.push(None),
            (AttributeBuilder::Number(v), None) => v.push(None),
            (AttributeBuilder::Text(v), None) => v.push(None),
            (_, Some(mismatched)) => {
                self.widen_to_text();
                self.push(Some(mismatched));
            }
        }
    }

    fn widen_to_text(&mut self) {
        let text: Vec<Option<String>> = match self {
            AttributeBuilder::Bool(v) => v.iter().map(|b| b.map(|b| b.to_string())).collect(),
            AttributeBuilder::Number(v) => v.iter().map(|n| n.map(|n| n.to_string())).collect(),
            AttributeBuilder::Text(_) => return,
        };
        *self = AttributeBuilder::Text(text);
    }

    fn finish(self) -> Column {
        match self {
            AttributeBuilder::Bool(v) => {
                let values = v.iter().map(|b| b == &Some(true)).collect();
                let valid = v.iter().map(Option::is_some).collect();
                Column::Bool(BoolColumn { values, valid })
            }
            AttributeBuilder::Number(v) => Column::Float(Nullable::from_options(v)),
            AttributeBuilder::Text(v) => {
                let mut c = CategoryBuilder::default();
                for t in &v {
                    c.push(t.as_deref());
                }
                Column::Category(c.finish())
            }
        }
    }
}

fn attribute_text(value: &AttributeValue) -> String {
    match value {
        AttributeValue::Bool(b) => b.to_string(),
        AttributeValue::Number(n) => n.to_string(),
        AttributeValue::Text(t) => t.clone(),
    }
}

/// Folds orders on behalf of a [`FeatureBuilder`], possibly on another thread.
#[derive(Debug)]
pub struct OrderFold<'b> {
    index: &'b IdIndex,
    ids: &'b [CustomerId],
    now: Timestamp,
    aggs: Vec<OrderAgg>,
    stats: BuildStats,
    /// Orders taken but not yet folded.
    pending: Vec<Pending>,
    /// Tagged orders whose customer turned out not to exist: (tag, customer id).
    unknown: Vec<(u64, String)>,
}

/// An order waiting in a batch.
#[derive(Debug, Clone, Copy)]
struct Pending {
    key: Key,
    facts: Option<OrderFacts>,
    tag: u64,
}

#[derive(Debug, Clone, Copy)]
enum Key {
    /// Resolved.
    Row(u32),
    /// A numeric id to resolve with the batch.
    Dense(u64),
    /// Resolved to nobody.
    Unknown,
}

/// Orders folded per batch. Folding touches one random customer per order; doing it in a
/// tight loop over a batch lets the processor overlap those cache misses instead of paying
/// for each between two rows of parsing.
const FOLD_BATCH: usize = 256;

impl OrderFold<'_> {
    /// Folds one order, exactly as [`FeatureBuilder::add_order`] would (an overflow may be
    /// reported by a later call or by [`OrderFold::finish`]).
    pub fn add_order(
        &mut self,
        customer_id: &str,
        facts: Option<OrderFacts>,
    ) -> Result<(), BuildError> {
        let row = row_of(self.index, customer_id)?;
        self.push(Pending {
            key: Key::Row(row),
            facts,
            tag: 0,
        })
    }

    /// Folds one order whose customer may be looked up later, with its batch: the fast path
    /// for bulk loads. An unknown customer is either reported at once, as by
    /// [`OrderFold::add_order`], or later in [`FoldedOrders::unknown`] with `tag` (a line
    /// number, say) so the caller can still say which record was skipped.
    pub fn add_order_tagged(
        &mut self,
        customer_id: &str,
        facts: Option<OrderFacts>,
        tag: u64,
    ) -> Result<(), BuildError> {
        let key = match self.index.dense_key(customer_id) {
            Some(key) => Key::Dense(key),
            None => Key::Row(row_of(self.index, customer_id)?),
        };
        self.push(Pending { key, facts, tag })
    }

    fn push(&mut self, pending: Pending) -> Result<(), BuildError> {
        self.pending.push(pending);
        if self.pending.len() == FOLD_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BuildError> {
        for p in &mut self.pending {
            if let Key::Dense(id) = p.key {
                p.key = match self.index.dense_row(id) {
                    Some(row) => Key::Row(row),
                    None => {
                        self.unknown.push((p.tag, id.to_string()));
                        Key::Unknown
                    }
                };
            }
        }
        for p in self.pending.drain(..) {
            let Key::Row(row) = p.key else { continue };
            let customer = || self.ids[row as usize].as_str();
            fold_order(
                &mut self.aggs,
                &mut self.stats,
                self.now,
                row,
                customer,
                p.facts,
            )?;
        }
        Ok(())
    }

    /// The folded aggregates, ready to merge.
    pub fn finish(mut self) -> Result<FoldedOrders, BuildError> {
        self.flush()?;
        Ok(FoldedOrders {
            aggs: self.aggs,
            stats: self.stats,
            unknown: self.unknown,
        })
    }
}

/// Aggregates folded by an [`OrderFold`], detached from the builder.
#[derive(Debug)]
pub struct FoldedOrders {
    aggs: Vec<OrderAgg>,
    stats: BuildStats,
    unknown: Vec<(u64, String)>,
}

impl FoldedOrders {
    /// Tagged orders skipped because their customer does not exist: (tag, customer id), in
    /// the order they were added.
    pub fn unknown(&self) -> &[(u64, String)] {
        &self.unknown
    }
}

/// The row of `customer_id`, or the error that names it.
fn row_of(index: &IdIndex, customer_id: &str) -> Result<u32, BuildError> {
    index
        .get(customer_id)
        .ok_or_else(|| BuildError::UnknownCustomer(customer_id.to_owned()))
}

fn fold_order<'a>(
    aggs: &mut [OrderAgg],
    stats: &mut BuildStats,
    now: Timestamp,
    row: u32,
    customer_id: impl Fn() -> &'a str,
    facts: Option<OrderFacts>,
) -> Result<(), BuildError> {
    let Some(facts) = facts else {
        stats.orders_void += 1;
        return Ok(());
    };
    if facts.created_at > now {
        stats.orders_after_as_of += 1;
        return Ok(());
    }
    let at = facts.created_at.secs();
    let one = if facts.refund {
        OrderAgg {
            spent: facts.net_total.raw(),
            ..OrderAgg::default()
        }
    } else {
        OrderAgg {
            count: 1,
            items: u64::from(facts.item_count),
            spent: facts.net_total.raw(),
            first: at,
            last: at,
        }
    };
    aggs[row as usize]
        .absorb(&one)
        .ok_or_else(|| BuildError::Overflow(customer_id().to_owned()))?;
    if facts.refund {
        stats.refunds += 1;
    } else {
        stats.orders += 1;
    }
    Ok(())
}

/// Builds a [`FeatureTable`]: add every customer, then their orders and events, then
/// [`FeatureBuilder::finish`].
#[derive(Debug)]
pub struct FeatureBuilder {
    as_of: AsOf,
    cut_30d: Timestamp,
    cut_90d: Timestamp,
    ids: Vec<CustomerId>,
    index: IdIndex,
    email: TextColumn,
    phone: TextColumn,
    first_name: TextColumn,
    last_name: TextColumn,
    email_domain: CategoryBuilder,
    country: CategoryBuilder,
    region: CategoryBuilder,
    city: CategoryBuilder,
    postal_code: CategoryBuilder,
    gender: CategoryBuilder,
    birth_year: Vec<Option<i64>>,
    age: Vec<Option<i64>>,
    tags: TagsBuilder,
    accepts_email: Vec<bool>,
    accepts_sms: Vec<bool>,
    created_at: Vec<Option<Timestamp>>,
    updated_at: Vec<Option<Timestamp>>,
    attributes: BTreeMap<String, AttributeBuilder>,
    orders: Vec<OrderAgg>,
    events: Option<Vec<EventAgg>>,
    stats: BuildStats,
}

impl FeatureBuilder {
    /// A builder for features as of `as_of`.
    pub fn new(as_of: AsOf) -> Self {
        FeatureBuilder {
            as_of,
            cut_30d: as_of.shift(CalendarOffset::Days(-30)),
            cut_90d: as_of.shift(CalendarOffset::Days(-90)),
            ids: Vec::new(),
            index: IdIndex::default(),
            email: TextColumn::new(),
            phone: TextColumn::new(),
            first_name: TextColumn::new(),
            last_name: TextColumn::new(),
            email_domain: CategoryBuilder::default(),
            country: CategoryBuilder::default(),
            region: CategoryBuilder::default(),
            city: CategoryBuilder::default(),
            postal_code: CategoryBuilder::default(),
            gender: CategoryBuilder::default(),
            birth_year: Vec::new(),
            age: Vec::new(),
            tags: TagsBuilder::default(),
            accepts_email: Vec::new(),
            accepts_sms: Vec::new(),
            created_at: Vec::new(),
            updated_at: Vec::new(),
            attributes: BTreeMap::new(),
            orders: Vec::new(),
            events: None,
            stats: BuildStats::default(),
        }
    }

    /// The instant after which an event counts in some window (the 90-day one): a run that
    /// reads stored totals needs only the events after it, besides the totals.
    pub fn window_start(&self) -> Timestamp {
        self.cut_90d
    }

    /// Whether `customer_id` was added: a run checks stored totals against it before folding
    /// any of them, since a totals row cannot name the records of an unknown customer.
    pub fn knows(&self, customer_id: &str) -> bool {
        self.index.get(customer_id).is_some()
    }

    /// The run's clock.
    pub fn now(&self) -> Timestamp {
        self.as_of.now
    }

    /// Reserves room for `n` more customers.
    pub fn reserve(&mut self, n: usize) {
        self.ids.reserve(n);
        self.orders.reserve(n);
    }

    /// What has been taken so far.
    pub fn stats(&self) -> &BuildStats {
        &self.stats
    }

    /// Adds a customer. A duplicate id is refused, and the first record stands.
    pub fn add_customer(&mut self, c: &Customer) -> Result<(), BuildError> {
        let id = c.id.as_str();
        if id.is_empty() {
            return Err(BuildError::MissingId);
        }
        let row = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        if let Some(previous) = self.index.insert(id, row) {
            self.index.insert(id, previous);
            return Err(BuildError::DuplicateCustomer(id.to_owned()));
        }
        self.ids.push(c.id.clone());
        self.email.push(c.email.as_deref());
        self.phone.push(c.phone.as_deref());
        self.first_name.push(c.first_name.as_deref());
        self.last_name.push(c.last_name.as_deref());
        self.email_domain.push(c.email_domain().as_deref());
        self.country.push(c.country.as_deref());
        self.region.push(c.region.as_deref());
        self.city.push(c.city.as_deref());
        self.postal_code.push(c.postal_code.as_deref());
        self.gender.push(c.gender.as_deref());
        let year = c.year_of_birth().map(i64::from);
        self.birth_year.push(year);
        self.age.push(match (c.birth_date, year) {
            (Some(date), _) => Some(self.as_of.age_on_today(date)),
            (None, Some(year)) => {
                use chrono::Datelike;
                Some(i64::from(self.as_of.today().year()) - year)
            }
            (None, None) => None,
        });
        self.tags.push(c.tags.iter().map(String::as_str));
        self.accepts_email.push(c.accepts_email_marketing);
        self.accepts_sms.push(c.accepts_sms_marketing);
        self.created_at.push(c.created_at);
        self.updated_at.push(c.updated_at);
        for (name, value) in &c.attributes {
            if !self.attributes.contains_key(name) {
                let column = AttributeBuilder::new(value, self.ids.len() - 1);
                self.attributes.insert(name.clone(), column);
            }
        }
        let rows = self.ids.len();
        for (name, column) in &mut self.attributes {
            column.push(c.attributes.get(name));
            debug_assert_eq!(column.len(), rows);
        }
        self.orders.push(OrderAgg::default());
        if let Some(events) = &mut self.events {
            events.push(EventAgg::default());
        }
        self.stats.customers += 1;
        Ok(())
    }

    /// Folds one order of `customer_id` into its aggregates.
    ///
    /// `None` facts (a cancelled or undated order, see [`crate::Order::facts`]) are counted as
    /// void and otherwise ignored.
    pub fn add_order(
        &mut self,
        customer_id: &str,
        facts: Option<OrderFacts>,
    ) -> Result<(), BuildError> {
        let row = row_of(&self.index, customer_id)?;
        fold_order(
            &mut self.orders,
            &mut self.stats,
            self.as_of.now,
            row,
            || customer_id,
            facts,
        )
    }

    /// A fold of orders for the customers added so far that can run on another thread; hand
    /// its result back with [`FeatureBuilder::merge_orders`]. Loaders split big order files
    /// into chunks and fold them in parallel; merging is exact whatever the split.
    pub fn order_fold(&self) -> OrderFold<'_> {
        OrderFold {
            index: &self.index,
            ids: &self.ids,
            pending: Vec::with_capacity(FOLD_BATCH),
            unknown: Vec::new(),
            now: self.as_of.now,
            aggs: vec![OrderAgg::default(); self.ids.len()],
            stats: BuildStats::default(),
        }
    }

    /// Merges orders folded by [`FeatureBuilder::order_fold`].
    pub fn merge_orders(&mut self, folded: FoldedOrders) -> Result<(), BuildError> {
        for (row, part) in folded.aggs.into_iter().enumerate() {
            self.orders[row]
                .absorb(&part)
                .ok_or_else(|| BuildError::Overflow(self.ids[row].to_string()))?;
        }
        self.stats.orders += folded.stats.orders;
        self.stats.orders_void += folded.stats.orders_void;
        self.stats.refunds += folded.stats.refunds;
        self.stats.orders_after_as_of += folded.stats.orders_after_as_of;
        Ok(())
    }

    /// Folds a customer's stored order totals (one source's orders, or a person's record's)
    /// into their aggregates, as if each of those orders had been added.
    ///
    /// The caller makes sure no fact of `totals` is dated after the run's clock
    /// ([`OrderTotals::latest`]): totals cannot leave those out. The counts of
    /// [`BuildStats`] see one order per order and one refund per customer with refunds at
    /// most (totals do not say how many refunds there were).
    pub fn add_order_totals(
        &mut self,
        customer_id: &str,
        totals: &OrderTotals,
    ) -> Result<(), BuildError> {
        let row = row_of(&self.index, customer_id)?;
        let overflow = || BuildError::Overflow(customer_id.to_owned());
        let part = OrderAgg {
            count: u32::try_from(totals.orders).map_err(|_| overflow())?,
            items: totals.items,
            spent: i64::try_from(totals.spent).map_err(|_| overflow())?,
            first: totals.first.map_or(0, Timestamp::secs),
            last: totals.last.map_or(0, Timestamp::secs),
        };
        self.orders[row as usize]
            .absorb(&part)
            .ok_or_else(overflow)?;
        self.stats.orders += part.count as usize;
        Ok(())
    }

    /// Records that `customer_id`'s latest event of `kind` happened at `at`, without counting
    /// it in any window: a run that reads stored per-kind totals for the last instants and
    /// only the recent events for the windows. Must not be after the run's clock.
    pub fn add_event_last(
        &mut self,
        customer_id: &str,
        kind: &str,
        at: Timestamp,
    ) -> Result<(), BuildError> {
        let row = row_of(&self.index, customer_id)?;
        let Some(k) = ENGAGEMENT_KINDS.iter().position(|(name, _)| *name == kind) else {
            return Ok(());
        };
        let len = self.ids.len();
        let events = self
            .events
            .get_or_insert_with(|| vec![EventAgg::default(); len]);
        let last = &mut events[row as usize].last[k];
        if last.is_none_or(|last| at > last) {
            *last = Some(at);
        }
        Ok(())
    }

    /// Counts one engagement event. Kinds that no feature counts are accepted and ignored.
    pub fn add_event(
        &mut self,
        customer_id: &str,
        kind: &EventKind,
        at: Timestamp,
    ) -> Result<(), BuildError> {
        let row = row_of(&self.index, customer_id)?;
        if at > self.as_of.now {
            self.stats.events_after_as_of += 1;
            return Ok(());
        }
        self.stats.events += 1;
        let Some(k) = ENGAGEMENT_KINDS
            .iter()
            .position(|(name, _)| *name == kind.as_str())
        else {
            return Ok(());
        };
        let len = self.ids.len();
        let events = self
            .events
            .get_or_insert_with(|| vec![EventAgg::default(); len]);
        let agg = &mut events[row as usize];
        if at > self.cut_30d {
            agg.in_30d[k] += 1;
        }
        if at > self.cut_90d {
            agg.in_90d[k] += 1;
        }
        if agg.last[k].is_none_or(|last| at > last) {
            agg.last[k] = Some(at);
        }
        Ok(())
    }

    /// Computes the derived features (RFM, rates, recencies) and returns the table.
    pub fn finish(self) -> FeatureTable {
        self.finish_only(|_| true)
    }

    /// Like [`FeatureBuilder::finish`], but computes only the features `keep` accepts
    /// (`customer_id` and custom attributes are always kept).
    ///
    /// A run evaluating ten segments needs a dozen of the sixty features; leaving the rest
    /// out saves most of the memory and time of this step.
    pub fn finish_only(self, keep: impl Fn(&str) -> bool) -> FeatureTable {
        let n = self.ids.len();
        let as_of = self.as_of;
        let all = Bitset::full(n);
        let mut out = Columns {
            keep: &keep,
            cols: Vec::with_capacity(FEATURES.len()),
        };

        out.add("customer_id", || {
            let mut ids = TextColumn::new();
            for id in &self.ids {
                ids.push(Some(id.as_str()));
            }
            Column::Text(ids)
        });
        out.add("email", || Column::Text(self.email));
        out.add("email_domain", || {
            Column::Category(self.email_domain.finish())
        });
        out.add("phone", || Column::Text(self.phone));
        out.add("first_name", || Column::Text(self.first_name));
        out.add("last_name", || Column::Text(self.last_name));
        out.add("country", || Column::Category(self.country.finish()));
        out.add("region", || Column::Category(self.region.finish()));
        out.add("city", || Column::Category(self.city.finish()));
        out.add("postal_code", || {
            Column::Category(self.postal_code.finish())
        });
        out.add("gender", || Column::Category(self.gender.finish()));
        out.add("birth_year", || {
            Column::Int(Nullable::from_options(self.birth_year))
        });
        out.add("age", || Column::Int(Nullable::from_options(self.age)));
        out.add("tags", || Column::Tags(self.tags.finish()));
        let bools = |v: &[bool]| {
            Column::Bool(BoolColumn {
                values: v.iter().copied().collect(),
                valid: all.clone(),
            })
        };
        out.add("accepts_email_marketing", || bools(&self.accepts_email));
        out.add("accepts_sms_marketing", || bools(&self.accepts_sms));
        out.add("created_at", || {
            Column::Time(Nullable::from_options(self.created_at))
        });
        out.add("updated_at", || {
            Column::Time(Nullable::from_options(self.updated_at))
        });

        // Orders.
        let orders = &self.orders;
        let bought = Bitset::from_fn(n, |i| orders[i].count > 0);
        let ints = |f: &dyn Fn(&OrderAgg) -> i64, valid: &Bitset| {
            Column::Int(Nullable {
                values: orders.iter().map(f).collect(),
                valid: valid.clone(),
            })
        };
        let times = |f: &dyn Fn(&OrderAgg) -> i64| {
            Column::Time(Nullable {
                values: orders.iter().map(|a| Timestamp::from_secs(f(a))).collect(),
                valid: bought.clone(),
            })
        };
        let today = as_of.now.day_number_in(as_of.tz);
        let days = |secs: i64| today - Timestamp::from_secs(secs).day_number_in(as_of.tz);
        out.add("orders_count", || ints(&|a| i64::from(a.count), &all));
        out.add("total_spent", || {
            Column::Money(Nullable {
                values: orders.iter().map(|a| Money::from_raw(a.spent)).collect(),
                valid: all.clone(),
            })
        });
        out.add("avg_order_value", || {
            Column::Money(Nullable {
                values: orders
                    .iter()
                    .map(|a| {
                        Money::from_raw(a.spent)
                            .div_round(i64::from(a.count))
                            .unwrap_or_default()
                    })
                    .collect(),
                valid: bought.clone(),
            })
        });
        out.add("total_items", || {
            ints(&|a| i64::try_from(a.items).unwrap_or(i64::MAX), &all)
        });
        out.add("first_order_at", || times(&|a| a.first));
        out.add("last_order_at", || times(&|a| a.last));
        out.add("days_since_first_order", || {
            ints(&|a| days(a.first), &bought)
        });
        out.add("days_since_last_order", || ints(&|a| days(a.last), &bought));

        // RFM over buyers.
        if out.wants_any(["r_score", "f_score", "m_score", "rfm_group"]) {
            let buyers: Vec<u32> = bought.iter().map(|r| r as u32).collect();
            let id_key = order_keys(&self.ids);
            // Descending recency is ascending days since the last order, negated.
            let r = scores_by(&buyers, |r| -days(orders[r as usize].last), &id_key);
            let f = scores_by(&buyers, |r| i64::from(orders[r as usize].count), &id_key);
            let m = scores_by(&buyers, |r| orders[r as usize].spent, &id_key);
            let spread = |scores: &[u8]| {
                let mut values = vec![0i64; n];
                for (&row, &score) in buyers.iter().zip(scores) {
                    values[row as usize] = i64::from(score);
                }
                Column::Int(Nullable {
                    values,
                    valid: bought.clone(),
                })
            };
            out.add("r_score", || spread(&r));
            out.add("f_score", || spread(&f));
            out.add("m_score", || spread(&m));
            out.add("rfm_group", || {
                let mut groups = vec![None; n];
                for (i, &row) in buyers.iter().enumerate() {
                    groups[row as usize] = Some(RfmGroup::from_scores(r[i], f[i]));
                }
                let mut column = CategoryBuilder::default();
                for g in groups {
                    column.push(g.map(RfmGroup::as_str));
                }
                Column::Category(column.finish())
            });
        }

        // Engagement.
        let engagement = FEATURES
            .iter()
            .filter(|f| f.group == Group::Engagement)
            .map(|f| f.name);
        if out.wants_any(engagement) {
            let events = self.events.unwrap_or_else(|| vec![EventAgg::default(); n]);
            for (k, (singular, plural)) in ENGAGEMENT_KINDS.iter().enumerate() {
                let counts = |pick: &dyn Fn(&EventAgg) -> u32| {
                    Column::Int(Nullable {
                        values: events.iter().map(|e| i64::from(pick(e))).collect(),
                        valid: all.clone(),
                    })
                };
                out.add(feature_name(&format!("{plural}_30d")), || {
                    counts(&|e| e.in_30d[k])
                });
                out.add(feature_name(&format!("{plural}_90d")), || {
                    counts(&|e| e.in_90d[k])
                });
                out.add(feature_name(&format!("last_{singular}_at")), || {
                    Column::Time(Nullable::from_options(events.iter().map(|e| e.last[k])))
                });
            }
            let kind = |name: &str| {
                ENGAGEMENT_KINDS
                    .iter()
                    .position(|(k, _)| *k == name)
                    .unwrap_or(0)
            };
            let delivered = kind("email_delivered");
            let rate = |num: usize| {
                Column::Float(Nullable::from_options(events.iter().map(|e| {
                    (e.in_90d[delivered] > 0)
                        .then(|| f64::from(e.in_90d[num]) / f64::from(e.in_90d[delivered]))
                })))
            };
            out.add("email_open_rate_90d", || rate(kind("email_open")));
            out.add("email_click_rate_90d", || rate(kind("email_click")));
            let engaged: Vec<usize> = [
                "email_open",
                "email_click",
                "page_view",
                "add_to_cart",
                "checkout_started",
            ]
            .iter()
            .map(|k| kind(k))
            .collect();
            let last_engaged: Vec<Option<Timestamp>> = events
                .iter()
                .map(|e| engaged.iter().filter_map(|&k| e.last[k]).max())
                .collect();
            out.add("days_since_last_engaged", || {
                Column::Int(Nullable::from_options(
                    last_engaged.iter().map(|t| t.map(|t| days(t.secs()))),
                ))
            });
            out.add("last_engaged_at", || {
                Column::Time(Nullable::from_options(last_engaged))
            });
        }

        // Assemble in catalogue order, then attributes by name.
        let mut by_name: BTreeMap<&str, Column> = out.cols.into_iter().collect();
        let mut columns = Vec::with_capacity(by_name.len() + self.attributes.len());
        for feat in FEATURES {
            if let Some(column) = by_name.remove(feat.name) {
                let info = FieldInfo {
                    name: feat.name.to_owned(),
                    ty: feat.ty,
                    doc: feat.doc.to_owned(),
                };
                columns.push((info, column));
            }
        }
        debug_assert!(
            by_name.is_empty(),
            "features missing from the catalogue: {:?}",
            by_name.keys()
        );
        for (name, builder) in self.attributes {
            let column = builder.finish();
            let info = FieldInfo {
                name: format!("attributes.{name}"),
                ty: column.field_type(),
                doc: "Custom attribute.".to_owned(),
            };
            columns.push((info, column));
        }
        let mut table = FeatureTable {
            as_of,
            ids: self.ids,
            row_by_id: self.index,
            fields: Vec::with_capacity(columns.len()),
            columns: Vec::with_capacity(columns.len()),
            by_name: Default::default(),
        };
        for (i, (info, column)) in columns.into_iter().enumerate() {
            table.by_name.insert(info.name.clone(), i);
            table.fields.push(info);
            table.columns.push(column);
        }
        table
    }
}

/// Columns being assembled, with the filter of which to build at all.
struct Columns<'k> {
    keep: &'k dyn Fn(&str) -> bool,
    cols: Vec<(&'static str, Column)>,
}

impl Columns<'_> {
    fn wanted(&self, name: &str) -> bool {
        name == "customer_id" || (self.keep)(name)
    }

    fn wants_any<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> bool {
        names.into_iter().any(|n| self.wanted(n))
    }

    /// Builds the column only when it is wanted.
    fn add(&mut self, name: &'static str, make: impl FnOnce() -> Column) {
        if self.wanted(name) {
            self.cols.push((name, make()));
        }
    }
}

/// The catalogue's `'static` copy of a feature name built at run time.
fn feature_name(name: &str) -> &'static str {
    FEATURES
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.name)
        .unwrap_or_else(|| panic!("feature `{name}` is not in the catalogue"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Value;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).expect("valid test date")
    }

    fn facts(at: &str, total: &str) -> Option<OrderFacts> {
        Some(OrderFacts {
            created_at: ts(at),
            net_total: Money::parse(total).expect("amount"),
            item_count: 1,
            refund: false,
        })
    }

    fn build() -> FeatureTable {
        let mut b = FeatureBuilder::new(AsOf::utc(ts("2024-07-01T12:00:00Z")));
        let mut alice = Customer::new("1");
        alice.email = Some("Alice@Example.com".into());
        alice.tags = vec!["VIP".into(), "vip".into(), " b2b ".into()];
        alice.accepts_email_marketing = true;
        alice.birth_year = Some(1990);
        alice
            .attributes
            .insert("tier".into(), AttributeValue::Number(2.0));
        b.add_customer(&alice).expect("first add");
        let mut bob = Customer::new("2");
        bob.attributes
            .insert("tier".into(), AttributeValue::Text("gold".into()));
        b.add_customer(&bob).expect("second add");
        b.add_customer(&Customer::new("3")).expect("third add");
        assert_eq!(
            b.add_customer(&Customer::new("2")),
            Err(BuildError::DuplicateCustomer("2".into()))
        );

        b.add_order("1", facts("2024-06-30T23:00:00Z", "10.10"))
            .expect("order");
        b.add_order("1", facts("2024-01-01T00:00:00Z", "20.20"))
            .expect("order");
        b.add_order("1", facts("2024-07-02T00:00:00Z", "999"))
            .expect("future order is accepted");
        b.add_order("2", facts("2023-07-01T00:00:00Z", "5"))
            .expect("order");
        b.add_order("2", None).expect("void order");
        assert_eq!(
            b.add_order("9", facts("2024-01-01", "1")),
            Err(BuildError::UnknownCustomer("9".into()))
        );

        b.add_event("1", &EventKind::EmailDelivered, ts("2024-06-20T00:00:00Z"))
            .expect("event");
        b.add_event("1", &EventKind::EmailDelivered, ts("2024-05-01T00:00:00Z"))
            .expect("event");
        b.add_event("1", &EventKind::EmailOpen, ts("2024-06-21T00:00:00Z"))
            .expect("event");
        b.add_event(
            "1",
            &EventKind::Other("wishlist".into()),
            ts("2024-06-21T00:00:00Z"),
        )
        .expect("event");
        let stats = b.stats().clone();
        assert_eq!(
            (
                stats.customers,
                stats.orders,
                stats.orders_void,
                stats.orders_after_as_of
            ),
            (3, 3, 1, 1)
        );
        assert_eq!(stats.events, 4);
        b.finish()
    }

    #[test]
    fn order_aggregates_are_exact_and_ignore_the_future() {
        let t = build();
        let alice = t.row_of("1").expect("alice");
        assert_eq!(t.value(alice, "orders_count"), Value::Int(2));
        assert_eq!(
            t.value(alice, "total_spent"),
            Value::Money(Money::parse("30.30").expect("m"))
        );
        assert_eq!(
            t.value(alice, "avg_order_value"),
            Value::Money(Money::parse("15.15").expect("m"))
        );
        assert_eq!(
            t.value(alice, "last_order_at"),
            Value::Time(ts("2024-06-30T23:00:00Z"))
        );
        assert_eq!(t.value(alice, "days_since_last_order"), Value::Int(1));
        let carol = t.row_of("3").expect("carol");
        assert_eq!(t.value(carol, "orders_count"), Value::Int(0));
        assert_eq!(t.value(carol, "total_spent"), Value::Money(Money::ZERO));
        assert_eq!(t.value(carol, "avg_order_value"), Value::Null);
        assert_eq!(t.value(carol, "r_score"), Value::Null);
        assert_eq!(t.value(carol, "rfm_group"), Value::Null);
    }

    #[test]
    fn a_refund_row_lowers_spend_and_is_not_an_order() {
        let mut b = FeatureBuilder::new(AsOf::utc(ts("2024-07-01T00:00:00Z")));
        for id in ["1", "2"] {
            b.add_customer(&Customer::new(id)).expect("customer");
        }
        let refund = |at: &str, amount: &str| {
            Some(OrderFacts {
                item_count: 0,
                refund: true,
                ..facts(at, amount).expect("facts")
            })
        };
        b.add_order("1", refund("2024-01-01", "-5.05"))
            .expect("refund first");
        b.add_order("1", facts("2024-02-01", "30.30"))
            .expect("order");
        b.add_order("1", facts("2024-03-01", "10.00"))
            .expect("order");
        b.add_order("1", refund("2024-06-30", "-0.25"))
            .expect("refund last");
        b.add_order("2", refund("2024-06-01", "-7"))
            .expect("refund only");
        assert_eq!((b.stats().orders, b.stats().refunds), (2, 3));
        let t = b.finish();
        let (one, two) = (t.row_of("1").expect("1"), t.row_of("2").expect("2"));
        let money = |s: &str| Value::Money(Money::parse(s).expect("m"));
        assert_eq!(t.value(one, "orders_count"), Value::Int(2));
        assert_eq!(t.value(one, "total_spent"), money("35.00"));
        assert_eq!(t.value(one, "avg_order_value"), money("17.50"));
        assert_eq!(
            t.value(one, "first_order_at"),
            Value::Time(ts("2024-02-01"))
        );
        assert_eq!(t.value(one, "last_order_at"), Value::Time(ts("2024-03-01")));
        assert_eq!(t.value(two, "orders_count"), Value::Int(0));
        assert_eq!(t.value(two, "total_spent"), money("-7"));
        assert_eq!(t.value(two, "avg_order_value"), Value::Null);
    }

    #[test]
    fn rfm_ranks_buyers_only() {
        let t = build();
        let (alice, bob) = (t.row_of("1").expect("a"), t.row_of("2").expect("b"));
        // Two buyers: the better one scores 5, the other 1.
        assert_eq!(t.value(alice, "r_score"), Value::Int(5));
        assert_eq!(t.value(bob, "r_score"), Value::Int(1));
        assert_eq!(t.value(alice, "m_score"), Value::Int(5));
        assert_eq!(t.value(alice, "rfm_group"), Value::Str("champions".into()));
        assert_eq!(t.value(bob, "rfm_group"), Value::Str("dormant".into()));
    }

    #[test]
    fn customer_fields_are_normalised() {
        let t = build();
        let alice = t.row_of("1").expect("alice");
        assert_eq!(
            t.value(alice, "email_domain"),
            Value::Str("example.com".into())
        );
        assert_eq!(
            t.value(alice, "tags"),
            Value::Tags(vec!["vip".into(), "b2b".into()])
        );
        assert_eq!(t.value(alice, "age"), Value::Int(34));
        assert_eq!(t.value(alice, "accepts_email_marketing"), Value::Bool(true));
        assert_eq!(
            t.value(t.row_of("3").expect("c"), "accepts_email_marketing"),
            Value::Bool(false)
        );
    }

    #[test]
    fn mixed_attribute_types_widen_to_text_without_loss() {
        let t = build();
        assert_eq!(
            t.value(t.row_of("1").expect("a"), "attributes.tier"),
            Value::Str("2".into())
        );
        assert_eq!(
            t.value(t.row_of("2").expect("b"), "attributes.tier"),
            Value::Str("gold".into())
        );
        assert_eq!(
            t.value(t.row_of("3").expect("c"), "attributes.tier"),
            Value::Null
        );
    }

    #[test]
    fn engagement_counts_windows_and_rates() {
        let t = build();
        let alice = t.row_of("1").expect("alice");
        assert_eq!(t.value(alice, "emails_delivered_30d"), Value::Int(1));
        assert_eq!(t.value(alice, "emails_delivered_90d"), Value::Int(2));
        assert_eq!(t.value(alice, "email_opens_30d"), Value::Int(1));
        assert_eq!(t.value(alice, "email_open_rate_90d"), Value::Float(0.5));
        assert_eq!(
            t.value(alice, "last_engaged_at"),
            Value::Time(ts("2024-06-21T00:00:00Z"))
        );
        assert_eq!(t.value(alice, "days_since_last_engaged"), Value::Int(10));
        assert_eq!(
            t.value(t.row_of("2").expect("b"), "email_open_rate_90d"),
            Value::Null
        );
    }

    #[test]
    fn finish_only_builds_just_the_features_asked_for() {
        let mut b = FeatureBuilder::new(AsOf::utc(ts("2024-07-01")));
        b.add_customer(&Customer::new("1")).expect("add");
        b.add_order("1", facts("2024-06-01", "5")).expect("order");
        let t = b.finish_only(|name| name == "r_score" || name == "total_spent");
        let names: Vec<&str> = t.fields().iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["customer_id", "total_spent", "r_score"]);
        assert_eq!(t.value(0, "r_score"), Value::Int(1));
    }

    #[test]
    fn folding_orders_in_parallel_chunks_equals_folding_them_in_one_pass() {
        let orders: Vec<(String, Option<OrderFacts>)> = (0..500u32)
            .map(|i| {
                let day = 1 + (i * 7919) % 28;
                let f = facts(
                    &format!("2024-0{}-{day:02}", 1 + i % 6),
                    &format!("{}.{:02}", i % 97, i % 100),
                );
                (
                    (1 + (i * 31) % 17).to_string(),
                    if i % 13 == 0 { None } else { f },
                )
            })
            .collect();
        let customers = || {
            let mut b = FeatureBuilder::new(AsOf::utc(ts("2024-05-15")));
            for id in 1..=17 {
                b.add_customer(&Customer::new(id.to_string())).expect("add");
            }
            b
        };
        let mut sequential = customers();
        for (id, f) in &orders {
            sequential.add_order(id, *f).expect("order");
        }
        let mut parallel = customers();
        let folded: Vec<FoldedOrders> = std::thread::scope(|s| {
            let handles: Vec<_> = orders
                .chunks(170)
                .map(|chunk| {
                    let mut fold = parallel.order_fold();
                    s.spawn(move || {
                        for (line, (id, f)) in chunk.iter().enumerate() {
                            if line % 2 == 0 {
                                fold.add_order(id, *f).expect("order");
                            } else {
                                fold.add_order_tagged(id, *f, line as u64).expect("order");
                            }
                        }
                        fold.add_order_tagged("404", None, 99_999)
                            .expect("deferred");
                        fold.finish().expect("no overflow")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for f in folded {
            assert_eq!(f.unknown(), [(99_999, "404".to_owned())]);
            parallel.merge_orders(f).expect("merge");
        }
        assert_eq!(sequential.stats(), parallel.stats());
        let (a, b) = (sequential.finish(), parallel.finish());
        for row in 0..a.len() {
            assert_eq!(a.row_values(row), b.row_values(row), "row {row}");
        }
    }

    #[test]
    fn every_catalogue_feature_is_a_column() {
        let t = build();
        for feat in FEATURES {
            let (info, column) = t.field(feat.name).expect("column present");
            assert_eq!(column.field_type(), feat.ty, "{}", info.name);
        }
    }
}
