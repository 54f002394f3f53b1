//! SendGrid's v3 Mail Send API through the host: Bearer auth, the host's pacing and retries,
//! and what each answer means.
//!
//! | SendGrid answers | [`Api::send`] returns |
//! | --- | --- |
//! | 202 | [`Answer::Accepted`], with the `X-Message-Id` |
//! | 400, 413 with `errors` | [`Answer::Refused`]: each error that names a personalization (`personalizations.3.to.0.email`) rejects that customer; the others reject the request |
//! | 401, 403 | a config error naming `/api_key` (the SDK's mapping) |
//! | 429 | a retry, after `X-RateLimit-Reset` (SendGrid's header: the Unix time the limit resets) or `Retry-After` |
//! | 5xx, no answer | a retry (the host does not repeat a mail send itself: it may have gone out) |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cohort_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Validated;

/// What SendGrid said about one request it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted for delivery.
    Accepted {
        /// SendGrid's id of the request (`X-Message-Id`).
        message_id: Option<String>,
    },
    /// Refused: nothing of the request was sent.
    Refused {
        /// Errors that name a personalization: its index and SendGrid's message.
        personalizations: Vec<(usize, String)>,
        /// Errors about the request as a whole, with the status.
        request: Vec<String>,
    },
}

/// SendGrid's error document: `{"errors": [{"message", "field"}]}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Errors {
    #[serde(default)]
    pub(crate) errors: Vec<ErrorItem>,
}

/// One error of SendGrid's document.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorItem {
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) field: Option<String>,
}

/// The Mail Send endpoint of one account.
#[derive(Debug, Clone)]
pub struct Api {
    client: Client,
}

impl Api {
    /// A client for the account of `config.api_key`.
    pub fn new(host: Host, config: &Validated) -> Api {
        let rps = config.requests_per_second;
        Api {
            client: Client::new(host, &config.base_url)
                .bearer("/api_key", &config.api_key)
                .timeout(config.timeout)
                .rate_limit(f64::from(rps), rps)
                .client_errors(ClientErrors::RejectRecords),
        }
    }

    /// The host the requests go through.
    pub fn host(&self) -> &Host {
        self.client.host()
    }

    /// The authenticated client, for the other endpoints ([`crate::marketing`]).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `POST /v3/mail/send` with `body`.
    pub fn send(&self, body: &Value) -> Result<Answer, HttpError> {
        let response = self
            .client
            .post("/v3/mail/send")
            .retry(false)
            .allow(400)
            .allow(413)
            .allow(429)
            .json(body)?
            .send()?;
        match response.status() {
            429 => Err(PluginError::retry(
                format!(
                    "SendGrid is rate limiting this API key (429): {}",
                    response.excerpt()
                ),
                Some(rate_limit_wait(&response)),
            )
            .into()),
            400 | 413 => {
                let status = response.status();
                let errors: Errors =
                    serde_json::from_str(response.text()).unwrap_or(Errors { errors: Vec::new() });
                let mut personalizations = Vec::new();
                let mut request = Vec::new();
                for e in errors.errors {
                    let message = e.message.unwrap_or_else(|| "no message".to_owned());
                    let field = e.field.filter(|f| f != "null");
                    match field.as_deref().and_then(personalization_index) {
                        Some(i) => personalizations.push((
                            i,
                            format!(
                                "SendGrid refused it ({status}): {message} ({})",
                                field.as_deref().unwrap_or_default()
                            ),
                        )),
                        None => request.push(match field {
                            Some(f) => format!("{message} ({f})"),
                            None => message,
                        }),
                    }
                }
                if personalizations.is_empty() && request.is_empty() {
                    request.push(response.excerpt());
                }
                Ok(Answer::Refused {
                    personalizations,
                    request: request
                        .into_iter()
                        .map(|m| format!("SendGrid refused the request ({status}): {m}"))
                        .collect(),
                })
            }
            _ => Ok(Answer::Accepted {
                message_id: response.header("x-message-id").map(str::to_owned),
            }),
        }
    }
}

/// `personalizations.3.to.0.email` → 3.
fn personalization_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("personalizations.")?;
    rest.split('.').next()?.parse().ok()
}

/// How long a 429 asks to wait: until `X-RateLimit-Reset` (Unix seconds), else `Retry-After`,
/// else a second.
pub(crate) fn rate_limit_wait(response: &Response) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    response
        .header("x-ratelimit-reset")
        .and_then(|r| r.trim().parse::<u64>().ok())
        .map(|reset| Duration::from_secs(reset.saturating_sub(now).max(1)))
        .or_else(|| response.retry_after())
        .unwrap_or(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_personalization() {
        assert_eq!(
            personalization_index("personalizations.3.to.0.email"),
            Some(3)
        );
        assert_eq!(personalization_index("personalizations"), None);
        assert_eq!(personalization_index("from.email"), None);
    }
}
