//! `meta-ads`: a destination that keeps a Meta Custom Audience (a customer list) equal to a
//! campaign's audience. [`config`] checks the config, [`mapping`] turns the campaign's fields
//! into rows of Meta's multi-key schema (normalised and hashed by `cohort-adkeys`), [`client`]
//! talks to the Graph API and waits out its throttling, and the SDK's `Batcher` cuts requests
//! at Meta's 10,000 rows and answers one outcome per operation.
//!
//! What it must not do: send a value unhashed (only `EXTERN_ID` and `LOOKALIKE_VALUE` are),
//! hash a value that already is a hash, or send any field the campaign did not map to a Meta
//! key. Consent is decided by Cohort before a batch is made: everyone added has consented, and
//! a withdrawal arrives here as a removal.

pub mod client;
pub mod config;
pub mod mapping;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::{OutcomeStatus, Replace};
use serde_json::{Value, json};

use crate::client::{Edge, Graph, MAX_ROWS, Received, Session};
use crate::config::Config;
use crate::mapping::{Row, Schema};
use cohort_plugin_api::sdk::ledger::RequestLedger;

/// The meta-ads destination.
#[derive(Debug)]
pub struct MetaAds {
    graph: Graph,
    host: Host,
    batcher: Batcher,
    ledger: RequestLedger,
    /// The last `batch_seq` sent in each replace session.
    sessions: HashMap<String, u32>,
    /// Field names already warned about.
    warned: BTreeSet<String>,
    /// What Meta said about the rows of this run.
    report: Received,
}

impl Plugin for MetaAds {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("meta-ads", env!("CARGO_PKG_VERSION"))
            .description("Meta Custom Audiences: hashed customer lists, mirrored member by member")
            .modes([DestinationMode::Upsert, DestinationMode::Mirror])
            .config_schema_of::<Config>()
            .example(
                Example::config(json!({
                    "access_token": "EAAB-example-system-user-token",
                    "base_url": "{base_url}",
                    "api_version": "v25.0",
                    "app_secret": "example-app-secret"
                }))
                .exchange(Exchange::post("/v25.0/conformance/users").json(
                    &json!({
                        "audience_id": "conformance", "session_id": "1",
                        "num_received": 2, "num_invalid_entries": 0, "invalid_entry_samples": {}
                    }),
                )),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        Ok(MetaAds {
            graph: Graph::new(host, &config),
            host,
            // Meta's limit is in rows; the bytes only guard against a runaway payload.
            batcher: Batcher::new(host).max_records(MAX_ROWS).max_bytes(64 << 20),
            ledger: RequestLedger::new(host),
            sessions: HashMap::new(),
            warned: BTreeSet::new(),
            report: Received::default(),
        })
    }
}

/// What a batch asks of Meta: rows to remove and rows to add, each for an operation.
#[derive(Debug, Default)]
struct Work {
    removes: Vec<(usize, Row)>,
    adds: Vec<(usize, Row)>,
}

