//! HTTP for plugins, with the host's reliability rules: one [`HttpService`] per process.
//!
//! Every connector that talks to a vendor API needs the same things: a timeout on every request,
//! retries on 429 and 5xx that honour `Retry-After`, a rate limit per vendor account, a cap on
//! what a response may weigh, and secrets kept out of logs. Doing them once here means a plugin
//! gets them by asking the host (`HostVtable::http`) instead of linking an HTTP stack of its own,
//! and an agency running many workspaces gets one consistent behaviour.
//!
//! **One service, shared.** A process builds one `HttpService` and hands clones of it to every
//! plugin instance (sources and destinations, every campaign and workspace). Its token buckets
//! (`governor`) are keyed by *account*: the plugin, plus the request's `account` when the plugin
//! names one, else a hash of the request's credentials (its `Authorization`-like headers and
//! secret query parameters), else the URL's host. Two campaigns pushing to the same Mailchimp
//! key therefore share one limit, whatever workspace they run in.
//!
//! **Limits.** A bucket's limit is the policy's default, unless the instance's
//! [`HostServices::rate_limit`](crate::HostServices::rate_limit) sets one (a destination's
//! `rate_limit` in the config), or the request asks for one (`HttpRequest::rate_limit`: a plugin
//! that knows its vendor's limit for the account, a tier in its config; the instance's wins). A
//! configured limit replaces the default; when two instances
//! configure different limits for one account, the stricter wins, because the vendor's limit is
//! per account whoever asks.
//!
//! **Connections.** A request that names its vendor's limit of simultaneous requests
//! (`HttpRequest::connections`: Mailchimp allows 10 per account) waits for a place among the
//! account's requests in flight, keyed like the buckets, so every instance on the account
//! shares one cap (`connections.rs` says why the host keeps it). The place is held only while
//! the attempt is on the wire.
//!
//! **Retries.** A 429 is always retried (the server did not process the request); a 5xx, a
//! timeout or a connection error only when the request is safe to repeat (`retry`, which defaults
//! to true for GET, HEAD, PUT, DELETE, OPTIONS). Delays come from `backon` (exponential, with
//! jitter) unless the server sends `Retry-After`. A `Retry-After` longer than
//! [`HttpPolicy::max_retry_after`] is not waited out: the response goes back to the plugin, which
//! fails the call as retryable with that delay, instead of holding a worker. Cancellation
//! (`tokio_util`'s `CancellationToken`) stops a request, a rate-limit wait or a retry wait at once.
//!
//! **Bodies.** A response larger than [`HttpPolicy::max_body_bytes`] is an error that says so,
//! never a silently cut body.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use cohort_plugin_api::sdk::Level;
use cohort_plugin_api::wire::{HttpRequest, HttpResponse};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_128;

use crate::connections::Caps;
use crate::redact::Redactor;
use crate::services::LogSink;

/// The host's HTTP rules. [`HttpPolicy::default`] suits vendor APIs.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Timeout of one attempt, unless the request sets `timeout_ms`.
    pub timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay when the server gives no `Retry-After`; doubles each attempt, plus
    /// jitter of up to as much again.
    pub base_backoff: Duration,
    /// Longest backoff delay (before jitter).
    pub max_backoff: Duration,
    /// Longest `Retry-After` the host waits out; longer ones go back to the plugin.
    pub max_retry_after: Duration,
    /// Requests per second per account when the instance configures none; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
    /// Largest response body accepted; a larger one is an error.
    pub max_body_bytes: usize,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            timeout: Duration::from_secs(30),
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            rate_limit: Some(RateLimit {
                per_second: 10.0,
                burst: 10,
            }),
            max_body_bytes: 64 << 20,
        }
    }
}

/// A token-bucket rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

impl RateLimit {
    fn quota(self) -> Quota {
        let per_second = if self.per_second.is_finite() && self.per_second > 0.0 {
            self.per_second
        } else {
            1e-3
        };
        let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }

