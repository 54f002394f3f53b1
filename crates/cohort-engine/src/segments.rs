//! Stage 2: compute every customer's features from the store and evaluate the workspace's
//! segments, then record how each membership changed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use cohort_config::Workspace;
use cohort_core::delivery;
use cohort_core::features::{BuildError, FeatureBuilder, FeatureTable};
use cohort_core::identity::{Route, Routes};
use cohort_core::segment::{SegmentDef, SegmentSet, Stability};
use cohort_core::{AsOf, Customer, CustomerId, Event, EventKind, Membership, Money, Timestamp};
use cohort_render::{Cart, Product};
use cohort_store::{RecordError, WorkspaceStore};

use crate::error::{EngineError, Result};
use crate::identity::{self, People};
use crate::summary::SegmentSummary;
use crate::templates::Wanted;

/// At most this many per-record errors of one kind are recorded per run; the count of the
/// rest is recorded with the last one. A wholly broken input must not fill the store.
const MAX_ERRORS_PER_KIND: usize = 1_000;

/// The workspace as the campaigns see it.
#[derive(Debug)]
pub struct Computed {
    /// Customers, in the table's row order.
    pub customers: Vec<Customer>,
    /// Their features.
    pub table: FeatureTable,
    /// Each segment's members, in config order.
    pub memberships: Vec<(String, Membership)>,
    /// Each customer's most bought products, when a template asks for them.
    pub products: HashMap<CustomerId, Vec<Product>>,
    /// Each customer's latest open abandoned cart, when a template asks for it.
    pub carts: HashMap<CustomerId, Cart>,
    /// Addresses of customers who unsubscribed (an `email_unsubscribe` event): suppressed
    /// from now on, whatever their consent flag says.
    pub unsubscribed: Vec<String>,
    /// With `[identity]`: each person's addresses besides their profile's.
    pub other_emails: HashMap<CustomerId, Vec<String>>,
    /// With `[identity]`: the persons and the records that make them up.
    pub people: Option<People>,
    /// The instant from which the clock alone could change the memberships (a customer
    /// leaves a window, a relative bound crosses a value, a day ends): until then, with the
    /// same records, they stand.
    pub stable_until: Timestamp,
}

impl Computed {
    /// The members of `segment`.
    pub fn membership(&self, segment: &str) -> Option<&Membership> {
        self.memberships
            .iter()
            .find(|(name, _)| name == segment)
            .map(|(_, m)| m)
    }

    /// Every address that may not be sent marketing: the store's suppressions (lower-cased) and
    /// the addresses unsubscribed by this run's events, recorded or not (a dry run records none).
    pub async fn suppressed(&self, ws: &WorkspaceStore) -> Result<HashSet<String>> {
        let mut suppressed = ws.suppressed_emails().await?;
        suppressed.extend(self.unsubscribed.iter().map(|e| e.trim().to_lowercase()));
        // A person is suppressed when any of their addresses is: their profile's address
        // joins the list.
        let mut also = Vec::new();
        for customer in &self.customers {
            let (Some(email), Some(others)) =
                (&customer.email, self.other_emails.get(&customer.id))
            else {
                continue;
            };
            if others.iter().any(|e| suppressed.contains(e)) {
                also.push(email.trim().to_lowercase());
            }
        }
        suppressed.extend(also);
        Ok(suppressed)
    }

    /// The customer at `id` and their row in the table.
    pub fn customer(&self, id: &str) -> Option<(usize, &Customer)> {
        let row = self.table.row_of(id)?;
        self.customers.get(row).map(|c| (row, c))
    }
}

