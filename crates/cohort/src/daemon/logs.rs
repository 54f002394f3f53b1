//! The daemon's log lines: `--log-format text|json`, on stderr, every line through the mask.
//!
//! A run's lines come from inside its span (`workspace`, `job`, `run_id`), so each carries
//! the ids without every call site repeating them; the planner's lines name the workspace and
//! job they are about. JSON lines are one object each: `timestamp`, `level`, `message`, the
//! span fields, then the event's own fields.
//!
//! `COHORT_LOG` sets the levels as for the CLI (default `info`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// `2026-01-01T03:00:00Z  INFO run{workspace=shop job=nightly run_id=7}: Run finished status=succeeded`
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the daemon's subscriber.
pub(crate) fn init(format: LogFormat) {
    let spec = std::env::var("COHORT_LOG").unwrap_or_else(|_| "info".to_owned());
    let filter: Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("warning: COHORT_LOG=`{spec}` is not a log filter ({e}); using info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(crate::logging::Masked)
                    .with_target(false)
                    .with_ansi(false),
            )
            .try_init(),
        LogFormat::Json => registry.with(JsonLines).try_init(),
    };
}

/// Writes each event as one JSON object.
struct JsonLines;

/// A span's fields, kept in its extensions.
struct SpanFields(BTreeMap<String, Value>);

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.0));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(map)) = ext.get_mut::<SpanFields>() {
                map.extend(fields.0);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert(
            "timestamp".to_owned(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert(
            "level".to_owned(),
            Value::String(event.metadata().level().as_str().to_lowercase()),
        );
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(map)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in map {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or(Value::Null);
        line.insert("message".to_owned(), message);
        line.extend(fields.0);
        let text = Value::Object(line).to_string();
        let masked = cohort_config::mask::redact(&text);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{masked}");
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}
