//! The Graph API's custom-audience edges: `POST` and `DELETE /{id}/users`, `POST
//! /{id}/usersreplace`, and what Meta's answers mean.
//!
//! Meta throttles with its own error codes inside a 400 (17, 613, 80003 …), not with 429, so
//! the host's HTTP service cannot see them: this client waits and sends again itself, for the
//! time `X-Business-Use-Case-Usage` names (`estimated_time_to_regain_access`, minutes) or with
//! backoff, never holding the worker more than [`MAX_WAIT`] in all; past that the operations
//! are answered `retry` with the delay. Code 2 and any error marked `is_transient` are retried
//! the same way. A refused token (190, 102, 10, 200–299) is a config error on `/access_token`;
//! another Graph error rejects the request's rows with Meta's message.

use std::time::Duration;

use cohort_plugin_api::prelude::*;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::Validated;
use crate::mapping::{Row, Schema};

/// Most rows Meta takes in one request.
pub const MAX_ROWS: usize = 10_000;
/// Longest the client waits out throttling and transient errors for one request.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Attempts of one request before its operations are answered `retry`.
const MAX_ATTEMPTS: u32 = 8;
/// First backoff delay when Meta names none.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Error codes that mean "too many calls": application, user, page, API-specific and the
/// custom-audience business use case.
const THROTTLED: &[i64] = &[4, 17, 32, 613, 80003];
/// Error codes that mean the token or its permissions were refused.
const AUTH: &[i64] = &[10, 102, 190];

/// Which edge, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// `POST /{id}/users`: add.
    Add,
    /// `DELETE /{id}/users`: remove.
    Remove,
    /// `POST /{id}/usersreplace`: a replace session's batch.
    Replace,
}

impl Edge {
    /// The name used in ledger keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Edge::Add => "add",
            Edge::Remove => "remove",
            Edge::Replace => "replace",
        }
    }
}

/// A replace session's place, as Meta's `session` parameter.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    /// The session, the same for all its batches.
    pub session_id: u64,
    /// 1, 2, …
    pub batch_seq: u32,
    /// Whether this is the session's last batch.
    pub last_batch_flag: bool,
    /// How many rows the session holds in all.
    pub estimated_num_total: u64,
}

/// What Meta said about a request it took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Received {
    /// Rows Meta read.
    pub num_received: u64,
    /// Rows Meta could not use.
    pub num_invalid_entries: u64,
    /// Some of them: the value Meta quotes, and why.
    pub samples: Vec<(String, String)>,
}

/// The Graph API, authenticated.
#[derive(Debug)]
pub struct Graph {
    api: Client,
    host: Host,
    version: String,
    proof: Option<String>,
}

impl Graph {
    /// A client with the token (and its proof, when the app secret is set).
    pub fn new(host: Host, config: &Validated) -> Graph {
        let mut api = Client::new(host, config.base_url.clone())
            .bearer("/access_token", &config.access_token)
            .timeout(Duration::from_secs(120));
        let proof = config.app_secret.as_ref().map(|secret| {
            let proof = appsecret_proof(secret, &config.access_token);
            api = api.clone().credential("/app_secret", secret).secret(&proof);
            proof
        });
        Graph {
            api,
            host,
            version: config.api_version.clone(),
            proof,
        }
    }

    /// Sends `rows` (all of `schema`) to an audience's edge, waiting out throttling.
    pub fn send(
        &self,
        edge: Edge,
        audience: &str,
        schema: &Schema,
        rows: &[&Row],
        session: Option<&Session>,
    ) -> Result<Received, HttpError> {
        let (method, name) = match edge {
            Edge::Add => ("POST", "users"),
            Edge::Remove => ("DELETE", "users"),
            Edge::Replace => ("POST", "usersreplace"),
        };
        let payload = json!({
            "schema": schema.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "data": rows.iter().map(|r| &r.values).collect::<Vec<_>>(),
        });
        let mut form = format!("payload={}", encode(&payload.to_string()));
        if let Some(session) = session {
            let session = serde_json::to_string(session)
                .map_err(|e| PluginError::failed(format!("encoding the replace session: {e}")))?;
            form.push_str(&format!("&session={}", encode(&session)));
        }
        let path = format!("/{}/{}/{name}", self.version, encode(audience));
        let mut request = self
            .api
            .request(method, &path)
            // Adding or removing the same hashes twice leaves the audience as once.
            .retry(true)
            .body("application/x-www-form-urlencoded", form);
        if let Some(proof) = &self.proof {
            request = request.query("appsecret_proof", proof);
        }
        for status in [400, 401, 403, 404, 429, 500, 502, 503, 504] {
            request = request.allow(status);
        }

        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = request.clone().send()?;
            let (why, delay) = match answer(&response) {
                Answer::Received(r) => return Ok(r),
                Answer::Fail(e) => return Err(e),
                Answer::Wait { why, delay } => (why, delay),
            };
            let delay = delay.unwrap_or_else(|| backoff(attempt));
            let message = format!("{method} {path}: {why}");
            if attempt >= MAX_ATTEMPTS || waited + delay > MAX_WAIT {
                return Err(PluginError::retry(message, Some(delay)).into());
            }
            self.host.log_with(
                Level::Info,
                "Meta asked to wait; sending again",
                &json!({"edge": edge.name(), "attempt": attempt, "wait_ms": delay.as_millis() as u64, "why": why}),
            );
            self.sleep(delay)?;
            waited += delay;
        }
    }

    /// Sleeps, waking at once if the host cancels.
    fn sleep(&self, delay: Duration) -> Result<(), PluginError> {
        let step = Duration::from_millis(50);
        let mut left = delay;
        while !left.is_zero() {
            self.host.check_cancelled()?;
            let now = left.min(step);
            std::thread::sleep(now);
            left -= now;
        }
        self.host.check_cancelled()
    }
}

