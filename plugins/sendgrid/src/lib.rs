//! `sendgrid`: a destination that sends each rendered email through SendGrid's v3 Mail Send API
//! (mode `send`), or keeps a Marketing Campaigns list in step with a segment (modes `upsert`
//! and `mirror`).
//!
//! - `send`: [`mapping`] turns a message into a personalization and the parts a request
//!   shares, [`client`] talks to SendGrid and says what each answer means, and [`ledger`]
//!   remembers what SendGrid accepted, in the host's durable state. The SDK's `Batcher` cuts
//!   batches into requests of at most 1,000 personalizations (SendGrid's limit); within a
//!   chunk, customers whose rendered body is the same share a request.
//! - `upsert`, `mirror`: [`contact`] turns operations into contacts (custom fields by id),
//!   [`marketing`] upserts them into `list_id` through import jobs and takes leavers off the
//!   list. In mirror mode a leaver, or a customer whose consent was withdrawn, leaves the list
//!   and stays a contact.
//!
//! [`config`] checks the config. It must not: send a key the ledger holds, put two customers in
//! one `to`, delete a contact, or show the API key anywhere (the SDK's client redacts it, even
//! when SendGrid echoes it).

pub mod client;
pub mod config;
pub mod contact;
pub mod ledger;
pub mod mapping;
pub mod marketing;
pub mod unsubscribes;

use std::collections::BTreeMap;

use cohort_plugin_api::prelude::*;
use serde_json::json;

use crate::client::{Answer, Api};
use crate::config::{Config, Validated};
use crate::contact::{Change, Fields};
use crate::ledger::Ledger;
use crate::mapping::Item;
use crate::marketing::{LOOKUP_CHUNK, MAX_BYTES, MAX_CONTACTS, Marketing};

/// SendGrid's most personalizations in one request.
const MAX_PERSONALIZATIONS: usize = 1000;

/// The sendgrid destination.
#[derive(Debug)]
pub struct Sendgrid {
    api: Api,
    batcher: Batcher,
    ledger: Ledger,
    config: Validated,
    marketing: Marketing,
    /// The account's custom fields, read at the first upsert that needs them.
    fields: Option<Fields>,
}

impl Plugin for Sendgrid {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("sendgrid", env!("CARGO_PKG_VERSION"))
            .description(
                "SendGrid: sends each rendered email through the v3 Mail Send API, once, or \
                 keeps a Marketing Campaigns list in step with a segment (custom fields, \
                 leavers taken off the list)",
            )
            .modes([
                DestinationMode::Send,
                DestinationMode::Upsert,
                DestinationMode::Mirror,
            ])
            .suppressions()
            .config_schema_of::<Config>()
            .example(
                Example::config(json!({
                    "api_key": "SG.example-only",
                    "base_url": "{base_url}",
                    "categories": ["cohort"],
                    "unsubscribe_mailto": "unsubscribe@shop.example"
                }))
                .exchange(
                    Exchange::post("/v3/mail/send")
                        .status(202)
                        .header("X-Message-Id", "example-message-id"),
                )
                .exchange(Exchange::get("/v3/suppression/unsubscribes").json(&json!([
                    {"email": "unsubscribed@example.com", "created": 1_764_930_000}
                ]))),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        let api = Api::new(host, &config);
        Ok(Sendgrid {
            marketing: Marketing::new(api.clone(), &config),
            fields: None,
            api,
            batcher: Batcher::new(host)
                .max_records(MAX_PERSONALIZATIONS)
                // SendGrid takes up to 30 MB a request; leave room for the envelope.
                .max_bytes(20 << 20),
            ledger: Ledger::open(host)?,
            config,
        })
    }
}

impl Destination for Sendgrid {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        match batch.mode {
            DestinationMode::Send => self.send(&batch),
            DestinationMode::Upsert | DestinationMode::Mirror => self.sync(&batch),
        }
    }

    /// The account's global unsubscribes ([`unsubscribes`]), unless `read_unsubscribes` is off.
    fn suppressions(&mut self, cursor: serde_json::Value) -> Result<SuppressionsPage, PluginError> {
        if !self.config.read_unsubscribes {
            return Ok(SuppressionsPage {
                next_cursor: cursor,
                ..SuppressionsPage::default()
            });
        }
        unsubscribes::read(&self.api, &cursor)
    }
}

