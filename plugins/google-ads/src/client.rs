//! The Data Manager API's `IngestionService` over REST/JSON (`ingestion_service.proto`):
//! `POST /v1/audienceMembers:ingest`, `POST /v1/audienceMembers:remove` and
//! `GET /v1/requestStatus:retrieve`, and what Google's errors mean.
//!
//! Google's errors are `google.rpc.Status` bodies (`{"error": {"code", "status", "message",
//! "details"}}`):
//!
//! | status | what this client does |
//! | --- | --- |
//! | `RESOURCE_EXHAUSTED` | waits the `RetryInfo` delay (else backs off) and sends again, at most [`MAX_WAIT`] in all; then the operations are answered `retry` with the delay |
//! | `UNAVAILABLE`, `INTERNAL`, `DEADLINE_EXCEEDED` | the same, with backoff |
//! | `INVALID_ARGUMENT` naming `audience_members[i]` | those members are rejected with Google's words, and the request is sent again without them |
//! | `INVALID_ARGUMENT` naming anything else | a config error at the matching key (`/operating_account_id` …) |
//! | `UNAUTHENTICATED` | a renewable token is renewed once; otherwise a config error on the credential |
//! | `PERMISSION_DENIED` | a config error on the account ids |

use std::time::Duration;

use cohort_plugin_api::prelude::*;
use cohort_plugin_api::wire::ConfigIssue;
use serde::Serialize;
use serde_json::{Value, json};

use crate::auth::Tokens;
use crate::config::Validated;
use crate::mapping::Member;

/// Most audience members in one request (`IngestAudienceMembersRequest.audience_members`).
pub const MAX_MEMBERS: usize = 10_000;
/// Longest the client waits out quota and outages for one request.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 8;
const BASE_BACKOFF: Duration = Duration::from_millis(250);

/// Adding or removing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `audienceMembers:ingest`.
    Ingest,
    /// `audienceMembers:remove`.
    Remove,
}

impl Verb {
    /// `ingest` or `remove`.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Ingest => "ingest",
            Verb::Remove => "remove",
        }
    }
}

/// What Google said about a request it took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sent {
    /// `requestId`, for `requestStatus:retrieve`; empty when nothing was left to send.
    pub request_id: String,
    /// Members Google refused by name (their index in the request as given), and why.
    pub rejected: Vec<(usize, String)>,
}

/// A request's processing, as `requestStatus:retrieve` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Still processing: ask again at the next run.
    Processing,
    /// Every record went in.
    Success,
    /// Some or all failed: the status name and the reasons with their counts.
    Failed {
        /// `FAILED` or `PARTIAL_SUCCESS`.
        status: String,
        /// `REASON: n` each.
        reasons: Vec<String>,
    },
}

/// The API, with its credentials and the destination every request names.
#[derive(Debug)]
pub struct DataManager {
    base: Client,
    authed: Client,
    /// The token `authed` carries.
    token: Option<String>,
    host: Host,
    tokens: Tokens,
    operating: String,
    login: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    destinations: [Value; 1],
    audience_members: Vec<&'a Member>,
    encoding: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    terms_of_service: Option<Value>,
}

impl DataManager {
    /// A client for the configured account.
    pub fn new(host: Host, config: &Validated) -> DataManager {
        let base = Client::new(host, config.base_url.clone()).timeout(Duration::from_secs(120));
        DataManager {
            authed: base.clone(),
            token: None,
            base,
            host,
            tokens: Tokens::new(host, config.auth.clone(), &config.token_url),
            operating: config.operating_account_id.clone(),
            login: config.login_account_id.clone(),
        }
    }

    /// The `Destination` of a user list.
    fn destination(&self, user_list: &str) -> Value {
        let account = |id: &str| json!({"accountType": "GOOGLE_ADS", "accountId": id});
        let mut d = json!({
            "operatingAccount": account(&self.operating),
            "productDestinationId": user_list,
        });
        if let Some(login) = &self.login {
            d["loginAccount"] = account(login);
        }
        d
    }

    /// A client carrying a valid token.
    fn client(&mut self) -> Result<Client, PluginError> {
        let (token, _) = self.tokens.token()?;
        if self.token.as_deref() != Some(token.as_str()) {
            self.authed = self.base.clone().bearer(self.tokens.config_key(), &token);
            self.token = Some(token);
        }
        Ok(self.authed.clone())
    }