    /// Whether `self` allows fewer requests than `other`.
    fn stricter_than(self, other: RateLimit) -> bool {
        (self.per_second, self.burst) < (other.per_second, other.burst)
    }
}

/// Why an HTTP request got no response. Each variant says what the plugin is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request itself is wrong (bad URL, method, header): a failure, retrying will not help.
    #[error("invalid HTTP request: {0}")]
    Invalid(String),
    /// No answer within the timeout, after every allowed attempt: retryable later.
    #[error("{0}")]
    TimedOut(String),
    /// Connection failures and the like, after every allowed attempt: retryable later.
    #[error("{0}")]
    Transport(String),
    /// The answer is larger than the host accepts: a failure; the plugin must ask for less (a
    /// smaller page), or the operator raise `max_body_bytes`.
    #[error(
        "{what}: the response body is larger than the {limit} bytes the host accepts \
         (max_body_bytes); ask for smaller pages"
    )]
    TooLarge {
        /// `METHOD URL`, redacted.
        what: String,
        /// The limit in force.
        limit: usize,
    },
    /// The host cancelled the work.
    #[error("cancelled")]
    Cancelled,
}

/// What one call needs besides the request: who asks, what to hide, where to log.
pub struct CallContext<'a> {
    /// Plugin name (part of the rate-limit bucket, and a log field).
    pub plugin: &'a str,
    /// Secrets to hide from logs and errors.
    pub redactor: &'a Redactor,
    /// Where to log.
    pub log: &'a dyn LogSink,
    /// Stops the request, and any wait, early.
    pub cancel: &'a CancellationToken,
    /// The instance's configured limit for its account, instead of the policy's default.
    pub rate_limit: Option<RateLimit>,
}

impl std::fmt::Debug for CallContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("plugin", &self.plugin)
            .field("rate_limit", &self.rate_limit)
            .finish_non_exhaustive()
    }
}

/// The host's HTTP client, shared by every plugin instance of a process.
#[derive(Clone, Debug)]
pub struct HttpService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    runtime: Runtime,
    policy: HttpPolicy,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Per account, like `buckets`: the requests in flight, for accounts whose requests name
    /// a limit (`HttpRequest::connections`).
    caps: Caps,
}

#[derive(Debug)]
struct Bucket {
    limit: RateLimit,
    /// Whether an instance configured the limit (else it is the policy's default).
    configured: bool,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl Bucket {
    fn new(limit: RateLimit, configured: bool) -> Bucket {
        Bucket {
            limit,
            configured,
            limiter: Arc::new(RateLimiter::direct(limit.quota())),
        }
    }
}

#[derive(Debug)]
enum Runtime {
    Owned(Option<tokio::runtime::Runtime>),
    Borrowed(tokio::runtime::Handle),
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code: let it wind down alone.
        if let Runtime::Owned(rt) = self
            && let Some(rt) = rt.take()
        {
            rt.shutdown_background();
        }
    }
}

