//! Retrying a plugin call that answered "retry": a source's page, a destination's push.
//!
//! The HTTP service already retries single requests; this is the same policy one level up, for
//! a whole plugin call, so that a source's page and a destination's batch are retried alike
//! instead of one failing the run where the other would have been retried. The rules:
//!
//! - only [`CallError::Retry`] and [`CallError::TimedOut`] are retried; anything else (a config
//!   error, a failure, a panic, a protocol violation) comes back at once as
//!   [`RetryError::Fatal`];
//! - the plugin's `retry_after` is honoured; without one, the delay grows exponentially with
//!   jitter (`backon`);
//! - a `retry_after` longer than [`RetryPolicy::max_wait`] is not waited out: the call gives up
//!   at once with [`RetryError::Exhausted`] carrying that delay, so the job is rescheduled
//!   instead of holding a worker;
//! - cancellation ends any wait at once ([`RetryError::Cancelled`]);
//! - after [`RetryPolicy::max_attempts`], [`RetryError::Exhausted`] keeps the last error, whose
//!   message is the vendor's reason.
//!
//! A call that timed out leaves its [`AsyncInstance`](crate::AsyncInstance) abandoned (it answers
//! [`CallError::Poisoned`] from then on): a caller that retries timeouts opens a fresh instance
//! in the closure when the attempt number is above 1.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

use crate::error::CallError;

/// How often and how patiently to retry a plugin call.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First delay when the plugin gives none; doubles each attempt, plus jitter of up to as
    /// much again.
    pub base_delay: Duration,
    /// Longest delay (before jitter).
    pub max_delay: Duration,
    /// Longest `retry_after` waited out; a longer one gives up at once, carrying the delay.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Why a retried call gave up. Each variant says what the caller does next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryError {
    /// Waiting will not help (config, failure, panic, protocol): act on the error.
    #[error(transparent)]
    Fatal(CallError),
    /// Still failing after every attempt, or asked to wait longer than the policy waits:
    /// reschedule the job, after `retry_after` when known.
    #[error("gave up after {attempts} attempt{}: {last}", if *attempts == 1 { "" } else { "s" })]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// How long the plugin last asked to wait, when it said.
        retry_after: Option<Duration>,
        /// The last error: the vendor's reason.
        last: CallError,
    },
    /// The work was cancelled while waiting to retry.
    #[error("cancelled while waiting to retry")]
    Cancelled,
}

impl RetryError {
    /// The error as the plugin would have given it: the last one for `Exhausted`.
    pub fn into_call_error(self) -> CallError {
        match self {
            RetryError::Fatal(e) | RetryError::Exhausted { last: e, .. } => e,
            RetryError::Cancelled => CallError::Cancelled,
        }
    }
}

/// Runs `call` (given the attempt number, from 1) until it succeeds, fails for good, runs out of
/// attempts or is cancelled. See the module doc for the rules.
///
/// ```no_run
/// # async fn f(instance: cohort_plugin_host::AsyncInstance, cancel: tokio_util::sync::CancellationToken)
/// # -> Result<(), cohort_plugin_host::RetryError> {
/// use cohort_plugin_host::{RetryPolicy, retry};
/// use cohort_plugin_api::Order;
/// let page = retry(&RetryPolicy::default(), &cancel, |_| {
///     instance.next_page::<Order>(serde_json::Value::Null, 5_000)
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    cancel: &CancellationToken,
    mut call: F,
) -> Result<T, RetryError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(policy.base_delay)
        .with_max_delay(policy.max_delay)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(usize::try_from(max_attempts).unwrap_or(usize::MAX))
        .build();
    let mut attempt = 0;
    loop {
        attempt += 1;
        if cancel.is_cancelled() {
            return Err(RetryError::Cancelled);
        }
        let error = match call(attempt).await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_retryable() => e,
            Err(e) => return Err(RetryError::Fatal(e)),
        };
        let asked = match &error {
            CallError::Retry { retry_after, .. } => *retry_after,
            _ => None,
        };
        let too_long = asked.is_some_and(|d| d > policy.max_wait);
        if attempt >= max_attempts || too_long {
            return Err(RetryError::Exhausted {
                attempts: attempt,
                retry_after: asked,
                last: error,
            });
        }
        let delay = asked.unwrap_or_else(|| delays.next().unwrap_or(policy.max_delay));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return Err(RetryError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Instant;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_wait: Duration::from_secs(2),
        }
    }

    fn retry_err(message: &str, after: Option<Duration>) -> CallError {
        CallError::Retry {
            message: message.to_owned(),
            retry_after: after,
        }
    }

    #[tokio::test]
    async fn a_call_that_asks_to_retry_is_retried_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let got = retry(&quick(), &CancellationToken::new(), |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Err(retry_err("busy", None))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let started = Instant::now();
        let got = retry(&quick(), &CancellationToken::new(), |n| async move {
            if n == 1 {
                Err(retry_err("429", Some(Duration::from_millis(300))))
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(got, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(290));
    }

    #[tokio::test]
    async fn it_gives_up_after_the_last_attempt_with_the_vendors_reason() {
        let got: Result<(), _> = retry(&quick(), &CancellationToken::new(), |_| async {
            Err(retry_err("503 Service Unavailable: maintenance", None))
        })
        .await;
        let err = got.unwrap_err();
        assert!(
            matches!(err, RetryError::Exhausted { attempts: 3, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("maintenance"), "{err}");
        assert!(
            err.to_string().starts_with("gave up after 3 attempts"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_delay_longer_than_the_policy_waits_gives_up_at_once_and_carries_it() {
        let started = Instant::now();
        let hour = Duration::from_secs(3600);
        let got: Result<(), _> = retry(&quick(), &CancellationToken::new(), |_| async move {
            Err(retry_err("quota", Some(hour)))
        })
        .await;
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(matches!(
            got,
            Err(RetryError::Exhausted { attempts: 1, retry_after: Some(d), .. }) if d == hour
        ));
    }

    #[tokio::test]
    async fn errors_that_waiting_cannot_fix_come_back_at_once() {
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = retry(&quick(), &CancellationToken::new(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(CallError::Failed {
                    message: "bad request".into(),
                    details: serde_json::Value::Null,
                })
            }
        })
        .await;
        assert!(matches!(
            got,
            Err(RetryError::Fatal(CallError::Failed { .. }))
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn cancelling_ends_a_wait() {
        let cancel = CancellationToken::new();
        let canceller = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let started = Instant::now();
        let got: Result<(), _> = retry(&quick(), &cancel, |_| async {
            Err(retry_err("later", Some(Duration::from_secs(1))))
        })
        .await;
        assert_eq!(got, Err(RetryError::Cancelled));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
