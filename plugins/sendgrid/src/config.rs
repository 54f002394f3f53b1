//! The sendgrid plugin's config: as written, then checked by a pure function that collects
//! every problem.

use std::time::Duration;

use cohort_plugin_api::prelude::{DestinationMode, PluginError};
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `sendgrid` destination.
///
/// ```toml
/// config = { api_key = "${env:SENDGRID_API_KEY}" }
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A SendGrid API key with the `mail.send` scope (`SG.…`), usually `${env:SENDGRID_API_KEY}`.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-cohort-secret" = true))]
    pub api_key: String,
    /// SendGrid's API: `https://api.sendgrid.com`, or `https://api.eu.sendgrid.com` for an EU
    /// regional subuser; another only to test against a fake.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Requests per second to SendGrid for this key (each request carries the customers that
    /// share one message body). A destination's `rate_limit` overrides it.
    #[serde(default = "default_requests_per_second")]
    #[schemars(range(min = 1, max = 1000))]
    pub requests_per_second: u32,
    /// Categories attached to every message (SendGrid's statistics group by them).
    #[serde(default)]
    #[schemars(length(max = 10))]
    pub categories: Vec<String>,
    /// An address that unsubscribes whoever writes to it, added to `List-Unsubscribe` beside the
    /// campaign's https link.
    #[serde(default)]
    pub unsubscribe_mailto: Option<String>,
    /// Sandbox mode: SendGrid validates each request and answers as usual, but delivers nothing.
    #[serde(default)]
    pub sandbox: bool,
    /// Seconds SendGrid has to answer one request.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 600))]
    pub timeout: u64,
    /// The Marketing Campaigns list kept in step with the segment (Marketing › Contacts › the
    /// list: the id in its URL). Required for modes `upsert` and `mirror`.
    #[serde(default)]
    pub list_id: Option<String>,
    /// Seconds between two polls of a contacts import job (`upsert`, `mirror`).
    #[serde(default = "default_poll_interval")]
    #[schemars(range(min = 0, max = 300))]
    pub poll_interval: u64,
    /// Seconds a push waits for an import job before its contacts are retried (the job's id is
    /// kept: the retry waits for the same job).
    #[serde(default = "default_job_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub job_timeout: u64,
    /// Read the account's global unsubscribes into Cohort's suppression list before each run
    /// (the key then needs the Suppressions read scope). Turn off only when something else
    /// already brings them into Cohort.
    #[serde(default = "default_true")]
    pub read_unsubscribes: bool,
}

fn default_base_url() -> String {
    "https://api.sendgrid.com".to_owned()
}

fn default_requests_per_second() -> u32 {
    50
}

fn default_timeout() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

fn default_poll_interval() -> u64 {
    2
}

fn default_job_timeout() -> u64 {
    600
}

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The API key.
    pub api_key: String,
    /// The API's base URL, without a trailing slash.
    pub base_url: String,
    /// Requests per second.
    pub requests_per_second: u32,
    /// Categories of every message.
    pub categories: Vec<String>,
    /// The mailto unsubscribe address.
    pub unsubscribe_mailto: Option<String>,
    /// Sandbox mode.
    pub sandbox: bool,
    /// Timeout per request.
    pub timeout: Duration,
    /// The marketing list, for `upsert` and `mirror`.
    pub list_id: Option<String>,
    /// Between two polls of an import job.
    pub poll_interval: Duration,
    /// Longest wait for an import job in one push.
    pub job_timeout: Duration,
    /// Whether to read the global unsubscribes.
    pub read_unsubscribes: bool,
}

impl Config {
    /// Checks what the schema cannot: the URL, the key's shape, the mailto address.
    pub fn validate(self) -> Result<Validated, PluginError> {
        let issue = |path: &str, message: &str| ConfigIssue {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let mut issues = Vec::new();
        let api_key = self.api_key.trim().to_owned();
        if api_key.is_empty() || api_key.contains(char::is_whitespace) {
            issues.push(issue("/api_key", "an API key is one word (`SG.…`)"));
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            issues.push(issue("/base_url", "must be an http:// or https:// URL"));
        }
        if let Some(mailto) = &self.unsubscribe_mailto {
            let ok = mailto.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !mailto.contains(['<', '>', ' ', ',', '?'])
            });
            if !ok {
                issues.push(issue(
                    "/unsubscribe_mailto",
                    "must be a plain address (`unsubscribe@shop.example`)",
                ));
            }
        }
        for (i, c) in self.categories.iter().enumerate() {
            if c.is_empty() || c.len() > 255 {
                issues.push(issue(
                    &format!("/categories/{i}"),
                    "a category is 1 to 255 characters",
                ));
            }
        }
        let list_id = self.list_id.map(|l| l.trim().to_owned());
        if let Some(list) = &list_id
            && (list.is_empty() || list.contains(['/', '?', '#', '&', ' ', ',']))
        {
            issues.push(issue(
                "/list_id",
                "is not a list id (the list's page in Marketing › Contacts shows it in its URL, \
                 like `ca7a3796-e8a8-4029-9ccb-df8937940562`)",
            ));
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        Ok(Validated {
            api_key,
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            requests_per_second: self.requests_per_second.max(1),
            categories: self.categories,
            unsubscribe_mailto: self.unsubscribe_mailto,
            sandbox: self.sandbox,
            timeout: Duration::from_secs(self.timeout),
            list_id,
            poll_interval: Duration::from_secs(self.poll_interval),
            job_timeout: Duration::from_secs(self.job_timeout),
            read_unsubscribes: self.read_unsubscribes,
        })
    }
}

impl Validated {
    /// The list `upsert` and `mirror` keep in step: a config error naming `/list_id` when the
    /// config has none (the mode is known only once a campaign pushes).
    pub fn list(&self, mode: DestinationMode) -> Result<&str, PluginError> {
        self.list_id.as_deref().ok_or_else(|| {
            PluginError::config(
                "/list_id",
                format!(
                    "mode `{mode}` keeps a Marketing Campaigns list in step, so the sendgrid \
                     destination needs `list_id` (the list's id, from its page in Marketing › \
                     Contacts)"
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let config: Config = serde_json::from_value(json!({
            "api_key": "SG. x", "base_url": "api.sendgrid.com", "unsubscribe_mailto": "no",
            "categories": [""], "list_id": "a/b"
        }))
        .unwrap();
        let PluginError::Config(issues) = config.validate().unwrap_err() else {
            panic!("not a config error")
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/api_key",
                "/base_url",
                "/unsubscribe_mailto",
                "/categories/0",
                "/list_id"
            ]
        );
    }

    #[test]
    fn the_defaults_are_sendgrids_global_api() {
        let config: Config = serde_json::from_value(json!({"api_key": "SG.abc"})).unwrap();
        let v = config.validate().unwrap();
        assert_eq!(v.base_url, "https://api.sendgrid.com");
        assert!(!v.sandbox);
        let e = v.list(DestinationMode::Mirror).unwrap_err();
        assert!(
            matches!(&e, PluginError::Config(i) if i[0].path == "/list_id"
                && i[0].message.contains("mode `mirror`")),
            "{e:?}"
        );
    }
}
