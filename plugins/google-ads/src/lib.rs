//! `google-ads`: a destination that keeps a Google Ads Customer Match list equal to a
//! campaign's audience, through the Data Manager API (Google takes no new Customer Match
//! integrations through the Google Ads API since 2026-04-01). [`config`] checks the config,
//! [`auth`] keeps an access token, [`mapping`] turns the campaign's fields into
//! `AudienceMember`s (normalised and hashed by `cohort-adkeys`), [`client`] talks to the API
//! and reads its errors, and the SDK's `Batcher` cuts requests at 10,000 members.
//!
//! Requests are processed after they are answered: each one's `requestId` is kept in the
//! host's state with its operations' keys, and `finish` reads `requestStatus:retrieve` at the
//! end of the run (or the next, while processing goes on): a failed request's operations come
//! back as late rejections, which Cohort records and plans again.
//!
//! What it must not do: send an identifier unhashed (only the region and postal code are
//! plain), hash a value that already is a hash, or send a member without consent (Cohort
//! only adds customers who consented, and every ingested member says so).

pub mod auth;
pub mod client;
pub mod config;
pub mod mapping;

use std::collections::{BTreeSet, HashMap};

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::OutcomeStatus;
use serde_json::{Value, json};

use crate::client::{DataManager, MAX_MEMBERS, Status, Verb};
use crate::config::Config;
use crate::mapping::{GRANTED, Member};
use cohort_plugin_api::sdk::ledger::RequestLedger;

/// State key of the list of requests whose processing is not known yet.
const PENDING: &str = "pending";

/// The google-ads destination.
#[derive(Debug)]
pub struct GoogleAds {
    api: DataManager,
    host: Host,
    batcher: Batcher,
    ledger: RequestLedger,
    warned: BTreeSet<String>,
    /// The state, kept in memory on a host without a state service.
    local: Option<HashMap<String, Value>>,
}

impl Plugin for GoogleAds {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("google-ads", env!("CARGO_PKG_VERSION"))
            .description(
                "Google Ads Customer Match through the Data Manager API: hashed members with consent",
            )
            .modes([DestinationMode::Upsert, DestinationMode::Mirror])
            .late_outcomes()
            .config_schema_of::<Config>()
            .example(
                Example::config(json!({
                    "operating_account_id": "123-456-7890",
                    "base_url": "{base_url}",
                    "access_token": "ya29.example-only"
                }))
                .exchange(
                    Exchange::post("/v1/audienceMembers:ingest")
                        .json(&json!({"requestId": "example-request-1"})),
                )
                .exchange(Exchange::get("/v1/requestStatus:retrieve").json(&json!({
                    "requestStatusPerDestination": [{"requestStatus": "SUCCESS"}]
                }))),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        Ok(GoogleAds {
            api: DataManager::new(host, &config),
            host,
            batcher: Batcher::new(host)
                .max_records(MAX_MEMBERS)
                .max_bytes(64 << 20),
            ledger: RequestLedger::new(host),
            warned: BTreeSet::new(),
            local: None,
        })
    }
}

impl Destination for GoogleAds {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let list = user_list(&batch)?;
        let ops = &batch.operations;
        let mut parts: Vec<Vec<OutcomeStatus>> = vec![Vec::new(); ops.len()];
        let mut removes: Vec<(usize, Member)> = Vec::new();
        let mut adds: Vec<(usize, Member)> = Vec::new();
        let mut unknown = BTreeSet::new();
        for (i, op) in ops.iter().enumerate() {
            let mut member_of = |payload: &Value| {
                mapping::member(payload, |f| {
                    unknown.insert(f.to_owned());
                })
            };
            let planned = match op.action {
                Action::Send => Err(
                    "google-ads keeps Customer Match lists (modes upsert and mirror); it sends no \
                     messages"
                        .to_owned(),
                ),
                Action::Upsert => match member_of(&op.payload) {
                    Ok(Some(member)) => {
                        // A changed key (a new email) leaves the old one in the list unless it
                        // is removed.
                        if let Ok(Some(old)) = member_of(&op.previous)
                            && old != member
                        {
                            removes.push((i, old));
                        }
                        adds.push((
                            i,
                            Member {
                                consent: Some(GRANTED),
                                ..member
                            },
                        ));
                        Ok(())
                    }
                    Ok(None) => Err("the campaign rendered no fields".to_owned()),
                    Err(e) => Err(e),
                },
                Action::Remove => match member_of(&op.payload) {
                    Ok(Some(member)) => {
                        removes.push((i, member));
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(format!("cannot remove: {e}")),
                },
            };
            match planned {
                Ok(()) => parts[i].push(OutcomeStatus::Ok),
                Err(reason) => parts[i].push(OutcomeStatus::Rejected { reason }),
            }
        }
        self.warn_unknown(unknown);
        self.send_all(&batch, &list, Verb::Remove, removes, &mut parts)?;
        self.send_all(&batch, &list, Verb::Ingest, adds, &mut parts)?;
        Ok(PushResult {
            outcomes: ops
                .iter()
                .zip(parts)
                .map(|(op, parts)| Outcome {
                    key: op.key.clone(),
                    status: worst(parts),
                })
                .collect(),
        })
    }