impl Destination for MetaAds {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let audience = audience_id(&batch)?;
        let ops = &batch.operations;
        let mut parts: Vec<Vec<OutcomeStatus>> = vec![Vec::new(); ops.len()];
        let mut work = Work::default();
        let mut unknown = BTreeSet::new();
        for (i, op) in ops.iter().enumerate() {
            let mut row_of = |payload: &Value| {
                mapping::row(payload, |f| {
                    unknown.insert(f.to_owned());
                })
            };
            let planned = match op.action {
                Action::Send => Err(
                    "meta-ads keeps audiences (modes upsert and mirror); it sends no messages"
                        .to_owned(),
                ),
                Action::Upsert => match row_of(&op.payload) {
                    Ok(Some(row)) => {
                        // A changed key (a new email) leaves the old hashes behind unless they
                        // are removed; a replace session drops them anyway.
                        if batch.replace.is_none()
                            && let Ok(Some(old)) = row_of(&op.previous)
                            && old != row
                        {
                            work.removes.push((i, old));
                        }
                        work.adds.push((i, row));
                        Ok(())
                    }
                    Ok(None) => Err("the campaign rendered no fields".to_owned()),
                    Err(e) => Err(e),
                },
                Action::Remove => match row_of(&op.payload) {
                    Ok(Some(row)) => {
                        work.removes.push((i, row));
                        Ok(())
                    }
                    // Never sent to Meta: nothing to remove.
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

        let removes = std::mem::take(&mut work.removes);
        self.send_all(&batch, &audience, Edge::Remove, removes, None, &mut parts)?;
        let edge = if batch.replace.is_some() {
            Edge::Replace
        } else {
            Edge::Add
        };
        let adds = std::mem::take(&mut work.adds);
        self.send_all(
            &batch,
            &audience,
            edge,
            adds,
            batch.replace.as_ref(),
            &mut parts,
        )?;

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
        let report = std::mem::take(&mut self.report);
        if report.num_invalid_entries > 0 {
            self.host.log_with(
                Level::Warn,
                "Meta could not use some rows of this run",
                &json!({
                    "num_received": report.num_received,
                    "num_invalid_entries": report.num_invalid_entries,
                    "invalid_entry_samples": report.samples.iter()
                        .map(|(v, why)| json!({"value": v, "reason": why}))
                        .collect::<Vec<_>>(),
                }),
            );
        } else if report.num_received > 0 {
            self.host.log_with(
                Level::Info,
                "Meta received every row of this run",
                &json!({"num_received": report.num_received}),
            );
        }
        Ok(Vec::new())
    }
}

impl MetaAds {
    /// Sends rows to one edge, a request per schema and at most [`MAX_ROWS`] rows, and adds
    /// each operation's outcome to its `parts`.
    fn send_all(
        &mut self,
        batch: &Batch,
        audience: &str,
        edge: Edge,
        rows: Vec<(usize, Row)>,
        replace: Option<&Replace>,
        parts: &mut [Vec<OutcomeStatus>],
    ) -> Result<(), PluginError> {
        if rows.is_empty() {
            return Ok(());
        }
        // One schema a request; a campaign's rows share one, save removals of old payloads.
        let mut groups: BTreeMap<Schema, Vec<(usize, Row)>> = BTreeMap::new();
        for (i, row) in rows {
            groups.entry(row.schema.clone()).or_default().push((i, row));
        }
        let mut chunks_left: usize = groups.values().map(|g| g.len().div_ceil(MAX_ROWS)).sum();
        for (schema, group) in groups {
            let (indices, rows): (Vec<usize>, Vec<Row>) = group.into_iter().unzip();
            // The batcher wants operations: these carry the keys of the rows, in order.
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
            let mut rows = rows.into_iter();
            let MetaAds {
                graph,
                batcher,
                ledger,
                sessions,
                report,
                ..
            } = self;
            let result = batcher.push(
                &ops,
                |_| {
                    rows.next()
                        .ok_or_else(|| "plugin bug: a row went missing".to_owned())
                },
                |chunk| {
                    chunks_left = chunks_left.saturating_sub(1);
                    let session = replace.map(|r| {
                        let seq = sessions.entry(r.session.clone()).or_insert(0);
                        *seq += 1;
                        Session {
                            session_id: session_id(&r.session),
                            batch_seq: *seq,
                            last_batch_flag: r.last && chunks_left == 0,
                            estimated_num_total: r.estimated_total,
                        }
                    });
                    let ledger_key = format!("{audience}/{}/{}", edge.name(), chunk.key);
                    if session.is_none() && ledger.holds(&ledger_key) {
                        return Ok(Acks::All);
                    }
                    let refs: Vec<&Row> = chunk.items.iter().collect();
                    let received = graph.send(edge, audience, &schema, &refs, session.as_ref())?;
                    if session.is_none() {
                        ledger.record(&ledger_key, &json!({"rows": chunk.items.len()}));
                    }
                    report.num_received += received.num_received;
                    report.num_invalid_entries += received.num_invalid_entries;
                    let acks = invalid_rows(chunk, &received);
                    report.samples.extend(received.samples);
                    Ok(acks)
                },
            )?;
            for (outcome, i) in result.outcomes.into_iter().zip(indices) {
                parts[i].push(outcome.status);
            }
        }
        Ok(())
    }

    fn warn_unknown(&mut self, unknown: BTreeSet<String>) {
        for field in unknown {
            if self.warned.insert(field.clone()) {
                self.host.log_with(
                    Level::Warn,
                    "Campaign field is not a key of Meta's schema; it is not sent",
                    &json!({"field": field, "keys": "EMAIL, PHONE, FN, LN, CT, ST, ZIP, COUNTRY, DOBY, GEN, EXTERN_ID, LOOKALIKE_VALUE"}),
                );
            }
        }
    }
}

/// The rows Meta quoted as invalid are rejected with its reason; the rest are acknowledged.
fn invalid_rows(chunk: &Chunk<'_, Row>, received: &Received) -> Acks {
    if received.samples.is_empty() {
        return Acks::All;
    }
    Acks::Each(
        chunk
            .operations
            .iter()
            .zip(&chunk.items)
            .map(|(op, row)| Outcome {
                key: op.key.clone(),
                status: match received.samples.iter().find(|(v, _)| row.holds(v)) {
                    Some((_, why)) => OutcomeStatus::Rejected {
                        reason: format!("Meta counted this row invalid: {why}"),
                    },
                    None => OutcomeStatus::Ok,
                },
            })
            .collect(),
    )
}

/// The campaign's `audience`: the custom audience id.
fn audience_id(batch: &Batch) -> Result<String, PluginError> {
    match batch.audience.as_deref().map(str::trim) {
        Some(id) if !id.is_empty() && !id.contains(['/', '?', '#']) => Ok(id.to_owned()),
        _ => Err(PluginError::failed(format!(
            "campaign {}: its `audience` must be the Meta custom audience id (digits, from Ads \
             Manager or the API)",
            batch.campaign.as_deref().unwrap_or("?")
        ))),
    }
}

/// Meta's numeric session id for Cohort's session name: stable, below 2^53 (JSON-safe).
fn session_id(session: &str) -> u64 {
    let hex = cohort_adkeys::sha256_hex(session);
    u64::from_str_radix(&hex[..13], 16).unwrap_or(1).max(1)
}

/// One outcome from an operation's parts: a rejection wins, then a retry, else ok.
fn worst(parts: Vec<OutcomeStatus>) -> OutcomeStatus {
    let mut out = OutcomeStatus::Ok;
    for p in parts {
        match (&out, &p) {
            (OutcomeStatus::Rejected { .. }, _) => {}
            (_, OutcomeStatus::Rejected { .. }) => out = p,
            (OutcomeStatus::Ok, OutcomeStatus::Retry { .. }) => out = p,
            _ => {}
        }
    }
    out
}

cohort_plugin_api::export_plugin!(destination: MetaAds);