/// What to do with an answer.
enum Answer {
    Received(Received),
    Wait {
        why: String,
        delay: Option<Duration>,
    },
    Fail(HttpError),
}

fn answer(response: &Response) -> Answer {
    let status = response.status();
    let body: Value = serde_json::from_str(response.text()).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Answer::Received(received(&body));
    }
    let error = &body["error"];
    let Some(code) = error["code"].as_i64() else {
        // Not Graph's error body: a proxy, an outage.
        let said = format!("answered {status}: {}", response.excerpt());
        return match status {
            401 | 403 => Answer::Fail(
                PluginError::config("/access_token", format!("Meta refused the token ({said})"))
                    .into(),
            ),
            429 | 500..=599 => Answer::Wait {
                why: said,
                delay: response.retry_after(),
            },
            _ => Answer::Fail(PluginError::failed(format!("Meta {said}")).into()),
        };
    };
    let message = error["error_user_msg"]
        .as_str()
        .or(error["message"].as_str())
        .unwrap_or("no message");
    let subcode = error["error_subcode"]
        .as_i64()
        .map(|s| format!(", subcode {s}"))
        .unwrap_or_default();
    let said = format!("Meta error {code}{subcode}: {message}");
    if THROTTLED.contains(&code) {
        return Answer::Wait {
            delay: response
                .header("x-business-use-case-usage")
                .and_then(regain_access)
                .or_else(|| response.retry_after()),
            why: said,
        };
    }
    if code == 2 || error["is_transient"].as_bool() == Some(true) {
        return Answer::Wait {
            why: said,
            delay: None,
        };
    }
    if AUTH.contains(&code) || (200..300).contains(&code) {
        return Answer::Fail(
            PluginError::config(
                "/access_token",
                format!(
                    "Meta refused the token or its permissions ({said}); use a system-user token \
                     with ads_management on the ad account that owns the audience"
                ),
            )
            .into(),
        );
    }
    Answer::Fail(HttpError::Rejected {
        status,
        reason: said,
    })
}

/// The counts and samples of a successful answer. Meta writes the counts as numbers or as
/// strings, and the samples as an object (value → reason) or a list.
fn received(body: &Value) -> Received {
    let count = |v: &Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    let samples = match &body["invalid_entry_samples"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .map(|v| {
                (
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    String::new(),
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    Received {
        num_received: count(&body["num_received"]),
        num_invalid_entries: count(&body["num_invalid_entries"]),
        samples,
    }
}

/// The longest `estimated_time_to_regain_access` (minutes) in `X-Business-Use-Case-Usage`:
/// `{"<business id>": [{"type": "custom_audience", "call_count": 100, …,
/// "estimated_time_to_regain_access": 5}]}`. Zero means "now": backoff decides.
fn regain_access(header: &str) -> Option<Duration> {
    let usage: Value = serde_json::from_str(header).ok()?;
    let minutes = usage
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|u| u["estimated_time_to_regain_access"].as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

fn backoff(attempt: u32) -> Duration {
    (BASE_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1))).min(Duration::from_secs(20))
}

/// `appsecret_proof`: hex HMAC-SHA256 of the access token, keyed with the app secret.
pub fn appsecret_proof(app_secret: &str, access_token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(access_token.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Percent-encodes a form or path component.
fn encode(text: &str) -> String {
    cohort_plugin_api::sdk::http::encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_is_the_hmac_of_the_token_keyed_with_the_secret() {
        // echo -n 'EAAtoken' | openssl dgst -sha256 -hmac 'appsecret'
        assert_eq!(
            appsecret_proof("appsecret", "EAAtoken"),
            "b15e563de2a106036cef7807b362777b33c08f4b1fb1251b4a3f5a9eeca7c277"
        );
    }

    #[test]
    fn the_business_use_case_header_gives_the_longest_wait() {
        let h = r#"{"1": [{"type": "custom_audience", "estimated_time_to_regain_access": 2}],
                    "2": [{"type": "ads_management", "estimated_time_to_regain_access": 5}]}"#;
        assert_eq!(regain_access(h), Some(Duration::from_secs(300)));
        assert_eq!(
            regain_access(r#"{"1": [{"estimated_time_to_regain_access": 0}]}"#),
            None
        );
        assert_eq!(regain_access("not json"), None);
    }

    #[test]
    fn counts_and_samples_are_read_in_either_of_metas_shapes() {
        let r = received(&json!({"num_received": "3", "num_invalid_entries": 1,
                                 "invalid_entry_samples": {"abc": "invalid email hash"}}));
        assert_eq!(r.num_received, 3);
        assert_eq!(r.num_invalid_entries, 1);
        assert_eq!(
            r.samples,
            [("abc".to_owned(), "invalid email hash".to_owned())]
        );
    }
}
