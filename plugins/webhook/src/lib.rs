//! `webhook`: a destination that POSTs each batch as JSON to a URL, signed, with an idempotency
//! key. Useful by itself (Zapier, n8n, a merchant's own endpoint), and the model of an HTTP
//! destination built only on the SDK's connector toolkit: [`config`] checks the config,
//! [`client`] talks to the endpoint, [`mapping`] shapes what it receives, and the SDK's
//! `Batcher` chunks batches and answers one outcome per operation.

pub mod client;
pub mod config;
pub mod mapping;

use cohort_plugin_api::prelude::*;
use serde_json::json;

use crate::client::Endpoint;
use crate::config::Config;

/// The webhook destination.
#[derive(Debug)]
pub struct Webhook {
    endpoint: Endpoint,
    batcher: Batcher,
}

impl Plugin for Webhook {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("webhook", env!("CARGO_PKG_VERSION"))
            .description("POSTs each batch as signed JSON to a URL (Zapier, n8n, your endpoint)")
            .modes([
                DestinationMode::Upsert,
                DestinationMode::Mirror,
                DestinationMode::Send,
            ])
            .config_schema_of::<Config>()
            .example(
                Example::config(json!({
                    "url": "{base_url}/hooks/cohort",
                    "secret": "whsec_example_only",
                    "headers": {"X-Shop": "example"},
                    "timeout": 10
                }))
                .exchange(Exchange::post("/hooks/cohort")),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        Ok(Webhook {
            endpoint: Endpoint::new(host, &config),
            // The SDK's defaults, 500 records and 1 MiB per request, suit most receivers.
            batcher: Batcher::new(host),
        })
    }
}

impl Destination for Webhook {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let Webhook { endpoint, batcher } = self;
        batcher.push(&batch.operations, mapping::record, |chunk| {
            endpoint.send(&chunk.key, mapping::body(&batch, chunk))
        })
    }
}

cohort_plugin_api::export_plugin!(destination: Webhook);