    /// Sends members to a user list, waiting out quota and outages, dropping the members
    /// Google refuses by name.
    pub fn send(
        &mut self,
        verb: Verb,
        user_list: &str,
        members: &[&Member],
    ) -> Result<Sent, HttpError> {
        let path = format!("/v1/audienceMembers:{}", verb.name());
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut waited = Duration::ZERO;
        let mut attempt = 0;
        let mut renewed = false;
        loop {
            attempt += 1;
            // The members still in the request, by their index as given.
            let kept: Vec<usize> = (0..members.len())
                .filter(|i| !rejected.iter().any(|(r, _)| r == i))
                .collect();
            if kept.is_empty() {
                return Ok(Sent {
                    request_id: String::new(),
                    rejected,
                });
            }
            let body = Body {
                destinations: [self.destination(user_list)],
                audience_members: kept.iter().map(|&i| members[i]).collect(),
                encoding: "HEX",
                terms_of_service: (verb == Verb::Ingest)
                    .then(|| json!({"customerMatchTermsOfServiceStatus": "ACCEPTED"})),
            };
            let mut request = self
                .client()?
                .post(&path)
                // Adding or removing the same members twice leaves the list as once.
                .retry(true)
                .json(&body)?;
            for status in [400, 401, 403, 404, 409, 429, 500, 502, 503, 504] {
                request = request.allow(status);
            }
            let response = request.send()?;
            let (why, delay) = match self.answer(&response, &kept) {
                Answer::Sent(request_id) => {
                    return Ok(Sent {
                        request_id,
                        rejected,
                    });
                }
                Answer::Members(refused) => {
                    rejected.extend(refused);
                    continue;
                }
                Answer::Renew if !renewed => {
                    renewed = true;
                    self.tokens.forget();
                    continue;
                }
                Answer::Renew => {
                    return Err(PluginError::config(
                        self.tokens.config_key(),
                        format!("Google refused the credentials: {}", response.excerpt()),
                    )
                    .into());
                }
                Answer::Fail(e) => return Err(e),
                Answer::Wait { why, delay } => (why, delay),
            };
            let delay = delay.unwrap_or_else(|| backoff(attempt));
            let message = format!("POST {path}: {why}");
            if attempt >= MAX_ATTEMPTS || waited + delay > MAX_WAIT {
                return Err(PluginError::retry(message, Some(delay)).into());
            }
            self.host.log_with(
                Level::Info,
                "Google asked to wait; sending again",
                &json!({"verb": verb.name(), "attempt": attempt,
                        "wait_ms": u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "why": why}),
            );
            self.sleep(delay)?;
            waited += delay;
        }
    }

