//! Destinations that send operations to a vendor in requests of many: [`Batcher`] chunks a
//! host batch by count and by bytes, sends each chunk through the plugin's closure, and answers
//! exactly one outcome per operation, whatever each request did.
//!
//! | the chunk's request | its operations |
//! | --- | --- |
//! | `Ok(Acks::All)` | ok |
//! | `Ok(Acks::Each(outcomes))` | as the vendor said; a key it did not mention is retried |
//! | `Err(HttpError::Rejected)` (a 4xx on a [`ClientErrors::RejectRecords`] request) | rejected with the vendor's reason |
//! | `Err(PluginError::Retry)` (429, 5xx, no answer) | retried, after the vendor's delay; later chunks are not sent and are retried too |
//! | any other error (a refused credential, a failure, cancellation) | the whole push fails with it |
//!
//! Each chunk gets a [`batch_key`]: the same operations give the same key, on every retry and
//! in every run, so it can travel as an `Idempotency-Key` and a vendor that saw the request
//! already answers without applying it twice.
//!
//! [`ClientErrors::RejectRecords`]: super::http::ClientErrors::RejectRecords

use serde::Serialize;
use xxhash_rust::xxh3::xxh3_128;

use super::http::HttpError;
use super::{Host, PluginError};
use crate::wire::{Operation, Outcome, OutcomeStatus, PushResult};

/// What the vendor said about a chunk that it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acks {
    /// Every operation of the chunk was applied.
    All,
    /// One outcome per operation key (a vendor that reports per record).
    Each(Vec<Outcome>),
}

/// One request's worth of operations.
#[derive(Debug)]
pub struct Chunk<'a, T> {
    /// Deterministic key of the chunk: [`batch_key`] of its operations' keys.
    pub key: String,
    /// The operations, in the host's order.
    pub operations: Vec<&'a Operation>,
    /// Each operation in the vendor's form, in the same order.
    pub items: Vec<T>,
}

/// The idempotency key of a set of operations: the same keys, in the same order, give the same
/// key (`cohort-` and 32 hex digits of an XXH3-128 of the keys, one per line).
pub fn batch_key<'a>(keys: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = Vec::new();
    for k in keys {
        text.extend_from_slice(k.as_bytes());
        text.push(b'\n');
    }
    format!("cohort-{:032x}", xxh3_128(&text))
}

/// Sends a batch in chunks of at most `max_records` operations and `max_bytes` of items.
#[derive(Debug, Clone, Copy)]
pub struct Batcher {
    host: Host,
    max_records: usize,
    max_bytes: usize,
}

impl Batcher {
    /// A batcher with 500 operations and 1 MiB of items per request (most vendors allow more;
    /// set the vendor's limits with [`max_records`](Self::max_records) and
    /// [`max_bytes`](Self::max_bytes)).
    pub fn new(host: Host) -> Batcher {
        Batcher {
            host,
            max_records: 500,
            max_bytes: 1 << 20,
        }
    }

    /// Most operations in one request.
    pub fn max_records(mut self, n: usize) -> Batcher {
        self.max_records = n.max(1);
        self
    }

    /// Most bytes of items (their JSON, with a comma each) in one request; leave room for the
    /// envelope the plugin wraps them in.
    pub fn max_bytes(mut self, n: usize) -> Batcher {
        self.max_bytes = n.max(1);
        self
    }