/// Builds features from everything the store holds for the workspace, and evaluates its
/// segments. With `[identity]`, the customers are the workspace's persons: their records are
/// resolved first, and every order and event counts for the person of its record.
pub async fn compute(
    ws: &WorkspaceStore,
    workspace: &Workspace,
    as_of: AsOf,
    wanted: Wanted,
    errors: &mut Vec<RecordError>,
) -> Result<Computed> {
    let people = match &workspace.identity {
        Some(config) => Some(identity::resolve(ws, config).await?),
        None => None,
    };
    let mut builder = FeatureBuilder::new(as_of);
    let mut stability = Stability::new(as_of);
    let mut customers = Vec::new();
    let mut problems = Problems::default();
    let mut add = |c: Customer| match builder.add_customer(&c) {
        Ok(()) => customers.push(c),
        Err(e) => problems.note("customers", c.id.as_str(), &e),
    };
    match &people {
        Some(people) => people.profiles.iter().for_each(|p| add(p.customer.clone())),
        None => {
            ws.for_each_customer(add).await?;
        }
    }
    // The orders and events of a customer deleted at the source count for no one, and are no
    // one's error either.
    let gone = ws.deleted_customers().await?;
    let routes = people
        .as_ref()
        .map(|p| Routes::new(&p.resolution, &p.order_sources));
    let owner = |source: &str, customer: &CustomerId, order: bool| -> Owner {
        let Some(routes) = &routes else {
            return if gone.contains(customer.as_str()) {
                Owner::Nobody
            } else {
                Owner::Customer(customer.clone())
            };
        };
        let route = if order {
            routes.order(source, customer.as_str())
        } else {
            routes.event(source, customer.as_str())
        };
        match route {
            Route::Person(p) => Owner::Customer(p.clone()),
            Route::NotCounted => Owner::Nobody,
            Route::Unknown if gone.contains(customer.as_str()) => Owner::Nobody,
            Route::Unknown => Owner::Unknown,
        }
    };
    let mut products: HashMap<CustomerId, HashMap<String, (u64, Money)>> = HashMap::new();
    // Orders: one stored totals row per customer and source, unless templates list the
    // products bought (line items), or a row cannot stand for its orders (see `usable`).
    let order_totals = if wanted.top_products {
        None
    } else {
        let mut rows = Vec::new();
        ws.for_each_order_totals(|source, customer, t| {
            rows.push((owner(source, &CustomerId::new(customer), true), *t));
        })
        .await?;
        usable(&builder, rows, |t| t.latest)
    };
    match order_totals {
        Some(rows) => {
            for (customer, t) in rows {
                if let Err(e) = builder.add_order_totals(customer.as_str(), &t) {
                    problems.note("orders", customer.as_str(), &e);
                }
            }
        }
        None => {
            ws.for_each_order_by_source(|source, o| {
                let customer = match owner(source, &o.customer_id, true) {
                    Owner::Customer(id) => id,
                    Owner::Nobody => return,
                    Owner::Unknown => {
                        let e = BuildError::UnknownCustomer(o.customer_id.as_str().to_owned());
                        problems.note("orders", &o.id, &e);
                        return;
                    }
                };
                let facts = o.facts();
                if let Some(f) = &facts {
                    stability.fact(f.created_at);
                }
                if let Err(e) = builder.add_order(customer.as_str(), facts) {
                    problems.note("orders", &o.id, &e);
                    return;
                }
                if wanted.top_products && o.cancelled_at.is_none() {
                    let bought = products.entry(customer).or_default();
                    for item in &o.line_items {
                        let Some(title) = item.title.clone().or_else(|| item.product_id.clone())
                        else {
                            continue;
                        };
                        let entry = bought.entry(title).or_insert((0, Money::ZERO));
                        entry.0 += u64::from(item.quantity);
                        let spent = Money::from_raw(
                            item.price.raw().saturating_mul(i64::from(item.quantity)),
                        );
                        entry.1 = entry.1.checked_add(spent).unwrap_or(entry.1);
                    }
                }
            })
            .await?;
        }
    }
    // Events: the stored last instant of each kind, then one by one only those in the
    // engagement windows and those read for themselves (unsubscribes, carts).
    let mut kinds = Vec::new();
    ws.for_each_event_totals(|source, customer, kind, t| {
        kinds.push((
            owner(source, &CustomerId::new(customer), false),
            kind.to_owned(),
            *t,
        ));
    })
    .await?;
    let event_totals = usable(
        &builder,
        kinds.into_iter().map(|(o, k, t)| (o, (k, t))).collect(),
        |(_, t)| t.last,
    );
    let recent_since = match event_totals {
        Some(rows) => {
            for (customer, (kind, t)) in rows {
                if let Some(last) = t.last
                    && let Err(e) = builder.add_event_last(customer.as_str(), &kind, last)
                {
                    problems.note("events", customer.as_str(), &e);
                }
            }
            Some(builder.window_start())
        }
        None => None,
    };
    let mut unsubscribed_ids = HashSet::new();
    let mut carts: HashMap<CustomerId, Cart> = HashMap::new();
    let mut on_event = |source: &str, e: Event| {
        let event_id = || e.id.clone().unwrap_or_else(|| "(no id)".to_owned());
        let customer = match owner(source, &e.customer_id, false) {
            Owner::Customer(id) => id,
            Owner::Nobody => return,
            Owner::Unknown => {
                let err = BuildError::UnknownCustomer(e.customer_id.as_str().to_owned());
                problems.note("events", &event_id(), &err);
                return;
            }
        };
        stability.event(e.occurred_at);
        if let Err(err) = builder.add_event(customer.as_str(), &e.kind, e.occurred_at) {
            problems.note("events", &event_id(), &err);
        } else if delivery::suppresses(&e, as_of.now) {
            unsubscribed_ids.insert(customer);
        } else if wanted.cart && is_newer_cart(carts.get(&customer), &e, as_of.now) {
            let cart = Cart {
                abandoned_at: e.occurred_at,
                properties: e.properties,
            };
            carts.insert(customer, cart);
        }
    };
    match recent_since {
        Some(since) => {
            ws.for_each_recent_event_by_source(
                since,
                &[EventKind::EmailUnsubscribe, EventKind::CartAbandoned],
                &mut on_event,
            )
            .await?;
        }
        None => {
            ws.for_each_event_by_source(&mut on_event).await?;
        }
    }
    let other_emails = people
        .as_ref()
        .map(People::other_emails)
        .unwrap_or_default();
    // A person who unsubscribed did so under every address they have.
    let unsubscribed = customers
        .iter()
        .filter(|c| unsubscribed_ids.contains(&c.id))
        .flat_map(|c| {
            c.email
                .iter()
                .cloned()
                .chain(other_emails.get(&c.id).into_iter().flatten().cloned())
        })
        .collect();
    errors.extend(problems.into_errors());
    let table = builder.finish();
    let memberships = evaluate(workspace, &table, &mut stability)?;
    let products = products
        .into_iter()
        .map(|(id, bought)| {
            let list = bought
                .into_iter()
                .map(|(title, (quantity, revenue))| Product {
                    title,
                    quantity,
                    revenue,
                })
                .collect();
            (id, list)
        })
        .collect();
    Ok(Computed {
        customers,
        table,
        memberships,
        products,
        carts,
        unsubscribed,
        other_emails,
        people,
        stable_until: stability.until(),
    })
}

