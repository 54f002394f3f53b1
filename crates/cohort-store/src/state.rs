//! Plugins' durable state (ABI 1.2 `state`): small JSON values under string keys, per workspace
//! and scope (the config entry an instance was opened for: `destination:NAME`, `source:NAME`).
//! A send ledger, the id of an asynchronous import: what a plugin must find again after a crash
//! or on another daemon.

use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::Value;

use crate::entity::plugin_state;
use crate::error::StoreError;
use crate::workspace::WorkspaceStore;

impl WorkspaceStore {
    /// The value stored under `key` for `scope`.
    pub async fn state_get(&self, scope: &str, key: &str) -> Result<Option<Value>, StoreError> {
        let row = plugin_state::Entity::find()
            .filter(plugin_state::Column::WorkspaceId.eq(&*self.id))
            .filter(plugin_state::Column::Scope.eq(scope))
            .filter(plugin_state::Column::Key.eq(key))
            .one(&self.db)
            .await?;
        row.map(|r| {
            serde_json::from_str(&r.value).map_err(|e| StoreError::Corrupt {
                what: "plugin state",
                key: format!("{scope}/{key}"),
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// Stores `value` under `key` for `scope` (`None` removes it), committed when it returns.
    pub async fn state_put(
        &self,
        scope: &str,
        key: &str,
        value: Option<&Value>,
    ) -> Result<(), StoreError> {
        match value {
            Some(value) => {
                plugin_state::Entity::insert(plugin_state::ActiveModel {
                    workspace_id: Set(self.id.to_string()),
                    scope: Set(scope.to_owned()),
                    key: Set(key.to_owned()),
                    value: Set(value.to_string()),
                    updated_at: Set(Utc::now()),
                })
                .on_conflict(
                    OnConflict::columns([
                        plugin_state::Column::WorkspaceId,
                        plugin_state::Column::Scope,
                        plugin_state::Column::Key,
                    ])
                    .update_columns([plugin_state::Column::Value, plugin_state::Column::UpdatedAt])
                    .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
            }
            None => {
                plugin_state::Entity::delete_many()
                    .filter(plugin_state::Column::WorkspaceId.eq(&*self.id))
                    .filter(plugin_state::Column::Scope.eq(scope))
                    .filter(plugin_state::Column::Key.eq(key))
                    .exec(&self.db)
                    .await?;
            }
        }
        Ok(())
    }
}
