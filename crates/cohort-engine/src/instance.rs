//! A plugin instance for the length of a stage, opened again after a call that timed out.
//!
//! A call that does not answer within its timeout is abandoned, and its instance with it (the
//! host cannot stop a thread; it cancels the call and never uses the instance again). Retrying
//! such a call means opening a fresh instance: a source resumes from the cursor the host passes
//! it, and a destination applies a batch pushed again at most once, by its keys.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cohort_plugin_host::{AsyncInstance, CallError, HostServices, LoadedPlugin};
use serde_json::Value;

/// How long one plugin call may take before the run gives up on it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) struct Reopening<'a> {
    plugin: &'a LoadedPlugin,
    config: &'a Value,
    services: HostServices,
    current: tokio::sync::Mutex<AsyncInstance>,
    stale: AtomicBool,
}

impl<'a> Reopening<'a> {
    /// Opens the plugin with `config` (already prepared).
    pub(crate) async fn open(
        plugin: &'a LoadedPlugin,
        config: &'a Value,
        services: HostServices,
    ) -> Result<Reopening<'a>, CallError> {
        let instance = AsyncInstance::open(plugin, config, services.clone(), CALL_TIMEOUT).await?;
        Ok(Reopening {
            plugin,
            config,
            services,
            current: tokio::sync::Mutex::new(instance),
            stale: AtomicBool::new(false),
        })
    }

    /// Makes one call on the instance, opening a fresh one first if the last call timed out.
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: FnOnce(AsyncInstance) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut current = self.current.lock().await;
        if self.stale.swap(false, Ordering::SeqCst) {
            *current = AsyncInstance::open(
                self.plugin,
                self.config,
                self.services.clone(),
                CALL_TIMEOUT,
            )
            .await?;
        }
        let result = f(current.clone()).await;
        if matches!(result, Err(CallError::TimedOut(_))) {
            self.stale.store(true, Ordering::SeqCst);
        }
        result
    }
}
