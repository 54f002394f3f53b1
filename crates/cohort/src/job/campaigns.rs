//! Stages 3 to 5 for one campaign: diff against the destination state, render, push in
//! batches, and record each outcome.
//!
//! The order of writes is what makes a crash harmless (see `cohort_core::delivery`): before a
//! batch is pushed, each operation's *intent* is recorded; after the destination answers, only
//! acknowledged operations move the state on. A run that dies between the two finds the intents
//! next time and pushes them again under the same keys, which the destination applies once.
#![allow(
    clippy::result_large_err,
    reason = "RenderError names template, position and customer; it is built once per failed record"
)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use cohort_config::{Campaign, Mode, Workspace};
use cohort_core::delivery::{self, Acked, Eligibility, Pending, Planned, Status, Wanted};
use cohort_core::{Customer, CustomerId, Timestamp};
use cohort_plugin_host::wire::{
    self, Batch, DestinationMode, Kind, Message, Operation, OutcomeStatus,
};
use cohort_plugin_host::{AsyncInstance, HostServices, HttpPolicy, HttpService, RateLimit};
use cohort_render::{Context, RenderError, Renderer, feature_map};
use cohort_store::{DestinationState, DestinationStatus, PendingPush, RecordError, WorkspaceStore};
use serde_json::{Map, Value};

use super::Failpoint;
use super::plugins::{Plugins, prepare};
use super::segments::Computed;
use super::summary::CampaignSummary;

/// A destination call that takes longer than this is abandoned (and retried next run).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts at a batch, or at the operations of a batch the destination asks to retry.
const PUSH_ATTEMPTS: u32 = 4;
/// Longest wait between attempts, whatever the destination asks.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// What every campaign of a run shares.
#[derive(Debug)]
pub(crate) struct Shared<'a> {
    pub(crate) ws: &'a WorkspaceStore,
    pub(crate) workspace: &'a Workspace,
    pub(crate) computed: &'a Computed,
    pub(crate) renderer: &'a Renderer,
    /// Lower-cased suppressed addresses.
    pub(crate) suppressed: &'a HashSet<String>,
    pub(crate) now: Timestamp,
    pub(crate) dry_run: bool,
    pub(crate) failpoint: &'a Failpoint,
}

