//! [`WorkspaceStore`]: one workspace's view of the store.
//!
//! Every method filters on the workspace id it was made with; nothing here takes a workspace
//! id as an argument, so a caller holding one workspace's handle cannot name another's rows.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cohort_core::delivery::Action;
use cohort_core::features::{EventTotals, OrderTotals};
use cohort_core::record::{Customer, Event, EventKind, Order};
use cohort_core::time::Timestamp;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_128;

use crate::entity::{
    destination_state, job_runs, memberships, run_errors, segment_definitions, source_cursors,
    sources, suppressions,
};
use crate::error::StoreError;
use crate::types::{
    Backend, DestinationState, DestinationStatus, PendingPush, RecordError, Records, RunId, RunRow,
    RunStatus, SegmentVersion, Stream, SuppressionReason, Sweep, Upserted,
};
use crate::{ingest, read, totals};

/// Parameters per statement for sea-orm's multi-row inserts: under SQLite's 32766 and
/// PostgreSQL's 65535 limits.
const MAX_PARAMS: usize = 30_000;

/// One workspace's data. Made by [`crate::Store::workspace`]; cheap to clone.
#[derive(Clone)]
pub struct WorkspaceStore {
    pub(crate) db: DatabaseConnection,
    pub(crate) backend: Backend,
    pub(crate) id: Arc<str>,
}

impl std::fmt::Debug for WorkspaceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceStore")
            .field("workspace", &self.id)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The name of source number `id`; records are read inside the workspace's sources, so every
/// number is known (an empty name would only show a source removed while reading).
fn source_name(names: &HashMap<i64, String>, id: i64) -> &str {
    names.get(&id).map_or("", String::as_str)
}

pub(crate) fn chunk_rows(columns: usize) -> usize {
    (MAX_PARAMS / columns).max(1)
}

impl WorkspaceStore {
    pub(crate) fn new(db: DatabaseConnection, backend: Backend, id: &str) -> WorkspaceStore {
        WorkspaceStore {
            db,
            backend,
            id: Arc::from(id),
        }
    }

    /// The workspace id every query is scoped to.
    pub fn id(&self) -> &str {
        &self.id
    }

    // ---- ingest ---------------------------------------------------------------------------

    /// Upserts a page of `records` from `source`, applies what the page says about deletions
    /// (`sweep`: ids gone at the source, a full pass and whether it ends here), and saves
    /// `cursor` as the stream's cursor, in one transaction.
    pub async fn ingest(
        &self,
        source: &str,
        records: Records<'_>,
        cursor: &Value,
        sweep: &Sweep<'_>,
    ) -> Result<Upserted, StoreError> {
        let (stream, batch) = match records {
            Records::Customers(r) => (Stream::Customers, ingest::customers_batch(r)?),
            Records::Orders(r) => (Stream::Orders, ingest::orders_batch(r)?),
            Records::Events(r) => (Stream::Events, ingest::events_batch(r)?),
        };
        ingest::ingest(
            &self.db,
            self.backend,
            &self.id,
            source,
            stream,
            &batch,
            cursor,
            sweep,
        )
        .await
    }

    /// Upserts customers from `source` by their id, and saves `cursor` as the source's
    /// customers cursor, in one transaction: either both land or neither does.
    ///
    /// A key given twice counts once, with its last version.
    pub async fn ingest_customers(
        &self,
        source: &str,
        records: &[Customer],
        cursor: &Value,
    ) -> Result<Upserted, StoreError> {
        let batch = ingest::customers_batch(records)?;
        let stream = Stream::Customers;
        ingest::ingest(
            &self.db,
            self.backend,
            &self.id,
            source,
            stream,
            &batch,
            cursor,
            &Sweep::NONE,
        )
        .await
    }

    /// Upserts orders from `source` by their id, and saves the orders cursor, in one
    /// transaction.
    pub async fn ingest_orders(
        &self,
        source: &str,
        records: &[Order],
        cursor: &Value,
    ) -> Result<Upserted, StoreError> {
        let batch = ingest::orders_batch(records)?;
        let stream = Stream::Orders;
        ingest::ingest(
            &self.db,
            self.backend,
            &self.id,
            source,
            stream,
            &batch,
            cursor,
            &Sweep::NONE,
        )
        .await
    }