    /// `requestStatus:retrieve` for one request.
    pub fn status(&mut self, request_id: &str) -> Result<Status, PluginError> {
        let response = self
            .client()?
            .get("/v1/requestStatus:retrieve")
            .query("requestId", request_id)
            .send()?;
        let body: Value = response.json()?;
        let first = &body["requestStatusPerDestination"][0];
        let status = first["requestStatus"]
            .as_str()
            .unwrap_or("REQUEST_STATUS_UNKNOWN");
        Ok(match status {
            "SUCCESS" => Status::Success,
            "FAILED" | "PARTIAL_SUCCESS" => Status::Failed {
                status: status.to_owned(),
                reasons: first["errorInfo"]["errorCounts"]
                    .as_array()
                    .map(|counts| {
                        counts
                            .iter()
                            .map(|c| {
                                let n = c["recordCount"]
                                    .as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| c["recordCount"].to_string());
                                format!("{}: {n}", c["reason"].as_str().unwrap_or("unknown"))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            _ => Status::Processing,
        })
    }

    fn answer(&self, response: &Response, kept: &[usize]) -> Answer {
        let status = response.status();
        let body: Value = serde_json::from_str(response.text()).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Answer::Sent(body["requestId"].as_str().unwrap_or_default().to_owned());
        }
        let error = &body["error"];
        let name = error["status"].as_str().unwrap_or(match status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        });
        let message = error["message"]
            .as_str()
            .map_or_else(|| response.excerpt(), str::to_owned);
        let said = format!("Google answered {status} {name}: {message}");
        let details = error["details"].as_array().cloned().unwrap_or_default();
        match name {
            "RESOURCE_EXHAUSTED" | "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" => {
                Answer::Wait {
                    why: said,
                    delay: retry_delay(&details).or_else(|| response.retry_after()),
                }
            }
            "UNAUTHENTICATED" => Answer::Renew,
            "PERMISSION_DENIED" => {
                let mut issues = vec![ConfigIssue {
                    path: "/operating_account_id".to_owned(),
                    message: format!(
                        "{said}; the credentials need access to this account (through \
                         login_account_id, if a manager account makes the calls)"
                    ),
                }];
                if self.login.is_some() {
                    issues.push(ConfigIssue {
                        path: "/login_account_id".to_owned(),
                        message: issues[0].message.clone(),
                    });
                }
                Answer::Fail(PluginError::Config(issues).into())
            }
            "INVALID_ARGUMENT" => {
                let violations: Vec<(String, String)> = details
                    .iter()
                    .flat_map(|d| d["fieldViolations"].as_array().cloned().unwrap_or_default())
                    .map(|v| {
                        let field = v["field"].as_str().unwrap_or_default().to_owned();
                        let reason = v["reason"]
                            .as_str()
                            .map(|r| format!("{r}: "))
                            .unwrap_or_default();
                        let description = v["description"].as_str().unwrap_or(&message);
                        (field, format!("{reason}{description}"))
                    })
                    .collect();
                let members: Vec<(usize, String)> = violations
                    .iter()
                    .filter_map(|(field, why)| {
                        let at = member_index(field)?;
                        let original = *kept.get(at)?;
                        Some((original, format!("Google refused {field}: {why}")))
                    })
                    .collect();
                if !members.is_empty() && members.len() == violations.len() {
                    return Answer::Members(members);
                }
                let (field, why) = violations
                    .into_iter()
                    .find(|(f, _)| member_index(f).is_none())
                    .unwrap_or_else(|| (String::new(), message.clone()));
                let path = if field.contains("login_account") || field.contains("loginAccount") {
                    "/login_account_id"
                } else if field.contains("operating_account") || field.contains("operatingAccount")
                {
                    "/operating_account_id"
                } else {
                    ""
                };
                let hint = if field.contains("product_destination_id")
                    || field.contains("productDestinationId")
                {
                    "; the campaign's `audience` must be the Customer Match user list id"
                } else {
                    ""
                };
                Answer::Fail(
                    PluginError::config(
                        path,
                        format!(
                            "Google refused {}: {why}{hint}",
                            if field.is_empty() {
                                "the request"
                            } else {
                                &field
                            }
                        ),
                    )
                    .into(),
                )
            }
            _ => Answer::Fail(PluginError::failed(said).into()),
        }
    }

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

enum Answer {
    Sent(String),
    Members(Vec<(usize, String)>),
    Renew,
    Wait {
        why: String,
        delay: Option<Duration>,
    },
    Fail(HttpError),
}

/// `audience_members[12].user_data…` (or `audienceMembers[12]…`) → 12.
fn member_index(field: &str) -> Option<usize> {
    let rest = field
        .strip_prefix("audience_members[")
        .or_else(|| field.strip_prefix("audienceMembers["))?;
    rest.split_once(']')?.0.parse().ok()
}

/// The `google.rpc.RetryInfo` delay among the details (`"retryDelay": "2.5s"`).
fn retry_delay(details: &[Value]) -> Option<Duration> {
    details
        .iter()
        .filter(|d| {
            d["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            let text = d["retryDelay"].as_str()?;
            let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
        })
}

fn backoff(attempt: u32) -> Duration {
    (BASE_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1))).min(Duration::from_secs(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_indices_are_read_in_both_spellings() {
        assert_eq!(
            member_index("audience_members[12].user_data.user_identifiers[0]"),
            Some(12)
        );
        assert_eq!(member_index("audienceMembers[3]"), Some(3));
        assert_eq!(member_index("destinations[0].product_destination_id"), None);
    }

    #[test]
    fn retry_info_gives_the_delay() {
        let details = vec![
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RESOURCE_EXHAUSTED"}),
            json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"}),
        ];
        assert_eq!(retry_delay(&details), Some(Duration::from_millis(2500)));
        assert_eq!(retry_delay(&[]), None);
    }
}
