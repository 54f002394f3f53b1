//! Retrying plugin calls that failed for a reason that may pass: the same rules for a source's
//! pages and a destination's batches.
//!
//! A call answered "retry" (a vendor's 429 or 5xx the plugin passed on, a timeout) is tried
//! again after the delay the other side asked for, or after an exponential backoff, up to
//! [`ATTEMPTS`] times; then the last error is returned with the vendor's reason, and the run
//! records it. Anything else fails at once.

use std::future::Future;
use std::time::Duration;

use cohort_plugin_host::CallError;

/// Attempts at one call, the first included.
pub(crate) const ATTEMPTS: u32 = 4;
/// Longest wait between attempts, whatever the other side asks: a run holding a worker must
/// not sleep for an hour; it fails as retryable instead and the next run tries again.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);
/// First wait when no delay was asked; doubles each attempt.
const BASE: Duration = Duration::from_millis(250);

/// How long to wait before attempt `attempt + 1`.
pub(crate) fn backoff(attempt: u32, asked: Option<Duration>) -> Duration {
    let doubling = BASE * 2u32.pow(attempt.min(8));
    asked.unwrap_or(doubling).min(MAX_WAIT)
}

/// Runs `call` until it succeeds, fails for good, or has failed [`ATTEMPTS`] times.
pub(crate) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                let asked = match &e {
                    CallError::Retry { retry_after, .. } => *retry_after,
                    _ => None,
                };
                tokio::time::sleep(backoff(attempt, asked)).await;
                attempt += 1;
            }
            Err(CallError::Retry {
                message,
                retry_after,
            }) if attempt > 1 => {
                return Err(CallError::Retry {
                    message: format!("still failing after {attempt} attempts: {message}"),
                    retry_after,
                });
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn the_wait_doubles_honours_what_was_asked_and_is_capped() {
        assert_eq!(backoff(1, None), Duration::from_millis(500));
        assert_eq!(backoff(2, None), Duration::from_secs(1));
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(backoff(1, Some(Duration::from_secs(3600))), MAX_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_retried_and_a_lasting_one_reported_with_its_reason() {
        let calls = AtomicU32::new(0);
        let ok = retrying(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(CallError::Retry {
                    message: "503".into(),
                    retry_after: None,
                })
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(ok, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let err = retrying(|| async {
            Err::<(), _>(CallError::Retry {
                message: "the vendor answered 503".into(),
                retry_after: Some(Duration::from_secs(1)),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "still failing after 4 attempts: the vendor answered 503 (retryable after 1s)"
        );

        let calls = AtomicU32::new(0);
        let fatal = retrying(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(CallError::Failed {
                message: "bad".into(),
                details: serde_json::Value::Null,
            })
        })
        .await;
        assert!(fatal.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a lasting failure is not retried"
        );
    }
}