    /// Upserts events from `source`, and saves the events cursor, in one transaction.
    ///
    /// An event without an id is stored under a stable id hashed from its content
    /// (`~` and 32 hex digits), so pulling it again does not duplicate it.
    pub async fn ingest_events(
        &self,
        source: &str,
        records: &[Event],
        cursor: &Value,
    ) -> Result<Upserted, StoreError> {
        let batch = ingest::events_batch(records)?;
        let stream = Stream::Events;
        ingest::ingest(
            &self.db,
            self.backend,
            &self.id,
            source,
            stream,
            &batch,
            cursor,
            &Sweep::NONE,
        )
        .await
    }

    /// The cursor last saved for `source`'s `stream`, if any.
    pub async fn cursor(&self, source: &str, stream: Stream) -> Result<Option<Value>, StoreError> {
        let row = source_cursors::Entity::find()
            .filter(source_cursors::Column::WorkspaceId.eq(&*self.id))
            .filter(source_cursors::Column::Source.eq(source))
            .filter(source_cursors::Column::Stream.eq(stream.as_str()))
            .one(&self.db)
            .await?;
        Ok(row.map(|r| r.cursor))
    }

    // ---- reads ----------------------------------------------------------------------------

    /// Ids of the workspace's customers that are marked deleted (and not live in another
    /// source): their orders and events no longer count for anyone.
    pub async fn deleted_customers(&self) -> Result<HashSet<String>, StoreError> {
        read::deleted_customers(&self.db, self.backend, &self.id).await
    }

    /// Every customer of the workspace, from every source.
    pub async fn customers(&self) -> Result<Vec<Customer>, StoreError> {
        let mut out = Vec::new();
        self.for_each_customer(|c| out.push(c)).await?;
        Ok(out)
    }

    /// Calls `f` with each customer, streamed; returns how many there were.
    pub async fn for_each_customer(
        &self,
        mut f: impl FnMut(Customer) + Send,
    ) -> Result<u64, StoreError> {
        read::for_each_customer(&self.db, self.backend, &self.id, |_, c| f(c)).await
    }

    /// Calls `f` with each order, streamed; returns how many there were.
    pub async fn for_each_order(&self, mut f: impl FnMut(Order) + Send) -> Result<u64, StoreError> {
        read::for_each_order(&self.db, self.backend, &self.id, |_, o| f(o)).await
    }

    /// Calls `f` with each event, streamed; returns how many there were. Events stored
    /// without a source id come back with their derived id.
    pub async fn for_each_event(&self, mut f: impl FnMut(Event) + Send) -> Result<u64, StoreError> {
        read::for_each_event(&self.db, self.backend, &self.id, "", |_, e| f(e)).await
    }

    /// [`Self::for_each_customer`], with the name of each record's source.
    pub async fn for_each_customer_by_source(
        &self,
        mut f: impl FnMut(&str, Customer) + Send,
    ) -> Result<u64, StoreError> {
        let names = self.source_names().await?;
        read::for_each_customer(&self.db, self.backend, &self.id, |s, c| {
            f(source_name(&names, s), c);
        })
        .await
    }

    /// Calls `f` with each customer's order totals in each source (source name, customer id,
    /// totals), kept in step with the orders by every ingest; returns how many rows there were.
    pub async fn for_each_order_totals(
        &self,
        mut f: impl FnMut(&str, &str, &OrderTotals) + Send,
    ) -> Result<u64, StoreError> {
        totals::ensure_ready(&self.db, Some(&self.id)).await?;
        let names = self.source_names().await?;
        totals::for_each_order_totals(&self.db, &self.id, |s, customer, t| {
            f(source_name(&names, s), &customer, &t);
        })
        .await
    }

    /// Calls `f` with each customer's event totals per kind in each source (source name,
    /// customer id, kind, totals); returns how many rows there were.
    pub async fn for_each_event_totals(
        &self,
        mut f: impl FnMut(&str, &str, &str, &EventTotals) + Send,
    ) -> Result<u64, StoreError> {
        totals::ensure_ready(&self.db, Some(&self.id)).await?;
        let names = self.source_names().await?;
        totals::for_each_event_totals(&self.db, &self.id, |s, customer, kind, t| {
            f(source_name(&names, s), &customer, &kind, &t);
        })
        .await
    }

    /// [`Self::for_each_order`], with the name of each record's source.
    pub async fn for_each_order_by_source(
        &self,
        mut f: impl FnMut(&str, Order) + Send,
    ) -> Result<u64, StoreError> {
        let names = self.source_names().await?;
        read::for_each_order(&self.db, self.backend, &self.id, |s, o| {
            f(source_name(&names, s), o);
        })
        .await
    }

