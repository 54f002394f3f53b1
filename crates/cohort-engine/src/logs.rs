//! Where plugins' log lines go during a run.
//!
//! Every line goes to `tracing` (the daemon's logs; the CLI shows warnings and errors on
//! stderr). Warnings and errors are also what the person running Cohort must see and what the
//! run record keeps: a CSV file that changed under the source, a vendor deprecating an API.
//! They go to the run's [`Observer`] and into the run summary's warnings, capped so that a
//! plugin that warns once per record cannot fill the store.

use std::sync::{Arc, Mutex, PoisonError};

use cohort_plugin_api::sdk::Level;
use cohort_plugin_host::LogSink;
use serde_json::Value;

use crate::observer::Observer;

/// Warnings kept per run; the rest are counted.
const MAX_WARNINGS: usize = 100;

/// A run's sink for plugin logs.
pub(crate) struct RunLog {
    workspace: String,
    observer: Arc<dyn Observer>,
    warnings: Mutex<(Vec<String>, usize)>,
}

impl RunLog {
    pub(crate) fn new(workspace: &str, observer: Arc<dyn Observer>) -> Arc<RunLog> {
        Arc::new(RunLog {
            workspace: workspace.to_owned(),
            observer,
            warnings: Mutex::new((Vec::new(), 0)),
        })
    }

    /// The warnings kept, and a line counting those that were not.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        let mut guard = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        let (kept, dropped) = std::mem::take(&mut *guard);
        let mut out = kept;
        if dropped > 0 {
            out.push(format!("{dropped} more plugin warnings were not kept"));
        }
        out
    }
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog")
            .field("workspace", &self.workspace)
            .finish_non_exhaustive()
    }
}

impl LogSink for RunLog {
    fn log(&self, plugin: &str, level: Level, message: &str, fields: &Value) {
        let message = cohort_config::mask::redact(message);
        let fields = if fields.is_null() {
            String::new()
        } else {
            cohort_config::mask::redact(&fields.to_string()).into_owned()
        };
        let workspace = self.workspace.as_str();
        match level {
            Level::Error => tracing::error!(workspace, plugin, fields = %fields, "{message}"),
            Level::Warn => tracing::warn!(workspace, plugin, fields = %fields, "{message}"),
            Level::Info => tracing::info!(workspace, plugin, fields = %fields, "{message}"),
            Level::Debug => tracing::debug!(workspace, plugin, fields = %fields, "{message}"),
            Level::Trace => tracing::trace!(workspace, plugin, fields = %fields, "{message}"),
        }
        if level <= Level::Warn {
            let line = if fields.is_empty() {
                format!("plugin `{plugin}`: {message}")
            } else {
                format!("plugin `{plugin}`: {message} {fields}")
            };
            self.observer.warn(workspace, &line);
            let mut guard = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
            if guard.0.len() < MAX_WARNINGS {
                guard.0.push(line);
            } else {
                guard.1 += 1;
            }
        }
    }
}
