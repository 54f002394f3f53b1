//! Talking to a vendor API through the host: a request builder, JSON decoding, and the one
//! status mapping every connector shares.
//!
//! Requests go through [`Host::http`], so the host owns timeouts, retries, rate limits and
//! redaction, and this module stays free of async runtimes and HTTP stacks. What it adds is what
//! every connector would otherwise write by hand, slightly differently each time:
//!
//! | the vendor answers | [`Request::send`] returns |
//! | --- | --- |
//! | 2xx, 3xx, or a status allowed with [`Request::allow`] | `Ok(Response)` |
//! | 401, 403 | [`PluginError::Config`] naming the credential's config key, never its value |
//! | 429, 5xx | [`PluginError::Retry`] with the server's `Retry-After` |
//! | any other 4xx | [`PluginError::Failed`], or [`HttpError::Rejected`] when the request is about records ([`ClientErrors::RejectRecords`]) |
//! | no answer (timeout, connection) | [`PluginError::Retry`], from the host |
//!
//! The host already retried 429s (and, for requests safe to repeat, 5xx and timeouts) before
//! the answer comes back here: a `Retry` from `send` means the host's patience ran out, and the
//! job (or, for a destination, the operations) should be retried later.
//!
//! Error messages carry the method, the URL and an excerpt of the body, with every secret the
//! client knows replaced by `[REDACTED]`: a vendor that echoes a token back never leaks it.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::gate::Gate;
use super::{Host, PluginError};
use crate::wire::{ConfigIssue, HttpRequest, HttpResponse, RateLimit};

/// What replaces a secret in messages.
const REDACTED: &str = "[REDACTED]";
/// Characters of a body quoted in an error.
const EXCERPT: usize = 300;

/// What a 4xx other than 401, 403 and 429 means for a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientErrors {
    /// The request itself is wrong (a bad path, a field the API does not know): the job fails.
    #[default]
    Fatal,
    /// The vendor refused the records this request carries: they are rejected, the job goes on
    /// ([`HttpError::Rejected`]).
    RejectRecords,
}

/// Why a request got no usable answer. Each variant says what the caller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpError {
    /// The vendor refused the records this request carries (a 4xx, on a request marked
    /// [`ClientErrors::RejectRecords`]): reject them with `reason` and go on. The batching
    /// helper does this for you.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The status and the vendor's explanation (an excerpt of its body).
        reason: String,
    },
    /// Anything else: return it with `?`. A config error (the credential was refused), a retry
    /// (429, 5xx, no answer) or a failure (anything else).
    Plugin(PluginError),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Rejected { reason, .. } => f.write_str(reason),
            HttpError::Plugin(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<PluginError> for HttpError {
    fn from(e: PluginError) -> Self {
        HttpError::Plugin(e)
    }
}

impl From<HttpError> for PluginError {
    /// A rejection that reaches a caller with no records to reject fails the job.
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Rejected { reason, .. } => PluginError::failed(reason),
            HttpError::Plugin(e) => e,
        }
    }
}

/// A vendor API: a base URL, credentials and defaults shared by every request.
///
/// ```no_run
/// # use cohort_plugin_api::prelude::*;
/// # use cohort_plugin_api::sdk::http::Client;
/// # fn f(host: Host, token: &str) -> Result<(), PluginError> {
/// let api = Client::new(host, "https://api.example.com/v1").bearer("/api_token", token);
/// let orders: serde_json::Value = api.get("/orders").query("page", 2).send()?.json()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    host: Host,
    base: String,
    headers: Vec<(String, String)>,
    /// Config keys of the credentials, named when the vendor refuses them.
    credentials: Vec<String>,
    /// Values never to show: sent to the host for its logs, and redacted from our messages.
    secrets: Vec<String>,
    account: Option<String>,
    rate_limit: Option<RateLimit>,
    timeout: Option<Duration>,
    client_errors: ClientErrors,
    /// The account's cap on requests in flight.
    connections: Option<Cap>,
}

