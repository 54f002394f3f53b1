//! `klaviyo`: a destination that keeps a Klaviyo list in step with a segment.
//!
//! Built on the SDK's connector toolkit like webhook: [`config`] checks the config,
//! [`mapping`] turns operations into profiles (attributes, and custom properties from the
//! campaign's other `fields`) and Klaviyo's JSON:API errors into reasons, [`client`] talks to
//! the API with the `revision` header and paces each endpoint family to its limits, and the
//! SDK's `Batcher` answers one outcome per operation.
//!
//! - `upsert` and `mirror`: profiles are created or updated, then added to the list through
//!   its relationships endpoint; in mirror mode a leaver is taken off the list (the profile
//!   stays, and so does its consent).
//! - Above `bulk_threshold` profiles in a batch, upserts go through bulk import jobs (which add
//!   to the list themselves), polled until they finish, with each import error as a rejection.
//! - Consent: Cohort pushes only customers who may be emailed and removes the others. Adding
//!   to a list never subscribes anyone at Klaviyo: consent there stays what the profile has.
//! - Before a run pushes, the profiles whose email marketing Klaviyo suppressed since the last
//!   read (unsubscribed, bounced, marked as spam) are reported to Cohort's suppression list
//!   (ABI 1.3, `suppressions`).
//!
//! It must not send email, subscribe or unsubscribe profiles, nor delete them.

pub mod client;
pub mod config;
pub mod mapping;

use cohort_plugin_api::prelude::*;
use serde_json::{Value, json};

use crate::client::{Api, LIST_CHUNK, LOOKUP_CHUNK};
use crate::config::{Config, Validated};
use crate::mapping::Change;

/// The klaviyo destination.
#[derive(Debug)]
pub struct Klaviyo {
    api: Api,
    config: Validated,
    host: Host,
}

impl Plugin for Klaviyo {
    type Config = Config;

    fn manifest() -> Manifest {
        let profile =
            |id: &str| json!({"data": {"type": "profile", "id": id, "attributes": {}}}).to_string();
        // The conformance kit pushes two upserts; the canned answers do not tell them apart.
        let example = Example::config(json!({
            "api_key": "pk_example_only_not_a_key",
            "list_id": "VRgFBd",
            "base_url": "{base_url}",
        }))
        .exchange(
            Exchange::post("/api/profile-import")
                .status(200)
                .header("Content-Type", "application/vnd.api+json")
                .text(profile("01EXAMPLE")),
        )
        .exchange(Exchange::post("/api/lists/VRgFBd/relationships/profiles").status(204))
        .exchange(
            Exchange::get("/api/profiles")
                .status(200)
                .header("Content-Type", "application/vnd.api+json")
                .text(
                    json!({"data": [{"type": "profile", "id": "01GONE", "attributes": {
                        "email": "gone@example.com",
                        "subscriptions": {"email": {"marketing": {"suppression": [
                            {"reason": "UNSUBSCRIBE", "timestamp": "2026-12-01T10:00:00+00:00"}
                        ]}}}}}],
                           "links": {"self": "x", "next": null}})
                    .to_string(),
                ),
        );
        Manifest::destination("klaviyo", env!("CARGO_PKG_VERSION"))
            .description(
                "Klaviyo: keeps a list in step with a segment (profiles with custom \
                 properties, list membership mirrored, bulk import jobs for large sets)",
            )
            .modes([DestinationMode::Upsert, DestinationMode::Mirror])
            .suppressions()
            .config_schema_of::<Config>()
            .example(example)
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        Ok(Klaviyo {
            api: Api::new(host, &config),
            config,
            host,
        })
    }
}

impl Destination for Klaviyo {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let Klaviyo { api, config, host } = self;
        let upserts = batch
            .operations
            .iter()
            .filter(|o| o.action == Action::Upsert)
            .count();
        let bulk = upserts > config.bulk_threshold;
        let size = if bulk { config.bulk_size } else { LOOKUP_CHUNK };
        Batcher::new(*host)
            .max_records(size)
            .max_bytes(4 << 20)
            .push(&batch.operations, mapping::change, |chunk| {
                apply(api, bulk, &chunk.key, &chunk.operations, &chunk.items).map(Acks::Each)
            })
    }

    /// Profiles suppressed since the cursor (`{"since": ISO 8601}`, from the epoch the first
    /// time); the new cursor is the latest suppression seen.
    fn suppressions(&mut self, cursor: Value) -> Result<SuppressionsPage, PluginError> {
        let since = cursor
            .get("since")
            .and_then(Value::as_str)
            .unwrap_or(EPOCH)
            .to_owned();
        let mut newest = since.clone();
        let mut suppressions = Vec::new();
        for (email, reason, at) in self.api.suppressed_since(&since)? {
            if at > newest {
                newest = at;
            }
            suppressions.push(Suppression {
                email,
                reason: mapping::suppression_reason(&reason),
                detail: Some(reason),
            });
        }
        Ok(SuppressionsPage {
            suppressions,
            next_cursor: json!({ "since": newest }),
            done: true,
        })
    }
}