    /// [`Self::for_each_event`], with the name of each record's source.
    pub async fn for_each_event_by_source(
        &self,
        mut f: impl FnMut(&str, Event) + Send,
    ) -> Result<u64, StoreError> {
        let names = self.source_names().await?;
        read::for_each_event(&self.db, self.backend, &self.id, "", |s, e| {
            f(source_name(&names, s), e);
        })
        .await
    }

    /// [`Self::for_each_event_by_source`] for the events a run that reads the totals still
    /// needs one by one: those after `since` (the windows of engagement counts) and those of
    /// `kinds` whatever their age (unsubscribes, carts).
    pub async fn for_each_recent_event_by_source(
        &self,
        since: Timestamp,
        kinds: &[EventKind],
        mut f: impl FnMut(&str, Event) + Send,
    ) -> Result<u64, StoreError> {
        let names = self.source_names().await?;
        // Kind names are the core's own identifiers (no quote can occur in them).
        let kinds: Vec<String> = kinds.iter().map(|k| format!("'{}'", k.as_str())).collect();
        let filter = if kinds.is_empty() {
            format!(" AND occurred_at > {}", since.secs())
        } else {
            format!(
                " AND (occurred_at > {} OR kind IN ({}))",
                since.secs(),
                kinds.join(", ")
            )
        };
        read::for_each_event(&self.db, self.backend, &self.id, &filter, |s, e| {
            f(source_name(&names, s), e);
        })
        .await
    }

