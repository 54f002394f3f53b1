//! A test plugin that calls the host's HTTP service: it fetches customers as JSON from a URL
//! with a bearer token from its config, and logs what it does (including, on purpose, the
//! token, which the host must redact).

use std::time::Duration;

use cohort_plugin_api::prelude::*;
use serde::Deserialize;

/// Config.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the customers are (a JSON array).
    pub url: String,
    /// Bearer token; the host redacts it from logs.
    #[schemars(extend("x-cohort-secret" = true))]
    pub api_token: String,
    /// Per-request timeout, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The plugin.
#[derive(Debug)]
pub struct HttpProbe {
    config: Config,
    host: Host,
}

impl Plugin for HttpProbe {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::source("test-http-probe", env!("CARGO_PKG_VERSION"))
            .description("Fetches customers over the host's HTTP service (tests only)")
            .streams([Stream::Customers])
            .config_schema_of::<Config>()
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        Ok(HttpProbe { config, host })
    }
}

impl Source for HttpProbe {
    type Cursor = bool;

    fn next_page(
        &mut self,
        _stream: Stream,
        _cursor: Option<bool>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<bool>, PluginError> {
        // A careless plugin logs its token; the host must not let it reach the logs.
        self.host.info(&format!(
            "Fetching customers with token {}",
            self.config.api_token
        ));
        let response = self.host.http(&HttpRequest {
            method: "GET".to_owned(),
            url: self.config.url.clone(),
            headers: vec![(
                "Authorization".to_owned(),
                format!("Bearer {}", self.config.api_token),
            )],
            timeout_ms: self.config.timeout_ms,
            ..HttpRequest::default()
        })?;
        if response.status == 429 || response.status >= 500 {
            let after = response
                .header("retry-after")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs);
            return Err(PluginError::retry(
                format!("server answered {}", response.status),
                after,
            ));
        }
        if !response.is_success() {
            return Err(PluginError::failed(format!(
                "server answered {}: {}",
                response.status, response.body
            )));
        }
        let customers: Vec<Customer> = serde_json::from_str(&response.body)
            .map_err(|e| PluginError::failed(format!("unreadable customers: {e}")))?;
        for c in customers.iter().take(page.max_records()) {
            page.push(c)?;
        }
        self.host.log_with(
            Level::Info,
            "Fetched customers",
            &serde_json::json!({"count": customers.len(), "attempts": response.attempts}),
        );
        Ok(PageEnd {
            next_cursor: true,
            done: true,
        })
    }
}

cohort_plugin_api::export_plugin!(source: HttpProbe);