impl Sendgrid {
    /// Mode `send`: each message through Mail Send, once.
    fn send(&mut self, batch: &Batch) -> Result<PushResult, PluginError> {
        let Sendgrid {
            api,
            batcher,
            ledger,
            config,
            ..
        } = self;
        let mut done: BTreeMap<String, OutcomeStatus> = BTreeMap::new();
        let mut pending = Vec::new();
        for op in &batch.operations {
            if op.action != Action::Send {
                done.insert(
                    op.key.clone(),
                    OutcomeStatus::Rejected {
                        reason: "sendgrid sends messages only (mode `send`)".to_owned(),
                    },
                );
            } else if ledger.was_sent(&op.key)? {
                done.insert(op.key.clone(), OutcomeStatus::Ok);
            } else {
                pending.push(op.clone());
            }
        }
        let mailto = config.unsubscribe_mailto.clone();
        // Once SendGrid asks to wait, later chunks are not sent.
        let mut waiting: Option<PluginError> = None;
        let sent = batcher.push(
            &pending,
            |op| mapping::item(op, mailto.as_deref()),
            |chunk| {
                if let Some(e) = &waiting {
                    return Err(e.clone().into());
                }
                send_chunk(api, ledger, config, chunk, &mut waiting)
            },
        )?;
        for outcome in sent.outcomes {
            done.insert(outcome.key, outcome.status);
        }
        Ok(PushResult {
            outcomes: batch
                .operations
                .iter()
                .map(|op| Outcome {
                    key: op.key.clone(),
                    status: done.remove(&op.key).unwrap_or(OutcomeStatus::Retry {
                        reason: "plugin bug: no outcome".to_owned(),
                        retry_after_ms: None,
                    }),
                })
                .collect(),
        })
    }

    /// Modes `upsert` and `mirror`: the list's contacts upserted, leavers taken off it.
    fn sync(&mut self, batch: &Batch) -> Result<PushResult, PluginError> {
        let list = self.config.list(batch.mode)?.to_owned();
        if self.fields.is_none() && batch.operations.iter().any(contact::has_custom_fields) {
            self.fields = Some(self.marketing.field_definitions()?);
        }
        let fields = self.fields.clone().unwrap_or_default();
        let marketing = &self.marketing;
        Batcher::new(*self.api.host())
            .max_records(MAX_CONTACTS)
            .max_bytes(MAX_BYTES)
            .push(
                &batch.operations,
                |op| contact::change(op, &fields),
                |chunk| sync_chunk(marketing, &list, chunk).map(Acks::Each),
            )
    }
}

/// One chunk of a list mode: its upserts as one import job, then its removals; one outcome
/// per operation. Once SendGrid asks to wait, what has no outcome yet is retried.
fn sync_chunk(
    marketing: &Marketing,
    list: &str,
    chunk: &Chunk<'_, Change>,
) -> Result<Vec<Outcome>, HttpError> {
    let mut outcomes = Vec::with_capacity(chunk.items.len());
    let mut waiting: Option<PluginError> = None;
    let keys = || chunk.operations.iter().map(|o| o.key.as_str());
    let upserts: Vec<(&str, &str, &serde_json::Value)> = keys()
        .zip(&chunk.items)
        .filter_map(|(key, c)| match c {
            Change::Upsert { email, contact } => Some((key, email.as_str(), contact)),
            Change::Remove { .. } => None,
        })
        .collect();
    if !upserts.is_empty() {
        match marketing.upsert(&chunk.key, list, &upserts) {
            Ok(done) => outcomes.extend(done),
            Err(HttpError::Plugin(e @ PluginError::Retry { .. })) => waiting = Some(e),
            Err(e) => return Err(e),
        }
    }
    let removals: Vec<(&str, &str)> = keys()
        .zip(&chunk.items)
        .filter_map(|(key, c)| match c {
            Change::Remove { email } => Some((key, email.as_str())),
            Change::Upsert { .. } => None,
        })
        .collect();
    for part in removals.chunks(LOOKUP_CHUNK) {
        if waiting.is_some() {
            break;
        }
        let emails: Vec<&str> = part.iter().map(|(_, e)| *e).collect();
        // An address with no contact, or one not on the list, has nothing to remove.
        let result = marketing.on_list(list, &emails).and_then(|ids| {
            if ids.is_empty() {
                Ok(())
            } else {
                marketing.remove(list, &ids)
            }
        });
        let status = match result {
            Ok(()) => OutcomeStatus::Ok,
            Err(HttpError::Rejected { reason, .. }) => OutcomeStatus::Rejected { reason },
            Err(HttpError::Plugin(e @ PluginError::Retry { .. })) => {
                waiting = Some(e);
                break;
            }
            Err(e) => return Err(e),
        };
        outcomes.extend(part.iter().map(|(key, _)| Outcome {
            key: (*key).to_owned(),
            status: status.clone(),
        }));
    }
    if let Some(PluginError::Retry {
        message,
        retry_after,
    }) = waiting
    {
        if outcomes.is_empty() {
            return Err(PluginError::Retry {
                message,
                retry_after,
            }
            .into());
        }
        for key in keys() {
            if !outcomes.iter().any(|o| o.key == key) {
                outcomes.push(Outcome {
                    key: key.to_owned(),
                    status: OutcomeStatus::Retry {
                        reason: message.clone(),
                        retry_after_ms: retry_after.map(millis),
                    },
                });
            }
        }
    }
    Ok(outcomes)
}