    /// The workspace's sources by their number in the record tables.
    async fn source_names(&self) -> Result<HashMap<i64, String>, StoreError> {
        let rows: Vec<(i64, String)> = sources::Entity::find()
            .select_only()
            .column(sources::Column::Id)
            .column(sources::Column::Name)
            .filter(sources::Column::WorkspaceId.eq(&*self.id))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().collect())
    }

    // ---- segments -------------------------------------------------------------------------

    /// Records `expression` as segment `name`'s definition: a new version when it differs
    /// from the latest one, the latest one otherwise.
    pub async fn save_segment(
        &self,
        name: &str,
        expression: &str,
    ) -> Result<SegmentVersion, StoreError> {
        let hash = format!("{:032x}", xxh3_128(expression.as_bytes()));
        let tx = self.db.begin().await?;
        let latest = segment_definitions::Entity::find()
            .filter(segment_definitions::Column::WorkspaceId.eq(&*self.id))
            .filter(segment_definitions::Column::Name.eq(name))
            .order_by_desc(segment_definitions::Column::Version)
            .one(&tx)
            .await?;
        if let Some(latest) = &latest
            && latest.hash == hash
        {
            return Ok(SegmentVersion {
                hash,
                version: latest.version,
                is_new: false,
            });
        }
        let version = latest.map_or(1, |l| l.version + 1);
        segment_definitions::Entity::insert(segment_definitions::ActiveModel {
            workspace_id: Set(self.id.to_string()),
            name: Set(name.to_owned()),
            version: Set(version),
            hash: Set(hash.clone()),
            expression: Set(expression.to_owned()),
            created_at: Set(Utc::now()),
            ..Default::default()
        })
        .exec_without_returning(&tx)
        .await?;
        tx.commit().await?;
        Ok(SegmentVersion {
            hash,
            version,
            is_new: true,
        })
    }

    /// The customer ids in segment `name` as last applied, sorted.
    pub async fn members(&self, segment: &str) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = memberships::Entity::find()
            .select_only()
            .column(memberships::Column::CustomerId)
            .filter(memberships::Column::WorkspaceId.eq(&*self.id))
            .filter(memberships::Column::Segment.eq(segment))
            .order_by_asc(memberships::Column::CustomerId)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ids)
    }

    /// Adds and removes members of segment `name`, in one transaction. Adding a member
    /// already there keeps its original `since`.
    pub async fn apply_membership(
        &self,
        segment: &str,
        added: &[String],
        removed: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin().await?;
        for chunk in added.chunks(chunk_rows(4)) {
            let rows = chunk.iter().map(|c| memberships::ActiveModel {
                workspace_id: Set(self.id.to_string()),
                segment: Set(segment.to_owned()),
                customer_id: Set(c.clone()),
                since: Set(at),
            });
            memberships::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        memberships::Column::WorkspaceId,
                        memberships::Column::Segment,
                        memberships::Column::CustomerId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&tx)
                .await?;
        }
        for chunk in removed.chunks(chunk_rows(1)) {
            memberships::Entity::delete_many()
                .filter(memberships::Column::WorkspaceId.eq(&*self.id))
                .filter(memberships::Column::Segment.eq(segment))
                .filter(memberships::Column::CustomerId.is_in(chunk.iter().map(String::as_str)))
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- destination state ----------------------------------------------------------------

    /// What the destination of `campaign` last acknowledged, by customer id.
    pub async fn destination_state(
        &self,
        campaign: &str,
    ) -> Result<HashMap<String, DestinationState>, StoreError> {
        let rows = destination_state::Entity::find()
            .filter(destination_state::Column::WorkspaceId.eq(&*self.id))
            .filter(destination_state::Column::Campaign.eq(campaign))
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|r| {
                let status =
                    DestinationStatus::parse(&r.status).ok_or_else(|| StoreError::Corrupt {
                        what: "destination state",
                        key: format!("{campaign}/{}", r.customer_id),
                        reason: format!("unknown status `{}`", r.status),
                    })?;
                let state = DestinationState {
                    customer_id: r.customer_id.clone(),
                    status,
                    payload_hash: r.payload_hash,
                    idempotency_key: r.idempotency_key,
                    entries: r.entries,
                    pending: match (r.pending_action, r.pending_key, r.pending_hash) {
                        (Some(action), Some(key), hash) => Some(PendingPush {
                            action: Action::parse(&action).ok_or_else(|| StoreError::Corrupt {
                                what: "destination state",
                                key: format!("{campaign}/{}", r.customer_id),
                                reason: format!("unknown pending action `{action}`"),
                            })?,
                            key,
                            payload_hash: hash.unwrap_or_default(),
                        }),
                        _ => None,
                    },
                    updated_at: r.updated_at,
                    payload: None,
                };
                Ok((r.customer_id, state))
            })
            .collect()
    }

    /// The payloads last acknowledged for these customers of `campaign` (those with none stored
    /// are left out).
    pub async fn destination_payloads(
        &self,
        campaign: &str,
        customers: &[&str],
    ) -> Result<HashMap<String, Value>, StoreError> {
        let mut out = HashMap::with_capacity(customers.len());
        for chunk in customers.chunks(chunk_rows(1)) {
            let rows: Vec<(String, Option<String>)> = destination_state::Entity::find()
                .select_only()
                .column(destination_state::Column::CustomerId)
                .column(destination_state::Column::Payload)
                .filter(destination_state::Column::WorkspaceId.eq(&*self.id))
                .filter(destination_state::Column::Campaign.eq(campaign))
                .filter(destination_state::Column::CustomerId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(&self.db)
                .await?;
            for (id, payload) in rows {
                let Some(text) = payload else { continue };
                let value = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    what: "destination payload",
                    key: format!("{campaign}/{id}"),
                    reason: e.to_string(),
                })?;
                out.insert(id, value);
            }
        }
        Ok(out)
    }

    /// Saves the acknowledged state of `updates` for `campaign`, replacing each customer's
    /// previous state, in one transaction.
    pub async fn commit_destination(
        &self,
        campaign: &str,
        updates: &[DestinationState],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin().await?;
        for chunk in updates.chunks(chunk_rows(12)) {
            let rows = chunk.iter().map(|u| destination_state::ActiveModel {
                workspace_id: Set(self.id.to_string()),
                campaign: Set(campaign.to_owned()),
                customer_id: Set(u.customer_id.clone()),
                status: Set(u.status.as_str().to_owned()),
                payload_hash: Set(u.payload_hash.clone()),
                idempotency_key: Set(u.idempotency_key.clone()),
                entries: Set(u.entries),
                pending_action: Set(u.pending.as_ref().map(|p| p.action.as_str().to_owned())),
                pending_key: Set(u.pending.as_ref().map(|p| p.key.clone())),
                pending_hash: Set(u.pending.as_ref().map(|p| p.payload_hash.clone())),
                updated_at: Set(u.updated_at),
                payload: Set(u.payload.as_ref().map(Value::to_string)),
            });
            destination_state::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        destination_state::Column::WorkspaceId,
                        destination_state::Column::Campaign,
                        destination_state::Column::CustomerId,
                    ])
                    .update_columns([
                        destination_state::Column::Status,
                        destination_state::Column::PayloadHash,
                        destination_state::Column::IdempotencyKey,
                        destination_state::Column::Entries,
                        destination_state::Column::PendingAction,
                        destination_state::Column::PendingKey,
                        destination_state::Column::PendingHash,
                        destination_state::Column::UpdatedAt,
                    ])
                    // A commit without a payload keeps the one acknowledged before.
                    .value(
                        destination_state::Column::Payload,
                        Expr::cust("COALESCE(excluded.payload, destination_state.payload)"),
                    )
                    .to_owned(),
                )
                .exec_without_returning(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- runs (beginning and finishing them: see `runs.rs`) ------------------------------

    /// Records per-record errors of run `id`.
    pub async fn record_errors(&self, id: RunId, errors: &[RecordError]) -> Result<(), StoreError> {
        if errors.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin().await?;
        let owned = job_runs::Entity::find()
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .filter(job_runs::Column::Id.eq(id))
            .one(&tx)
            .await?;
        if owned.is_none() {
            return Err(StoreError::UnknownRun(id));
        }
        for chunk in errors.chunks(chunk_rows(5)) {
            let rows = chunk.iter().map(|e| run_errors::ActiveModel {
                run_id: Set(id),
                workspace_id: Set(self.id.to_string()),
                stage: Set(e.stage.clone()),
                location: Set(e.location.clone()),
                message: Set(e.message.clone()),
                ..Default::default()
            });
            run_errors::Entity::insert_many(rows)
                .exec_without_returning(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The latest `limit` runs, newest first.
    pub async fn runs(&self, limit: u64) -> Result<Vec<RunRow>, StoreError> {
        let rows = job_runs::Entity::find()
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .order_by_desc(job_runs::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        rows.into_iter().map(run_row).collect()
    }

    /// Run `id` and its record errors, in the order they were recorded.
    pub async fn run(&self, id: RunId) -> Result<Option<(RunRow, Vec<RecordError>)>, StoreError> {
        let Some(row) = job_runs::Entity::find()
            .filter(job_runs::Column::WorkspaceId.eq(&*self.id))
            .filter(job_runs::Column::Id.eq(id))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let errors = run_errors::Entity::find()
            .filter(run_errors::Column::WorkspaceId.eq(&*self.id))
            .filter(run_errors::Column::RunId.eq(id))
            .order_by_asc(run_errors::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|e| RecordError {
                stage: e.stage,
                location: e.location,
                message: e.message,
            })
            .collect();
        Ok(Some((run_row(row)?, errors)))
    }

    // ---- suppressions ---------------------------------------------------------------------

    /// Suppresses `email` (compared lower-cased) for `reason`, reported by `source`. Suppressing
    /// it again updates the reason and source.
    pub async fn suppress(
        &self,
        email: &str,
        reason: SuppressionReason,
        source: &str,
    ) -> Result<(), StoreError> {
        let email = email.trim().to_lowercase();
        if email.is_empty() {
            return Err(StoreError::Invalid("empty email address".to_owned()));
        }
        suppressions::Entity::insert(suppressions::ActiveModel {
            workspace_id: Set(self.id.to_string()),
            email: Set(email),
            reason: Set(reason.as_str().to_owned()),
            source: Set(source.to_owned()),
            created_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([
                suppressions::Column::WorkspaceId,
                suppressions::Column::Email,
            ])
            .update_columns([suppressions::Column::Reason, suppressions::Column::Source])
            .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// Every suppressed address, lower-cased.
    pub async fn suppressed_emails(&self) -> Result<HashSet<String>, StoreError> {
        let emails: Vec<String> = suppressions::Entity::find()
            .select_only()
            .column(suppressions::Column::Email)
            .filter(suppressions::Column::WorkspaceId.eq(&*self.id))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(emails.into_iter().collect())
    }
}

pub(crate) fn run_row(r: job_runs::Model) -> Result<RunRow, StoreError> {
    let status = RunStatus::parse(&r.status).ok_or_else(|| StoreError::Corrupt {
        what: "run",
        key: r.id.to_string(),
        reason: format!("unknown status `{}`", r.status),
    })?;
    Ok(RunRow {
        id: r.id,
        job: r.job,
        trigger: r.trigger,
        dry_run: r.dry_run,
        status,
        started_at: r.started_at,
        finished_at: r.finished_at,
        summary: r.summary,
        error: r.error,
        owner: r.owner,
        heartbeat_at: r.heartbeat_at,
        scheduled_for: r.scheduled_for,
        attempt: r.attempt.map_or(1, |a| a.max(1) as u32),
    })
}