    /// Sends `operations`: `prepare` turns each into the vendor's item (an `Err(reason)` rejects
    /// that operation, which is not sent), `send` sends one chunk. Returns one outcome per
    /// operation, in order.
    pub fn push<'a, T: Serialize>(
        &self,
        operations: &'a [Operation],
        mut prepare: impl FnMut(&'a Operation) -> Result<T, String>,
        mut send: impl FnMut(&Chunk<'a, T>) -> Result<Acks, HttpError>,
    ) -> Result<PushResult, PluginError> {
        let mut outcomes: Vec<Option<OutcomeStatus>> = vec![None; operations.len()];
        // Chunks as indices into `operations`, with the items.
        let mut chunks: Vec<(Vec<usize>, Vec<T>)> = Vec::new();
        let mut bytes = 0;
        for (i, op) in operations.iter().enumerate() {
            let item = match prepare(op) {
                Ok(item) => item,
                Err(reason) => {
                    outcomes[i] = Some(OutcomeStatus::Rejected { reason });
                    continue;
                }
            };
            let size = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len() + 1);
            if size > self.max_bytes {
                outcomes[i] = Some(OutcomeStatus::Rejected {
                    reason: format!(
                        "this operation is {size} bytes, more than the {} one request may carry",
                        self.max_bytes
                    ),
                });
                continue;
            }
            let full = chunks.last().is_none_or(|(ops, _)| {
                ops.len() >= self.max_records || bytes + size > self.max_bytes
            });
            if full {
                chunks.push((Vec::new(), Vec::new()));
                bytes = 0;
            }
            if let Some((ops, items)) = chunks.last_mut() {
                ops.push(i);
                items.push(item);
                bytes += size;
            }
        }

        let total = operations.len() as u64;
        let mut done = outcomes.iter().filter(|o| o.is_some()).count() as u64;
        let mut waiting: Option<(String, Option<u64>)> = None;
        for (indices, items) in chunks {
            let status_of = |acks: &Acks, key: &str| match acks {
                Acks::All => OutcomeStatus::Ok,
                Acks::Each(list) => list
                    .iter()
                    .find(|o| o.key == key)
                    .map(|o| o.status.clone())
                    .unwrap_or_else(|| OutcomeStatus::Retry {
                        reason: "the vendor gave no outcome for this operation".to_owned(),
                        retry_after_ms: None,
                    }),
            };
            if let Some((reason, retry_after_ms)) = &waiting {
                for i in indices {
                    outcomes[i] = Some(OutcomeStatus::Retry {
                        reason: format!("not sent: an earlier request was told to wait: {reason}"),
                        retry_after_ms: *retry_after_ms,
                    });
                }
                continue;
            }
            self.host.check_cancelled()?;
            let chunk = Chunk {
                key: batch_key(indices.iter().map(|&i| operations[i].key.as_str())),
                operations: indices.iter().map(|&i| &operations[i]).collect(),
                items,
            };
            match send(&chunk) {
                Ok(acks) => {
                    for &i in &indices {
                        outcomes[i] = Some(status_of(&acks, &operations[i].key));
                    }
                }
                Err(HttpError::Rejected { reason, .. }) => {
                    for &i in &indices {
                        outcomes[i] = Some(OutcomeStatus::Rejected {
                            reason: reason.clone(),
                        });
                    }
                }
                Err(HttpError::Plugin(PluginError::Retry {
                    message,
                    retry_after,
                })) => {
                    let retry_after_ms =
                        retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    for &i in &indices {
                        outcomes[i] = Some(OutcomeStatus::Retry {
                            reason: message.clone(),
                            retry_after_ms,
                        });
                    }
                    waiting = Some((message, retry_after_ms));
                }
                Err(HttpError::Plugin(e)) => return Err(e),
            }
            done += indices.len() as u64;
            self.host.progress(done, Some(total));
        }
        Ok(PushResult {
            outcomes: operations
                .iter()
                .zip(outcomes)
                .map(|(op, status)| Outcome {
                    key: op.key.clone(),
                    status: status.unwrap_or(OutcomeStatus::Retry {
                        reason: "plugin bug: the operation was never sent".to_owned(),
                        retry_after_ms: None,
                    }),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Action;
    use cohort_core::CustomerId;
    use std::time::Duration;

    fn ops(n: usize) -> Vec<Operation> {
        (0..n)
            .map(|i| Operation {
                key: format!("k{i}"),
                action: Action::Upsert,
                customer_id: CustomerId::new(i.to_string()),
                customer: None,
                payload: serde_json::json!({"n": i}),
                previous: serde_json::Value::Null,
                message: None,
            })
            .collect()
    }

    #[test]
    fn chunks_respect_the_count_and_the_bytes() {
        let ops = ops(7);
        let mut sizes = Vec::new();
        let result = Batcher::new(Host::detached())
            .max_records(3)
            .push(
                &ops,
                |op| Ok(op.key.clone()),
                |chunk| {
                    sizes.push(chunk.items.len());
                    Ok(Acks::All)
                },
            )
            .unwrap();
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(result.outcomes.len(), 7);
        // `"k0"` is 4 bytes and a comma: two per 10 bytes.
        let mut sizes = Vec::new();
        Batcher::new(Host::detached())
            .max_bytes(10)
            .push(
                &ops,
                |op| Ok(op.key.clone()),
                |chunk| {
                    sizes.push(chunk.items.len());
                    Ok(Acks::All)
                },
            )
            .unwrap();
        assert_eq!(sizes, [2, 2, 2, 1]);
    }

    #[test]
    fn every_operation_gets_one_outcome_in_order_whatever_each_chunk_did() {
        let ops = ops(6);
        let mut calls = 0;
        let result = Batcher::new(Host::detached())
            .max_records(2)
            .push(
                &ops,
                |op| {
                    if op.key == "k1" {
                        Err("no email".to_owned())
                    } else {
                        Ok(op.key.clone())
                    }
                },
                |chunk| {
                    calls += 1;
                    match calls {
                        1 => Ok(Acks::Each(vec![Outcome {
                            key: "k0".into(),
                            status: OutcomeStatus::Ok,
                        }])),
                        2 => Err(HttpError::Rejected {
                            status: 422,
                            reason: "422 Unprocessable Entity: bad".into(),
                        }),
                        _ => Err(PluginError::retry("503", Some(Duration::from_secs(2))).into()),
                    }
                    .inspect(|_| assert_eq!(chunk.items, ["k0", "k2"]))
                },
            )
            .unwrap();
        let statuses: Vec<String> = result
            .outcomes
            .iter()
            .map(|o| format!("{}={:?}", o.key, o.status))
            .collect();
        assert_eq!(result.outcomes.len(), 6, "{statuses:?}");
        assert_eq!(result.outcomes[0].status, OutcomeStatus::Ok);
        assert!(
            matches!(&result.outcomes[1].status, OutcomeStatus::Rejected { reason } if reason == "no email")
        );
        assert!(
            matches!(&result.outcomes[2].status, OutcomeStatus::Retry { .. }),
            "k2 was not mentioned: retried"
        );
        assert!(matches!(
            &result.outcomes[3].status,
            OutcomeStatus::Rejected { .. }
        ));
        assert!(matches!(
            &result.outcomes[4].status,
            OutcomeStatus::Rejected { .. }
        ));
        assert!(matches!(
            &result.outcomes[5].status,
            OutcomeStatus::Retry {
                retry_after_ms: Some(2000),
                ..
            }
        ));
        assert_eq!(calls, 3);
    }

    #[test]
    fn after_a_retry_later_chunks_are_not_sent() {
        let ops = ops(4);
        let mut calls = 0;
        let result = Batcher::new(Host::detached())
            .max_records(1)
            .push(
                &ops,
                |op| Ok(op.key.clone()),
                |_| {
                    calls += 1;
                    Err(PluginError::retry("429", None).into())
                },
            )
            .unwrap();
        assert_eq!(calls, 1);
        assert!(
            result
                .outcomes
                .iter()
                .all(|o| matches!(o.status, OutcomeStatus::Retry { .. }))
        );
    }

    #[test]
    fn a_refused_credential_fails_the_whole_push() {
        let ops = ops(2);
        let err = Batcher::new(Host::detached())
            .push(
                &ops,
                |op| Ok(op.key.clone()),
                |_| Err(PluginError::config("/api_key", "refused").into()),
            )
            .unwrap_err();
        assert!(matches!(err, PluginError::Config(_)));
    }

    #[test]
    fn the_batch_key_depends_only_on_the_keys() {
        let a = batch_key(["k1", "k2"]);
        assert_eq!(a, batch_key(["k1", "k2"]));
        assert_ne!(a, batch_key(["k2", "k1"]));
        assert_ne!(a, batch_key(["k1k2"]));
        assert!(a.starts_with("cohort-") && a.len() == 39, "{a}");
    }
}
