//! A test destination for ABI 1.2: it remembers every key it applied in the host's durable
//! state (so a batch pushed again after a crash is recognised, in another process), and at the
//! end of each campaign's run refuses, late, the pushes of the customers its config names, as
//! an asynchronous import would.

use std::collections::BTreeSet;

use cohort_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::json;

/// Config.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Customers whose pushes are refused late, in `finish`.
    #[serde(default)]
    pub refuse: BTreeSet<String>,
}

/// The plugin.
#[derive(Debug)]
pub struct Late {
    config: Config,
    host: Host,
    /// Keys pushed by this instance, with their customer.
    pushed: Vec<(String, String)>,
}

impl Plugin for Late {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("test-late", env!("CARGO_PKG_VERSION"))
            .description("Keeps state and refuses late (tests only)")
            .modes([DestinationMode::Upsert, DestinationMode::Mirror])
            .late_outcomes()
            .config_schema_of::<Config>()
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        Ok(Late {
            config,
            host,
            pushed: Vec::new(),
        })
    }
}

impl Destination for Late {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let mut outcomes = Vec::with_capacity(batch.operations.len());
        for op in batch.operations {
            let key = format!("applied/{}", op.key);
            if self.host.state_get(&key)?.is_some() {
                self.host.warn(&format!("already applied: {}", op.key));
            } else {
                self.host.state_put(&key, Some(&json!(true)))?;
            }
            self.pushed
                .push((op.key.clone(), op.customer_id.as_str().to_owned()));
            outcomes.push(Outcome {
                key: op.key,
                status: OutcomeStatus::Ok,
            });
        }
        Ok(PushResult { outcomes })
    }

    fn finish(&mut self) -> Result<Vec<Outcome>, PluginError> {
        Ok(self
            .pushed
            .drain(..)
            .filter(|(_, customer)| self.config.refuse.contains(customer))
            .map(|(key, _)| Outcome {
                key,
                status: OutcomeStatus::Rejected {
                    reason: "refused by the import job".to_owned(),
                },
            })
            .collect())
    }
}

cohort_plugin_api::export_plugin!(destination: Late);
