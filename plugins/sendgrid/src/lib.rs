//! `sendgrid`: a destination that sends each rendered email through SendGrid's v3 Mail Send API,
//! one personalization per customer, at most once per operation key.
//!
//! [`config`] checks the config, [`mapping`] turns a message into a personalization and the
//! parts a request shares, [`client`] talks to SendGrid and says what each answer means, and
//! [`ledger`] remembers what SendGrid accepted, in the host's durable state. The SDK's `Batcher`
//! cuts batches into requests of at most 1,000 personalizations (SendGrid's limit) and answers
//! one outcome per operation; within a chunk, customers whose rendered body is the same share a
//! request.
//!
//! It must not: send a key the ledger holds, put two customers in one `to`, or show the API key
//! anywhere (the SDK's client redacts it, even when SendGrid echoes it).

pub mod client;
pub mod config;
pub mod ledger;
pub mod mapping;

use std::collections::BTreeMap;

use cohort_plugin_api::prelude::*;
use serde_json::json;

use crate::client::{Answer, Api};
use crate::config::{Config, Validated};
use crate::ledger::Ledger;
use crate::mapping::Item;

/// SendGrid's most personalizations in one request.
const MAX_PERSONALIZATIONS: usize = 1000;

/// The sendgrid destination.
#[derive(Debug)]
pub struct Sendgrid {
    api: Api,
    batcher: Batcher,
    ledger: Ledger,
    config: Validated,
}

impl Plugin for Sendgrid {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("sendgrid", env!("CARGO_PKG_VERSION"))
            .description("Sends each rendered email through SendGrid's v3 Mail Send API, once")
            .modes([DestinationMode::Send])
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
                ),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        Ok(Sendgrid {
            api: Api::new(host, &config),
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
        let Sendgrid {
            api,
            batcher,
            ledger,
            config,
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
