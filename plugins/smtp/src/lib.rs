//! `smtp`: a destination that sends each rendered email through the merchant's own SMTP server,
//! one recipient per message, at most once per operation key.
//!
//! [`config`] checks the config, [`message`] builds the bytes a receiving server checks,
//! [`client`] holds the connections and says what each reply means ([`wire`] speaks SMTP), and [`ledger`] remembers what
//! the server accepted, in the host's durable state, so that a resumed run skips it. Messages go
//! out over `connections` connections in parallel, paced to `max_per_minute`; the host's state
//! and progress are only ever called from the thread that called `push`.
//!
//! It must not: send a message to more than one recipient, send a key the ledger holds, or show
//! the password anywhere (it is marked secret in the schema, and no message carries it).

pub mod client;
pub mod config;
pub mod ledger;
pub mod message;
pub mod wire;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};

use cohort_plugin_api::prelude::*;

use crate::client::{Pacer, SendError, Server, Slot};
use crate::config::Config;
use crate::ledger::Ledger;

/// The smtp destination.
#[derive(Debug)]
pub struct Smtp {
    host: Host,
    server: Server,
    slots: Vec<Slot>,
    pacer: Pacer,
    ledger: Ledger,
    unsubscribe_mailto: Option<String>,
}

impl Plugin for Smtp {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("smtp", env!("CARGO_PKG_VERSION"))
            .description("Sends each rendered email through your own SMTP server, once")
            .modes([DestinationMode::Send])
            .config_schema_of::<Config>()
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        let ca = match &config.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| PluginError::config("/ca_file", format!("{path}: {e}")))?,
            ),
            None => None,
        };
        let server =
            Server::new(&config, ca.as_deref()).map_err(|e| PluginError::config("/ca_file", e))?;
        Ok(Smtp {
            host,
            server,
            slots: (0..config.connections).map(|_| Slot::default()).collect(),
            pacer: Pacer::new(config.pace),
            ledger: Ledger::open(host)?,
            unsubscribe_mailto: config.unsubscribe_mailto,
        })
    }
}

impl Destination for Smtp {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let Smtp {
            host,
            server,
            slots,
            pacer,
            ledger,
            unsubscribe_mailto,
        } = self;
        let ops = &batch.operations;
        let mut outcomes: Vec<Option<OutcomeStatus>> = vec![None; ops.len()];
        let mut jobs = VecDeque::new();
        for (i, op) in ops.iter().enumerate() {
            if op.action != Action::Send {
                outcomes[i] = Some(OutcomeStatus::Rejected {
                    reason: format!(
                        "smtp only sends messages (mode `send`); this operation is an `{}`",
                        serde_json::to_value(op.action)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ),
                });
            } else if ledger.was_sent(&op.key)? {
                outcomes[i] = Some(OutcomeStatus::Ok);
            } else {
                match message::prepare(op, unsubscribe_mailto.as_deref()) {
                    Ok(prepared) => jobs.push_back((i, prepared)),
                    Err(reason) => outcomes[i] = Some(OutcomeStatus::Rejected { reason }),
                }
            }
        }

        let total = ops.len() as u64;
        let mut done = outcomes.iter().filter(|o| o.is_some()).count() as u64;
        let workers = slots.len().min(jobs.len());
        let queue = Mutex::new(jobs);
        let stop = AtomicBool::new(false);
        let mut fatal: Option<PluginError> = None;
        let mut waiting: Option<String> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel();
            for slot in slots.iter_mut().take(workers) {
                let (tx, queue, stop, server, pacer) =
                    (tx.clone(), &queue, &stop, &*server, &*pacer);
                scope.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                        let Some((i, prepared)) = job else { break };
                        pacer.wait();
                        let result = slot.send(server, &prepared);
                        if tx.send((i, prepared.message_id, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            // The replies arrive here as they come: the ledger write follows each 250 at once.
            for (i, message_id, result) in rx {
                let key = &ops[i].key;
                outcomes[i] = Some(match result {
                    Ok(reply) => {
                        if let Err(e) = ledger.record(key, &message_id, &reply) {
                            host.warn(&format!(
                                "the server accepted {message_id} but the sent-ledger could \
                                 not record it ({e}); a crash now would send it again"
                            ));
                        }
                        OutcomeStatus::Ok
                    }
                    Err(SendError::Rejected(reason)) => OutcomeStatus::Rejected { reason },
                    Err(SendError::Retry(reason)) => OutcomeStatus::Retry {
                        reason,
                        retry_after_ms: None,
                    },
                    Err(SendError::Unreachable(reason)) => {
                        stop.store(true, Ordering::Relaxed);
                        waiting.get_or_insert(reason.clone());
                        OutcomeStatus::Retry {
                            reason,
                            retry_after_ms: None,
                        }
                    }
                    Err(SendError::Auth(message)) => {
                        stop.store(true, Ordering::Relaxed);
                        fatal.get_or_insert(PluginError::config("/password", message));
                        continue;
                    }
                    Err(SendError::Fatal(message)) => {
                        stop.store(true, Ordering::Relaxed);
                        fatal.get_or_insert(PluginError::failed(message));
                        continue;
                    }
                });
                done += 1;
                host.progress(done, Some(total));
                if host.is_cancelled() {
                    stop.store(true, Ordering::Relaxed);
                    fatal.get_or_insert(PluginError::Cancelled);
                }
            }
        });
        if let Some(e) = fatal {
            return Err(e);
        }
        let reason = waiting.unwrap_or_else(|| "not sent".to_owned());
        Ok(PushResult {
            outcomes: ops
                .iter()
                .zip(outcomes)
                .map(|(op, status)| Outcome {
                    key: op.key.clone(),
                    status: status.unwrap_or_else(|| OutcomeStatus::Retry {
                        reason: format!("not sent: an earlier message could not be: {reason}"),
                        retry_after_ms: None,
                    }),
                })
                .collect(),
        })
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            slot.close();
        }
    }
}

cohort_plugin_api::export_plugin!(destination: Smtp);
