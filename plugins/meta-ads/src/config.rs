//! The meta-ads config: as written, then checked by a pure function that collects every problem.

use cohort_plugin_api::prelude::PluginError;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `meta-ads` destination.
///
/// ```toml
/// access_token = "${META_SYSTEM_USER_TOKEN}"
/// app_secret = "${META_APP_SECRET}"        # optional: every call then carries appsecret_proof
/// api_version = "v25.0"
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A system-user access token of the business that owns the ad account, with the
    /// `ads_management` permission.
    #[schemars(length(min = 1))]
    #[schemars(extend("x-cohort-secret" = true))]
    pub access_token: String,
    /// The Graph API's address.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The Graph API version every path starts with.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The app's secret, when the app requires `appsecret_proof` (recommended): each call
    /// then carries the HMAC-SHA256 of the token keyed with it.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub app_secret: Option<String>,
}

fn default_base_url() -> String {
    "https://graph.facebook.com".to_owned()
}

fn default_api_version() -> String {
    "v25.0".to_owned()
}

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The token.
    pub access_token: String,
    /// The Graph API's address, without a trailing slash.
    pub base_url: String,
    /// `v25.0`.
    pub api_version: String,
    /// The app secret, when set.
    pub app_secret: Option<String>,
}

impl Config {
    /// Checks what the schema cannot: the URL's scheme, the version's shape.
    pub fn validate(self) -> Result<Validated, PluginError> {
        let issue = |path: &str, message: &str| ConfigIssue {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let mut issues = Vec::new();
        if self.access_token.trim().is_empty() {
            issues.push(issue("/access_token", "the system-user token is empty"));
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            issues.push(issue("/base_url", "must be an http:// or https:// URL"));
        }
        let version_ok = self
            .api_version
            .strip_prefix('v')
            .and_then(|v| v.split_once('.'))
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && major
                        .bytes()
                        .chain(minor.bytes())
                        .all(|b| b.is_ascii_digit())
            });
        if !version_ok {
            issues.push(issue(
                "/api_version",
                "a Graph API version is written like v25.0",
            ));
        }
        if self
            .app_secret
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            issues.push(issue(
                "/app_secret",
                "the app secret is empty; leave it out instead",
            ));
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        Ok(Validated {
            access_token: self.access_token,
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            api_version: self.api_version,
            app_secret: self.app_secret,
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
    fn defaults_are_the_graph_api_and_v25() {
        let v = config(serde_json::json!({"access_token": "EAAB"}))
            .validate()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.base_url, "https://graph.facebook.com");
        assert_eq!(v.api_version, "v25.0");
        assert!(v.app_secret.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let err = config(serde_json::json!({
            "access_token": " ", "base_url": "graph.facebook.com", "api_version": "25", "app_secret": ""
        }))
        .validate()
        .unwrap_err();
        let PluginError::Config(issues) = err else {
            panic!("not a config error")
        };
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["/access_token", "/base_url", "/api_version", "/app_secret"]
        );
    }
}
