//! The google-ads config: as written, then checked by a pure function that collects every
//! problem. Exactly one way to authenticate: an `access_token`, a service-account key file,
//! or an OAuth client with its refresh token.

use cohort_plugin_api::prelude::PluginError;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Deserialize;

/// Config of the `google-ads` destination.
///
/// ```toml
/// operating_account_id = "123-456-7890"
/// login_account_id = "9876543210"            # a manager account, when it makes the calls
/// client_id = "….apps.googleusercontent.com"
/// client_secret = "${GOOGLE_CLIENT_SECRET}"
/// refresh_token = "${GOOGLE_REFRESH_TOKEN}"
/// ```
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Google Ads customer id that owns the Customer Match lists (digits; dashes are
    /// ignored).
    #[schemars(length(min = 1))]
    pub operating_account_id: String,
    /// The account making the calls, when it is not the operating account (a manager account
    /// with access to it).
    #[serde(default)]
    pub login_account_id: Option<String>,
    /// The Data Manager API's address.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// An OAuth access token with the `datamanager` scope, used as is (it expires within the
    /// hour: for tests and one-off runs).
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub access_token: Option<String>,
    /// A service account's JSON key file: Cohort signs a JWT with it and exchanges it at
    /// `token_url` for access tokens.
    #[serde(default)]
    pub service_account_key_file: Option<String>,
    /// An OAuth client id, with `client_secret` and `refresh_token`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The OAuth client's secret.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub client_secret: Option<String>,
    /// A refresh token granted to the client for the `datamanager` scope.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub refresh_token: Option<String>,
    /// Where access tokens are obtained (and refreshed before they expire).
    #[serde(default = "default_token_url")]
    pub token_url: String,
}

fn default_base_url() -> String {
    "https://datamanager.googleapis.com".to_owned()
}

fn default_token_url() -> String {
    "https://oauth2.googleapis.com/token".to_owned()
}

/// How the plugin gets its access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A token used as is.
    Token(String),
    /// An OAuth client's refresh token.
    Refresh {
        /// The client id.
        client_id: String,
        /// The client secret.
        client_secret: String,
        /// The refresh token.
        refresh_token: String,
    },
    /// A service account's key.
    ServiceAccount {
        /// `client_email` of the key file.
        email: String,
        /// The PEM private key of the key file.
        private_key: String,
    },
}

impl Auth {
    /// The config key named when Google refuses these credentials.
    pub fn config_key(&self) -> &'static str {
        match self {
            Auth::Token(_) => "/access_token",
            Auth::Refresh { .. } => "/refresh_token",
            Auth::ServiceAccount { .. } => "/service_account_key_file",
        }
    }
}

/// A config that was checked.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Digits only.
    pub operating_account_id: String,
    /// Digits only.
    pub login_account_id: Option<String>,
    /// Without a trailing slash.
    pub base_url: String,
    /// How tokens are had.
    pub auth: Auth,
    /// Where tokens are had.
    pub token_url: String,
}