/// Who keeps an account's cap on requests in flight ([`Client::connections`]).
#[derive(Debug, Clone)]
enum Cap {
    /// The host (ABI 1.4): every request names the limit, and the host holds the account to it
    /// across every instance, for the time each request is on the wire.
    Host(u32),
    /// An older host does not: this client's own gate, shared by its clones, held for the whole
    /// of each call to the host.
    Plugin(Gate),
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the API at `base_url`. Request paths are appended to it; a request given a
    /// full `http(s)://` URL (a `next` link) uses that URL as it is.
    pub fn new(host: Host, base_url: impl Into<String>) -> Client {
        let mut base = base_url.into();
        while base.ends_with('/') {
            base.pop();
        }
        Client {
            host,
            base,
            headers: Vec::new(),
            credentials: Vec::new(),
            secrets: Vec::new(),
            account: None,
            rate_limit: None,
            timeout: None,
            client_errors: ClientErrors::Fatal,
            connections: None,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The host this client sends through.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Authenticates with `Authorization: Bearer TOKEN`; `config_key` is where the token is in
    /// the config (`/api_token`), named if the vendor refuses it.
    pub fn bearer(self, config_key: &str, token: &str) -> Client {
        self.secret_header(config_key, "Authorization", &format!("Bearer {token}"))
    }

    /// Authenticates with HTTP Basic; `config_key` names the password's place in the config.
    pub fn basic(self, config_key: &str, user: &str, password: &str) -> Client {
        let encoded = base64(format!("{user}:{password}").as_bytes());
        self.secret_header(config_key, "Authorization", &format!("Basic {encoded}"))
            .secret(password)
            .secret(&encoded)
    }

    /// Sends a header whose value is a credential (`X-Api-Key`), from `config_key`. The value
    /// and, for `SCHEME TOKEN` values, the token alone are never shown.
    pub fn secret_header(mut self, config_key: &str, name: &str, value: &str) -> Client {
        self.headers.push((name.to_owned(), value.to_owned()));
        if let Some((_, token)) = value.split_once(' ') {
            self = self.secret(token.trim());
        }
        self.credential(config_key, value)
    }

    /// Declares a credential the requests depend on without sending it as is (a signing key):
    /// its `config_key` is named if the vendor answers 401 or 403, its value never shown.
    pub fn credential(mut self, config_key: &str, value: &str) -> Client {
        if !self.credentials.iter().any(|k| k == config_key) {
            self.credentials.push(config_key.to_owned());
        }
        self.secret(value)
    }

    /// Sends a header with every request.
    pub fn header(mut self, name: &str, value: &str) -> Client {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A value never to show in logs or errors (a token inside a body, a signing key).
    pub fn secret(mut self, value: &str) -> Client {
        if !value.is_empty() && !self.secrets.iter().any(|s| s == value) {
            self.secrets.push(value.to_owned());
            // Longest first, so a secret containing another is hidden whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
        self
    }

    /// The rate-limit bucket within the plugin (a shop, an API key id). Without it the host
    /// keys the bucket on a hash of the request's credentials, or on the URL's host.
    pub fn account(mut self, account: impl Into<String>) -> Client {
        self.account = Some(account.into());
        self
    }

    /// The vendor's limit for the account, when the plugin knows it (a tier in its config): the
    /// host paces the account's bucket to `per_second` with bursts of `burst`, instead of its
    /// default (see [`HttpRequest::rate_limit`]).
    pub fn rate_limit(mut self, per_second: f64, burst: u32) -> Client {
        self.rate_limit = Some(RateLimit { per_second, burst });
        self
    }

    /// The vendor's limit of simultaneous connections for the account: at most `n` of the
    /// account's requests are in flight at once, whichever threads send them; a request waits
    /// for a place before it goes. With this cap in place, a
    /// [`Batcher`](super::batch::Batcher) may keep more chunks in progress than the vendor
    /// allows connections, and the connections stay busy while some chunks build their next
    /// request.
    ///
    /// A host of ABI 1.4 or later keeps the cap ([`HttpRequest::connections`]): for every
    /// instance on the account in the process, and only while a request is on the wire. On an
    /// older host the client keeps it itself, for its own requests (and its clones').
    pub fn connections(mut self, n: usize) -> Client {
        let n = n.max(1);
        self.connections = Some(if super::ffi::host_minor() >= 4 {
            Cap::Host(u32::try_from(n).unwrap_or(u32::MAX))
        } else {
            Cap::Plugin(Gate::new(n))
        });
        self
    }

    /// Timeout of one attempt, instead of the host's.
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = Some(timeout);
        self
    }

    /// What a 4xx other than 401, 403 and 429 means for this client's requests (fatal by default).
    pub fn client_errors(mut self, meaning: ClientErrors) -> Client {
        self.client_errors = meaning;
        self
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Request {
        self.request("GET", path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> Request {
        self.request("POST", path)
    }

    /// `PUT path`.
    pub fn put(&self, path: &str) -> Request {
        self.request("PUT", path)
    }

    /// `PATCH path`.
    pub fn patch(&self, path: &str) -> Request {
        self.request("PATCH", path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Request {
        self.request("DELETE", path)
    }

    /// A request with any method.
    pub fn request(&self, method: &str, path: &str) -> Request {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else if path.is_empty() {
            self.base.clone()
        } else if path.starts_with('/') || path.starts_with('?') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/{path}", self.base)
        };
        Request {
            host: self.host,
            request: HttpRequest {
                method: method.to_owned(),
                url,
                headers: self.headers.clone(),
                body: None,
                timeout_ms: self.timeout.map(millis),
                account: self.account.clone(),
                retry: None,
                secrets: self.secrets.clone(),
                rate_limit: self.rate_limit,
                connections: match &self.connections {
                    Some(Cap::Host(n)) => Some(*n),
                    _ => None,
                },
            },
            credentials: self.credentials.clone(),
            client_errors: self.client_errors,
            allowed: Vec::new(),
            gate: match &self.connections {
                Some(Cap::Plugin(gate)) => Some(gate.clone()),
                _ => None,
            },
        }
    }
}

/// One request being built; [`send`](Request::send) it.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    host: Host,
    request: HttpRequest,
    credentials: Vec<String>,
    client_errors: ClientErrors,
    allowed: Vec<u16>,
    gate: Option<Gate>,
}

impl Request {
    /// Adds a query parameter, percent-encoded.
    pub fn query(mut self, name: &str, value: impl fmt::Display) -> Request {
        let sep = if self.request.url.contains('?') {
            '&'
        } else {
            '?'
        };
        let pair = format!("{sep}{}={}", encode(name), encode(&value.to_string()));
        match self.request.url.find('#') {
            Some(at) => self.request.url.insert_str(at, &pair),
            None => self.request.url.push_str(&pair),
        }
        self
    }

    /// Adds a query parameter when there is a value.
    pub fn query_opt(self, name: &str, value: Option<impl fmt::Display>) -> Request {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.request
            .headers
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sends `body` as JSON.
    pub fn json<T: Serialize + ?Sized>(self, body: &T) -> Result<Request, PluginError> {
        let text = serde_json::to_string(body)
            .map_err(|e| PluginError::failed(format!("encoding a request body: {e}")))?;
        Ok(self.body("application/json", text))
    }

    /// Sends `body` (already encoded) with this content type.
    pub fn body(mut self, content_type: &str, body: impl Into<String>) -> Request {
        self.request
            .headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
        self.request
            .headers
            .push(("Content-Type".to_owned(), content_type.to_owned()));
        self.request.body = Some(body.into());
        self
    }

    /// Whether the host may repeat the request after a 5xx or a timeout. GET, PUT, DELETE are
    /// repeatable by default, POST and PATCH are not; say `true` for a POST the vendor
    /// deduplicates (an `Idempotency-Key`).
    pub fn retry(mut self, repeatable: bool) -> Request {
        self.request.retry = Some(repeatable);
        self
    }

    /// Timeout of one attempt.
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.request.timeout_ms = Some(millis(timeout));
        self
    }

    /// What a 4xx other than 401, 403 and 429 means for this request.
    pub fn client_errors(mut self, meaning: ClientErrors) -> Request {
        self.client_errors = meaning;
        self
    }

    /// Hands this status back as `Ok` instead of mapping it (a 404 that means "none yet").
    pub fn allow(mut self, status: u16) -> Request {
        self.allowed.push(status);
        self
    }

    /// The request as it will be sent (for tests and signatures).
    pub fn as_http(&self) -> &HttpRequest {
        &self.request
    }

    /// Sends the request through the host and maps the answer's status (see the module doc).
    pub fn send(self) -> Result<Response, HttpError> {
        let Request {
            host,
            request,
            credentials,
            client_errors,
            allowed,
            gate,
        } = self;
        let secrets = request.secrets.clone();
        let shown = redact(&secrets, &request.url);
        let what = format!("{} {}", request.method, strip_query_secrets(&shown));
        let permit = gate.as_ref().map(Gate::enter);
        let answered = host.http(&request);
        drop(permit);
        let response = answered.map_err(|e| match e {
            // The host's own message names the URL already (redacted).
            PluginError::Retry {
                message,
                retry_after,
            } => PluginError::Retry {
                message: redact(&secrets, &message),
                retry_after,
            },
            other => other,
        })?;
        let response = Response {
            what,
            secrets,
            inner: response,
        };
        let status = response.status();
        if (200..400).contains(&status) || allowed.contains(&status) {
            return Ok(response);
        }
        let told = response.excerpt();
        let said = if told.is_empty() {
            String::new()
        } else {
            format!(": {told}")
        };
        let summary = format!("{} answered {}{said}", response.what, status_text(status));
        Err(match status {
            401 | 403 => {
                let message = format!(
                    "{} refused the credentials ({}); check that they are valid and allowed to do \
                     this{said}",
                    response.what,
                    status_text(status)
                );
                let issues = if credentials.is_empty() {
                    vec![ConfigIssue {
                        path: String::new(),
                        message,
                    }]
                } else {
                    credentials
                        .iter()
                        .map(|key| ConfigIssue {
                            path: key.clone(),
                            message: message.clone(),
                        })
                        .collect()
                };
                HttpError::Plugin(PluginError::Config(issues))
            }
            429 | 500..=599 => HttpError::Plugin(PluginError::Retry {
                message: if response.inner.attempts > 1 {
                    format!("{summary} (after {} attempts)", response.inner.attempts)
                } else {
                    summary
                },
                retry_after: response.retry_after(),
            }),
            400..=499 if client_errors == ClientErrors::RejectRecords => HttpError::Rejected {
                status,
                reason: format!("{}{said}", status_text(status)),
            },
            _ => HttpError::Plugin(PluginError::failed(summary)),
        })
    }
}

/// A vendor's answer.
#[derive(Clone)]
pub struct Response {
    /// `METHOD URL`, redacted, for messages.
    what: String,
    secrets: Vec<String>,
    inner: HttpResponse,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("request", &self.what)
            .field("status", &self.inner.status)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.inner.status
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.header(name)
    }

    /// The body, as text.
    pub fn text(&self) -> &str {
        &self.inner.body
    }

    /// Whether the body is empty (or only whitespace).
    pub fn is_empty(&self) -> bool {
        self.inner.body.trim().is_empty()
    }

    /// How many attempts the host made.
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The body decoded as `T`. A body that is not the expected JSON fails the job, with where
    /// it went wrong and the start of the body, so a changed vendor API is recognised at once.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let mut de = serde_json::Deserializer::from_str(&self.inner.body);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!(" at `{path}`")
            };
            PluginError::failed(format!(
                "{} answered JSON this plugin cannot read{at}: {}; the body starts: {}",
                self.what,
                redact(&self.secrets, &e.into_inner().to_string()),
                self.excerpt()
            ))
        })
    }

    /// The URL of a `Link` header's relation (`rel="next"`), as GitHub and Shopify page.
    pub fn link(&self, rel: &str) -> Option<String> {
        self.inner
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("link"))
            .flat_map(|(_, v)| v.split(','))
            .find_map(|part| {
                let (url, params) = part.trim().split_once(';')?;
                let wanted = params.split(';').any(|p| {
                    let p = p.trim().replace(' ', "");
                    p == format!("rel=\"{rel}\"") || p == format!("rel={rel}")
                });
                wanted.then(|| {
                    url.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                })
            })
    }