/// Where the first read of suppressions starts.
const EPOCH: &str = "1970-01-01T00:00:00+00:00";

/// Applies one chunk: upserts (one by one, or as a bulk job), then list additions, then
/// removals; one outcome per operation.
fn apply(
    api: &Api,
    bulk: bool,
    chunk_key: &str,
    operations: &[&Operation],
    changes: &[Change],
) -> Result<Vec<Outcome>, HttpError> {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(operations.len());
    let mut waiting: Option<(String, Option<u64>)> = None;
    let retry_of = |e: &PluginError| match e {
        PluginError::Retry {
            message,
            retry_after,
        } => Some((
            message.clone(),
            retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )),
        _ => None,
    };
    let settle = |key: &str, status: OutcomeStatus| Outcome {
        key: key.to_owned(),
        status,
    };

    // Upserts.
    let upserts: Vec<(&str, &Value)> = operations
        .iter()
        .zip(changes)
        .filter_map(|(op, c)| match c {
            Change::Upsert { attributes, .. } => Some((op.key.as_str(), attributes)),
            Change::Remove { .. } => None,
        })
        .collect();
    if bulk && !upserts.is_empty() {
        match api.bulk_import(chunk_key, &upserts) {
            Ok(o) => outcomes.extend(o),
            Err(HttpError::Plugin(e)) if retry_of(&e).is_some() => waiting = retry_of(&e),
            Err(e) => return Err(e),
        }
    } else {
        let mut added: Vec<(&str, String)> = Vec::new();
        for (key, attributes) in &upserts {
            if waiting.is_some() {
                break;
            }
            match api.upsert_profile(attributes) {
                Ok(id) => added.push((key, id)),
                Err(HttpError::Rejected { reason, .. }) => {
                    outcomes.push(settle(key, OutcomeStatus::Rejected { reason }));
                }
                Err(HttpError::Plugin(e)) if retry_of(&e).is_some() => waiting = retry_of(&e),
                Err(e) => return Err(e),
            }
        }
        for part in added.chunks(LIST_CHUNK) {
            let ids: Vec<&str> = part.iter().map(|(_, id)| id.as_str()).collect();
            let status = match (&waiting, api.list_members(true, &ids)) {
                (Some(_), _) => None,
                (None, Ok(())) => Some(OutcomeStatus::Ok),
                (None, Err(HttpError::Rejected { reason, .. })) => {
                    Some(OutcomeStatus::Rejected { reason })
                }
                (None, Err(HttpError::Plugin(e))) if retry_of(&e).is_some() => {
                    waiting = retry_of(&e);
                    None
                }
                (None, Err(e)) => return Err(e),
            };
            if let Some(status) = status {
                outcomes.extend(part.iter().map(|(k, _)| settle(k, status.clone())));
            }
        }
    }

    // Removals: the profiles' ids by address, then off the list.
    let removals: Vec<(&str, &str)> = operations
        .iter()
        .zip(changes)
        .filter_map(|(op, c)| match c {
            Change::Remove { email } => Some((op.key.as_str(), email.as_str())),
            Change::Upsert { .. } => None,
        })
        .collect();
    if waiting.is_none() && !removals.is_empty() {
        let emails: Vec<&str> = removals.iter().map(|(_, e)| *e).collect();
        let mut result = Ok(());
        let mut ids = Vec::new();
        for part in emails.chunks(LOOKUP_CHUNK) {
            match api.find(part) {
                Ok(found) => ids.extend(found.into_values()),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            for part in ids.chunks(LIST_CHUNK) {
                let part: Vec<&str> = part.iter().map(String::as_str).collect();
                if let Err(e) = api.list_members(false, &part) {
                    result = Err(e);
                    break;
                }
            }
        }
        match result {
            // An address without a profile is not on the list: nothing to remove.
            Ok(()) => outcomes.extend(removals.iter().map(|(k, _)| settle(k, OutcomeStatus::Ok))),
            Err(HttpError::Rejected { reason, .. }) => {
                outcomes.extend(removals.iter().map(|(k, _)| {
                    settle(
                        k,
                        OutcomeStatus::Rejected {
                            reason: reason.clone(),
                        },
                    )
                }));
            }
            Err(HttpError::Plugin(e)) if retry_of(&e).is_some() => waiting = retry_of(&e),
            Err(e) => return Err(e),
        }
    }

    // Whatever has no outcome yet waits for a retry (the Batcher would say so too, less
    // precisely).
    if let Some((reason, after)) = waiting {
        for op in operations {
            if !outcomes.iter().any(|o| o.key == op.key) {
                outcomes.push(settle(
                    &op.key,
                    OutcomeStatus::Retry {
                        reason: reason.clone(),
                        retry_after_ms: after,
                    },
                ));
            }
        }
    }
    Ok(outcomes)
}

cohort_plugin_api::export_plugin!(destination: Klaviyo);
