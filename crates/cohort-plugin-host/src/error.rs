//! Errors, grouped by what the caller should do: fix the plugin file, fix the config, retry
//! later, or give up on this job.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cohort_plugin_api::wire::{ConfigIssue, ErrorBody, ErrorKind};
use serde_json::Value;

/// Why a plugin file could not be loaded. The file itself must change (rebuild, reinstall).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file.
    #[error("cannot load plugin {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the loader said.
        source: libloading::Error,
    },
    /// The library does not export `cohort_plugin_entry`.
    #[error("{} is not a Cohort plugin: it does not export `cohort_plugin_entry`", path.display())]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// The entry point returned null: the plugin refuses this host.
    #[error("plugin {} refused to work with this host (ABI {host_major}.{host_minor}): its entry point returned null", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// This host's ABI major version.
        host_major: u32,
        /// This host's ABI minor version.
        host_minor: u32,
    },
    /// The plugin speaks another major version of the ABI.
    #[error(
        "plugin {} was built for Cohort plugin ABI {plugin_major}.{plugin_minor}, but this cohort speaks ABI {host_major}.{host_minor}; rebuild the plugin against cohort-plugin-api {host_major}.x (or use a cohort that speaks ABI {plugin_major})",
        path.display()
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI major version.
        plugin_major: u32,
        /// The plugin's ABI minor version.
        plugin_minor: u32,
        /// This host's ABI major version.
        host_major: u32,
        /// This host's ABI minor version.
        host_minor: u32,
    },
    /// The vtable is smaller than ABI 1.0's: corrupt, or built against a broken header.
    #[error("plugin {} declares a {size}-byte vtable, smaller than the {min} bytes of ABI 1.0; it was built against a broken header", path.display())]
    VtableTooSmall {
        /// The file.
        path: PathBuf,
        /// The size it declares.
        size: usize,
        /// The least a v1 plugin may declare.
        min: usize,
    },
    /// The manifest could not be obtained.
    #[error("plugin {} failed to describe itself: {source}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: CallError,
    },
    /// The manifest breaks the ABI's rules.
    #[error("plugin {} has an invalid manifest: {}", path.display(), problems.join("; "))]
    BadManifest {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The config is wrong; the user must fix it.
    #[error("invalid config: {}", ConfigIssues(.0))]
    Config(Vec<ConfigIssue>),
    /// The job failed; retrying as is will not help.
    #[error("{message}")]
    Failed {
        /// The plugin's message.
        message: String,
        /// Extra details for the run record.
        details: Value,
    },
    /// A transient failure: try again later.
    #[error("{message} (retryable{})", retry_after.map(|d| format!(" after {d:?}")).unwrap_or_default())]
    Retry {
        /// The plugin's message.
        message: String,
        /// How long to wait, when known.
        retry_after: Option<Duration>,
    },
    /// The plugin panicked; the panic was contained at the boundary.
    #[error("{message}")]
    Panicked {
        /// The panic message, with its location when known.
        message: String,
    },
    /// The plugin does not support what was asked.
    #[error("{0}")]
    Unsupported(String),
    /// The saved cursor could not be used.
    #[error("{0}")]
    BadCursor(String),
    /// The work was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The call took longer than allowed; the instance is abandoned.
    #[error("the plugin did not answer within {0:?}")]
    TimedOut(Duration),
    /// The plugin broke the protocol (unreadable JSON, wrong outcomes).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The instance panicked or timed out earlier and cannot be used again.
    #[error("this plugin instance is unusable after an earlier failure: {0}")]
    Poisoned(String),
}

impl CallError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Retry { .. } | CallError::TimedOut(_))
    }

    /// Whether the user must change the config.
    pub fn is_config(&self) -> bool {
        matches!(self, CallError::Config(_))
    }

    /// Reads a plugin's error status and body.
    pub(crate) fn from_status(status: i32, bytes: &[u8]) -> CallError {
        let body: ErrorBody = match serde_json::from_slice(bytes) {
            Ok(b) => b,
            Err(_) => ErrorBody {
                message: String::from_utf8_lossy(bytes).into_owned(),
                ..ErrorBody::default()
            },
        };
        let message = if body.message.is_empty() {
            "the plugin gave no message".to_owned()
        } else {
            body.message
        };
        match status {
            cohort_plugin_api::abi::STATUS_RETRY => CallError::Retry {
                message,
                retry_after: body.retry_after_ms.map(Duration::from_millis),
            },
            cohort_plugin_api::abi::STATUS_PANICKED => CallError::Panicked { message },
            cohort_plugin_api::abi::STATUS_ERROR => match body.kind {
                ErrorKind::Config if !body.config_issues.is_empty() => {
                    CallError::Config(body.config_issues)
                }
                ErrorKind::Config => CallError::Config(vec![ConfigIssue {
                    path: String::new(),
                    message,
                }]),
                ErrorKind::Unsupported => CallError::Unsupported(message),
                ErrorKind::BadCursor => CallError::BadCursor(message),
                ErrorKind::Cancelled => CallError::Cancelled,
                ErrorKind::Failed => CallError::Failed {
                    message,
                    details: body.details,
                },
            },
            other => CallError::Protocol(format!("unknown status {other}: {message}")),
        }
    }
}

struct ConfigIssues<'a>(&'a [ConfigIssue]);

impl fmt::Display for ConfigIssues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}
