//! Stage 1: pull every source incrementally into the store.
//!
//! Each page is upserted together with the cursor that follows it, in one transaction, so a
//! run that dies mid-pull resumes after the last stored page: nothing is pulled twice into the
//! counts, nothing is lost. Rows a source rejects are recorded with their location and skipped.

use std::time::Duration;

use anyhow::{Context, Result};
use cohort_config::Source;
use cohort_core::{Customer, Event, Order};
use cohort_plugin_host::wire::{Kind, Page, Stream, StreamRecord};
use cohort_plugin_host::{AsyncInstance, HostServices};
use cohort_store::{RecordError, StreamKind, Upserted, WorkspaceStore};
use serde_json::Value;

use super::plugins::{Plugins, prepare};
use super::summary::SourceSummary;

/// Records asked for per page: large enough to amortise a transaction, small enough that a
/// page of orders stays a few megabytes.
const PAGE_RECORDS: usize = 5_000;

/// How long one plugin call may take before the run gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Pulls every stream `source` offers into `ws`.
pub(crate) async fn pull_source(
    ws: &WorkspaceStore,
    plugins: &Plugins,
    source: &Source,
    errors: &mut Vec<RecordError>,
) -> Result<Vec<SourceSummary>> {
    let plugin = plugins.get(&source.plugin)?;
    if !plugin.manifest().is(Kind::Source) {
        anyhow::bail!(
            "plugin `{}` is not a source (it is: {})",
            plugin.name(),
            plugin.manifest().kinds_label()
        );
    }
    let prepared = prepare(plugin, &source.config)?;
    let services = HostServices {
        secrets: prepared.secrets.clone(),
        ..HostServices::default()
    };
    let instance = AsyncInstance::open(plugin, &prepared.value, services, CALL_TIMEOUT)
        .await
        .with_context(|| format!("opening source `{}`", source.name))?;
    let mut out = Vec::new();
    for stream in Stream::ALL {
        if !plugin.manifest().capabilities.streams.contains(&stream) {
            continue;
        }
        let summary = match stream {
            Stream::Customers => pull_stream::<Customer>(ws, &instance, source, errors).await,
            Stream::Orders => pull_stream::<Order>(ws, &instance, source, errors).await,
            Stream::Events => pull_stream::<Event>(ws, &instance, source, errors).await,
        }
        .with_context(|| format!("pulling {stream} from source `{}`", source.name))?;
        if summary.pulled > 0 || summary.bad > 0 {
            out.push(summary);
        }
    }
    Ok(out)
}

/// A record type the store can take.
trait Storable: StreamRecord + Send + 'static {
    const KIND: StreamKind;

    async fn ingest(
        ws: &WorkspaceStore,
        source: &str,
        records: &[Self],
        cursor: &Value,
    ) -> Result<Upserted, cohort_store::StoreError>;
}

impl Storable for Customer {
    const KIND: StreamKind = StreamKind::Customers;
    async fn ingest(
        ws: &WorkspaceStore,
        source: &str,
        records: &[Self],
        cursor: &Value,
    ) -> Result<Upserted, cohort_store::StoreError> {
        ws.ingest_customers(source, records, cursor).await
    }
}

impl Storable for Order {
    const KIND: StreamKind = StreamKind::Orders;
    async fn ingest(
        ws: &WorkspaceStore,
        source: &str,
        records: &[Self],
        cursor: &Value,
    ) -> Result<Upserted, cohort_store::StoreError> {
        ws.ingest_orders(source, records, cursor).await
    }
}

impl Storable for Event {
    const KIND: StreamKind = StreamKind::Events;
    async fn ingest(
        ws: &WorkspaceStore,
        source: &str,
        records: &[Self],
        cursor: &Value,
    ) -> Result<Upserted, cohort_store::StoreError> {
        ws.ingest_events(source, records, cursor).await
    }
}

async fn pull_stream<R: Storable>(
    ws: &WorkspaceStore,
    instance: &AsyncInstance,
    source: &Source,
    errors: &mut Vec<RecordError>,
) -> Result<SourceSummary> {
    let mut cursor = ws
        .cursor(&source.name, <R as Storable>::KIND)
        .await?
        .unwrap_or(Value::Null);
    let mut summary = SourceSummary {
        source: source.name.clone(),
        stream: <R as Storable>::KIND.as_str().to_owned(),
        ..SourceSummary::default()
    };
    loop {
        let page: Page<R> = instance.next_page(cursor.clone(), PAGE_RECORDS).await?;
        summary.bad += page.rejects.len() as u64;
        errors.extend(page.rejects.iter().map(|r| RecordError {
            stage: "pull".to_owned(),
            location: format!(
                "source {} {}: {}",
                source.name,
                <R as Storable>::KIND.as_str(),
                r.location
            ),
            message: r.reason.clone(),
        }));
        let upserted = R::ingest(ws, &source.name, &page.records, &page.next_cursor).await?;
        summary.pulled += page.records.len() as u64;
        summary.new += upserted.new;
        summary.updated += upserted.updated;
        summary.unchanged += upserted.unchanged;
        if page.done {
            return Ok(summary);
        }
        cursor = page.next_cursor;
    }
}