impl HttpService {
    /// A service with its own small runtime (one worker thread), for processes that have none
    /// (the CLI, tests). A process normally builds one and clones it; see [`shared`](Self::shared).
    pub fn new(policy: HttpPolicy) -> Result<HttpService, HttpError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cohort-plugin-http")
            .enable_all()
            .build()
            .map_err(|e| HttpError::Invalid(format!("starting the HTTP runtime: {e}")))?;
        HttpService::build(policy, Runtime::Owned(Some(rt)))
    }

    /// A service that runs on an existing runtime (the daemon's).
    pub fn with_runtime(
        policy: HttpPolicy,
        handle: tokio::runtime::Handle,
    ) -> Result<HttpService, HttpError> {
        HttpService::build(policy, Runtime::Borrowed(handle))
    }

    /// The process's service with the default policy and its own runtime, made on first use:
    /// what the CLI's checks and the conformance kit hand plugins. A daemon builds its own on
    /// its runtime with [`with_runtime`](Self::with_runtime) instead, once.
    pub fn shared() -> Result<HttpService, HttpError> {
        static SHARED: OnceLock<Result<HttpService, HttpError>> = OnceLock::new();
        SHARED
            .get_or_init(|| HttpService::new(HttpPolicy::default()))
            .clone()
    }

    fn build(policy: HttpPolicy, runtime: Runtime) -> Result<HttpService, HttpError> {
        // One TLS stack for the whole process: rustls on ring. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("cohort/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| HttpError::Invalid(format!("building the HTTP client: {e}")))?;
        Ok(HttpService {
            inner: Arc::new(Inner {
                client,
                runtime,
                policy,
                buckets: Mutex::new(HashMap::new()),
                caps: Caps::default(),
            }),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &HttpPolicy {
        &self.inner.policy
    }

    /// Performs a request from a thread that may block (a plugin call runs on one).
    pub fn execute_blocking(
        &self,
        request: HttpRequest,
        cx: &CallContext<'_>,
    ) -> Result<HttpResponse, HttpError> {
        let handle = match &self.inner.runtime {
            Runtime::Owned(Some(rt)) => rt.handle().clone(),
            Runtime::Owned(None) => {
                return Err(HttpError::Transport(
                    "the HTTP runtime is shut down".to_owned(),
                ));
            }
            Runtime::Borrowed(h) => h.clone(),
        };
        let fut = self.execute(request, cx);
        match tokio::runtime::Handle::try_current() {
            Err(_) => handle.block_on(fut),
            Ok(current) if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| handle.block_on(fut))
            }
            Ok(_) => Err(HttpError::Invalid(
                "plugin HTTP was called on a single-threaded async runtime; run plugin calls with spawn_blocking"
                    .to_owned(),
            )),
        }
    }

    /// Performs a request: rate limit, timeout, retries, body limit, redaction.
    pub async fn execute(
        &self,
        request: HttpRequest,
        cx: &CallContext<'_>,
    ) -> Result<HttpResponse, HttpError> {
        let policy = &self.inner.policy;
        let method_name = if request.method.is_empty() {
            "GET".to_owned()
        } else {
            request.method.to_ascii_uppercase()
        };
        let method = reqwest::Method::from_bytes(method_name.as_bytes())
            .map_err(|_| HttpError::Invalid(format!("unknown method `{method_name}`")))?;
        let redactor = cx.redactor.with(
            request
                .secrets
                .iter()
                .cloned()
                .chain(Redactor::header_secrets(&request.headers)),
        );
        let shown_url = redactor.redact_url(&request.url);
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| HttpError::Invalid(format!("bad URL {shown_url}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::Invalid(format!(
                "only http and https URLs are allowed, not {shown_url}"
            )));
        }
        let safe = matches!(
            method_name.as_str(),
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS"
        );
        let retry_allowed = request.retry.unwrap_or(safe);
        let timeout = request
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(policy.timeout);
        let what = format!("{method_name} {shown_url}");
        let account = bucket_key(cx.plugin, &request, &url);
        let limiter = self.bucket(&account, limit_for(cx.rate_limit, &request));
        let cap = request
            .connections
            .map(|limit| self.inner.caps.get(&account, limit));
        let max_attempts = policy.max_attempts.max(1);
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(policy.base_backoff)
            .with_max_delay(policy.max_backoff)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(usize::try_from(max_attempts).unwrap_or(usize::MAX))
            .build();

        let mut attempt = 0;
        loop {
            attempt += 1;
            if cx.cancel.is_cancelled() {
                return Err(HttpError::Cancelled);
            }
            // A place among the account's requests in flight first, then a token: a token is
            // spent only when the request can go at once, so the pacing stays true. The place
            // is given back when the answer is read, before any wait to retry.
            let place = match &cap {
                Some(cap) => tokio::select! {
                    place = cap.enter() => Some(place),
                    () = cx.cancel.cancelled() => return Err(HttpError::Cancelled),
                },
                None => None,
            };
            if let Some(limiter) = &limiter {
                wait_for(limiter, cx.cancel).await?;
            }
            let mut builder = self
                .inner
                .client
                .request(method.clone(), url.clone())
                .timeout(timeout);
            for (k, v) in &request.headers {
                builder = builder.header(k.as_str(), v.as_str());
            }
            if let Some(body) = &request.body {
                builder = builder.body(body.clone());
            }
            cx.log.log(
                cx.plugin,
                Level::Debug,
                "HTTP request",
                &json!({"method": method_name, "url": shown_url, "attempt": attempt}),
            );
            let started = Instant::now();
            let answer = tokio::select! {
                answer = attempt_once(builder, policy.max_body_bytes) => answer,
                () = cx.cancel.cancelled() => return Err(HttpError::Cancelled),
            };
            drop(place);
            let last = attempt >= max_attempts;
            match answer {
                Answer::TooLarge => {
                    let e = HttpError::TooLarge {
                        what,
                        limit: policy.max_body_bytes,
                    };
                    cx.log.log(
                        cx.plugin,
                        Level::Warn,
                        "HTTP response too large",
                        &json!({"error": e.to_string()}),
                    );
                    return Err(e);
                }
                Answer::Response(mut response) => {
                    response.attempts = attempt;
                    let status = response.status;
                    let retryable = status == 429 || (status >= 500 && retry_allowed);
                    if !retryable || last {
                        cx.log.log(
                            cx.plugin,
                            Level::Debug,
                            "HTTP response",
                            &json!({"method": method_name, "url": shown_url, "status": status,
                                    "attempts": attempt, "ms": millis(started.elapsed())}),
                        );
                        return Ok(response);
                    }
                    let delay = match response.header("retry-after").and_then(parse_retry_after) {
                        Some(d) if d > policy.max_retry_after => {
                            cx.log.log(
                                cx.plugin,
                                Level::Warn,
                                "Server asks to retry later than the host waits; handing the response to the plugin",
                                &json!({"url": shown_url, "status": status, "retry_after_s": d.as_secs()}),
                            );
                            return Ok(response);
                        }
                        Some(d) => d,
                        None => delays.next().unwrap_or(policy.max_backoff),
                    };
                    cx.log.log(
                        cx.plugin,
                        Level::Warn,
                        "Retrying HTTP request",
                        &json!({"method": method_name, "url": shown_url, "status": status,
                                "attempt": attempt, "wait_ms": millis(delay)}),
                    );
                    sleep(delay, cx.cancel).await?;
                }
                Answer::Failed(e) => {
                    let how = if e.is_timeout() {
                        format!("timed out after {timeout:?}")
                    } else if e.is_connect() {
                        "could not connect".to_owned()
                    } else {
                        "failed".to_owned()
                    };
                    let detail = redactor.redact(&error_chain(&e)).into_owned();
                    let message =
                        format!("{what} {how} (attempt {attempt} of {max_attempts}): {detail}");
                    if !retry_allowed || last {
                        cx.log.log(
                            cx.plugin,
                            Level::Warn,
                            "HTTP request failed",
                            &json!({"error": message}),
                        );
                        return Err(if e.is_timeout() {
                            HttpError::TimedOut(message)
                        } else {
                            HttpError::Transport(message)
                        });
                    }
                    let delay = delays.next().unwrap_or(policy.max_backoff);
                    cx.log.log(
                        cx.plugin,
                        Level::Warn,
                        "Retrying HTTP request",
                        &json!({"error": message, "wait_ms": millis(delay)}),
                    );
                    sleep(delay, cx.cancel).await?;
                }
            }
        }
    }

    /// The limiter of a bucket, made on first use; `None` when no limit applies.
    fn bucket(
        &self,
        key: &str,
        configured: Option<RateLimit>,
    ) -> Option<Arc<DefaultDirectRateLimiter>> {
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match (buckets.get_mut(key), configured) {
            (Some(b), Some(limit)) if !b.configured || limit.stricter_than(b.limit) => {
                *b = Bucket::new(limit, true);
                Some(b.limiter.clone())
            }
            (Some(b), _) => Some(b.limiter.clone()),
            (None, _) => {
                let limit = configured.or(self.inner.policy.rate_limit)?;
                let b = Bucket::new(limit, configured.is_some());
                let limiter = b.limiter.clone();
                buckets.insert(key.to_owned(), b);
                Some(limiter)
            }
        }
    }

    /// How long a request to bucket `key` would wait now (taking a token when it would not).
    #[cfg(test)]
    fn wait_time(&self, key: &str, configured: Option<RateLimit>) -> Duration {
        let Some(limiter) = self.bucket(key, configured) else {
            return Duration::ZERO;
        };
        match limiter.check() {
            Ok(()) => Duration::ZERO,
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        }
    }
}

