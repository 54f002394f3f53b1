//! HTTP for plugins, with the host's reliability rules.
//!
//! Every connector that talks to a vendor API needs the same things: a timeout on every request,
//! retries on 429 and 5xx that honour `Retry-After`, a rate limit per plugin and account, and
//! secrets kept out of logs. Doing them once here means a plugin gets them by asking the host
//! (`HostVtable::http`) instead of linking an HTTP stack of its own, and an agency running many
//! workspaces gets one consistent behaviour.
//!
//! Retries: a 429 is always retried (the server did not process the request); a 5xx, a timeout
//! or a connection error only when the request is safe to repeat (`retry`, which defaults to
//! true for GET, HEAD, PUT, DELETE, OPTIONS). A `Retry-After` longer than
//! [`HttpPolicy::max_retry_after`] is not waited out: the response goes back to the plugin,
//! which can fail the job as retryable with that delay, instead of holding a worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_plugin_api::sdk::Level;
use cohort_plugin_api::wire::{HttpRequest, HttpResponse};
use serde_json::json;

use crate::redact::Redactor;
use crate::services::{CancelToken, LogSink};

/// The host's HTTP rules. [`HttpPolicy::default`] suits vendor APIs.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Timeout of one attempt, unless the request sets `timeout_ms`.
    pub timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff delay when the server gives no `Retry-After`; doubles each attempt.
    pub base_backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
    /// Longest `Retry-After` the host waits out; longer ones go back to the plugin.
    pub max_retry_after: Duration,
    /// Requests per second per plugin and account, with a burst; `None` for no limit.
    pub rate_limit: Option<RateLimit>,
    /// Largest response body accepted.
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

/// Why an HTTP request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request itself is wrong (bad URL, method, header); retrying will not help.
    #[error("invalid HTTP request: {0}")]
    Invalid(String),
    /// No answer within the timeout, after every allowed attempt.
    #[error("{0}")]
    TimedOut(String),
    /// Connection failures and the like, after every allowed attempt.
    #[error("{0}")]
    Transport(String),
    /// The host cancelled the work.
    #[error("cancelled")]
    Cancelled,
}

/// What one call needs besides the request: who asks, what to hide, where to log.
pub struct CallContext<'a> {
    /// Plugin name (rate-limit bucket and log field).
    pub plugin: &'a str,
    /// Secrets to hide from logs and errors.
    pub redactor: &'a Redactor,
    /// Where to log.
    pub log: &'a dyn LogSink,
    /// Stops retries and waits early.
    pub cancel: &'a CancelToken,
}

impl std::fmt::Debug for CallContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("plugin", &self.plugin)
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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl HttpService {
    /// A service with its own small runtime (one worker thread), for processes that have none
    /// (the CLI, tests).
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
            Runtime::Owned(rt) => match rt {
                Some(rt) => rt.handle().clone(),
                None => {
                    return Err(HttpError::Transport(
                        "the HTTP runtime is shut down".to_owned(),
                    ));
                }
            },
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

    /// Performs a request: rate limit, timeout, retries, redaction.
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
        let bucket = format!(
            "{}\u{0}{}",
            cx.plugin,
            request.account.as_deref().unwrap_or("")
        );
        let max_attempts = policy.max_attempts.max(1);

        let mut attempt = 0;
        loop {
            attempt += 1;
            if cx.cancel.is_cancelled() {
                return Err(HttpError::Cancelled);
            }
            let wait = self.reserve(&bucket);
            if !wait.is_zero() {
                sleep(wait, cx.cancel).await?;
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
            let outcome = match builder.send().await {
                Ok(resp) => read_response(resp, policy.max_body_bytes).await,
                Err(e) => Err(e),
            };
            let last = attempt >= max_attempts;
            match outcome {
                Ok(mut response) => {
                    response.attempts = attempt;
                    let status = response.status;
                    let retryable = status == 429 || (status >= 500 && retry_allowed);
                    if !retryable || last {
                        cx.log.log(
                            cx.plugin,
                            Level::Debug,
                            "HTTP response",
                            &json!({"method": method_name, "url": shown_url, "status": status,
                                    "attempts": attempt, "ms": started.elapsed().as_millis() as u64}),
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
                        None => self.backoff(attempt),
                    };
                    cx.log.log(
                        cx.plugin,
                        Level::Warn,
                        "Retrying HTTP request",
                        &json!({"method": method_name, "url": shown_url, "status": status,
                                "attempt": attempt, "wait_ms": delay.as_millis() as u64}),
                    );
                    sleep(delay, cx.cancel).await?;
                }
                Err(e) => {
                    let what = if e.is_timeout() {
                        format!("timed out after {timeout:?}")
                    } else if e.is_connect() {
                        "could not connect".to_owned()
                    } else {
                        "failed".to_owned()
                    };
                    let detail = redactor.redact(&error_chain(&e)).into_owned();
                    let message = format!(
                        "{method_name} {shown_url} {what} (attempt {attempt} of {max_attempts}): {detail}"
                    );
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
                    let delay = self.backoff(attempt);
                    cx.log.log(
                        cx.plugin,
                        Level::Warn,
                        "Retrying HTTP request",
                        &json!({"error": message, "wait_ms": delay.as_millis() as u64}),
                    );
                    sleep(delay, cx.cancel).await?;
                }
            }
        }
    }

    /// Takes a token from the bucket, returning how long to wait for it.
    fn reserve(&self, bucket: &str) -> Duration {
        let Some(limit) = self.inner.policy.rate_limit else {
            return Duration::ZERO;
        };
        let rate = limit.per_second.max(1e-6);
        let burst = f64::from(limit.burst.max(1));
        let now = Instant::now();
        let mut buckets = self.inner.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(bucket.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let p = &self.inner.policy;
        let exp = p.base_backoff.saturating_mul(1u32 << (attempt - 1).min(16));
        let capped = exp.min(p.max_backoff);
        // Up to 25% jitter, so instances that failed together do not retry together.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let jitter = capped.mul_f64(f64::from(nanos % 1000) / 4000.0);
        capped + jitter
    }
}

async fn read_response(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<HttpResponse, reqwest::Error> {
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
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        attempts: 0,
    })
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

async fn sleep(total: Duration, cancel: &CancelToken) -> Result<(), HttpError> {
    let deadline = Instant::now() + total;
    loop {
        if cancel.is_cancelled() {
            return Err(HttpError::Cancelled);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_spaces_requests() {
        let svc = HttpService::new(HttpPolicy {
            rate_limit: Some(RateLimit {
                per_second: 10.0,
                burst: 2,
            }),
            ..HttpPolicy::default()
        })
        .unwrap();
        assert_eq!(svc.reserve("a"), Duration::ZERO);
        assert_eq!(svc.reserve("a"), Duration::ZERO);
        let third = svc.reserve("a");
        assert!(
            third > Duration::from_millis(80) && third <= Duration::from_millis(100),
            "{third:?}"
        );
        // Another account has its own bucket.
        assert_eq!(svc.reserve("b"), Duration::ZERO);
    }
}
