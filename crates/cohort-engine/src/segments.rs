//! Stage 2: compute every customer's features from the store and evaluate the workspace's
//! segments, then record how each membership changed.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use cohort_config::Workspace;
use cohort_core::delivery;
use cohort_core::features::{BuildError, FeatureBuilder, FeatureTable};
use cohort_core::segment::{SegmentDef, SegmentSet};
use cohort_core::{AsOf, Customer, CustomerId, Membership, Money};
use cohort_render::Product;
use cohort_store::{RecordError, WorkspaceStore};

use crate::error::{EngineError, Result};
use crate::summary::SegmentSummary;

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
    /// Addresses of customers who unsubscribed (an `email_unsubscribe` event): suppressed
    /// from now on, whatever their consent flag says.
    pub unsubscribed: Vec<String>,
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
        Ok(suppressed)
    }

    /// The customer at `id` and their row in the table.
    pub fn customer(&self, id: &str) -> Option<(usize, &Customer)> {
        let row = self.table.row_of(id)?;
        self.customers.get(row).map(|c| (row, c))
    }
}

/// Builds features from everything the store holds for the workspace, and evaluates its
/// segments.
pub async fn compute(
    ws: &WorkspaceStore,
    workspace: &Workspace,
    as_of: AsOf,
    want_products: bool,
    errors: &mut Vec<RecordError>,
) -> Result<Computed> {
    let mut builder = FeatureBuilder::new(as_of);
    let mut customers = Vec::new();
    let mut problems = Problems::default();
    ws.for_each_customer(|c| match builder.add_customer(&c) {
        Ok(()) => customers.push(c),
        Err(e) => problems.note("customers", c.id.as_str(), &e),
    })
    .await?;
    // The orders and events of a customer deleted at the source count for no one, and are no
    // one's error either.
    let gone = ws.deleted_customers().await?;
    let mut products: HashMap<CustomerId, HashMap<String, (u64, Money)>> = HashMap::new();
    ws.for_each_order(|o| {
        if gone.contains(o.customer_id.as_str()) {
            return;
        }
        if let Err(e) = builder.add_order(o.customer_id.as_str(), o.facts()) {
            problems.note("orders", &o.id, &e);
            return;
        }
        if want_products && o.cancelled_at.is_none() {
            let bought = products.entry(o.customer_id.clone()).or_default();
            for item in &o.line_items {
                let Some(title) = item.title.clone().or_else(|| item.product_id.clone()) else {
                    continue;
                };
                let entry = bought.entry(title).or_insert((0, Money::ZERO));
                entry.0 += u64::from(item.quantity);
                let spent =
                    Money::from_raw(item.price.raw().saturating_mul(i64::from(item.quantity)));
                entry.1 = entry.1.checked_add(spent).unwrap_or(entry.1);
            }
        }
    })
    .await?;
    let mut unsubscribed_ids = HashSet::new();
    ws.for_each_event(|e| {
        if gone.contains(e.customer_id.as_str()) {
            return;
        }
        if let Err(err) = builder.add_event(e.customer_id.as_str(), &e.kind, e.occurred_at) {
            problems.note("events", e.id.as_deref().unwrap_or("(no id)"), &err);
        } else if delivery::suppresses(&e, as_of.now) {
            unsubscribed_ids.insert(e.customer_id);
        }
    })
    .await?;
    let unsubscribed = customers
        .iter()
        .filter(|c| unsubscribed_ids.contains(&c.id))
        .filter_map(|c| c.email.clone())
        .collect();
    errors.extend(problems.into_errors());
    let table = builder.finish();
    let memberships = evaluate(workspace, &table)?;
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
        unsubscribed,
    })
}

fn evaluate(workspace: &Workspace, table: &FeatureTable) -> Result<Vec<(String, Membership)>> {
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
