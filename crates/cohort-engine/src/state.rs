//! The host's state service for plugins (ABI 1.2), kept in the workspace's store.
//!
//! Plugin calls run on threads of tokio's blocking pool, so the store's async calls are run
//! to completion on the engine's runtime from there. Each instance sees only its own scope:
//! the config entry it was opened for (`source:NAME`, `destination:NAME`).

use cohort_plugin_host::StateStore;
use cohort_store::WorkspaceStore;
use serde_json::Value;

/// One instance's state: a workspace and a scope.
pub(crate) struct PluginState {
    ws: WorkspaceStore,
    scope: String,
    runtime: tokio::runtime::Handle,
}

impl PluginState {
    /// State for the config entry `scope` of workspace `ws`, served on the current runtime.
    pub(crate) fn new(ws: &WorkspaceStore, scope: String) -> PluginState {
        PluginState {
            ws: ws.clone(),
            scope,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl StateStore for PluginState {
    fn get(&self, key: &str) -> Result<Option<Value>, String> {
        self.runtime
            .block_on(self.ws.state_get(&self.scope, key))
            .map_err(|e| e.to_string())
    }

    fn put(&self, key: &str, value: Option<&Value>) -> Result<(), String> {
        self.runtime
            .block_on(self.ws.state_put(&self.scope, key, value))
            .map_err(|e| e.to_string())
    }
}
