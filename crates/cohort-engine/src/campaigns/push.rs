//! Pushing a campaign's operations in batches, and recording what the destination said.
//!
//! The order of writes is what makes a crash harmless (see `cohort_core::delivery`): before a
//! batch is pushed, each operation's *intent* is recorded; after the destination answers, only
//! acknowledged operations move the state on. A run that dies between the two finds the intents
//! next time and pushes them again under the same keys, which the destination applies once.
//!
//! A destination that takes several pushes at once gets the next batch while earlier ones are
//! out, each on an instance of its own, in the orders [`pipeline`](super::pipeline) keeps. Its
//! outcomes are recorded as each push lands; a failed push stops new ones, and those in flight
//! land and are recorded before the campaign fails.

use std::collections::BTreeMap;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use cohort_config::{Campaign, Destination};
use cohort_core::delivery::{self, Outcome, Settled};
use cohort_plugin_host::wire::{Batch, Operation, OutcomeStatus, Replace};
use cohort_plugin_host::{
    CancellationToken, HostServices, RateLimit, RetryError, RetryPolicy, retry,
};
use cohort_store::{DestinationState, RecordError};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use super::pipeline::{Lane, Window};
use super::plan::{CampaignPlan, to_acked, to_state};
use super::render::push_error;
use super::{Pushing, Shared};
use crate::error::{Context as _, EngineError, Result};
use crate::instance::Reopening;
use crate::plugins::prepare;
use crate::state::PluginState;
use crate::summary::CampaignSummary;

/// A rendered operation, with the index of its entry in the plan.
type Ready = (usize, Operation);

/// Pushes the rendered operations of `planned` to `destination`, batch by batch.
#[allow(clippy::too_many_arguments, reason = "the stage's inputs, each used")]
pub(crate) async fn push_all(
    shared: &Shared<'_>,
    pushing: &Pushing<'_>,
    destination: &Destination,
    campaign: &Campaign,
    planned: &CampaignPlan,
    ready: Vec<Ready>,
    summary: &mut CampaignSummary,
    errors: &mut Vec<RecordError>,
) -> Result<()> {
    let plugin = pushing
        .plugins
        .destination(&destination.plugin, campaign.mode)?;
    let prepared = prepare(plugin, &destination.config)?;
    // The process's one HTTP service; a destination's own `rate_limit` applies to its account's
    // bucket there, shared with every campaign that pushes to the same account.
    let services = HostServices {
        secrets: prepared.secrets.clone(),
        ..pushing.services.clone()
    }
    .with_http(pushing.http.clone())
    .with_rate_limit(destination.rate_limit.as_ref().map(|r| RateLimit {
        per_second: r.per_second,
        burst: r.burst,
    }));
    let cancel = services.cancel.clone();
    let state = PluginState::new(shared.ws, format!("destination:{}", destination.name));
    let services = services.with_state(std::sync::Arc::new(state));
    let instance = Reopening::open(plugin, &prepared.value, services.clone())
        .await
        .with_context(|| format!("opening destination `{}`", destination.name))?;
    let policy = RetryPolicy::default();

    let mut ready = ready;
    let upsert = |i: usize| planned.plan.ops[i].action == delivery::Action::Upsert;
    if shared.resync {
        // A replace session's upserts go first, together; removals follow, outside it.
        ready.sort_by_key(|(i, _)| !upsert(*i));
    } else {
        // Removals first: when two persons merge whose records share an address, the retired
        // one leaves the audience and the survivor is pushed again, and the survivor's upsert
        // must come last or the removal would take the shared address away.
        ready.sort_by_key(|(i, _)| upsert(*i));
    }
    let total = ready.len() as u64;
    let mut done_ops = 0;
    let capabilities = &plugin.manifest().capabilities;
    let size = batch_size(destination.batch_size, capabilities.batch_size);
    let depth = capabilities
        .concurrent_pushes
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1);
    let context = || {
        format!(
            "pushing campaign `{}` to destination `{}`",
            campaign.name, destination.name
        )
    };
    // Instances not pushing now; a destination that takes several pushes at once gets an
    // instance per push in flight, opened when first needed.
    let mut idle = vec![instance];
    let mut opened = 1;
    let mut window = Window::new(depth);
    let mut flying = FuturesUnordered::new();
    let mut batches = batches(shared, campaign, planned, &ready, size)
        .into_iter()
        .peekable();
    // The first failure stops new pushes; those in flight land and are recorded first, so
    // nothing a destination acknowledged is forgotten.
    let mut failed = None;
    loop {
        while failed.is_none() {
            let Some(lane) = batches.peek().map(|(chunk, replace)| {
                let actions = chunk.iter().map(|(i, _)| planned.plan.ops[*i].action);
                Lane::of(replace.is_some(), actions)
            }) else {
                break;
            };
            if !window.has_room(lane) {
                break;
            }
            let Some((chunk, replace)) = batches.next() else {
                break;
            };
            let instance = match idle.pop() {
                Some(instance) => instance,
                None => match Reopening::open(plugin, &prepared.value, services.clone()).await {
                    Ok(instance) => {
                        opened += 1;
                        instance
                    }
                    Err(e) => {
                        failed = Some(EngineError::from(e).context(format!(
                            "opening destination `{}` (instance {})",
                            destination.name,
                            opened + 1
                        )));
                        break;
                    }
                },
            };
            let intents: Vec<DestinationState> = chunk
                .iter()
                .map(|(i, _)| {
                    let op = &planned.plan.ops[*i];
                    let intent = op.intent(planned.before(&op.customer));
                    to_state(&op.customer, &intent, &op.key, shared.now)
                })
                .collect();
            if let Err(e) = shared.ws.commit_destination(&campaign.name, &intents).await {
                failed = Some(e.into());
                idle.push(instance);
                break;
            }
            let batch = Batch {
                mode: campaign.mode,
                replace,
                audience: Some(campaign.audience.clone()),
                workspace: Some(shared.workspace.id.clone()),
                campaign: Some(campaign.name.clone()),
                operations: chunk.iter().map(|(_, o)| o.clone()).collect(),
            };
            window.start(lane);
            let (policy, cancel) = (&policy, &cancel);
            flying.push(async move {
                let outcomes = push(&instance, batch, policy, cancel).await;
                (instance, chunk, outcomes)
            });
        }
        let Some((instance, chunk, outcomes)) = flying.next().await else {
            break;
        };
        window.finish();
        idle.push(instance);
        let outcomes = match outcomes.with_context(context) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                failed.get_or_insert(e);
                continue;
            }
        };
        shared.failpoint.hit("after-push");
        let done = settle(
            shared, campaign, planned, chunk, &outcomes, &policy, summary, errors,
        );
        shared.ws.commit_destination(&campaign.name, &done).await?;
        done_ops += chunk.len() as u64;
        pushing.observer.progress(done_ops, Some(total));
    }
    if let Some(failed) = failed {
        return Err(failed);
    }
    let mut late = Vec::new();
    for instance in &idle {
        let finished = retry(&policy, &cancel, |_| {
            instance.call(|i| async move { i.finish().await })
        })
        .await
        .with_context(|| {
            format!(
                "finishing campaign `{}` at destination `{}`",
                campaign.name, destination.name
            )
        })?;
        late.extend(finished.outcomes);
    }
    settle_late(shared, campaign, late, summary, errors).await
}

