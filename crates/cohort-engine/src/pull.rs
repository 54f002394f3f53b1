//! Stage 1: pull every source incrementally into the store.
//!
//! Each page is upserted together with the cursor that follows it, in one transaction, so a
//! run that dies mid-pull resumes after the last stored page: nothing is pulled twice into the
//! counts, nothing is lost. Rows a source rejects, and records no store could hold faithfully
//! (a NUL byte in a text field), are recorded with their location and skipped; the rest of the
//! page still lands. A page that fails for a reason that may pass (the vendor's 429 or 5xx, a
//! timeout) is asked for again, with the same backoff as a push.

use cohort_config::Source;
use cohort_core::record::NulFree;
use cohort_core::{Customer, Event, Order};
use cohort_plugin_host::wire::{Page, Stream, StreamRecord};
use cohort_plugin_host::{HostServices, HttpService, RetryPolicy, retry};
use cohort_store::{RecordError, Records, Sweep, WorkspaceStore};
use serde_json::Value;

use crate::error::{Context, Result};
use crate::instance::Reopening;
use crate::observer::{Observer, Stage};
use crate::plugins::{Plugins, prepare};
use crate::state::PluginState;
use crate::summary::SourceSummary;

/// Records asked for per page: large enough to amortise a transaction, small enough that a
/// page of orders stays a few megabytes.
const PAGE_RECORDS: usize = 5_000;

/// What the pull stage needs from the run.
pub(crate) struct PullContext<'a> {
    pub(crate) ws: &'a WorkspaceStore,
    pub(crate) plugins: &'a Plugins,
    pub(crate) http: &'a HttpService,
    pub(crate) services: HostServices,
    pub(crate) observer: &'a dyn Observer,
}

/// Pulls every stream `source` offers into the store.
pub(crate) async fn pull_source(
    cx: &PullContext<'_>,
    source: &Source,
    errors: &mut Vec<RecordError>,
) -> Result<Vec<SourceSummary>> {
    let plugin = cx.plugins.source(&source.plugin)?;
    let prepared = prepare(plugin, &source.config)?;
    let state = PluginState::new(cx.ws, format!("source:{}", source.name));
    let services = HostServices {
        secrets: prepared.secrets.clone(),
        ..cx.services.clone()
    }
    .with_http(cx.http.clone())
    .with_state(std::sync::Arc::new(state));
    let instance = Reopening::open(plugin, &prepared.value, services)
        .await
        .with_context(|| format!("opening source `{}`", source.name))?;
    let mut out = Vec::new();
    for stream in Stream::ALL {
        if !plugin.manifest().capabilities.streams.contains(&stream) {
            continue;
        }
        let stage = Stage::Pull {
            source: source.name.clone(),
            stream: stream.as_str().to_owned(),
        };
        cx.observer.stage(cx.ws.id(), &stage);
        let summary = match stream {
            Stream::Customers => pull_stream::<Customer>(cx, &instance, source, errors).await,
            Stream::Orders => pull_stream::<Order>(cx, &instance, source, errors).await,
            Stream::Events => pull_stream::<Event>(cx, &instance, source, errors).await,
        }
        .with_context(|| format!("pulling {stream} from source `{}`", source.name))?;
        cx.observer.stage_done(
            cx.ws.id(),
            &stage,
            &format!(
                "{} pulled, {} new, {} bad",
                summary.pulled, summary.new, summary.bad
            ),
        );
        if summary.pulled > 0 || summary.bad > 0 || summary.deleted > 0 {
            out.push(summary);
        }
    }
    Ok(out)
}

/// A record type the store can take.
trait Storable: StreamRecord + NulFree + Send + 'static {
    /// How the record is named in an error: its id.
    fn label(&self) -> String;

    /// The page's records as the store takes them.
    fn records(records: &[Self]) -> Records<'_>;
}

impl Storable for Customer {
    fn label(&self) -> String {
        format!("customer {}", self.id.as_str())
    }
    fn records(records: &[Self]) -> Records<'_> {
        Records::Customers(records)
    }
}

impl Storable for Order {
    fn label(&self) -> String {
        format!("order {}", self.id)
    }
    fn records(records: &[Self]) -> Records<'_> {
        Records::Orders(records)
    }
}

impl Storable for Event {
    fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("event {id}"),
            None => format!(
                "event {} of customer {} at {}",
                self.kind.as_str(),
                self.customer_id.as_str(),
                self.occurred_at
            ),
        }
    }
    fn records(records: &[Self]) -> Records<'_> {
        Records::Events(records)
    }
}

async fn pull_stream<R: Storable>(
    cx: &PullContext<'_>,
    instance: &Reopening<'_>,
    source: &Source,
    errors: &mut Vec<RecordError>,
) -> Result<SourceSummary> {
    let kind = R::STREAM.as_str();
    let mut cursor = cx
        .ws
        .cursor(&source.name, R::STREAM)
        .await?
        .unwrap_or(Value::Null);
    let mut summary = SourceSummary {
        source: source.name.clone(),
        stream: kind.to_owned(),
        ..SourceSummary::default()
    };
    let location = |what: &str| format!("source {} {kind}: {what}", source.name);
    loop {
        let page: Page<R> = retry(&RetryPolicy::default(), &cx.services.cancel, |_| {
            let cursor = cursor.clone();
            instance.call(move |i| async move { i.next_page(cursor, PAGE_RECORDS).await })
        })
        .await?;
        summary.bad += page.rejects.len() as u64;
        errors.extend(page.rejects.iter().map(|r| RecordError {
            stage: "pull".to_owned(),
            location: location(&r.location),
            message: r.reason.clone(),
        }));
        let pulled = page.records.len() as u64;
        let (records, unfit): (Vec<R>, Vec<R>) = page
            .records
            .into_iter()
            .partition(|r| r.nul_field().is_none());
        for r in &unfit {
            summary.bad += 1;
            errors.push(RecordError {
                stage: "pull".to_owned(),
                location: location(&r.label()),
                message: format!(
                    "field `{}` contains a NUL byte, which no store keeps faithfully; the record was skipped",
                    r.nul_field().unwrap_or_default()
                ),
            });
        }
        let sweep = Sweep {
            deleted: &page.deleted,
            pass: page.pass.as_deref(),
            done: page.done,
        };
        let upserted = cx
            .ws
            .ingest(
                &source.name,
                R::records(&records),
                &page.next_cursor,
                &sweep,
            )
            .await?;
        summary.pulled += pulled;
        summary.new += upserted.new;
        summary.updated += upserted.updated;
        summary.unchanged += upserted.unchanged;
        summary.deleted += upserted.deleted;
        cx.observer.progress(summary.pulled, None);
        if page.done {
            return Ok(summary);
        }
        cursor = page.next_cursor;
    }
}