    /// The server's `Retry-After`: seconds or an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(self.header("retry-after")?)
    }

    /// The start of the body, on one line, secrets redacted: for messages.
    pub fn excerpt(&self) -> String {
        let flat: String = self
            .inner
            .body
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let flat = redact(&self.secrets, &flat);
        match flat.char_indices().nth(EXCERPT) {
            Some((cut, _)) => format!("{}…", &flat[..cut]),
            None => flat,
        }
    }

    /// The raw answer.
    pub fn into_inner(self) -> HttpResponse {
        self.inner
    }
}

/// Reads `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn status_text(status: u16) -> String {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    if reason.is_empty() {
        status.to_string()
    } else {
        format!("{status} {reason}")
    }
}

/// `text` with every secret replaced.
pub(crate) fn redact(secrets: &[String], text: &str) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
}

/// Hides the values of query parameters that carry credentials whatever their value.
fn strip_query_secrets(url: &str) -> String {
    const NAMES: &[&str] = &[
        "access_token",
        "api_key",
        "apikey",
        "key",
        "token",
        "secret",
        "client_secret",
        "password",
        "signature",
        "sig",
    ];
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if NAMES.contains(&k.to_ascii_lowercase().as_str()) => {
                format!("{k}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 (RFC 4648, padded): HTTP Basic here, SMTP AUTH in the smtp plugin; too
/// small a need for a dependency.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new(Host::detached(), "https://api.example.com/v1/")
    }

    #[test]
    fn paths_join_the_base_and_full_urls_replace_it() {
        let api = client();
        assert_eq!(
            api.get("/orders").as_http().url,
            "https://api.example.com/v1/orders"
        );
        assert_eq!(
            api.get("orders").as_http().url,
            "https://api.example.com/v1/orders"
        );
        assert_eq!(
            api.get("https://other.example.com/next?p=2").as_http().url,
            "https://other.example.com/next?p=2"
        );
    }

    #[test]
    fn query_parameters_are_encoded_and_appended_in_order() {
        let r = client()
            .get("/orders?status=open")
            .query("since", "2024-03-01T00:00:00+01:00")
            .query("q", "a b&c")
            .query_opt("cursor", None::<&str>);
        assert_eq!(
            r.as_http().url,
            "https://api.example.com/v1/orders?status=open&since=2024-03-01T00%3A00%3A00%2B01%3A00&q=a%20b%26c"
        );
    }

    #[test]
    fn credentials_are_headers_and_secrets_for_the_host() {
        let r = client()
            .bearer("/api_token", "tok_123456")
            .get("/x")
            .json(&serde_json::json!({"a": 1}))
            .unwrap();
        let http = r.as_http();
        assert!(
            http.headers
                .contains(&("Authorization".into(), "Bearer tok_123456".into()))
        );
        assert!(
            http.headers
                .contains(&("Content-Type".into(), "application/json".into()))
        );
        assert!(http.secrets.contains(&"tok_123456".to_owned()));
        assert_eq!(http.body.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn basic_auth_is_standard_base64() {
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let r = Response {
            what: String::new(),
            secrets: Vec::new(),
            inner: HttpResponse {
                status: 200,
                headers: vec![(
                    "link".into(),
                    r#"<https://x/p?page=1>; rel="prev", <https://x/p?page=3>; rel="next""#.into(),
                )],
                ..HttpResponse::default()
            },
        };
        assert_eq!(r.link("next").as_deref(), Some("https://x/p?page=3"));
        assert_eq!(r.link("last"), None);
    }

    #[test]
    fn json_errors_say_where_and_quote_the_body_without_secrets() {
        let r = Response {
            what: "GET https://x/orders".into(),
            secrets: vec!["sk_live_999".into()],
            inner: HttpResponse {
                status: 200,
                body: r#"{"orders": [{"id": 5, "token": "sk_live_999"}]}"#.into(),
                ..HttpResponse::default()
            },
        };
        #[derive(serde::Deserialize, Debug)]
        struct Orders {
            #[allow(dead_code)]
            orders: Vec<Order>,
        }
        #[derive(serde::Deserialize, Debug)]
        struct Order {
            #[allow(dead_code)]
            id: String,
        }
        let err = r.json::<Orders>().unwrap_err().to_string();
        assert!(err.contains("GET https://x/orders"), "{err}");
        assert!(err.contains("orders[0].id"), "{err}");
        assert!(
            err.contains("[REDACTED]") && !err.contains("sk_live_999"),
            "{err}"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