/// Whether `event` is a cart left later than `kept`, by the run's clock `now`. A withdrawn cart
/// (a completed checkout) is no longer among the stored events; a cart left after `now` has not
/// been left yet for a run `--as-of` the past.
fn is_newer_cart(kept: Option<&Cart>, event: &Event, now: Timestamp) -> bool {
    event.kind == EventKind::CartAbandoned
        && event.occurred_at <= now
        && kept.is_none_or(|c| event.occurred_at >= c.abandoned_at)
}

/// Stored totals rows as they count, or `None` when one of them cannot stand for its records
/// and the run must read the records themselves: its customer is unknown (each record is then
/// reported), or it holds a fact dated after the run's clock (a run `--as-of` the past, or a
/// record dated in the future), which the builder must leave out and totals cannot.
fn usable<T>(
    builder: &FeatureBuilder,
    rows: Vec<(Owner, T)>,
    latest: impl Fn(&T) -> Option<Timestamp>,
) -> Option<Vec<(CustomerId, T)>> {
    let now = builder.now();
    let mut kept = Vec::with_capacity(rows.len());
    for (owner, t) in rows {
        match owner {
            Owner::Nobody => {}
            Owner::Unknown => return None,
            Owner::Customer(id) if !builder.knows(id.as_str()) => return None,
            Owner::Customer(_) if latest(&t).is_some_and(|l| l > now) => return None,
            Owner::Customer(id) => kept.push((id, t)),
        }
    }
    Some(kept)
}

/// Whom an order or event counts for.
enum Owner {
    /// This customer (a person, with `[identity]`).
    Customer(CustomerId),
    /// No one, and that is no error: its customer was deleted at the source, or its source's
    /// orders do not count (`order_sources`).
    Nobody,
    /// It names a customer no source holds.
    Unknown,
}

