//! The safe Rust side of the ABI: implement [`Plugin`] and [`Source`] or [`Destination`], then
//! call [`export_plugin!`](crate::export_plugin). All `unsafe` lives in this module's `ffi`.
//!
//! ```no_run
//! use cohort_plugin_api::prelude::*;
//!
//! /// Config of the `hello` plugin.
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config {
//!     /// How many customers to make up.
//!     count: u32,
//! }
//!
//! pub struct Hello { count: u32 }
//!
//! impl Plugin for Hello {
//!     type Config = Config;
//!     fn manifest() -> Manifest {
//!         Manifest::source("hello", env!("CARGO_PKG_VERSION"))
//!             .streams([Stream::Customers])
//!             .config_schema_of::<Config>()
//!     }
//!     fn open(config: Config, _host: Host) -> Result<Self, PluginError> {
//!         Ok(Hello { count: config.count })
//!     }
//! }
//!
//! impl Source for Hello {
//!     type Cursor = u32;
//!     fn next_page(&mut self, _stream: Stream, cursor: Option<u32>, page: &mut PageWriter)
//!         -> Result<PageEnd<u32>, PluginError>
//!     {
//!         let mut next = cursor.unwrap_or(0);
//!         while next < self.count && !page.is_full() {
//!             page.push(&Customer::new(next.to_string()))?;
//!             next += 1;
//!         }
//!         Ok(PageEnd { next_cursor: next, done: next == self.count })
//!     }
//! }
//!
//! cohort_plugin_api::export_plugin!(source: Hello);
//! ```

//!
//! For connectors to HTTP APIs, the toolkit: [`http`] (a request builder and the one status
//! mapping), [`paged`] (a vendor's pages into the host's, resumable cursors, watermarks) and
//! [`batch`] (chunks by count and bytes, one outcome per operation, idempotency keys). None of it
//! needs an async runtime or an HTTP stack: requests go through [`Host::http`].

pub mod batch;
#[doc(hidden)]
pub mod ffi;
mod gate;
mod host;
pub mod http;
pub mod ledger;
mod page;
pub mod paged;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use host::{Host, Level};
pub use page::{PageEnd, PageWriter};

use crate::wire::{
    Batch, ConfigIssue, ErrorBody, ErrorKind, Manifest, Outcome, PushResult, Stream,
    SuppressionsPage,
};

/// What every plugin implements: a description of itself and a way to open an instance.
pub trait Plugin: Sized + Send + 'static {
    /// The config, deserialized from the user's (already schema-validated) JSON.
    type Config: DeserializeOwned;

    /// The plugin's manifest. Called often; keep it cheap and constant.
    fn manifest() -> Manifest;

    /// Opens an instance. Validate here what the schema cannot express (files exist, values
    /// agree), returning [`PluginError::Config`] with every problem found.
    fn open(config: Self::Config, host: Host) -> Result<Self, PluginError>;
}

/// A plugin that pulls records into Cohort, one page at a time.
pub trait Source: Plugin {
    /// Where a stream resumes: must serialize to JSON and read back identically.
    type Cursor: Serialize + DeserializeOwned;

    /// Writes the next page of `stream`, starting at `cursor` (`None`: from the beginning), into
    /// `page`, never more than [`PageWriter::max_records`]. Report records that cannot be read
    /// with [`PageWriter::reject`] and go on.
    fn next_page(
        &mut self,
        stream: Stream,
        cursor: Option<Self::Cursor>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<Self::Cursor>, PluginError>;
}

/// A plugin that receives audience operations and messages.
pub trait Destination: Plugin {
    /// Applies a batch, returning exactly one outcome per operation key. An operation whose key
    /// was already applied must not be applied twice.
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError>;

    /// Called once after a campaign's last batch of a run (ABI 1.2; also when nothing was
    /// pushed, if the manifest declares [`Manifest::late_outcomes`]): outcomes learnt since the
    /// keys were pushed, in this run or an earlier one (an asynchronous import finished, a
    /// request's status came back). A late `rejected` makes Cohort record the reason and plan
    /// the change again; `ok` changes nothing. The default learns nothing late.
    fn finish(&mut self) -> Result<Vec<Outcome>, PluginError> {
        Ok(Vec::new())
    }

    /// The addresses the vendor will not email, since `cursor` (ABI 1.3; `Value::Null` the
    /// first time): its unsubscribes, cleaned or bounced addresses, complaints. Cohort calls it
    /// before a run pushes, when the manifest declares [`Manifest::suppressions`], and adds
    /// them to its suppression list, so an unsubscribe at the vendor is honoured everywhere.
    /// Only reads: it must change nothing at the vendor. The host keeps the returned cursor
    /// (not in a dry run) and passes it back next time. The default reports none.
    fn suppressions(&mut self, cursor: Value) -> Result<SuppressionsPage, PluginError> {
        let _ = cursor;
        Ok(SuppressionsPage::default())
    }
}

/// Why a plugin call failed. The variant tells the host what to do next.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginError {
    /// The config is wrong; the user must fix it. Each issue names its config path.
    Config(Vec<ConfigIssue>),
    /// The job failed; retrying as is will not help.
    Failed {
        /// One sentence for the user.
        message: String,
        /// Anything else for the run record.
        details: Value,
    },
    /// A transient failure: try again later.
    Retry {
        /// One sentence for the user.
        message: String,
        /// How long to wait, when known.
        retry_after: Option<Duration>,
    },
    /// Asked for something the plugin does not do (a stream, a mode).
    Unsupported(String),
    /// The cursor cannot be understood.
    BadCursor(String),
    /// The host asked the work to stop.
    Cancelled,
}

impl PluginError {
    /// A failure with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        PluginError::Failed {
            message: message.into(),
            details: Value::Null,
        }
    }

    /// A transient failure.
    pub fn retry(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        PluginError::Retry {
            message: message.into(),
            retry_after,
        }
    }

    /// One config problem at a JSON Pointer (`/paths/0`).
    pub fn config(path: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError::Config(vec![ConfigIssue {
            path: path.into(),
            message: message.into(),
        }])
    }

    pub(crate) fn to_body(&self) -> ErrorBody {
        let mut body = ErrorBody {
            message: self.to_string(),
            ..ErrorBody::default()
        };
        match self {
            PluginError::Config(issues) => {
                body.kind = ErrorKind::Config;
                body.config_issues = issues.clone();
            }
            PluginError::Failed { details, .. } => body.details = details.clone(),
            PluginError::Retry { retry_after, .. } => {
                body.retry_after_ms =
                    retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            }
            PluginError::Unsupported(_) => body.kind = ErrorKind::Unsupported,
            PluginError::BadCursor(_) => body.kind = ErrorKind::BadCursor,
            PluginError::Cancelled => body.kind = ErrorKind::Cancelled,
        }
        body
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginError::Config(issues) => {
                write!(f, "invalid config: ")?;
                for (i, issue) in issues.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{issue}")?;
                }
                Ok(())
            }
            PluginError::Failed { message, .. } | PluginError::Retry { message, .. } => {
                f.write_str(message)
            }
            PluginError::Unsupported(what) => write!(f, "unsupported: {what}"),
            PluginError::BadCursor(why) => write!(f, "the saved cursor cannot be used: {why}"),
            PluginError::Cancelled => f.write_str("cancelled by the host"),
        }
    }
}

impl std::error::Error for PluginError {}

impl From<std::io::Error> for PluginError {
    fn from(e: std::io::Error) -> Self {
        PluginError::failed(e.to_string())
    }
}
