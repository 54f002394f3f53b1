//! The destination's config: as written (serde and schemars: the doc comments are the schema's
//! descriptions), then checked by a pure function that collects every problem at its path.

use std::time::Duration;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Klaviyo's API, unless `base_url` says otherwise.
pub const DEFAULT_BASE_URL: &str = "https://a.klaviyo.com";
/// The API revision this plugin is written and tested against: the spec in ../shared/specs.
pub const DEFAULT_REVISION: &str = "2026-07-15";

/// Config of the `klaviyo` destination.
///
/// ```toml
/// config = { api_key = "${env:KLAVIYO_API_KEY}", list_id = "VRgFBd" }
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A private API key (`pk_…`) with the `profiles:read`, `profiles:write`, `lists:read` and
    /// `lists:write` scopes. Secret: never shown.
    #[schemars(extend("x-cohort-secret" = true))]
    pub api_key: String,
    /// The list's id (Lists & segments → the list → Settings: `VRgFBd`).
    #[schemars(length(min = 1))]
    pub list_id: String,
    /// Klaviyo's API (default `https://a.klaviyo.com`); another only to test against a fake.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The API revision sent in the `revision` header (default `2026-07-15`, the one this
    /// plugin is tested against).
    #[serde(default = "default_revision")]
    pub revision: String,
    /// Above this many profiles to upsert in one batch, they go through a bulk import job
    /// (polled until it finishes) instead of one request each.
    #[serde(default = "default_bulk_threshold")]
    #[schemars(range(min = 1))]
    pub bulk_threshold: usize,
    /// Profiles per bulk import job (Klaviyo takes at most 10,000 and 5 MB).
    #[serde(default = "default_bulk_size")]
    #[schemars(range(min = 1, max = 10000))]
    pub bulk_size: usize,
    /// Seconds between two polls of a bulk import job.
    #[serde(default = "default_poll_interval")]
    #[schemars(range(min = 0, max = 300))]
    pub poll_interval: u64,
    /// Seconds a push waits for a job before its profiles are retried (the job's id is kept:
    /// the retry waits for the same job).
    #[serde(default = "default_job_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub job_timeout: u64,
    /// Seconds Klaviyo has to answer one request.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout: u64,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}
fn default_revision() -> String {
    DEFAULT_REVISION.to_owned()
}
fn default_bulk_threshold() -> usize {
    100
}
fn default_bulk_size() -> usize {
    10_000
}
fn default_poll_interval() -> u64 {
    5
}
fn default_job_timeout() -> u64 {
    600
}
fn default_timeout() -> u64 {
    30
}

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The private key.
    pub api_key: String,
    /// The list.
    pub list_id: String,
    /// Without a trailing slash.
    pub base_url: String,
    /// The `revision` header.
    pub revision: String,
    /// Profiles above which upserts go through bulk jobs.
    pub bulk_threshold: usize,
    /// Profiles per job.
    pub bulk_size: usize,
    /// Between two polls.
    pub poll_interval: Duration,
    /// Longest wait for a job in one push.
    pub job_timeout: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Config {
    /// Checks what the schema cannot: the key's shape, the URL, the revision's date.
    pub fn validate(self) -> Result<Validated, PluginError> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, message: &str| {
            issues.push(ConfigIssue {
                path: path.to_owned(),
                message: message.to_owned(),
            });
        };
        let key = self.api_key.trim();
        if key.is_empty() {
            bad(
                "/api_key",
                "is empty; give a private API key (`${env:KLAVIYO_API_KEY}`)",
            );
        } else if !key.starts_with("pk_") {
            bad(
                "/api_key",
                "is not a private API key (they start with `pk_`; a public key or site id \
                 cannot write profiles)",
            );
        }
        if self.list_id.trim().is_empty() || self.list_id.contains(['/', '?', '#', ' ']) {
            bad(
                "/list_id",
                "is not a list id (the list's settings show it, like `VRgFBd`)",
            );
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            bad(
                "/base_url",
                "needs an http:// or https:// URL, such as https://a.klaviyo.com",
            );
        }
        let r = self.revision.as_bytes();
        let dated = r.len() >= 10
            && r[..10].iter().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    *b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !dated {
            bad(
                "/revision",
                "is not an API revision (a date, `2026-07-15`, optionally with a suffix such as \
                 `.pre`)",
            );
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        Ok(Validated {
            api_key: key.to_owned(),
            list_id: self.list_id.trim().to_owned(),
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            revision: self.revision,
            bulk_threshold: self.bulk_threshold,
            bulk_size: self.bulk_size.clamp(1, 10_000),
            poll_interval: Duration::from_secs(self.poll_interval),
            job_timeout: Duration::from_secs(self.job_timeout),
            timeout: Duration::from_secs(self.timeout),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> Config {
        serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_problem_is_reported_at_its_path_and_the_key_never_shown() {
        let c = config(serde_json::json!({
            "api_key": "sk_live_123456",
            "list_id": "a/b",
            "base_url": "a.klaviyo.com",
            "revision": "latest",
        }));
        let Err(PluginError::Config(issues)) = c.validate() else {
            panic!("accepted");
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["/api_key", "/list_id", "/base_url", "/revision"]);
        assert!(!format!("{issues:?}").contains("sk_live_123456"));
    }

    #[test]
    fn the_defaults_are_klaviyo_and_the_specs_revision() {
        let c = config(serde_json::json!({"api_key": "pk_x", "list_id": "VRgFBd"}))
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.revision, "2026-07-15");
        assert_eq!(c.bulk_threshold, 100);
    }
}
