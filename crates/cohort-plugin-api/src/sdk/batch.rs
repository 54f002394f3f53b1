//! Destinations that send operations to a vendor in requests of many: [`Batcher`] chunks a
//! host batch by count and by bytes, sends each chunk through the plugin's closure, and answers
//! exactly one outcome per operation, whatever each request did.
//!
//! | the chunk's request | its operations |
//! | --- | --- |
//! | `Ok(Acks::All)` | ok |
//! | `Ok(Acks::Each(outcomes))` | as the vendor said; a key it did not mention is retried |
//! | `Err(HttpError::Rejected)` (a 4xx on a [`ClientErrors::RejectRecords`] request) | rejected with the vendor's reason |
//! | `Err(PluginError::Retry)` (429, 5xx, no answer) | retried, after the vendor's delay; chunks not yet started are not sent and are retried too |
//! | any other error (a refused credential, a failure, cancellation) | no chunk is started after it, and the whole push fails with it |
//!
//! [`Batcher::push`] sends one chunk at a time. [`Batcher::push_concurrent`] keeps up to
//! [`concurrency`](Batcher::concurrency) chunks in flight, each on a scoped thread, for vendors
//! that limit simultaneous requests rather than requests per second (Mailchimp: 10
//! connections; the client's `connections` gate keeps to the limit when more chunks than that
//! are in progress). The table holds for both: outcomes come back in the host's order whatever
//! order the vendor answers in; a chunk told to wait, or a fatal error, stops only chunks not
//! yet started (those in flight finish, and a retry's delay is not a reason to drop an answer
//! already on its way). Only `send` runs on the threads: cancellation is checked before each
//! chunk is started, and progress reported as each one finishes, on the calling thread. The
//! vendor sees chunks in no fixed order, so concurrency suits only idempotent changes that do
//! not depend on one another.
//!
//! Each chunk gets a [`batch_key`]: the same operations give the same key, on every retry and
//! in every run, so it can travel as an `Idempotency-Key` and a vendor that saw the request
//! already answers without applying it twice.
//!
//! [`ClientErrors::RejectRecords`]: super::http::ClientErrors::RejectRecords

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;

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

impl<'a, T> Chunk<'a, T> {
    fn new(all: &'a [Operation], indices: &[usize], items: Vec<T>) -> Chunk<'a, T> {
        Chunk {
            key: batch_key(indices.iter().map(|&i| all[i].key.as_str())),
            operations: indices.iter().map(|&i| &all[i]).collect(),
            items,
        }
    }
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

/// A chunk before it is sent: indices into the host's operations, and their items.
type Planned<T> = (Vec<usize>, Vec<T>);

/// Cuts a batch into chunks one at a time, so that the first request leaves once its own
/// operations are prepared rather than the whole batch's: preparing 100,000 members took
/// 0.4 s before anything was sent.
struct Planner<'a, T, P> {
    batcher: Batcher,
    operations: &'a [Operation],
    prepare: P,
    /// The next operation to prepare.
    next: usize,
    /// An item prepared that did not fit the last chunk: it opens the next one.
    carried: Option<(usize, T, usize)>,
}

impl<'a, T: Serialize, P: FnMut(&'a Operation) -> Result<T, String>> Planner<'a, T, P> {
    /// The next chunk, or `None` when every operation is in a chunk or rejected.
    fn next(&mut self, tally: &mut Tally<'a>) -> Option<Planned<T>> {
        let Batcher {
            max_records,
            max_bytes,
            ..
        } = self.batcher;
        let (mut indices, mut items, mut bytes) = (Vec::new(), Vec::new(), 0);
        if let Some((i, item, size)) = self.carried.take() {
            indices.push(i);
            items.push(item);
            bytes = size;
        }
        while let Some(op) = self.operations.get(self.next) {
            let i = self.next;
            self.next += 1;
            let item = match (self.prepare)(op) {
                Ok(item) => item,
                Err(reason) => {
                    tally.reject(i, reason);
                    continue;
                }
            };
            let size = serde_json::to_vec(&item).map_or(usize::MAX, |v| v.len() + 1);
            if size > max_bytes {
                tally.reject(
                    i,
                    format!(
                        "this operation is {size} bytes, more than the {max_bytes} one request may carry"
                    ),
                );
                continue;
            }
            if !indices.is_empty() && (indices.len() >= max_records || bytes + size > max_bytes) {
                self.carried = Some((i, item, size));
                break;
            }
            indices.push(i);
            items.push(item);
            bytes += size;
        }
        (!indices.is_empty()).then_some((indices, items))
    }
}