/// Plans, renders and pushes one campaign.
pub(crate) async fn run_campaign(
    shared: &Shared<'_>,
    plugins: &Plugins,
    campaign: &Campaign,
    errors: &mut Vec<RecordError>,
) -> Result<CampaignSummary> {
    let destination = shared
        .workspace
        .destination(&campaign.destination)
        .with_context(|| {
            format!(
                "campaign `{}`: no destination `{}`",
                campaign.name, campaign.destination
            )
        })?;
    let mut summary = CampaignSummary {
        name: campaign.name.clone(),
        destination: destination.name.clone(),
        mode: campaign.mode.as_str().to_owned(),
        ..CampaignSummary::default()
    };
    let renderer = CampaignRenderer { shared, campaign };
    let mode = core_mode(campaign.mode);

    // Who should be at the destination now, with the payload they should have there.
    let members = members(shared.computed, campaign);
    summary.members = members.len() as u64;
    let mut broken: HashSet<CustomerId> = HashSet::new();
    let mut payloads: BTreeMap<CustomerId, Value> = BTreeMap::new();
    let mut wanted = Vec::with_capacity(members.len());
    for (id, segment) in &members {
        let payload_hash = if mode == delivery::Mode::Send {
            // A message goes once per entry whatever its text, so its hash decides nothing;
            // render it only for those who will be sent it.
            String::new()
        } else if eligibility(shared, mode, id) != Eligibility::Eligible {
            String::new()
        } else {
            match renderer.fields(id, segment) {
                Ok(fields) => {
                    let hash = payload_hash(&fields);
                    payloads.insert(id.clone(), fields);
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
    let mut acked: Vec<(CustomerId, Acked)> = stored
        .values()
        .filter(|s| !broken.contains(s.customer_id.as_str()))
        .map(|s| Ok((CustomerId::new(s.customer_id.clone()), to_acked(s)?)))
        .collect::<Result<_>>()?;
    acked.sort_by(|a, b| a.0.cmp(&b.0));
    let prefix = format!("{}/{}", shared.workspace.id, campaign.name);
    let plan = delivery::plan(mode, &prefix, &wanted, &acked, |id| {
        eligibility(shared, mode, id)
    });
    summary.unchanged = plan.unchanged as u64;
    summary.skipped_no_consent = plan.skipped.no_consent as u64;
    summary.skipped_suppressed = plan.skipped.suppressed as u64;
    summary.skipped_no_address = plan.skipped.no_address as u64;
    summary.planned = plan.ops.len() as u64;
    summary.removals = plan
        .ops
        .iter()
        .filter(|o| o.action == delivery::Action::Remove)
        .count() as u64;

    // Render every operation before pushing any, so a template bug fails before anything is
    // sent rather than halfway through.
    let mut ready = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        let segment = members.get(&op.customer).map(String::as_str);
        match renderer.operation(op, segment, payloads.remove(&op.customer)) {
            Ok(operation) => ready.push((op, operation)),
            Err(e) => {
                summary.failed += 1;
                errors.push(render_error(campaign, &op.customer, &e));
            }
        }
    }
    if shared.dry_run {
        return Ok(summary);
    }
    let before: BTreeMap<&CustomerId, &Acked> = acked.iter().map(|(id, a)| (id, a)).collect();
    let local: Vec<DestinationState> = plan
        .local
        .iter()
        .map(|l| {
            let key = stored
                .get(l.customer.as_str())
                .map_or("", |s| s.idempotency_key.as_str());
            to_state(&l.customer, &l.acked, key, shared.now)
        })
        .collect();
    if !local.is_empty() {
        shared.ws.commit_destination(&campaign.name, &local).await?;
    }
    if ready.is_empty() {
        return Ok(summary);
    }

    let plugin = plugins.get(&destination.plugin)?;
    if !plugin.manifest().is(Kind::Destination) {
        bail!(
            "plugin `{}` is not a destination (it is: {})",
            plugin.name(),
            plugin.manifest().kinds_label()
        );
    }
    let wire_mode = wire_mode(campaign.mode);
    if !plugin
        .manifest()
        .capabilities
        .destination_modes
        .contains(&wire_mode)
    {
        bail!(
            "plugin `{}` does not support {} mode",
            plugin.name(),
            campaign.mode.as_str()
        );
    }
    let prepared = prepare(plugin, &destination.config)?;
    let policy = HttpPolicy {
        rate_limit: destination
            .rate_limit
            .as_ref()
            .map(|r| RateLimit {
                per_second: r.per_second,
                burst: r.burst,
            })
            .or(HttpPolicy::default().rate_limit),
        ..HttpPolicy::default()
    };
    let http = HttpService::with_runtime(policy, tokio::runtime::Handle::current())?;
    let services = HostServices {
        secrets: prepared.secrets.clone(),
        ..HostServices::default()
    }
    .with_http(http);
    let instance = AsyncInstance::open(plugin, &prepared.value, services, CALL_TIMEOUT)
        .await
        .with_context(|| format!("opening destination `{}`", destination.name))?;

    for chunk in ready.chunks(destination.batch_size.max(1)) {
        let intents: Vec<DestinationState> = chunk
            .iter()
            .map(|(op, _)| {
                let intent = op.intent(before.get(&op.customer).copied());
                to_state(&op.customer, &intent, &op.key, shared.now)
            })
            .collect();
        shared
            .ws
            .commit_destination(&campaign.name, &intents)
            .await?;
        let batch = Batch {
            workspace: None,
            campaign: None,
            mode: wire_mode,
            audience: Some(campaign.audience.clone()),
            operations: chunk.iter().map(|(_, o)| o.clone()).collect(),
        };
        let outcomes = push(&instance, batch).await.with_context(|| {
            format!(
                "pushing campaign `{}` to destination `{}`",
                campaign.name, destination.name
            )
        })?;
        shared.failpoint.hit("after-push");
        let mut done = Vec::with_capacity(chunk.len());
        for (op, _) in chunk {
            match outcomes.get(op.key.as_str()) {
                Some(OutcomeStatus::Ok) => {
                    summary.pushed += 1;
                    done.push(to_state(&op.customer, &op.acked, &op.key, shared.now));
                }
                Some(OutcomeStatus::Rejected { reason }) => {
                    // Refused for good: the change did not happen. Put the state back as it
                    // was (an earlier unconfirmed push included); the next run plans it again.
                    summary.failed += 1;
                    errors.push(push_error(campaign, op, reason));
                    let reverted = match before.get(&op.customer) {
                        Some(a) => (*a).clone(),
                        None => Acked {
                            pending: None,
                            ..op.intent(None)
                        },
                    };
                    let key = stored
                        .get(op.customer.as_str())
                        .map_or("", |s| s.idempotency_key.as_str());
                    done.push(to_state(&op.customer, &reverted, key, shared.now));
                }
                Some(OutcomeStatus::Retry { reason, .. }) => {
                    // Still failing after every attempt: the intent stays, so the next run
                    // pushes it again under the same key.
                    summary.failed += 1;
                    errors.push(push_error(
                        campaign,
                        op,
                        &format!("still failing after {PUSH_ATTEMPTS} attempts: {reason}"),
                    ));
                }
                None => {
                    summary.failed += 1;
                    errors.push(push_error(
                        campaign,
                        op,
                        "the destination gave no outcome for this key",
                    ));
                }
            }
        }
        shared.ws.commit_destination(&campaign.name, &done).await?;
    }
    Ok(summary)
}

/// Pushes a batch, retrying the whole call when the destination asks to, and then the
/// operations it asks to retry; returns the last outcome of each key.
async fn push(instance: &AsyncInstance, batch: Batch) -> Result<BTreeMap<String, OutcomeStatus>> {
    let mut outcomes = BTreeMap::new();
    let mut pending = batch;
    for attempt in 1..=PUSH_ATTEMPTS {
        let result = match instance.push(pending.clone()).await {
            Ok(result) => result,
            Err(e) if e.is_retryable() && attempt < PUSH_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt, None)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let mut again = Vec::new();
        let mut wait = None;
        for outcome in result.outcomes {
            if let OutcomeStatus::Retry { retry_after_ms, .. } = &outcome.status {
                if let Some(op) = pending.operations.iter().find(|o| o.key == outcome.key) {
                    again.push(op.clone());
                }
                wait = wait.max(*retry_after_ms);
            }
            outcomes.insert(outcome.key, outcome.status);
        }
        if again.is_empty() || attempt == PUSH_ATTEMPTS {
            break;
        }
        tokio::time::sleep(backoff(attempt, wait)).await;
        pending.operations = again;
    }
    Ok(outcomes)
}

fn backoff(attempt: u32, retry_after_ms: Option<u64>) -> Duration {
    let asked = retry_after_ms.map(Duration::from_millis);
    let doubling = Duration::from_millis(250) * 2u32.pow(attempt.min(8));
    asked.unwrap_or(doubling).min(MAX_RETRY_WAIT)
}

/// Members of the campaign's segments, each with the first of its segments they are in (the
/// `segment` their templates see), in customer order.
fn members(computed: &Computed, campaign: &Campaign) -> BTreeMap<CustomerId, String> {
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

/// Consent is law: marketing goes only to customers who accepted it, are not suppressed and
/// have an address the channel can use. Ad audiences take the same consent as email (the one
/// marketing consent the canonical record carries).
fn eligibility(shared: &Shared<'_>, mode: delivery::Mode, id: &CustomerId) -> Eligibility {
    let Some((_, customer)) = shared.computed.customer(id.as_str()) else {
        return Eligibility::Unknown;
    };
    let email = customer
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    if !customer.accepts_email_marketing {
        return Eligibility::NoConsent;
    }
    if email.is_some_and(|e| shared.suppressed.contains(&e.to_lowercase())) {
        return Eligibility::Suppressed;
    }
    let has_address = match mode {
        delivery::Mode::Send => email.is_some(),
        delivery::Mode::Upsert | delivery::Mode::Mirror => {
            email.is_some()
                || customer
                    .phone
                    .as_deref()
                    .is_some_and(|p| !p.trim().is_empty())
        }
    };
    if has_address {
        Eligibility::Eligible
    } else {
        Eligibility::NoAddress
    }
}

/// Renders a campaign's templates for one customer.
struct CampaignRenderer<'a> {
    shared: &'a Shared<'a>,
    campaign: &'a Campaign,
}

impl CampaignRenderer<'_> {
    fn error(&self, customer: &str, message: &str) -> RenderError {
        RenderError {
            template: self.campaign.name.clone(),
            origin: self.campaign.at.to_string(),
            line: None,
            column: None,
            customer_id: customer.to_owned(),
            message: message.to_owned(),
        }
    }

    fn context(
        &self,
        id: &CustomerId,
        segment: Option<&str>,
    ) -> Result<(Context, &Customer), RenderError> {
        let computed = self.shared.computed;
        let (row, customer) = computed
            .customer(id.as_str())
            .ok_or_else(|| self.error(id.as_str(), "the customer is no longer in the store"))?;
        let segment_name = segment
            .or(self.campaign.segments.first().map(String::as_str))
            .unwrap_or("");
        let description = self
            .shared
            .workspace
            .segment(segment_name)
            .and_then(|s| s.description.as_deref());
        let mut ctx = self
            .shared
            .renderer
            .context(customer, self.shared.now)
            .features(feature_map(computed.table.row_values(row)))
            .segment(segment_name, description)
            .campaign(&self.campaign.name)
            .top_products(computed.products.get(id).cloned().unwrap_or_default());
        if let Some(url) = &self.shared.workspace.unsubscribe_url {
            let url = self.shared.renderer.render(&url.name, &ctx)?;
            ctx = ctx.unsubscribe_url(url);
        }
        Ok((ctx, customer))
    }

    /// The audience fields for a customer.
    fn fields(&self, id: &CustomerId, segment: &str) -> Result<Value, RenderError> {
        let (ctx, _) = self.context(id, Some(segment))?;
        let mut out = Map::new();
        for (field, template) in &self.campaign.fields {
            out.insert(
                field.clone(),
                Value::String(self.shared.renderer.render(&template.name, &ctx)?),
            );
        }
        Ok(Value::Object(out))
    }

    /// The wire operation for a planned one.
    fn operation(
        &self,
        op: &Planned,
        segment: Option<&str>,
        fields: Option<Value>,
    ) -> Result<Operation, RenderError> {
        let (ctx, customer) = self.context(&op.customer, segment)?;
        let (action, payload, message) = match op.action {
            delivery::Action::Remove => (wire::Action::Remove, Value::Null, None),
            delivery::Action::Upsert => {
                let fields = match fields {
                    Some(f) => f,
                    None => self.fields(&op.customer, segment.unwrap_or(""))?,
                };
                (wire::Action::Upsert, fields, None)
            }
            delivery::Action::Send => (
                wire::Action::Send,
                Value::Null,
                Some(self.message(&ctx, customer)?),
            ),
        };
        Ok(Operation {
            key: op.key.clone(),
            action,
            customer_id: op.customer.clone(),
            customer: Some(customer.clone()),
            payload,
            message,
        })
    }

    fn message(&self, ctx: &Context, customer: &Customer) -> Result<Message, RenderError> {
        let renderer = self.shared.renderer;
        let Some(email) = &self.campaign.email else {
            return Err(self.error(ctx.customer_id(), "a send campaign needs [campaigns.email]"));
        };
        let subject = renderer.render(&email.subject.name, ctx)?;
        let html = email
            .html
            .as_ref()
            .map(|t| renderer.render(&t.name, ctx))
            .transpose()?;
        let text = match &email.text {
            Some(t) => Some(renderer.render(&t.name, ctx)?),
            None => html.as_deref().map(Renderer::html_to_text),
        };
        let mut headers = Vec::new();
        if let Some(reply_to) = &email.reply_to {
            headers.push(("Reply-To".to_owned(), reply_to.clone()));
        }
        if let Some(Value::String(url)) = ctx.as_json().get("unsubscribe_url") {
            headers.push(("List-Unsubscribe".to_owned(), format!("<{url}>")));
        }
        Ok(Message {
            from: Some(email.from.clone()),
            to: customer.email.iter().cloned().collect(),
            subject: Some(subject),
            text,
            html,
            headers,
        })
    }
}

fn render_error(campaign: &Campaign, id: &CustomerId, e: &RenderError) -> RecordError {
    RecordError {
        stage: "render".to_owned(),
        location: format!("campaign {} customer {}", campaign.name, id.as_str()),
        message: e.to_string(),
    }
}

fn push_error(campaign: &Campaign, op: &Planned, reason: &str) -> RecordError {
    RecordError {
        stage: "push".to_owned(),
        location: format!(
            "campaign {} customer {} key {}",
            campaign.name,
            op.customer.as_str(),
            op.key
        ),
        message: reason.to_owned(),
    }
}

/// A stable hash of a rendered payload (FNV-1a over its canonical JSON; object keys are
/// sorted), so an unchanged payload is recognised across runs and releases.
pub(crate) fn payload_hash(payload: &Value) -> String {
    let bytes = serde_json::to_vec(payload).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn core_mode(mode: Mode) -> delivery::Mode {
    match mode {
        Mode::Upsert => delivery::Mode::Upsert,
        Mode::Mirror => delivery::Mode::Mirror,
        Mode::Send => delivery::Mode::Send,
    }
}

fn wire_mode(mode: Mode) -> DestinationMode {
    match mode {
        Mode::Upsert => DestinationMode::Upsert,
        Mode::Mirror => DestinationMode::Mirror,
        Mode::Send => DestinationMode::Send,
    }
}

fn status_to_store(status: Status) -> DestinationStatus {
    match status {
        Status::Member => DestinationStatus::Member,
        Status::Removed => DestinationStatus::Removed,
        Status::Sent => DestinationStatus::Sent,
    }
}

fn action_from_str(s: &str) -> Option<delivery::Action> {
    Some(match s {
        "upsert" => delivery::Action::Upsert,
        "remove" => delivery::Action::Remove,
        "send" => delivery::Action::Send,
        _ => return None,
    })
}

fn to_acked(s: &DestinationState) -> Result<Acked> {
    let status = match s.status {
        DestinationStatus::Member => Status::Member,
        DestinationStatus::Removed => Status::Removed,
        DestinationStatus::Sent => Status::Sent,
    };
    let pending = match &s.pending {
        None => None,
        Some(p) => Some(Pending {
            action: action_from_str(&p.action).with_context(|| {
                format!(
                    "destination state of customer {}: unknown pending action `{}`",
                    s.customer_id, p.action
                )
            })?,
            key: p.key.clone(),
            payload_hash: p.payload_hash.clone(),
        }),
    };
    Ok(Acked {
        status,
        payload_hash: s.payload_hash.clone(),
        seq: u64::try_from(s.entries).unwrap_or(0),
        pending,
    })
}

/// The stored form of `a`; `key` is the idempotency key of the push it records (the pending
/// one's when there is one).
fn to_state(customer: &CustomerId, a: &Acked, key: &str, now: Timestamp) -> DestinationState {
    DestinationState {
        customer_id: customer.as_str().to_owned(),
        status: status_to_store(a.status),
        payload_hash: a.payload_hash.clone(),
        idempotency_key: a
            .pending
            .as_ref()
            .map_or_else(|| key.to_owned(), |p| p.key.clone()),
        entries: i64::try_from(a.seq).unwrap_or(i64::MAX),
        pending: a.pending.as_ref().map(|p| PendingPush {
            action: p.action.as_str().to_owned(),
            key: p.key.clone(),
            payload_hash: p.payload_hash.clone(),
        }),
        updated_at: now.to_datetime(),
    }
}

/// What a campaign would push for one customer, rendered but not pushed.
#[derive(Debug)]
pub(crate) struct Preview {
    /// The first of the campaign's segments the customer is in.
    pub(crate) segment: Option<String>,
    pub(crate) eligibility: Eligibility,
    pub(crate) operation: Operation,
}

/// Renders `campaign` for customer `id`, whether or not they are a member.
pub(crate) fn preview(
    shared: &Shared<'_>,
    campaign: &Campaign,
    id: &CustomerId,
) -> Result<Preview, RenderError> {
    let mode = core_mode(campaign.mode);
    let segment = members(shared.computed, campaign).remove(id);
    let action = match mode {
        delivery::Mode::Send => delivery::Action::Send,
        delivery::Mode::Upsert | delivery::Mode::Mirror => delivery::Action::Upsert,
    };
    let op = Planned {
        customer: id.clone(),
        action,
        key: format!("{}/{}/preview", shared.workspace.id, campaign.name),
        reason: delivery::Reason::Entered,
        acked: Acked {
            status: Status::Member,
            payload_hash: String::new(),
            seq: 0,
            pending: None,
        },
    };
    let operation =
        CampaignRenderer { shared, campaign }.operation(&op, segment.as_deref(), None)?;
    Ok(Preview {
        segment,
        eligibility: eligibility(shared, mode, id),
        operation,
    })
}

/// The members of `campaign`'s segments, in customer order.
pub(crate) fn member_ids(computed: &Computed, campaign: &Campaign) -> Vec<CustomerId> {
    members(computed, campaign).into_keys().collect()
}