impl Config {
    /// Checks the account ids, the URLs and that exactly one way to authenticate is given
    /// (reading the key file, the one I/O here, so that a bad file is a config error).
    pub fn validate(self) -> Result<Validated, PluginError> {
        let mut issues = Vec::new();
        let mut issue = |path: &str, message: String| {
            issues.push(ConfigIssue {
                path: path.to_owned(),
                message,
            });
        };
        let account = |raw: &str| {
            let digits: String = raw.chars().filter(|c| *c != '-' && *c != ' ').collect();
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
        };
        let operating = account(&self.operating_account_id);
        if operating.is_none() {
            issue(
                "/operating_account_id",
                "a Google Ads customer id is digits (123-456-7890)".to_owned(),
            );
        }
        let login = self.login_account_id.as_deref().map(account);
        if login == Some(None) {
            issue(
                "/login_account_id",
                "a Google Ads customer id is digits (123-456-7890)".to_owned(),
            );
        }
        for (path, url) in [
            ("/base_url", &self.base_url),
            ("/token_url", &self.token_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                issue(path, "must be an http:// or https:// URL".to_owned());
            }
        }
        let refresh = [&self.client_id, &self.client_secret, &self.refresh_token];
        let ways = usize::from(self.access_token.is_some())
            + usize::from(self.service_account_key_file.is_some())
            + usize::from(refresh.iter().any(|v| v.is_some()));
        let mut auth = None;
        if ways != 1 {
            issue(
                "",
                "give exactly one way to authenticate: access_token, service_account_key_file, \
                 or client_id with client_secret and refresh_token"
                    .to_owned(),
            );
        } else if let Some(token) = &self.access_token {
            if token.trim().is_empty() {
                issue("/access_token", "the access token is empty".to_owned());
            }
            auth = Some(Auth::Token(token.trim().to_owned()));
        } else if let Some(path) = &self.service_account_key_file {
            match service_account(path) {
                Ok(a) => auth = Some(a),
                Err(why) => issue("/service_account_key_file", why),
            }
        } else if let [Some(id), Some(secret), Some(token)] = refresh {
            auth = Some(Auth::Refresh {
                client_id: id.clone(),
                client_secret: secret.clone(),
                refresh_token: token.clone(),
            });
        } else {
            for (path, value) in ["/client_id", "/client_secret", "/refresh_token"]
                .into_iter()
                .zip(refresh)
            {
                if value.is_none() {
                    issue(
                        path,
                        "missing: client_id, client_secret and refresh_token go together"
                            .to_owned(),
                    );
                }
            }
        }
        match (issues.is_empty(), operating, auth) {
            (true, Some(operating_account_id), Some(auth)) => Ok(Validated {
                operating_account_id,
                login_account_id: login.flatten(),
                base_url: self.base_url.trim_end_matches('/').to_owned(),
                auth,
                token_url: self.token_url,
            }),
            _ => Err(PluginError::Config(issues)),
        }
    }
}

/// Reads a service account's JSON key file: its `client_email` and `private_key`.
fn service_account(path: &str) -> Result<Auth, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let key: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path} is not a JSON key file: {e}"))?;
    if key["type"].as_str() != Some("service_account") {
        return Err(format!(
            "{path} is not a service account key (its \"type\" is not \"service_account\")"
        ));
    }
    match (key["client_email"].as_str(), key["private_key"].as_str()) {
        (Some(email), Some(private_key)) => Ok(Auth::ServiceAccount {
            email: email.to_owned(),
            private_key: private_key.to_owned(),
        }),
        _ => Err(format!("{path} lacks client_email or private_key")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(v: serde_json::Value) -> Result<Validated, PluginError> {
        serde_json::from_value::<Config>(v)
            .unwrap_or_else(|e| panic!("{e}"))
            .validate()
    }

    fn paths(err: PluginError) -> Vec<String> {
        match err {
            PluginError::Config(issues) => issues.into_iter().map(|i| i.path).collect(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn dashes_in_customer_ids_are_dropped_and_defaults_apply() {
        let v = validate(json!({"operating_account_id": "123-456-7890", "access_token": "ya29.x"}))
            .unwrap();
        assert_eq!(v.operating_account_id, "1234567890");
        assert_eq!(v.base_url, "https://datamanager.googleapis.com");
        assert_eq!(v.token_url, "https://oauth2.googleapis.com/token");
        assert_eq!(v.auth, Auth::Token("ya29.x".into()));
    }

    #[test]
    fn exactly_one_way_to_authenticate_is_required() {
        let none = validate(json!({"operating_account_id": "1"})).unwrap_err();
        assert_eq!(paths(none), [""]);
        let two = validate(json!({"operating_account_id": "1", "access_token": "a",
                                  "client_id": "c"}))
        .unwrap_err();
        assert_eq!(paths(two), [""]);
        let half = validate(json!({"operating_account_id": "1", "client_id": "c"})).unwrap_err();
        assert_eq!(paths(half), ["/client_secret", "/refresh_token"]);
    }

    #[test]
    fn bad_ids_and_a_missing_key_file_are_named() {
        let err = validate(
            json!({"operating_account_id": "acme", "login_account_id": "x1",
                                  "service_account_key_file": "/nonexistent/key.json"}),
        )
        .unwrap_err();
        assert_eq!(
            paths(err),
            [
                "/operating_account_id",
                "/login_account_id",
                "/service_account_key_file"
            ]
        );
    }
}