/// The outcome of every operation so far, shared by both ways of sending so that the table in
/// the module doc has one implementation.
struct Tally<'a> {
    host: Host,
    operations: &'a [Operation],
    outcomes: Vec<Option<OutcomeStatus>>,
    done: u64,
    /// Set by the first chunk told to wait: the reason and delay every chunk not yet started
    /// is retried with.
    waiting: Option<(String, Option<u64>)>,
}

impl<'a> Tally<'a> {
    fn new(host: Host, operations: &'a [Operation]) -> Tally<'a> {
        Tally {
            host,
            operations,
            outcomes: vec![None; operations.len()],
            done: 0,
            waiting: None,
        }
    }

    /// An operation answered before any request (`prepare` rejected it).
    fn reject(&mut self, i: usize, reason: String) {
        self.outcomes[i] = Some(OutcomeStatus::Rejected { reason });
        self.done += 1;
    }

    fn is_waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// A chunk that is not sent because an earlier one was told to wait.
    fn skip(&mut self, indices: &[usize]) {
        let (reason, retry_after_ms) = self.waiting.clone().unwrap_or_default();
        for &i in indices {
            self.outcomes[i] = Some(OutcomeStatus::Retry {
                reason: format!("not sent: an earlier request was told to wait: {reason}"),
                retry_after_ms,
            });
        }
    }

    /// What a chunk's request did, per the module's table; `Err` is the error that ends the
    /// push. Reports progress.
    fn record(
        &mut self,
        indices: &[usize],
        result: Result<Acks, HttpError>,
    ) -> Result<(), PluginError> {
        let operations = self.operations;
        let mut set = |status: &dyn Fn(&Operation) -> OutcomeStatus| {
            for &i in indices {
                self.outcomes[i] = Some(status(&operations[i]));
            }
        };
        match result {
            Ok(Acks::All) => set(&|_| OutcomeStatus::Ok),
            Ok(Acks::Each(list)) => set(&|op| {
                list.iter()
                    .find(|o| o.key == op.key)
                    .map(|o| o.status.clone())
                    .unwrap_or_else(|| OutcomeStatus::Retry {
                        reason: "the vendor gave no outcome for this operation".to_owned(),
                        retry_after_ms: None,
                    })
            }),
            Err(HttpError::Rejected { reason, .. }) => set(&|_| OutcomeStatus::Rejected {
                reason: reason.clone(),
            }),
            Err(HttpError::Plugin(PluginError::Retry {
                message,
                retry_after,
            })) => {
                let retry_after_ms =
                    retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                set(&|_| OutcomeStatus::Retry {
                    reason: message.clone(),
                    retry_after_ms,
                });
                self.waiting.get_or_insert((message, retry_after_ms));
            }
            Err(HttpError::Plugin(e)) => return Err(e),
        }
        self.done += indices.len() as u64;
        self.host
            .progress(self.done, Some(self.operations.len() as u64));
        Ok(())
    }

    fn finish(self) -> PushResult {
        PushResult {
            outcomes: self
                .operations
                .iter()
                .zip(self.outcomes)
                .map(|(op, status)| Outcome {
                    key: op.key.clone(),
                    status: status.unwrap_or(OutcomeStatus::Retry {
                        reason: "plugin bug: the operation was never sent".to_owned(),
                        retry_after_ms: None,
                    }),
                })
                .collect(),
        }
    }
}

/// Sends a batch in chunks of at most `max_records` operations and `max_bytes` of items, up to
/// `concurrency` at once through [`push_concurrent`](Self::push_concurrent).
#[derive(Debug, Clone, Copy)]
pub struct Batcher {
    host: Host,
    max_records: usize,
    max_bytes: usize,
    concurrency: usize,
}

impl Batcher {
    /// A batcher with 500 operations and 1 MiB of items per request, one request at a time
    /// (most vendors allow more; set the vendor's limits with
    /// [`max_records`](Self::max_records), [`max_bytes`](Self::max_bytes) and
    /// [`concurrency`](Self::concurrency)).
    pub fn new(host: Host) -> Batcher {
        Batcher {
            host,
            max_records: 500,
            max_bytes: 1 << 20,
            concurrency: 1,
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

    /// Most chunks [`push_concurrent`](Self::push_concurrent) keeps in flight at once (at
    /// least 1). Without more, it is the vendor's limit of simultaneous requests, less any the
    /// plugin makes elsewhere. A client that caps its own requests
    /// ([`Client::connections`](super::http::Client::connections)) may run more chunks than
    /// connections, so that one chunk's work between requests overlaps others' requests.
    pub fn concurrency(mut self, n: usize) -> Batcher {
        self.concurrency = n.max(1);
        self
    }

    /// Cuts `operations` into chunks as they are asked for: `prepare` turns each into the
    /// vendor's item, and one it refuses, or too large for any request, is rejected in the
    /// tally and in no chunk.
    fn plan<'a, T: Serialize, P: FnMut(&'a Operation) -> Result<T, String>>(
        &self,
        operations: &'a [Operation],
        prepare: P,
    ) -> (Tally<'a>, Planner<'a, T, P>) {
        let planner = Planner {
            batcher: *self,
            operations,
            prepare,
            next: 0,
            carried: None,
        };
        (Tally::new(self.host, operations), planner)
    }

    /// Sends `operations` one chunk at a time: `prepare` turns each into the vendor's item (an
    /// `Err(reason)` rejects that operation, which is not sent), `send` sends one chunk.
    /// Returns one outcome per operation, in order.
    pub fn push<'a, T: Serialize>(
        &self,
        operations: &'a [Operation],
        prepare: impl FnMut(&'a Operation) -> Result<T, String>,
        mut send: impl FnMut(&Chunk<'a, T>) -> Result<Acks, HttpError>,
    ) -> Result<PushResult, PluginError> {
        let (mut tally, mut chunks) = self.plan(operations, prepare);
        while let Some((indices, items)) = chunks.next(&mut tally) {
            if tally.is_waiting() {
                tally.skip(&indices);
                continue;
            }
            self.host.check_cancelled()?;
            let chunk = Chunk::new(operations, &indices, items);
            tally.record(&indices, send(&chunk))?;
        }
        Ok(tally.finish())
    }

    /// As [`push`](Self::push), with up to [`concurrency`](Self::concurrency) chunks in flight
    /// at once, each sent by `send` on a scoped thread (so `send` may only use what is safe to
    /// share: the [`Host`] is). Outcomes are in the host's order whatever order the chunks
    /// finish in. A panic in `send` is raised again here once the chunks in flight finish.
    pub fn push_concurrent<'a, T: Serialize + Send>(
        &self,
        operations: &'a [Operation],
        prepare: impl FnMut(&'a Operation) -> Result<T, String>,
        send: impl Fn(&Chunk<'a, T>) -> Result<Acks, HttpError> + Sync,
    ) -> Result<PushResult, PluginError> {
        let (mut tally, mut pending) = self.plan(operations, prepare);
        let send = &send;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            let mut in_flight = 0;
            let mut failed: Option<PluginError> = None;
            // One chunk planned ahead: prepared while every slot is busy, so that a slot
            // coming free starts its next request at once instead of after the planning.
            let mut ahead: Option<Planned<T>> = None;
            loop {
                while in_flight < self.concurrency && failed.is_none() && !tally.is_waiting() {
                    let Some((indices, items)) = ahead.take().or_else(|| pending.next(&mut tally))
                    else {
                        break;
                    };
                    if let Err(e) = self.host.check_cancelled() {
                        failed = Some(e);
                        break;
                    }
                    let chunk = Chunk::new(operations, &indices, items);
                    let tx = tx.clone();
                    scope.spawn(move || {
                        let result = catch_unwind(AssertUnwindSafe(|| send(&chunk)));
                        // The receiver outlives every thread of the scope.
                        let _ = tx.send((indices, result));
                    });
                    in_flight += 1;
                }
                if in_flight == 0 {
                    break;
                }
                if ahead.is_none() && failed.is_none() && !tally.is_waiting() {
                    ahead = pending.next(&mut tally);
                }
                let Ok((indices, result)) = rx.recv() else {
                    break;
                };
                in_flight -= 1;
                let result = result.unwrap_or_else(|panic| resume_unwind(panic));
                if let Err(e) = tally.record(&indices, result) {
                    failed.get_or_insert(e);
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if let Some((indices, _)) = ahead {
                tally.skip(&indices);
            }
            while let Some((indices, _)) = pending.next(&mut tally) {
                tally.skip(&indices);
            }
            Ok(tally.finish())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Action;
    use cohort_core::CustomerId;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

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

    /// Pushes 10 operations in chunks of 3, one in flight at a time; `prepared` counts the
    /// operations prepared so far, for `send` to look at.
    fn push_one_at_a_time(
        prepared: &AtomicUsize,
        send: impl Fn(&Chunk<'_, String>) -> Result<Acks, HttpError> + Sync,
    ) -> PushResult {
        let ops = ops(10);
        Batcher::new(Host::detached())
            .max_records(3)
            .concurrency(1)
            .push_concurrent(
                &ops,
                |op| {
                    prepared.fetch_add(1, Ordering::SeqCst);
                    Ok(op.key.clone())
                },
                send,
            )
            .unwrap()
    }

    #[test]
    fn the_first_chunk_is_sent_before_the_rest_of_the_batch_is_prepared() {
        let prepared = AtomicUsize::new(0);
        let seen = Mutex::new(Vec::new());
        let result = push_one_at_a_time(&prepared, |chunk| {
            let now = prepared.load(Ordering::SeqCst);
            seen.lock().unwrap().push((chunk.items.len(), now));
            Ok(Acks::All)
        });
        assert_eq!(result.outcomes.len(), 10);
        // A chunk of 3 is cut once the 4th operation is prepared (it opens the next one); the
        // one after may be prepared while the first is in flight, never more.
        let seen = seen.into_inner().unwrap();
        let sizes: Vec<usize> = seen.iter().map(|(n, _)| *n).collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
        assert!(seen[0].1 <= 7, "prepared before the first send: {seen:?}");
    }

    #[test]
    fn the_next_chunk_is_prepared_while_every_slot_is_busy() {
        let prepared = AtomicUsize::new(0);
        let reached = Mutex::new(Vec::new());
        push_one_at_a_time(&prepared, |chunk| {
            // The only slot is busy until the next chunk (and the item that opens the one
            // after) is prepared, or a second has passed.
            let first: usize = chunk.operations[0].key[1..].parse().unwrap();
            let until = Instant::now() + Duration::from_secs(1);
            while prepared.load(Ordering::SeqCst) < (first + 7).min(10) && Instant::now() < until {
                std::thread::yield_now();
            }
            reached
                .lock()
                .unwrap()
                .push(prepared.load(Ordering::SeqCst));
            Ok(Acks::All)
        });
        assert_eq!(reached.into_inner().unwrap(), [7, 10, 10, 10]);
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

    /// Counts the chunks in flight; each waits until `n` are (or a generous deadline passes),
    /// so a batcher that starts fewer at once is seen as such rather than timed.
    struct Gauge {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Gauge {
        fn new() -> Gauge {
            Gauge {
                now: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }
        }

        fn hold_until(&self, n: usize) {
            let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.peak.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn concurrent_chunks_in_flight_reach_the_limit_and_never_pass_it() {
        let ops = ops(40);
        let gauge = Gauge::new();
        let result = Batcher::new(Host::detached())
            .max_records(2)
            .concurrency(4)
            .push_concurrent(
                &ops,
                |op| Ok(op.key.clone()),
                |_| {
                    gauge.hold_until(4);
                    Ok(Acks::All)
                },
            )
            .unwrap();
        assert_eq!(gauge.peak.load(Ordering::SeqCst), 4);
        assert_eq!(result.outcomes.len(), 40);
        assert!(
            result
                .outcomes
                .iter()
                .all(|o| o.status == OutcomeStatus::Ok)
        );
    }

    #[test]
    fn concurrent_outcomes_follow_the_host_order_whatever_order_chunks_finish_in() {
        let ops = ops(12);
        let result = Batcher::new(Host::detached())
            .max_records(3)
            .concurrency(4)
            .push_concurrent(
                &ops,
                |op| {
                    if op.key == "k4" {
                        Err("no email".to_owned())
                    } else {
                        Ok(op.key.clone())
                    }
                },
                |chunk| {
                    // The first chunk answers last.
                    let first: usize = chunk.items[0][1..].parse().unwrap();
                    std::thread::sleep(Duration::from_millis(40 - 3 * first as u64));
                    Ok(Acks::Each(
                        chunk
                            .items
                            .iter()
                            .map(|k| Outcome {
                                key: k.clone(),
                                status: if k == "k7" {
                                    OutcomeStatus::Rejected {
                                        reason: "bounced".into(),
                                    }
                                } else {
                                    OutcomeStatus::Ok
                                },
                            })
                            .collect(),
                    ))
                },
            )
            .unwrap();
        let keys: Vec<&str> = result.outcomes.iter().map(|o| o.key.as_str()).collect();
        let expected: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
        assert_eq!(keys, expected);
        for o in &result.outcomes {
            match o.key.as_str() {
                "k4" => assert!(
                    matches!(&o.status, OutcomeStatus::Rejected { reason } if reason == "no email")
                ),
                "k7" => assert!(
                    matches!(&o.status, OutcomeStatus::Rejected { reason } if reason == "bounced")
                ),
                _ => assert_eq!(o.status, OutcomeStatus::Ok, "{}", o.key),
            }
        }
    }

    #[test]
    fn a_concurrent_retry_lets_chunks_in_flight_finish_and_starts_no_more() {
        let ops = ops(6);
        let sent = Mutex::new(Vec::new());
        let told_to_wait = AtomicBool::new(false);
        let result = Batcher::new(Host::detached())
            .max_records(1)
            .concurrency(2)
            .push_concurrent(
                &ops,
                |op| Ok(op.key.clone()),
                |chunk| {
                    sent.lock().unwrap().push(chunk.items[0].clone());
                    if chunk.items[0] == "k1" {
                        told_to_wait.store(true, Ordering::SeqCst);
                        return Err(PluginError::retry("429", Some(Duration::from_secs(3))).into());
                    }
                    // k0 is still in flight when k1 is told to wait, and answers after it.
                    while !told_to_wait.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    Ok(Acks::All)
                },
            )
            .unwrap();
        let mut sent = sent.into_inner().unwrap();
        sent.sort();
        assert_eq!(sent, ["k0", "k1"]);
        assert_eq!(result.outcomes[0].status, OutcomeStatus::Ok);
        for o in &result.outcomes[1..] {
            assert!(
                matches!(
                    o.status,
                    OutcomeStatus::Retry {
                        retry_after_ms: Some(3000),
                        ..
                    }
                ),
                "{o:?}"
            );
        }
    }

    #[test]
    fn a_concurrent_fatal_error_starts_no_more_chunks_and_fails_the_push() {
        let ops = ops(20);
        let calls = AtomicUsize::new(0);
        let err = Batcher::new(Host::detached())
            .max_records(1)
            .concurrency(3)
            .push_concurrent(
                &ops,
                |op| Ok(op.key.clone()),
                |chunk| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if chunk.items[0] == "k0" {
                        Err(PluginError::config("/api_key", "refused").into())
                    } else {
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(Acks::All)
                    }
                },
            )
            .unwrap_err();
        assert!(matches!(err, PluginError::Config(_)), "{err:?}");
        assert!(
            calls.load(Ordering::SeqCst) <= 3,
            "only the first chunks in flight were sent"
        );
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