    fn finish(&mut self) -> Result<Vec<Outcome>, PluginError> {
        let mut pending = self.pending();
        let mut late = Vec::new();
        let mut still = Vec::new();
        for id in pending.drain(..) {
            match self.api.status(&id) {
                Ok(Status::Processing) => still.push(id),
                Ok(Status::Success) => self.forget(&id),
                Ok(Status::Failed { status, reasons }) => {
                    let keys = self.keys_of(&id);
                    self.host.log_with(
                        Level::Warn,
                        "Google could not process every member of a request",
                        &json!({"request_id": id, "status": status, "errors": reasons,
                                "operations": keys.len()}),
                    );
                    // A failed request took none of its members: each is refused late. A
                    // partial success does not say which failed; its counts are logged.
                    if status == "FAILED" {
                        let reason = format!(
                            "Google failed request {id} while processing it: {}",
                            reasons.join(", ")
                        );
                        late.extend(keys.into_iter().map(|key| Outcome {
                            key,
                            status: OutcomeStatus::Rejected {
                                reason: reason.clone(),
                            },
                        }));
                    }
                    self.forget(&id);
                }
                Err(e) => {
                    self.host.log_with(
                        Level::Warn,
                        "Could not read a request's status; asking again at the next run",
                        &json!({"request_id": id, "error": e.to_string()}),
                    );
                    still.push(id);
                }
            }
        }
        self.set_pending(&still);
        Ok(late)
    }
}

impl GoogleAds {
    fn send_all(
        &mut self,
        batch: &Batch,
        list: &str,
        verb: Verb,
        members: Vec<(usize, Member)>,
        parts: &mut [Vec<OutcomeStatus>],
    ) -> Result<(), PluginError> {
        if members.is_empty() {
            return Ok(());
        }
        let (indices, members): (Vec<usize>, Vec<Member>) = members.into_iter().unzip();
        let ops: Vec<Operation> = indices
            .iter()
            .map(|&i| Operation {
                payload: Value::Null,
                previous: Value::Null,
                message: None,
                customer: None,
                ..batch.operations[i].clone()
            })
            .collect();
        let mut members = members.into_iter();
        let mut requests = Vec::new();
        let GoogleAds {
            api,
            batcher,
            ledger,
            ..
        } = self;
        let result = batcher.push(
            &ops,
            |_| {
                members
                    .next()
                    .ok_or_else(|| "plugin bug: a member went missing".to_owned())
            },
            |chunk| {
                let ledger_key = format!("{list}/{}/{}", verb.name(), chunk.key);
                if ledger.holds(&ledger_key) {
                    return Ok(Acks::All);
                }
                let refs: Vec<&Member> = chunk.items.iter().collect();
                let sent = api.send(verb, list, &refs)?;
                let refused: Vec<(String, String)> = sent
                    .rejected
                    .iter()
                    .map(|(at, why)| (chunk.operations[*at].key.clone(), why.clone()))
                    .collect();
                if !sent.request_id.is_empty() {
                    let keys: Vec<&str> = chunk
                        .operations
                        .iter()
                        .map(|o| o.key.as_str())
                        .filter(|k| !refused.iter().any(|(r, _)| r == k))
                        .collect();
                    requests.push((
                        sent.request_id.clone(),
                        json!({"verb": verb.name(), "keys": keys}),
                    ));
                }
                ledger.record(&ledger_key, &json!({"request_id": sent.request_id}));
                if refused.is_empty() {
                    return Ok(Acks::All);
                }
                Ok(Acks::Each(
                    chunk
                        .operations
                        .iter()
                        .map(|op| Outcome {
                            key: op.key.clone(),
                            status: match refused.iter().find(|(k, _)| *k == op.key) {
                                Some((_, why)) => OutcomeStatus::Rejected {
                                    reason: why.clone(),
                                },
                                None => OutcomeStatus::Ok,
                            },
                        })
                        .collect(),
                ))
            },
        )?;
        for (id, value) in requests {
            self.remember(&id, value);
        }
        for (outcome, i) in result.outcomes.into_iter().zip(indices) {
            parts[i].push(outcome.status);
        }
        Ok(())
    }