/// What the destination's `outcomes` do to each operation of a pushed `chunk`: the states to
/// record, counted in `summary`, with an error for each operation that did not land.
#[allow(clippy::too_many_arguments, reason = "the push's context, each used")]
fn settle(
    shared: &Shared<'_>,
    campaign: &Campaign,
    planned: &CampaignPlan,
    chunk: &[Ready],
    outcomes: &BTreeMap<String, OutcomeStatus>,
    policy: &RetryPolicy,
    summary: &mut CampaignSummary,
    errors: &mut Vec<RecordError>,
) -> Vec<DestinationState> {
    let mut done = Vec::with_capacity(chunk.len());
    for (i, operation) in chunk {
        let op = &planned.plan.ops[*i];
        let outcome = match outcomes.get(op.key.as_str()) {
            Some(OutcomeStatus::Ok) => Outcome::Acknowledged,
            Some(OutcomeStatus::Rejected { reason }) => {
                errors.push(push_error(campaign, op, reason));
                Outcome::Rejected
            }
            Some(OutcomeStatus::Retry { reason, .. }) => {
                errors.push(push_error(
                    campaign,
                    op,
                    &format!(
                        "still failing after {} attempts: {reason}",
                        policy.max_attempts
                    ),
                ));
                Outcome::Unknown
            }
            None => {
                errors.push(push_error(
                    campaign,
                    op,
                    "the destination gave no outcome for this key",
                ));
                Outcome::Unknown
            }
        };
        match op.settle(planned.before(&op.customer), outcome) {
            Settled::Applied(acked) => {
                summary.pushed += 1;
                let mut state = to_state(&op.customer, &acked, &op.key, shared.now);
                if op.action == delivery::Action::Upsert {
                    state.payload = Some(operation.payload.clone());
                }
                done.push(state);
            }
            Settled::Reverted(acked) => {
                summary.failed += 1;
                done.push(to_state(
                    &op.customer,
                    &acked,
                    planned.stored_key(&op.customer),
                    shared.now,
                ));
            }
            Settled::Pending => summary.failed += 1,
        }
    }
    done
}

/// Operations per push: the destination's `batch_size`, else the one its plugin prefers
/// (Mailchimp's batch jobs pay off only on sets larger than the host's default), else the
/// default. (`batches` keeps it at 1 or more.)
fn batch_size(configured: Option<usize>, preferred: Option<u32>) -> usize {
    configured
        .or_else(|| preferred.and_then(|n| usize::try_from(n).ok()))
        .unwrap_or(cohort_config::DEFAULT_BATCH_SIZE)
}