/// The limit a request's bucket is configured with: the instance's (a destination's
/// `rate_limit`), else the one the plugin asks for (a vendor tier it knows), else none (the
/// policy's default applies).
fn limit_for(instance: Option<RateLimit>, request: &HttpRequest) -> Option<RateLimit> {
    instance.or_else(|| {
        request.rate_limit.map(|r| RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        })
    })
}

/// The rate-limit bucket of a request: the plugin and its account (see the module doc). The
/// credential is hashed, never kept as text.
fn bucket_key(plugin: &str, request: &HttpRequest, url: &reqwest::Url) -> String {
    if let Some(account) = &request.account {
        return format!("{plugin}\0account\0{account}");
    }
    let mut credentials: Vec<&str> = request
        .headers
        .iter()
        .filter(|(name, _)| Redactor::is_secret_header(name))
        .map(|(_, value)| value.as_str())
        .collect();
    let query: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| Redactor::is_secret_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    credentials.extend(query.iter().map(|(_, v)| v.as_str()));
    if credentials.is_empty() {
        let host = url.host_str().unwrap_or("");
        let port = url.port_or_known_default().unwrap_or(0);
        return format!("{plugin}\0host\0{host}:{port}");
    }
    credentials.sort_unstable();
    format!(
        "{plugin}\0credential\0{:032x}",
        xxh3_128(credentials.join("\n").as_bytes())
    )
}

