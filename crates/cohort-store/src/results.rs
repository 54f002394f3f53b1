//! What a run may reuse: the last clean result of a job, and what it was computed from.
//!
//! A run whose inputs are those of its job's last clean run, under the same config, with a
//! clock that has not reached the instant the result stands until, would compute the same
//! segments and find nothing to push; it may skip both (`cohort-engine`'s `reuse` decides).
//! This module only keeps the facts that decision needs, cheaply:
//!
//! - [`Inputs`]: each source's `data_version` (raised in the transaction of every ingest that
//!   changes a record) and the number of suppressed addresses. Suppressions are only ever
//!   added, so their count changes whenever the list does; a way to remove one would have to
//!   raise a version instead.
//! - [`JobResult`]: one row per job, written after a clean run and deleted before a run that
//!   may change state without finishing cleanly, so a row always stands for a whole result.

use cohort_core::time::Timestamp;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};

use crate::entity::{job_results, sources, suppressions};
use crate::error::StoreError;
use crate::types::RunId;
use crate::workspace::WorkspaceStore;

/// What a workspace's results are computed from, as far as the store can tell: equal inputs
/// mean no record and no suppression changed in between.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Each source by name, with its data version.
    pub sources: Vec<(String, i64)>,
    /// How many addresses are suppressed.
    pub suppressions: u64,
}

/// A job's last clean result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult {
    /// The run that computed it.
    pub run_id: RunId,
    /// What it was computed from.
    pub inputs: Inputs,
    /// A fingerprint of the config it was computed under (segments, campaigns, templates).
    pub config: String,
    /// Its clock.
    pub as_of: Timestamp,
    /// The instant from which a clock could change it.
    pub stable_until: Timestamp,
}

impl WorkspaceStore {
    /// The workspace's [`Inputs`] now.
    pub async fn inputs(&self) -> Result<Inputs, StoreError> {
        let sources: Vec<(String, i64)> = sources::Entity::find()
            .select_only()
            .column(sources::Column::Name)
            .column(sources::Column::DataVersion)
            .filter(sources::Column::WorkspaceId.eq(&*self.id))
            .order_by_asc(sources::Column::Name)
            .into_tuple()
            .all(&self.db)
            .await?;
        let suppressions = suppressions::Entity::find()
            .filter(suppressions::Column::WorkspaceId.eq(&*self.id))
            .count(&self.db)
            .await?;
        Ok(Inputs {
            sources,
            suppressions,
        })
    }

    /// The last clean result of `job`, if one stands. A row this version cannot read counts
    /// as none: the run then computes, which is always correct.
    pub async fn job_result(&self, job: &str) -> Result<Option<JobResult>, StoreError> {
        let row = job_results::Entity::find()
            .filter(job_results::Column::WorkspaceId.eq(&*self.id))
            .filter(job_results::Column::Job.eq(job))
            .one(&self.db)
            .await?;
        Ok(row.and_then(|r| {
            Some(JobResult {
                run_id: r.run_id,
                inputs: serde_json::from_str(&r.inputs).ok()?,
                config: r.config,
                as_of: Timestamp::from_secs(r.as_of),
                stable_until: Timestamp::from_secs(r.stable_until),
            })
        }))
    }

    /// Records `result` as `job`'s last clean result.
    pub async fn save_job_result(&self, job: &str, result: &JobResult) -> Result<(), StoreError> {
        let inputs = serde_json::to_string(&result.inputs)
            .map_err(|e| StoreError::Invalid(format!("inputs cannot be serialised: {e}")))?;
        job_results::Entity::insert(job_results::ActiveModel {
            workspace_id: Set(self.id.to_string()),
            job: Set(job.to_owned()),
            run_id: Set(result.run_id),
            inputs: Set(inputs),
            config: Set(result.config.clone()),
            as_of: Set(result.as_of.secs()),
            stable_until: Set(result.stable_until.secs()),
        })
        .on_conflict(
            OnConflict::columns([job_results::Column::WorkspaceId, job_results::Column::Job])
                .update_columns([
                    job_results::Column::RunId,
                    job_results::Column::Inputs,
                    job_results::Column::Config,
                    job_results::Column::AsOf,
                    job_results::Column::StableUntil,
                ])
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Forgets `job`'s last clean result: done before a run changes memberships or
    /// destinations, so that a run that then fails, or dies, leaves nothing to reuse.
    pub async fn forget_job_result(&self, job: &str) -> Result<(), StoreError> {
        job_results::Entity::delete_many()
            .filter(job_results::Column::WorkspaceId.eq(&*self.id))
            .filter(job_results::Column::Job.eq(job))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
