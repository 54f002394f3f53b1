//! Planning one campaign: the facts the core's planner needs (members now, their rendered
//! audience fields, what the destination acknowledged) and the plan it makes of them.

use std::collections::{BTreeMap, HashMap, HashSet};

use cohort_config::Campaign;
use cohort_core::delivery::{self, Acked, Eligibility, Mode, Pending, Wanted};
use cohort_core::{CustomerId, Timestamp};
use cohort_store::{DestinationState, PendingPush, RecordError};
use serde_json::Value;

use super::Shared;
use super::render::{CampaignRenderer, render_error};
use crate::error::Result;
use crate::segments::Computed;
use crate::summary::CampaignSummary;

/// A campaign planned, with what carrying the plan out needs.
#[derive(Debug)]
pub(crate) struct CampaignPlan {
    pub(crate) campaign: String,
    pub(crate) mode: Mode,
    /// Members now, each with the first of the campaign's segments they are in (the
    /// `segment` their templates see), in customer order.
    pub(crate) members: BTreeMap<CustomerId, String>,
    /// Audience fields rendered for the eligible members (audience modes only).
    pub(crate) fields: BTreeMap<CustomerId, Value>,
    /// What the destination acknowledged, by customer, as stored.
    pub(crate) stored: HashMap<String, DestinationState>,
    /// The same, as the core sees it.
    pub(crate) acked: BTreeMap<CustomerId, Acked>,
    /// What to push and record.
    pub(crate) plan: delivery::Plan,
}

impl CampaignPlan {
    /// The state `id` was in before this run.
    pub(crate) fn before(&self, id: &CustomerId) -> Option<&Acked> {
        self.acked.get(id)
    }

    /// The idempotency key stored for `id` (that of the last push recorded).
    pub(crate) fn stored_key(&self, id: &CustomerId) -> &str {
        self.stored
            .get(id.as_str())
            .map_or("", |s| s.idempotency_key.as_str())
    }

    /// Counts the plan into the campaign's summary.
    pub(crate) fn count(&self, summary: &mut CampaignSummary) {
        summary.members = self.members.len() as u64;
        summary.unchanged = self.plan.unchanged as u64;
        summary.skipped_no_consent = self.plan.skipped.no_consent as u64;
        summary.skipped_suppressed = self.plan.skipped.suppressed as u64;
        summary.skipped_no_address = self.plan.skipped.no_address as u64;
        summary.planned = self.plan.ops.len() as u64;
        summary.removals = self
            .plan
            .ops
            .iter()
            .filter(|o| o.action == delivery::Action::Remove)
            .count() as u64;
    }

    /// Records the state changes that need no push.
    pub(crate) async fn commit_local(&self, shared: &Shared<'_>) -> Result<()> {
        let local: Vec<DestinationState> = self
            .plan
            .local
            .iter()
            .map(|l| {
                to_state(
                    &l.customer,
                    &l.acked,
                    self.stored_key(&l.customer),
                    shared.now,
                )
            })
            .collect();
        if !local.is_empty() {
            shared.ws.commit_destination(&self.campaign, &local).await?;
        }
        Ok(())
    }
}

/// Plans `campaign`: renders the audience fields of its eligible members (a member whose
/// fields fail to render is reported and left as they are at the destination), reads what the
/// destination acknowledged, and asks the core what to push.
pub(crate) async fn plan(
    shared: &Shared<'_>,
    campaign: &Campaign,
    errors: &mut Vec<RecordError>,
) -> Result<CampaignPlan> {
    let mode = campaign.mode;
    let renderer = CampaignRenderer { shared, campaign };
    let members = members(shared.computed, campaign);
    let mut broken: HashSet<CustomerId> = HashSet::new();
    let mut fields = BTreeMap::new();
    let mut wanted = Vec::with_capacity(members.len());
    for (id, segment) in &members {
        // A message goes once per entry whatever its text, so its hash decides nothing; an
        // ineligible member is never pushed, so theirs is not needed either.
        let payload_hash =
            if mode == Mode::Send || shared.eligibility(mode, id) != Eligibility::Eligible {
                String::new()
            } else {
                match renderer.fields(id, segment) {
                    Ok(f) => {
                        let hash = delivery::payload_hash(&f);
                        fields.insert(id.clone(), f);
                        hash
                    }
                    Err(e) => {
                        broken.insert(id.clone());
                        errors.push(render_error(campaign, id, &e));
                        continue;
                    }
                }
            };
        wanted.push(Wanted {
            customer: id.clone(),
            payload_hash,
        });
    }
    let stored = shared.ws.destination_state(&campaign.name).await?;
    let acked: BTreeMap<CustomerId, Acked> = stored
        .values()
        .filter(|s| !broken.contains(s.customer_id.as_str()))
        .map(|s| (CustomerId::new(s.customer_id.clone()), to_acked(s)))
        .collect();
    let sorted: Vec<(CustomerId, Acked)> =
        acked.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let prefix = format!("{}/{}", shared.workspace.id, campaign.name);
    let eligibility = |id: &CustomerId| shared.eligibility(mode, id);
    let plan = if shared.resync {
        delivery::plan_resync(mode, &prefix, &wanted, &sorted, eligibility)
    } else {
        delivery::plan(mode, &prefix, &wanted, &sorted, eligibility)
    };
    Ok(CampaignPlan {
        campaign: campaign.name.clone(),
        mode,
        members,
        fields,
        stored,
        acked,
        plan,
    })
}

/// Members of the campaign's segments, each with the first of its segments they are in, in
/// customer order.
pub(crate) fn members(computed: &Computed, campaign: &Campaign) -> BTreeMap<CustomerId, String> {
    let mut out = BTreeMap::new();
    for segment in &campaign.segments {
        if let Some(m) = computed.membership(segment) {
            for id in m.ids() {
                out.entry(id.clone()).or_insert_with(|| segment.clone());
            }
        }
    }
    out
}

/// The core's view of a stored state.
pub(crate) fn to_acked(s: &DestinationState) -> Acked {
    Acked {
        status: s.status,
        payload_hash: s.payload_hash.clone(),
        seq: u64::try_from(s.entries).unwrap_or(0),
        pending: s.pending.as_ref().map(|p| Pending {
            action: p.action,
            key: p.key.clone(),
            payload_hash: p.payload_hash.clone(),
        }),
    }
}

/// The stored form of `a`; `key` is the idempotency key of the push it records (the pending
/// one's when there is one). The payload is left as stored.
pub(crate) fn to_state(
    customer: &CustomerId,
    a: &Acked,
    key: &str,
    now: Timestamp,
) -> DestinationState {
    DestinationState {
        customer_id: customer.as_str().to_owned(),
        status: a.status,
        payload_hash: a.payload_hash.clone(),
        idempotency_key: a
            .pending
            .as_ref()
            .map_or_else(|| key.to_owned(), |p| p.key.clone()),
        entries: i64::try_from(a.seq).unwrap_or(i64::MAX),
        pending: a.pending.as_ref().map(|p| PendingPush {
            action: p.action,
            key: p.key.clone(),
            payload_hash: p.payload_hash.clone(),
        }),
        updated_at: now.to_datetime(),
        payload: None,
    }
}