/// Waits for a token of `limiter`, or for cancellation.
async fn wait_for(
    limiter: &DefaultDirectRateLimiter,
    cancel: &CancellationToken,
) -> Result<(), HttpError> {
    let clock = DefaultClock::default();
    loop {
        match limiter.check() {
            Ok(()) => return Ok(()),
            Err(not_until) => sleep(not_until.wait_time_from(clock.now()), cancel).await?,
        }
    }
}

enum Answer {
    Response(HttpResponse),
    TooLarge,
    Failed(reqwest::Error),
}

/// Sends once and reads the answer, refusing a body over `limit` bytes.
async fn attempt_once(builder: reqwest::RequestBuilder, limit: usize) -> Answer {
    let mut resp = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Answer::Failed(e),
    };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Answer::TooLarge;
    }
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > limit => return Answer::TooLarge,
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) => return Answer::Failed(e),
        }
    }
    Answer::Response(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        attempts: 0,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    cohort_plugin_api::sdk::http::parse_retry_after(value)
}

/// Sleeps `total`, or until `cancel` fires.
pub(crate) async fn sleep(total: Duration, cancel: &CancellationToken) -> Result<(), HttpError> {
    tokio::select! {
        () = tokio::time::sleep(total) => Ok(()),
        () = cancel.cancelled() => Err(HttpError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(rate_limit: Option<RateLimit>) -> HttpService {
        HttpService::new(HttpPolicy {
            rate_limit,
            ..HttpPolicy::default()
        })
        .unwrap()
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_spaces_requests() {
        let svc = service(Some(RateLimit {
            per_second: 10.0,
            burst: 2,
        }));
        assert_eq!(svc.wait_time("a", None), Duration::ZERO);
        assert_eq!(svc.wait_time("a", None), Duration::ZERO);
        let third = svc.wait_time("a", None);
        assert!(
            third > Duration::from_millis(80) && third <= Duration::from_millis(100),
            "{third:?}"
        );
        // Another account has its own bucket.
        assert_eq!(svc.wait_time("b", None), Duration::ZERO);
    }

    #[test]
    fn a_configured_limit_replaces_the_default_and_the_stricter_of_two_wins() {
        let svc = service(Some(RateLimit {
            per_second: 1.0,
            burst: 1,
        }));
        let fast = RateLimit {
            per_second: 1000.0,
            burst: 1,
        };
        assert_eq!(svc.wait_time("a", None), Duration::ZERO);
        // The default bucket is spent, but an instance configured a faster limit for the account.
        assert!(svc.wait_time("a", Some(fast)) < Duration::from_millis(5));
        let slow = RateLimit {
            per_second: 0.5,
            burst: 1,
        };
        assert_eq!(svc.wait_time("a", Some(slow)), Duration::ZERO);
        // A later, looser configuration does not loosen the account's limit.
        assert!(svc.wait_time("a", Some(fast)) > Duration::from_millis(1500));
        // Without a configured limit, an instance shares the account's bucket as it is.
        assert!(svc.wait_time("a", None) > Duration::from_millis(1500));
    }

    #[test]
    fn a_limit_the_request_asks_for_applies_unless_the_instance_configured_one() {
        let asked = HttpRequest {
            rate_limit: Some(cohort_plugin_api::wire::RateLimit {
                per_second: 19.0,
                burst: 9,
            }),
            ..HttpRequest::default()
        };
        let mine = RateLimit {
            per_second: 2.0,
            burst: 1,
        };
        assert_eq!(
            limit_for(None, &asked),
            Some(RateLimit {
                per_second: 19.0,
                burst: 9
            })
        );
        assert_eq!(limit_for(Some(mine), &asked), Some(mine));
        assert_eq!(limit_for(None, &HttpRequest::default()), None);
        // Asked for, it replaces the default like a configured limit: 0.5/s after a burst of 1.
        let svc = service(Some(RateLimit {
            per_second: 1000.0,
            burst: 100,
        }));
        let slow = limit_for(
            None,
            &HttpRequest {
                rate_limit: Some(cohort_plugin_api::wire::RateLimit {
                    per_second: 0.5,
                    burst: 1,
                }),
                ..HttpRequest::default()
            },
        );
        assert_eq!(svc.wait_time("a", slow), Duration::ZERO);
        assert!(svc.wait_time("a", slow) > Duration::from_millis(1500));
    }

    #[test]
    fn buckets_are_keyed_by_account_else_credential_else_host() {
        let url = reqwest::Url::parse("https://api.example.com/v1?page=2").unwrap();
        let with = |headers: Vec<(&str, &str)>, account: Option<&str>| HttpRequest {
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            account: account.map(str::to_owned),
            ..HttpRequest::default()
        };
        let a = bucket_key(
            "p",
            &with(vec![("Authorization", "Bearer one")], None),
            &url,
        );
        let b = bucket_key(
            "p",
            &with(vec![("Authorization", "Bearer two")], None),
            &url,
        );
        let a2 = bucket_key(
            "p",
            &with(vec![("Authorization", "Bearer one"), ("Accept", "x")], None),
            &url,
        );
        assert_ne!(a, b, "two credentials, two accounts");
        assert_eq!(a, a2, "other headers do not matter");
        assert!(!a.contains("one"), "the credential is hashed: {a:?}");
        assert_ne!(
            a,
            bucket_key(
                "q",
                &with(vec![("Authorization", "Bearer one")], None),
                &url
            )
        );
        assert_eq!(
            bucket_key("p", &with(vec![], Some("shop-1")), &url),
            "p\0account\0shop-1"
        );
        assert_eq!(
            bucket_key("p", &with(vec![], None), &url),
            "p\0host\0api.example.com:443"
        );
        let keyed = reqwest::Url::parse("https://api.example.com/v1?api_key=zzz").unwrap();
        assert!(bucket_key("p", &with(vec![], None), &keyed).contains("credential"));
    }
}