    /// A value of the host's state; without a state service (a host before ABI 1.2, the
    /// conformance kit), of this instance's memory.
    fn get(&mut self, key: &str) -> Option<Value> {
        if self.local.is_none() {
            match self.host.state_get(key) {
                Ok(v) => return v,
                Err(e) => self.no_state(&e),
            }
        }
        self.local.as_ref().and_then(|m| m.get(key).cloned())
    }

    fn put(&mut self, key: &str, value: Option<Value>) {
        if self.local.is_none() {
            match self.host.state_put(key, value.as_ref()) {
                Ok(()) => return,
                Err(e) => self.no_state(&e),
            }
        }
        if let Some(local) = &mut self.local {
            match value {
                Some(v) => local.insert(key.to_owned(), v),
                None => local.remove(key),
            };
        }
    }

    /// Keeps the state in memory from now on (a host without a state service, or one that
    /// fails): requests still processing at the end of this instance are not followed up.
    fn no_state(&mut self, why: &PluginError) {
        self.local = Some(HashMap::new());
        if !matches!(why, PluginError::Unsupported(_)) {
            self.host.log_with(
                Level::Warn,
                "No state store: request statuses are followed only while this run lasts",
                &json!({"error": why.to_string()}),
            );
        }
    }

    /// The requests whose processing is not known yet.
    fn pending(&mut self) -> Vec<String> {
        self.get(PENDING)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    fn set_pending(&mut self, ids: &[String]) {
        self.put(PENDING, Some(json!(ids)));
    }

    /// Keeps a request's keys and adds it to the pending list.
    fn remember(&mut self, id: &str, value: Value) {
        self.put(&format!("request/{id}"), Some(value));
        let mut pending = self.pending();
        pending.push(id.to_owned());
        self.set_pending(&pending);
    }

    fn keys_of(&mut self, id: &str) -> Vec<String> {
        self.get(&format!("request/{id}"))
            .and_then(|v| serde_json::from_value(v["keys"].clone()).ok())
            .unwrap_or_default()
    }

    fn forget(&mut self, id: &str) {
        self.put(&format!("request/{id}"), None);
    }

    fn warn_unknown(&mut self, unknown: BTreeSet<String>) {
        for field in unknown {
            if self.warned.insert(field.clone()) {
                self.host.log_with(
                    Level::Warn,
                    "Campaign field is not a Customer Match identifier; it is not sent",
                    &json!({"field": field, "identifiers": mapping::FIELDS.join(", ")}),
                );
            }
        }
    }
}

/// The campaign's `audience`: the user list id (`product_destination_id`).
fn user_list(batch: &Batch) -> Result<String, PluginError> {
    match batch.audience.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(PluginError::failed(format!(
            "campaign {}: its `audience` must be the Customer Match user list id",
            batch.campaign.as_deref().unwrap_or("?")
        ))),
    }
}

/// One outcome from an operation's parts: a rejection wins, then a retry, else ok.
fn worst(parts: Vec<OutcomeStatus>) -> OutcomeStatus {
    let mut out = OutcomeStatus::Ok;
    for p in parts {
        match (&out, &p) {
            (OutcomeStatus::Rejected { .. }, _) => {}
            (_, OutcomeStatus::Rejected { .. })
            | (OutcomeStatus::Ok, OutcomeStatus::Retry { .. }) => {
                out = p;
            }
            _ => {}
        }
    }
    out
}

cohort_plugin_api::export_plugin!(destination: GoogleAds);
