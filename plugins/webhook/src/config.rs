//! The webhook's config: as written, then checked by a pure function that collects every problem.

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_plugin_api::prelude::PluginError;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `webhook` destination.
///
/// ```toml
/// url = "https://hooks.example.com/cohort"
/// secret = "${WEBHOOK_SECRET}"
/// headers = { Authorization = "Bearer ${HOOK_TOKEN}" }
/// timeout = 10
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where each batch is POSTed, as JSON.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Signs every request (`Cohort-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
    /// "t.body">`), so the receiver can tell it came from Cohort and is fresh.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub secret: Option<String>,
    /// Headers sent with every request (`Authorization = "Bearer …"`). Their values are
    /// treated as secrets.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub headers: BTreeMap<String, String>,
    /// Seconds the endpoint has to answer one request.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    30
}

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The endpoint.
    pub url: String,
    /// The signing secret, when set.
    pub secret: Option<String>,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Config {
    /// Checks what the schema cannot: the URL's scheme, the secret's length, the header names.
    pub fn validate(self) -> Result<Validated, PluginError> {
        let issue = |path: &str, message: &str| ConfigIssue {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let mut issues = Vec::new();
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            issues.push(issue("/url", "must be an http:// or https:// URL"));
        }
        if self.secret.as_deref().is_some_and(|s| s.trim().len() < 8) {
            issues.push(issue(
                "/secret",
                "a signing secret needs at least 8 characters",
            ));
        }
        let bad_name = |n: &&String| {
            n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        for name in self.headers.keys().filter(bad_name) {
            issues.push(issue(&format!("/headers/{name}"), "not a header name"));
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        Ok(Validated {
            url: self.url,
            secret: self.secret,
            headers: self.headers,
            timeout: Duration::from_secs(self.timeout),
        })
    }
}
