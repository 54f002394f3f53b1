//! `outbox`: a destination that writes every operation to a folder.
//!
//! Audience operations (upsert, remove) become `DIR/audiences/AUDIENCE/KEY.json`; rendered
//! emails become `DIR/messages/KEY.eml`. It is the destination to try Cohort with, to inspect
//! what a campaign would send, or to hand files to another system.
//!
//! Every file is written atomically and at most once per idempotency key (see [`files`]): pushing
//! an operation again, after a crash or a retry, acknowledges it without writing a duplicate.

pub mod config;
pub mod eml;
pub mod files;

use std::path::PathBuf;

use cohort_plugin_api::prelude::*;
use serde_json::json;

use crate::config::{Config, Validated};
use crate::files::{Written, file_stem, sweep_stale_temp_files, write_once};

/// The outbox destination.
#[derive(Debug)]
pub struct Outbox {
    config: Validated,
    host: Host,
}

impl Plugin for Outbox {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("outbox", env!("CARGO_PKG_VERSION"))
            .description("Writes each operation to a folder: JSON for audiences, .eml for emails")
            .modes([
                DestinationMode::Upsert,
                DestinationMode::Mirror,
                DestinationMode::Send,
            ])
            .config_schema_of::<Config>()
            // What `cohort plugins check` writes into: a fresh temporary folder.
            .example(Example::config(json!({"dir": "{dir}/outbox"})))
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        // Leftovers of a run killed mid-write: clutter, never a delivery (see files.rs).
        match sweep_stale_temp_files(&config.dir.join(".tmp")) {
            Ok(0) => {}
            Ok(n) => host.log(
                Level::Info,
                &format!("removed {n} temporary files left by interrupted runs"),
            ),
            Err(e) => host.log(
                Level::Warn,
                &format!("could not sweep {}: {e}", config.dir.join(".tmp").display()),
            ),
        }
        Ok(Outbox { config, host })
    }
}

impl Outbox {
    fn target(&self, batch: &Batch, op: &Operation) -> Result<PathBuf, String> {
        let dir = &self.config.dir;
        Ok(match op.action {
            Action::Send => dir
                .join("messages")
                .join(format!("{}.eml", file_stem(&op.key))),
            Action::Upsert | Action::Remove => {
                let audience = batch.audience.as_deref().unwrap_or("default");
                dir.join("audiences")
                    .join(file_stem(audience))
                    .join(format!("{}.json", file_stem(&op.key)))
            }
        })
    }

    fn render(
        &self,
        batch: &Batch,
        op: &Operation,
        now: &chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<u8>, String> {
        match op.action {
            Action::Send => {
                let message = op
                    .message
                    .as_ref()
                    .ok_or("a send operation needs a rendered message")?;
                eml::render(&op.key, message, &now.to_rfc2822()).map(String::into_bytes)
            }
            Action::Upsert | Action::Remove => {
                let doc = json!({
                    "key": op.key,
                    "action": op.action,
                    "mode": batch.mode,
                    "audience": batch.audience,
                    "customer_id": op.customer_id,
                    "payload": op.payload,
                    "written_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
                serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())
            }
        }
    }

    fn apply(
        &self,
        batch: &Batch,
        op: &Operation,
        now: &chrono::DateTime<chrono::Utc>,
    ) -> OutcomeStatus {
        if batch.mode == DestinationMode::Upsert && op.action == Action::Remove {
            return OutcomeStatus::Rejected {
                reason: "remove operations need mode `mirror`".to_owned(),
            };
        }
        let target = match self.target(batch, op) {
            Ok(t) => t,
            Err(reason) => return OutcomeStatus::Rejected { reason },
        };
        if target.exists() {
            return OutcomeStatus::Ok;
        }
        let bytes = match self.render(batch, op, now) {
            Ok(b) => b,
            Err(reason) => return OutcomeStatus::Rejected { reason },
        };
        let tmp = self.config.dir.join(".tmp");
        let parent = target
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| self.config.dir.clone());
        let written = std::fs::create_dir_all(&tmp)
            .and_then(|()| std::fs::create_dir_all(&parent))
            .and_then(|()| write_once(&tmp, &target, &bytes, self.config.fsync));
        match written {
            Ok(Written::Created | Written::AlreadyThere) => OutcomeStatus::Ok,
            // Disk full, a permission fixed by an operator: worth another try, never a loss.
            Err(e) => OutcomeStatus::Retry {
                reason: format!("writing {}: {e}", target.display()),
                retry_after_ms: None,
            },
        }
    }
}

impl Destination for Outbox {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let now = chrono::Utc::now();
        let mut outcomes = Vec::with_capacity(batch.operations.len());
        for (i, op) in batch.operations.iter().enumerate() {
            self.host.check_cancelled()?;
            outcomes.push(Outcome {
                key: op.key.clone(),
                status: self.apply(&batch, op, &now),
            });
            self.host
                .progress(i as u64 + 1, Some(batch.operations.len() as u64));
        }
        Ok(PushResult { outcomes })
    }
}

cohort_plugin_api::export_plugin!(destination: Outbox);