/// Each segment's members, and in `stability` the instants at which a relative-date condition
/// would change one.
fn evaluate(
    workspace: &Workspace,
    table: &FeatureTable,
    stability: &mut Stability,
) -> Result<Vec<(String, Membership)>> {
    let defs: Vec<SegmentDef> = workspace
        .segments
        .iter()
        .map(|s| SegmentDef::new(&s.name, &s.expr))
        .collect();
    let set = SegmentSet::compile(&defs, table).map_err(|errors| {
        let shown: Vec<String> = errors
            .iter()
            .map(|e| {
                let at = workspace
                    .segment(&e.segment)
                    .map(|s| s.at.to_string())
                    .unwrap_or_default();
                format!("{at}: {}", e.render())
            })
            .collect();
        EngineError::config(format!(
            "segments do not compile (`cohort validate` checks this before a run):\n{}",
            shown.join("\n")
        ))
    })?;
    stability.segments(&set);
    Ok(set
        .evaluate()
        .into_iter()
        .map(|(name, rows)| (name, Membership::from_rows(table, &rows)))
        .collect())
}

/// Compares each membership with the one stored, records the change (unless `dry_run`), and
/// returns the counts.
pub(crate) async fn record_memberships(
    ws: &WorkspaceStore,
    workspace: &Workspace,
    computed: &Computed,
    at: DateTime<Utc>,
    dry_run: bool,
) -> Result<(Vec<SegmentSummary>, Vec<String>)> {
    let mut summaries = Vec::new();
    let mut warnings = Vec::new();
    for (name, now) in &computed.memberships {
        let before = Membership::from_ids(ws.members(name).await?.into_iter().map(CustomerId::new));
        let diff = now.diff_from(&before);
        if !dry_run {
            if let Some(segment) = workspace.segment(name) {
                ws.save_segment(name, &segment.expr).await?;
            }
            let ids =
                |v: &[CustomerId]| v.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
            ws.apply_membership(name, &ids(&diff.added), &ids(&diff.removed), at)
                .await?;
        }
        if let Some(segment) = workspace.segment(name)
            && now.len() < segment.min_size
        {
            warnings.push(format!(
                "segment `{name}` has {} members, fewer than its min_size {} ({})",
                now.len(),
                segment.min_size,
                segment.at
            ));
        }
        summaries.push(SegmentSummary {
            name: name.clone(),
            members: now.len() as u64,
            added: diff.added.len() as u64,
            removed: diff.removed.len() as u64,
        });
    }
    Ok((summaries, warnings))
}

/// Per-record problems met while building features, capped per kind.
#[derive(Debug, Default)]
struct Problems {
    errors: Vec<RecordError>,
    counts: HashMap<&'static str, usize>,
}

impl Problems {
    fn note(&mut self, kind: &'static str, record: &str, error: &BuildError) {
        let n = self.counts.entry(kind).or_default();
        *n += 1;
        if *n <= MAX_ERRORS_PER_KIND {
            self.errors.push(RecordError {
                stage: "features".to_owned(),
                location: format!("{kind} {record}"),
                message: error.to_string(),
            });
        }
    }

    fn into_errors(mut self) -> Vec<RecordError> {
        for (kind, n) in &self.counts {
            if *n > MAX_ERRORS_PER_KIND {
                self.errors.push(RecordError {
                    stage: "features".to_owned(),
                    location: (*kind).to_owned(),
                    message: format!(
                        "{} more problems with {kind} were not recorded one by one",
                        n - MAX_ERRORS_PER_KIND
                    ),
                });
            }
        }
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, at: i64) -> Event {
        Event {
            id: None,
            customer_id: CustomerId::new("42"),
            kind,
            occurred_at: Timestamp::from_secs(at),
            properties: Default::default(),
        }
    }

    fn cart(at: i64) -> Cart {
        Cart {
            abandoned_at: Timestamp::from_secs(at),
            properties: Default::default(),
        }
    }

    #[test]
    fn the_latest_cart_left_by_the_runs_clock_is_kept() {
        let now = Timestamp::from_secs(1_000);
        let cart_at = |at| event(EventKind::CartAbandoned, at);
        assert!(is_newer_cart(None, &cart_at(10), now));
        assert!(is_newer_cart(Some(&cart(10)), &cart_at(20), now));
        assert!(!is_newer_cart(Some(&cart(20)), &cart_at(10), now));
        assert!(
            !is_newer_cart(None, &cart_at(2_000), now),
            "a cart after the clock has not been left yet"
        );
        assert!(!is_newer_cart(None, &event(EventKind::AddToCart, 10), now));
    }
}