/// Sends one chunk as one request per group of customers sharing a body. A personalization
/// SendGrid refuses is rejected and the request sent again without it, once.
fn send_chunk(
    api: &Api,
    ledger: &Ledger,
    config: &Validated,
    chunk: &Chunk<'_, Item>,
    waiting: &mut Option<PluginError>,
) -> Result<Acks, HttpError> {
    let mut groups: Vec<(u64, Vec<usize>)> = Vec::new();
    for (i, item) in chunk.items.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == item.group) {
            Some((_, members)) => members.push(i),
            None => groups.push((item.group, vec![i])),
        }
    }
    let key = |i: usize| chunk.operations[i].key.clone();
    let mut outcomes = Vec::new();
    let mut any_sent = false;
    for (_, group) in groups {
        if let Some(PluginError::Retry {
            message,
            retry_after,
        }) = waiting.as_ref()
        {
            for &i in &group {
                outcomes.push(Outcome {
                    key: key(i),
                    status: OutcomeStatus::Retry {
                        reason: format!("not sent: {message}"),
                        retry_after_ms: retry_after.map(millis),
                    },
                });
            }
            continue;
        }
        let mut members = group;
        for attempt in 0..2 {
            let items: Vec<&Item> = members.iter().map(|&i| &chunk.items[i]).collect();
            let body = mapping::body(&items, &config.categories, config.sandbox);
            match api.send(&body) {
                Ok(Answer::Accepted { message_id }) => {
                    any_sent = true;
                    let id = message_id.unwrap_or_default();
                    for &i in &members {
                        if let Err(e) = ledger.record(&key(i), &id, "202 Accepted") {
                            api_warn(
                                api,
                                &format!(
                                    "SendGrid accepted {} but the sent-ledger could not record it \
                                 ({e}); a crash now would send it again",
                                    key(i)
                                ),
                            );
                        }
                        outcomes.push(Outcome {
                            key: key(i),
                            status: OutcomeStatus::Ok,
                        });
                    }
                    break;
                }
                Ok(Answer::Refused {
                    personalizations,
                    request,
                }) => {
                    let mut refused: BTreeMap<usize, String> = BTreeMap::new();
                    for (p, reason) in personalizations {
                        if let Some(&i) = members.get(p) {
                            refused.entry(i).or_insert(reason);
                        }
                    }
                    if !request.is_empty() || refused.is_empty() || attempt == 1 {
                        let reason = if request.is_empty() {
                            "SendGrid refused the request".to_owned()
                        } else {
                            request.join("; ")
                        };
                        for &i in &members {
                            let reason = refused.remove(&i).unwrap_or_else(|| reason.clone());
                            outcomes.push(Outcome {
                                key: key(i),
                                status: OutcomeStatus::Rejected { reason },
                            });
                        }
                        break;
                    }
                    for (&i, reason) in &refused {
                        outcomes.push(Outcome {
                            key: key(i),
                            status: OutcomeStatus::Rejected {
                                reason: reason.clone(),
                            },
                        });
                    }
                    members.retain(|i| !refused.contains_key(i));
                    if members.is_empty() {
                        break;
                    }
                }
                Err(HttpError::Plugin(PluginError::Retry {
                    message,
                    retry_after,
                })) => {
                    let e = PluginError::Retry {
                        message: message.clone(),
                        retry_after,
                    };
                    if !any_sent {
                        *waiting = Some(e.clone());
                        return Err(e.into());
                    }
                    for &i in &members {
                        outcomes.push(Outcome {
                            key: key(i),
                            status: OutcomeStatus::Retry {
                                reason: message.clone(),
                                retry_after_ms: retry_after.map(millis),
                            },
                        });
                    }
                    *waiting = Some(e);
                    break;
                }
                Err(HttpError::Rejected { reason, .. }) => {
                    for &i in &members {
                        outcomes.push(Outcome {
                            key: key(i),
                            status: OutcomeStatus::Rejected {
                                reason: reason.clone(),
                            },
                        });
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Acks::Each(outcomes))
}

fn api_warn(api: &Api, message: &str) {
    api.host().warn(message);
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

cohort_plugin_api::export_plugin!(destination: Sendgrid);