/// The batches to push: chunks of `batch_size`, each with its place in a replace session on a
/// resync (the upserts together hold the whole audience; removals follow, outside it).
fn batches<'r>(
    shared: &Shared<'_>,
    campaign: &Campaign,
    planned: &CampaignPlan,
    ready: &'r [Ready],
    batch_size: usize,
) -> Vec<(&'r [Ready], Option<Replace>)> {
    let size = batch_size.max(1);
    let replacing = shared.resync && campaign.mode != delivery::Mode::Send;
    if !replacing {
        return ready.chunks(size).map(|c| (c, None)).collect();
    }
    // Sorted by `push_all`: upserts first.
    let upserts = ready
        .iter()
        .take_while(|(i, _)| planned.plan.ops[*i].action == delivery::Action::Upsert)
        .count();
    let (members, rest) = ready.split_at(upserts);
    let session = format!(
        "{}/{}/run-{}",
        shared.workspace.id, campaign.name, shared.run_id
    );
    let count = members.chunks(size).count();
    let mut out: Vec<_> = members
        .chunks(size)
        .enumerate()
        .map(|(n, chunk)| {
            let replace = Replace {
                session: session.clone(),
                seq: u32::try_from(n + 1).unwrap_or(u32::MAX),
                last: n + 1 == count,
                estimated_total: members.len() as u64,
            };
            (chunk, Some(replace))
        })
        .collect();
    out.extend(rest.chunks(size).map(|c| (c, None)));
    out
}

/// Records what the destination refused after acknowledging it: the error, and (for
/// audiences) a state from which the next run pushes the change again.
async fn settle_late(
    shared: &Shared<'_>,
    campaign: &Campaign,
    outcomes: Vec<cohort_plugin_host::wire::Outcome>,
    summary: &mut CampaignSummary,
    errors: &mut Vec<RecordError>,
) -> Result<()> {
    let refused: Vec<(String, String)> = outcomes
        .into_iter()
        .filter_map(|o| match o.status {
            OutcomeStatus::Ok => None,
            OutcomeStatus::Rejected { reason } | OutcomeStatus::Retry { reason, .. } => {
                Some((o.key, reason))
            }
        })
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let prefix = format!("{}/{}/", shared.workspace.id, campaign.name);
    let stored = shared.ws.destination_state(&campaign.name).await?;
    let mut undone = Vec::new();
    for (key, reason) in refused {
        summary.failed += 1;
        // Keys are PREFIX/CUSTOMER/N-…: the customer is what lies between.
        let customer = key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(customer, _)| customer);
        errors.push(RecordError {
            stage: "push".to_owned(),
            location: format!(
                "campaign {} customer {} key {key}",
                campaign.name,
                customer.unwrap_or("?")
            ),
            message: format!("refused by the destination after it was accepted: {reason}"),
        });
        let Some(state) = customer.and_then(|c| stored.get(c)) else {
            continue;
        };
        // Only if the refused push is still the customer's last one: a later change supersedes.
        if state.idempotency_key != key || state.pending.is_some() {
            continue;
        }
        let id = cohort_core::CustomerId::new(state.customer_id.clone());
        if let Some(acked) = to_acked(state).undone_late() {
            undone.push(to_state(&id, &acked, &key, shared.now));
        }
    }
    if !undone.is_empty() {
        shared
            .ws
            .commit_destination(&campaign.name, &undone)
            .await?;
    }
    Ok(())
}

/// Pushes a batch, retrying the whole call when the destination asks to (the host's retry
/// rules), then the operations it asks to retry, up to the policy's attempts; returns the last
/// outcome of each key.
async fn push(
    instance: &Reopening<'_>,
    batch: Batch,
    policy: &RetryPolicy,
    cancel: &CancellationToken,
) -> Result<BTreeMap<String, OutcomeStatus>, RetryError> {
    let mut outcomes = BTreeMap::new();
    let mut pending = batch;
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(policy.base_delay)
        .with_max_delay(policy.max_delay)
        .with_jitter()
        .build();
    for round in 1..=policy.max_attempts.max(1) {
        let result = retry(policy, cancel, |_| {
            let batch = pending.clone();
            instance.call(move |i| async move { i.push(batch).await })
        })
        .await?;
        let mut again = Vec::new();
        let mut wait: Option<Duration> = None;
        for outcome in result.outcomes {
            if let OutcomeStatus::Retry { retry_after_ms, .. } = &outcome.status {
                if let Some(op) = pending.operations.iter().find(|o| o.key == outcome.key) {
                    again.push(op.clone());
                }
                wait = wait.max(retry_after_ms.map(Duration::from_millis));
            }
            outcomes.insert(outcome.key, outcome.status);
        }
        if again.is_empty() || round == policy.max_attempts {
            break;
        }
        let delay = wait
            .unwrap_or_else(|| delays.next().unwrap_or(policy.max_delay))
            .min(policy.max_wait);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
        }
        pending.operations = again;
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_batch_size_wins_then_the_plugins_then_the_default() {
        assert_eq!(batch_size(Some(7), Some(20_000)), 7);
        assert_eq!(batch_size(None, Some(20_000)), 20_000);
        assert_eq!(batch_size(None, None), cohort_config::DEFAULT_BATCH_SIZE);
    }
}
