//! Unified profiles: the person each customer record was last resolved into, and what a merge
//! moves. Resolution itself is the core's (`cohort_core::identity`); this keeps its result.
//!
//! Everything a resolution changes is written in one transaction: the links, the counter and
//! the state that follows merged persons. A run killed before the commit resolves the same
//! persons again from the links as they were; one killed after finds nothing left to move.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter, Set,
    Statement, TransactionTrait,
};

use crate::entity::{person_counters, person_links};
use crate::error::StoreError;
use crate::types::Backend;
use crate::workspace::{WorkspaceStore, chunk_rows};

/// A customer record's key: its source's name and its id there.
pub type RecordKey = (String, String);

/// What the last resolution left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredIdentity {
    /// The person of each live record, as last resolved.
    pub links: HashMap<RecordKey, String>,
    /// The next person number; `None` when the workspace was never resolved.
    pub next: Option<u64>,
}

/// What a resolution changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityUpdate {
    /// Records whose person is new or changed: `(record, person)`.
    pub set: Vec<(RecordKey, String)>,
    /// Records no longer live, whose links go.
    pub unset: Vec<RecordKey>,
    /// The next person number from now on.
    pub next: u64,
    /// Persons merged into another: `(retired, survivor)`. The survivor takes over the
    /// retired person's segment memberships and destination state where it has none; where
    /// both were members of an audience, the retired person's state stays (they leave it as
    /// any leaver does) and the survivor's is marked for a new push, so whatever the removal
    /// takes away is put back.
    pub merged: Vec<(String, String)>,
}

impl IdentityUpdate {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty() && self.merged.is_empty()
    }
}

impl WorkspaceStore {
    /// The links and counter the last resolution saved.
    pub async fn identity(&self) -> Result<StoredIdentity, StoreError> {
        let rows = person_links::Entity::find()
            .filter(person_links::Column::WorkspaceId.eq(&*self.id))
            .all(&self.db)
            .await?;
        let links = rows
            .into_iter()
            .map(|r| ((r.source, r.customer_id), r.person_id))
            .collect();
        let next = person_counters::Entity::find_by_id(self.id.to_string())
            .one(&self.db)
            .await?
            .map(|r| u64::try_from(r.next).unwrap_or(0));
        Ok(StoredIdentity { links, next })
    }

    /// Saves what a resolution changed, with the state merges move, in one transaction.
    pub async fn save_identity(&self, update: &IdentityUpdate) -> Result<(), StoreError> {
        let tx = self.db.begin().await?;
        for chunk in update.set.chunks(chunk_rows(4)) {
            let rows = chunk
                .iter()
                .map(|((source, id), person)| person_links::ActiveModel {
                    workspace_id: Set(self.id.to_string()),
                    source: Set(source.clone()),
                    customer_id: Set(id.clone()),
                    person_id: Set(person.clone()),
                });
            person_links::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        person_links::Column::WorkspaceId,
                        person_links::Column::Source,
                        person_links::Column::CustomerId,
                    ])
                    .update_column(person_links::Column::PersonId)
                    .to_owned(),
                )
                .exec_without_returning(&tx)
                .await?;
        }
        let mut unset: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (source, id) in &update.unset {
            unset.entry(source).or_default().push(id);
        }
        for (source, ids) in unset {
            for chunk in ids.chunks(chunk_rows(1)) {
                person_links::Entity::delete_many()
                    .filter(person_links::Column::WorkspaceId.eq(&*self.id))
                    .filter(person_links::Column::Source.eq(source))
                    .filter(person_links::Column::CustomerId.is_in(chunk.iter().copied()))
                    .exec(&tx)
                    .await?;
            }
        }
        person_counters::Entity::insert(person_counters::ActiveModel {
            workspace_id: Set(self.id.to_string()),
            next: Set(i64::try_from(update.next).unwrap_or(i64::MAX)),
        })
        .on_conflict(
            OnConflict::column(person_counters::Column::WorkspaceId)
                .update_column(person_counters::Column::Next)
                .to_owned(),
        )
        .exec_without_returning(&tx)
        .await?;
        for (retired, survivor) in &update.merged {
            self.follow(&tx, retired, survivor).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Moves what `retired` holds to `survivor` (see [`IdentityUpdate::merged`]).
    async fn follow(
        &self,
        tx: &DatabaseTransaction,
        retired: &str,
        survivor: &str,
    ) -> Result<(), StoreError> {
        // $1 workspace, $2 retired, $3 survivor.
        const STEPS: [&str; 4] = [
            // Both in one audience: the survivor is pushed again after the leaver's removal.
            "UPDATE destination_state SET payload_hash = '' \
             WHERE workspace_id = $1 AND customer_id = $3 AND status = 'member' \
             AND campaign IN (SELECT campaign FROM destination_state \
             WHERE workspace_id = $1 AND customer_id = $2 AND status = 'member')",
            "UPDATE destination_state SET customer_id = $3 \
             WHERE workspace_id = $1 AND customer_id = $2 \
             AND campaign NOT IN (SELECT campaign FROM destination_state \
             WHERE workspace_id = $1 AND customer_id = $3)",
            "UPDATE memberships SET customer_id = $3 \
             WHERE workspace_id = $1 AND customer_id = $2 \
             AND segment NOT IN (SELECT segment FROM memberships \
             WHERE workspace_id = $1 AND customer_id = $3)",
            "DELETE FROM memberships WHERE workspace_id = $1 AND customer_id = $2",
        ];
        let backend = match self.backend {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres => DbBackend::Postgres,
        };
        for sql in STEPS {
            let sql = match self.backend {
                Backend::Sqlite => sql.replace('$', "?"),
                Backend::Postgres => sql.to_owned(),
            };
            tx.execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [self.id.to_string().into(), retired.into(), survivor.into()],
            ))
            .await?;
        }
        Ok(())
    }
}
