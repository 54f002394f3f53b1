//! Why a run, or a step of one, failed, sorted by what the caller should do next.
//!
//! A CLI prints the message and picks an exit code; the daemon decides from the [`ErrorKind`]
//! whether to retry the run (and when), or to leave it failed until a person fixes the config.
//! The message reads like anyhow's `{:#}`: the outermost context first, each layer separated by
//! `: `, so "source `shop`: pulling orders: the access token was rejected" says where and why.
//!
//! Messages may quote what plugins and databases said; they pass through
//! [`cohort_config::mask`] before anything prints or stores them, so a secret that leaked into
//! one never leaves the process.

use std::fmt;
use std::time::Duration;

use cohort_plugin_host::{CallError, RetryError};
use cohort_store::StoreError;

/// What the caller should do about an [`EngineError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong (a plugin's config, a template, a segment, a missing secret):
    /// a person must fix it. Retrying the run as it is fails the same way.
    Config,
    /// A transient failure (a vendor or the database unavailable, a timeout): run again later,
    /// after `after` when the other side said how long.
    Retryable {
        /// How long to wait, when known.
        after: Option<Duration>,
    },
    /// The workspace is busy with another run; try again when that one has finished.
    Busy,
    /// Anything else: the run failed and retrying it unchanged is not expected to help.
    Fatal,
}

/// A failed run or step, with the context of what was being done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct EngineError {
    kind: ErrorKind,
    message: String,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl EngineError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
        }
    }

    /// The config is wrong.
    pub fn config(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::Config, message)
    }

    /// A transient failure.
    pub fn retryable(message: impl Into<String>, after: Option<Duration>) -> EngineError {
        EngineError::new(ErrorKind::Retryable { after }, message)
    }

    /// Any other failure.
    pub fn fatal(message: impl Into<String>) -> EngineError {
        EngineError::new(ErrorKind::Fatal, message)
    }

    /// What to do about it.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether running again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Retryable { .. } | ErrorKind::Busy)
    }

    /// The message, outermost context first.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, with `what` (what was being done) in front of its message.
    #[must_use]
    pub fn context(self, what: impl fmt::Display) -> EngineError {
        EngineError {
            kind: self.kind,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> EngineError {
        let kind = if e.is_retryable() {
            ErrorKind::Retryable { after: None }
        } else if matches!(e, StoreError::UnsupportedUrl { .. }) {
            ErrorKind::Config
        } else {
            ErrorKind::Fatal
        };
        EngineError::new(kind, e.to_string())
    }
}

impl From<CallError> for EngineError {
    fn from(e: CallError) -> EngineError {
        let kind = match &e {
            CallError::Config(_) => ErrorKind::Config,
            CallError::Retry { retry_after, .. } => ErrorKind::Retryable {
                after: *retry_after,
            },
            CallError::TimedOut(_) => ErrorKind::Retryable { after: None },
            _ => ErrorKind::Fatal,
        };
        EngineError::new(kind, e.to_string())
    }
}

impl From<RetryError> for EngineError {
    fn from(e: RetryError) -> EngineError {
        match e {
            RetryError::Fatal(e) => e.into(),
            RetryError::Exhausted {
                attempts,
                retry_after,
                last,
            } => EngineError::retryable(
                format!("still failing after {attempts} attempts: {last}"),
                retry_after,
            ),
            RetryError::Cancelled => EngineError::retryable("cancelled", None),
        }
    }
}

impl From<cohort_config::SecretError> for EngineError {
    fn from(e: cohort_config::SecretError) -> EngineError {
        EngineError::config(e.to_string())
    }
}

impl From<cohort_render::RenderError> for EngineError {
    fn from(e: cohort_render::RenderError) -> EngineError {
        EngineError::config(e.to_string())
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> EngineError {
        EngineError::fatal(e.to_string())
    }
}

/// The engine's result.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// `.context(..)` on any result whose error converts into an [`EngineError`], as with anyhow.
pub trait Context<T> {
    /// Adds what was being done to the error.
    fn context(self, what: impl fmt::Display) -> Result<T>;

    /// Adds what was being done, computed only on error.
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<EngineError>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }

    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.ok_or_else(|| EngineError::fatal(what.to_string()))
    }

    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| EngineError::fatal(what().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_goes_in_front_and_keeps_the_kind() {
        let e: Result<()> = Err(EngineError::retryable(
            "the vendor answered 503",
            Some(Duration::from_secs(5)),
        ));
        let e = e
            .context("pulling orders")
            .context("source `shop`")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "source `shop`: pulling orders: the vendor answered 503"
        );
        assert_eq!(
            e.kind(),
            ErrorKind::Retryable {
                after: Some(Duration::from_secs(5))
            }
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn plugin_config_errors_are_for_a_person_to_fix() {
        let e = EngineError::from(CallError::Config(Vec::new()));
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(!e.is_retryable());
        let timed_out = EngineError::from(CallError::TimedOut(Duration::from_secs(1)));
        assert!(timed_out.is_retryable());
    }
}
