//! The JSON messages that cross the boundary, defined once for the host and the SDK.
//!
//! Every message is a JSON object. Readers ignore fields they do not know and writers may omit
//! optional ones, which is what lets a minor ABI version add fields without breaking older
//! peers. Records inside pages and batches are the canonical `cohort-core` records
//! ([`Customer`], [`Order`], [`Event`]) in their serde shape.

pub mod binary;
pub mod compact;
pub mod fast;
mod scan;

use std::fmt;

use cohort_core::{Customer, CustomerId, Event, Order};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a plugin is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Pulls records into Cohort.
    Source,
    /// Receives audience operations and messages from Cohort.
    Destination,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Source => "source",
            Kind::Destination => "destination",
        })
    }
}

/// A kind of canonical record a source can produce: the core's
/// [`Stream`](cohort_core::record::Stream), the one definition shared by wire, store and CSV.
pub use cohort_core::record::Stream;

/// How a destination applies a batch: the core's [`Mode`](cohort_core::delivery::Mode), the
/// one definition config, wire and store share (`upsert`, `mirror`, `send` in JSON).
pub use cohort_core::delivery::Mode as DestinationMode;

/// What a plugin can do, beyond its kinds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Streams a source produces (empty for a destination).
    pub streams: Vec<Stream>,
    /// Whether a source's cursor resumes: a re-run with the saved cursor pulls only what changed.
    pub incremental: bool,
    /// Modes a destination supports (empty for a source).
    pub destination_modes: Vec<DestinationMode>,
    /// Page formats a source can answer in besides JSON (ABI 1.1). Empty, or absent, means JSON
    /// only; the Rust SDK declares [`PageFormat::Binary`] for every source.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub page_formats: Vec<PageFormat>,
    /// Whether a destination learns some outcomes late (ABI 1.2): the host then calls `finish`
    /// at the end of every campaign's run, even one with nothing to push.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late_outcomes: bool,
    /// Whether a destination reports the addresses its vendor will not email (ABI 1.3): the
    /// host then calls `suppressions` before a run pushes, and stores them in Cohort's
    /// suppression list.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suppressions: bool,
    /// Operations per push a destination works best with, used where the destination's
    /// config sets no `batch_size` (instead of the host's default, 500). For vendors whose bulk
    /// endpoints pay off only on large sets (Mailchimp's batch jobs): at 500 a push never
    /// reaches them. Optional; a host that does not know it uses its default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// How many pushes a destination takes at once, each on an instance of its own (default
    /// 1: one push after another). Between two pushes a destination's connections sit idle
    /// while the host records outcomes and hands over the next batch, and the tail of a push
    /// (its last requests) leaves most of them idle too; a second push in flight fills both.
    /// Only for a plugin whose instances share their vendor's limits through the host (a
    /// rate-limit bucket, `HttpRequest::connections`), not in state of their own, and whose
    /// operations do not depend on one another. The host still pushes a replace session one
    /// batch at a time and a campaign's removals before its upserts. Optional; a host that
    /// does not know it pushes one batch at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent_pushes: Option<u32>,
}

/// How a page of records is encoded (ABI 1.1).
///
/// JSON is the default, understood by every plugin and host. A host asks for another format in
/// [`PageRequest::format`] only when the plugin's manifest lists it in
/// `capabilities.page_formats`; the plugin may still answer JSON, and the host reads either
/// (a binary page starts with a NUL byte, which JSON never does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageFormat {
    /// The page JSON described in `docs/plugins.md`.
    #[default]
    Json,
    /// The binary page format, version 1 ([`binary`]).
    Binary,
}

impl PageFormat {
    /// The format's name as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            PageFormat::Json => "json",
            PageFormat::Binary => "binary",
        }
    }

    fn is_json(&self) -> bool {
        *self == PageFormat::Json
    }
}

/// A plugin's description of itself, returned by `manifest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Short unique name (`csv`, `shopify`): lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// One line for `cohort plugins list`.
    #[serde(default)]
    pub description: String,
    /// Source, destination, or both.
    pub kinds: Vec<Kind>,
    /// What it can do.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// JSON Schema of its config; the host validates every config against it before `open`.
    pub config_schema: Value,
    /// A working example: a config, the files it reads and the HTTP exchanges it makes, so that
    /// `cohort plugins check PATH` exercises the plugin fully with no flags. Optional; hosts that
    /// do not know the field ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Example>,
}

impl Manifest {
    /// A source manifest with an empty config schema (an object with no fields).
    pub fn source(name: impl Into<String>, version: impl Into<String>) -> Manifest {
        Manifest::new(name, version, Kind::Source)
    }

    /// A destination manifest with an empty config schema (an object with no fields).
    pub fn destination(name: impl Into<String>, version: impl Into<String>) -> Manifest {
        Manifest::new(name, version, Kind::Destination)
    }

    fn new(name: impl Into<String>, version: impl Into<String>, kind: Kind) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            kinds: vec![kind],
            capabilities: Capabilities::default(),
            config_schema: serde_json::json!({"type": "object", "additionalProperties": false}),
            example: None,
        }
    }

    /// Adds a kind (a source that is also a destination).
    pub fn also(mut self, kind: Kind) -> Manifest {
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind);
        }
        self
    }

    /// Sets the one-line description.
    pub fn description(mut self, text: impl Into<String>) -> Manifest {
        self.description = text.into();
        self
    }

    /// Sets the streams a source produces.
    pub fn streams(mut self, streams: impl IntoIterator<Item = Stream>) -> Manifest {
        self.capabilities.streams = streams.into_iter().collect();
        self
    }

    /// Declares that the source's cursor resumes incrementally.
    pub fn incremental(mut self) -> Manifest {
        self.capabilities.incremental = true;
        self
    }

    /// Declares that the destination learns outcomes late (see
    /// [`Capabilities::late_outcomes`]).
    pub fn late_outcomes(mut self) -> Manifest {
        self.capabilities.late_outcomes = true;
        self
    }

    /// Declares that the destination reports its vendor's suppressions (see
    /// [`Capabilities::suppressions`]).
    pub fn suppressions(mut self) -> Manifest {
        self.capabilities.suppressions = true;
        self
    }

    /// Declares the operations per push the destination works best with (see
    /// [`Capabilities::batch_size`]).
    pub fn batch_size(mut self, operations: u32) -> Manifest {
        self.capabilities.batch_size = Some(operations);
        self
    }

    /// Declares how many pushes the destination takes at once, each on its own instance (see
    /// [`Capabilities::concurrent_pushes`]).
    pub fn concurrent_pushes(mut self, pushes: u32) -> Manifest {
        self.capabilities.concurrent_pushes = Some(pushes);
        self
    }

    /// Sets the modes a destination supports.
    pub fn modes(mut self, modes: impl IntoIterator<Item = DestinationMode>) -> Manifest {
        self.capabilities.destination_modes = modes.into_iter().collect();
        self
    }

    /// Sets the config schema to the one `schemars` derives for `C` (doc comments become
    /// descriptions, so the schema documents the config).
    pub fn config_schema_of<C: schemars::JsonSchema>(mut self) -> Manifest {
        self.config_schema = serde_json::to_value(schemars::schema_for!(C)).unwrap_or_default();
        self
    }

    /// Sets a hand-written config schema.
    pub fn config_schema(mut self, schema: Value) -> Manifest {
        self.config_schema = schema;
        self
    }

    /// Ships a working example (see [`Example`]).
    pub fn example(mut self, example: Example) -> Manifest {
        self.example = Some(example);
        self
    }

    /// Whether the plugin declares `kind`.
    pub fn is(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }

    /// The kinds as text: `source`, `destination` or `source+destination`.
    pub fn kinds_label(&self) -> String {
        self.kinds
            .iter()
            .map(Kind::to_string)
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Checks what the ABI requires of a manifest, collecting every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            problems.push(format!(
                "name `{}` must be 1-64 characters of lowercase letters, digits, `-` or `_`",
                self.name
            ));
        }
        if self.version.trim().is_empty() {
            problems.push("version is empty".to_owned());
        }
        if self.kinds.is_empty() {
            problems.push("kinds is empty: declare `source`, `destination` or both".to_owned());
        }
        if self.is(Kind::Source) && self.capabilities.streams.is_empty() {
            problems
                .push("a source must list at least one stream in capabilities.streams".to_owned());
        }
        if self.is(Kind::Destination) && self.capabilities.destination_modes.is_empty() {
            problems.push(
                "a destination must list at least one mode in capabilities.destination_modes"
                    .to_owned(),
            );
        }
        if !self.is(Kind::Source) && !self.capabilities.streams.is_empty() {
            problems.push("capabilities.streams is set but the plugin is not a source".to_owned());
        }
        match self.capabilities.batch_size {
            Some(0) => problems.push("capabilities.batch_size must be 1 or more".to_owned()),
            Some(_) if !self.is(Kind::Destination) => problems.push(
                "capabilities.batch_size is set but the plugin is not a destination".to_owned(),
            ),
            _ => {}
        }
        match self.capabilities.concurrent_pushes {
            Some(0) => problems.push("capabilities.concurrent_pushes must be 1 or more".to_owned()),
            Some(_) if !self.is(Kind::Destination) => problems.push(
                "capabilities.concurrent_pushes is set but the plugin is not a destination"
                    .to_owned(),
            ),
            _ => {}
        }
        if let Err(e) = crate::schema::Schema::new(self.config_schema.clone()) {
            problems.push(format!("config_schema: {e}"));
        }
        problems
    }
}

/// A plugin's own example: what `cohort plugins check PATH` runs it with when given no config.
///
/// Strings in the config, in the files and in the exchanges may hold two placeholders, filled in
/// by whoever runs the example: `{dir}`, a fresh temporary folder holding [`files`](Self::files),
/// and `{base_url}`, the address of a local HTTP server (`http://127.0.0.1:PORT`) that answers
/// the [`http`](Self::http) exchanges. A connector's example therefore runs offline, against
/// canned answers shaped like its vendor's, through the real ABI and the host's HTTP service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Example {
    /// A config the plugin accepts, and that gives a source records in every stream.
    pub config: Value,
    /// Files written under `{dir}` before the plugin opens: a path relative to `{dir}` (no
    /// `..`), and the file's text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, String)>,
    /// Canned HTTP answers served at `{base_url}`; a request that matches none is answered 404
    /// with the list of what the example serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<Exchange>,
}

impl Example {
    /// An example with this config and nothing else.
    pub fn config(config: Value) -> Example {
        Example {
            config,
            ..Example::default()
        }
    }

    /// Adds a file written under `{dir}`.
    pub fn file(mut self, path: impl Into<String>, text: impl Into<String>) -> Example {
        self.files.push((path.into(), text.into()));
        self
    }

    /// Adds a canned HTTP exchange.
    pub fn exchange(mut self, exchange: Exchange) -> Example {
        self.http.push(exchange);
        self
    }
}

/// One canned HTTP answer of an [`Example`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Exchange {
    /// The request's method (`GET` by default).
    pub method: String,
    /// The request's path and query (`/v1/orders?page=2`). The query matches whatever the order
    /// of its parameters; without a query, the exchange answers any query on that path that no
    /// exchange with a query matches.
    pub path: String,
    /// Status of the answer (200 by default).
    pub status: u16,
    /// Headers of the answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Body of the answer, as text; a JSON body is given with [`Exchange::json`].
    pub body: String,
}

impl Default for Exchange {
    fn default() -> Exchange {
        Exchange {
            method: "GET".to_owned(),
            path: "/".to_owned(),
            status: 200,
            headers: Vec::new(),
            body: String::new(),
        }
    }
}

impl Exchange {
    /// Answers `GET path` with an empty 200.
    pub fn get(path: impl Into<String>) -> Exchange {
        Exchange::new("GET", path)
    }

    /// Answers `POST path` with an empty 200.
    pub fn post(path: impl Into<String>) -> Exchange {
        Exchange::new("POST", path)
    }

    /// Answers `METHOD path` with an empty 200.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Exchange {
        Exchange {
            method: method.into(),
            path: path.into(),
            ..Exchange::default()
        }
    }

    /// Sets the status.
    pub fn status(mut self, status: u16) -> Exchange {
        self.status = status;
        self
    }

    /// Adds a header to the answer.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Exchange {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers this JSON, with `Content-Type: application/json`.
    pub fn json(self, body: &Value) -> Exchange {
        let mut e = self.header("Content-Type", "application/json");
        e.body = body.to_string();
        e
    }

    /// Answers this text.
    pub fn text(mut self, body: impl Into<String>) -> Exchange {
        self.body = body.into();
        self
    }
}

/// One config problem, located by a JSON Pointer into the config (`/delimiter`, `` for the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigIssue {
    /// JSON Pointer to the offending value.
    pub path: String,
    /// What is wrong, and ideally what is expected.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// What kind of failure an [`ErrorBody`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The job failed; retrying as is will not help.
    #[default]
    Failed,
    /// The config is wrong: see `config_issues`. The user must fix it.
    Config,
    /// The plugin does not support what was asked (a stream, a mode).
    Unsupported,
    /// The saved cursor is not understood (e.g. written by an incompatible version).
    BadCursor,
    /// The work was cancelled on the host's request.
    Cancelled,
}

/// The JSON of `out` for any non-OK status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    /// One sentence for the user.
    pub message: String,
    /// What kind of failure (for `STATUS_ERROR`).
    pub kind: ErrorKind,
    /// For [`ErrorKind::Config`]: every problem found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_issues: Vec<ConfigIssue>,
    /// For `STATUS_RETRY`: how long to wait before trying again, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Anything else worth keeping in the run record.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub details: Value,
}

/// A source's request for the next page of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Which records to return.
    pub stream: Stream,
    /// The `next_cursor` of the previous page, or the cursor saved by the last run, or null to
    /// start from the beginning.
    #[serde(default)]
    pub cursor: Value,
    /// Most records the page may hold (the host's backpressure).
    pub max_records: usize,
    /// The format the host would like the page in (ABI 1.1). Absent means JSON; a host sends
    /// another value only to a plugin that lists it in `capabilities.page_formats`.
    #[serde(default, skip_serializing_if = "PageFormat::is_json")]
    pub format: PageFormat,
}

/// A record the source could not turn into a canonical record: reported, then skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Where it was (`orders.csv:17:3`, `order 4512`).
    pub location: String,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

/// A page of records, the answer to a [`PageRequest`].
///
/// `next_cursor` is where the next page starts. When `done` is true the stream has nothing more
/// for now, and `next_cursor` is what the host saves so that the next run resumes there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Page<R> {
    /// The records, at most `max_records`.
    pub records: Vec<R>,
    /// Records found but skipped, each with where and why.
    #[serde(default)]
    pub rejects: Vec<Reject>,
    /// Where to resume.
    #[serde(default)]
    pub next_cursor: Value,
    /// Whether the stream is exhausted for now.
    pub done: bool,
    /// Ids of records of this stream that are gone at the source (ABI 1.2): an archived CRM
    /// contact, a cancelled cart. The host marks them deleted; sent again later, a record comes
    /// back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Set on every page of a full pass (ABI 1.2): the plugin is reading the whole stream from
    /// its start (a changed export read again in full), and names the pass so that a pass
    /// resumed after a crash keeps its name. When the pass's last page (`done`) arrives, every
    /// record of the stream the pass did not send is marked deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
}

/// A canonical record type and the stream it belongs to.
pub trait StreamRecord: Serialize + for<'de> Deserialize<'de> + Send + 'static {
    /// The stream of this record type.
    const STREAM: Stream;

    /// Appends the record's compact JSON (see [`compact`]) to `buf`.
    fn write_json(&self, buf: &mut Vec<u8>);

    /// Appends the record in the [`binary`] page format to `buf`.
    fn write_binary(&self, buf: &mut Vec<u8>);

    /// Reads one record of the [`binary`] page format.
    fn read_binary(reader: &mut binary::Reader<'_>) -> Result<Self, binary::BinaryError>;

    /// Reads a JSON page of these records (see [`fast`]); the canonical `Deserialize` by default.
    fn read_page(bytes: &[u8]) -> Result<Page<Self>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

impl StreamRecord for Customer {
    const STREAM: Stream = Stream::Customers;
    fn write_json(&self, buf: &mut Vec<u8>) {
        compact::customer(buf, self);
    }
    fn write_binary(&self, buf: &mut Vec<u8>) {
        binary::write_customer(buf, &binary::CustomerRef::from(self));
    }
    fn read_binary(reader: &mut binary::Reader<'_>) -> Result<Self, binary::BinaryError> {
        reader.customer()
    }
}
impl StreamRecord for Order {
    const STREAM: Stream = Stream::Orders;
    fn write_json(&self, buf: &mut Vec<u8>) {
        compact::order(buf, self);
    }
    fn write_binary(&self, buf: &mut Vec<u8>) {
        binary::write_order(buf, &binary::OrderRef::from(self));
    }
    fn read_binary(reader: &mut binary::Reader<'_>) -> Result<Self, binary::BinaryError> {
        reader.order()
    }
    fn read_page(bytes: &[u8]) -> Result<Page<Self>, serde_json::Error> {
        fast::orders(bytes)
    }
}
impl StreamRecord for Event {
    const STREAM: Stream = Stream::Events;
    fn write_json(&self, buf: &mut Vec<u8>) {
        compact::event(buf, self);
    }
    fn write_binary(&self, buf: &mut Vec<u8>) {
        binary::write_event(buf, self);
    }
    fn read_binary(reader: &mut binary::Reader<'_>) -> Result<Self, binary::BinaryError> {
        reader.event()
    }
    fn read_page(bytes: &[u8]) -> Result<Page<Self>, serde_json::Error> {
        fast::events(bytes)
    }
}

/// Why a page could not be read, in either format.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A JSON page that does not read as a page of the expected records.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A binary page that does not read exactly.
    #[error("{0}")]
    Binary(#[from] binary::BinaryError),
}

/// Reads a page of `R` in whichever format it is: [`binary`] when it starts with its magic,
/// JSON otherwise.
pub fn read_page<R: StreamRecord>(bytes: &[u8]) -> Result<Page<R>, PageError> {
    if binary::is_binary(bytes) {
        Ok(binary::read_page(bytes, R::STREAM, R::read_binary)?)
    } else {
        Ok(R::read_page(bytes)?)
    }
}

/// What to do with one customer at a destination: the core's
/// [`Action`](cohort_core::delivery::Action) (`upsert`, `remove`, `send` in JSON).
pub use cohort_core::delivery::Action;

/// A rendered message, for [`Action::Send`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    /// Sender address.
    pub from: Option<String>,
    /// Recipient addresses.
    pub to: Vec<String>,
    /// Subject line.
    pub subject: Option<String>,
    /// Plain-text body.
    pub text: Option<String>,
    /// HTML body.
    pub html: Option<String>,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
}

/// One operation of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// Idempotency key: the destination must apply an operation with a key it has already
    /// applied at most once.
    pub key: String,
    /// What to do.
    pub action: Action,
    /// Who it is about.
    pub customer_id: CustomerId,
    /// The whole customer record. Cohort no longer sends it (data minimisation: a destination
    /// gets only the campaign's `fields`, or the rendered message); kept so that older plugins
    /// that read it still parse batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
    /// Rendered payload from the campaign's templates (the campaign's `fields`). For a
    /// removal, the payload the destination acknowledged last: what to remove.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub payload: Value,
    /// For an upsert that changes a member already at the destination, the payload it
    /// acknowledged last (ABI 1.2): a destination keyed by what the payload holds (hashed
    /// emails at an ad platform) removes the old keys when they changed.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub previous: Value,
    /// Rendered message, for [`Action::Send`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// A batch of operations for a destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The workspace the campaign belongs to, when the host says (a destination that serves
    /// several workspaces, a webhook, tells them apart by it). Optional: older hosts omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The campaign pushing the batch, when the host says. Optional: older hosts omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The mode the batch is applied in.
    pub mode: DestinationMode,
    /// The audience (segment, list) the operations are about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Set on the batches of a full replace (`cohort run --resync`, ABI 1.2): together they
    /// hold every member the audience should have (upserts only). A destination that can
    /// replace an audience wholesale does so; others apply them as upserts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Replace>,
    /// The operations, each with its own key.
    pub operations: Vec<Operation>,
}

/// Where a batch stands in a replace session (see [`Batch::replace`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replace {
    /// The session, the same for every batch of one replace (a destination may resume it).
    pub session: String,
    /// 1 for the session's first batch, then +1.
    pub seq: u32,
    /// Whether this is the session's last batch.
    pub last: bool,
    /// How many members the session holds in all.
    pub estimated_total: u64,
}

/// A request to the host's state service (ABI 1.2, [`HostVtable::state`](crate::abi::HostVtable)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StateRequest {
    /// The value under `key`.
    Get {
        /// The key, at most 512 bytes.
        key: String,
    },
    /// Store `value` under `key`.
    Put {
        /// The key, at most 512 bytes.
        key: String,
        /// Any JSON, at most 1 MiB once encoded.
        value: Value,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Applied (or already applied earlier under the same key).
    Ok,
    /// Refused for good; the reason goes to the run record.
    Rejected {
        /// Why.
        reason: String,
    },
    /// Not applied this time; try again after the delay.
    Retry {
        /// Why.
        reason: String,
        /// How long to wait, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// The result of one operation, by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The operation's idempotency key.
    pub key: String,
    /// What happened.
    #[serde(flatten)]
    pub status: OutcomeStatus,
}

/// The answer to a [`Batch`]: one outcome per operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// Outcomes, one per operation key.
    pub outcomes: Vec<Outcome>,
}

/// What the host asks a destination's `suppressions` for (ABI 1.3).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SuppressionsRequest {
    /// Where the last read stopped, as the plugin answered it (`null`: from the beginning).
    /// The host saves it only once the run has stored what was read with it, and never in a dry
    /// run, so a crash or a dry run reads the same suppressions again.
    pub cursor: Value,
}

/// Why a vendor will not email an address: the reasons Cohort's suppression list knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionReason {
    /// The person unsubscribed (or was unsubscribed by the vendor's staff).
    Unsubscribed,
    /// The address bounced, or the vendor cleaned it.
    Bounced,
    /// The person marked a message as spam.
    Complained,
}

/// One address a vendor will not email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The address.
    pub email: String,
    /// Why, in Cohort's terms.
    pub reason: SuppressionReason,
    /// The vendor's own word for it (`cleaned`, `global unsubscribe`, `SPAM_COMPLAINT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A destination's answer to a [`SuppressionsRequest`] (ABI 1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuppressionsPage {
    /// Addresses suppressed since the request's cursor (the same address may come again).
    #[serde(default)]
    pub suppressions: Vec<Suppression>,
    /// Where the next read starts.
    #[serde(default)]
    pub next_cursor: Value,
    /// Whether this was the last page for now; when `false` the host asks again with
    /// `next_cursor`.
    #[serde(default = "yes")]
    pub done: bool,
}

fn yes() -> bool {
    true
}

impl Default for SuppressionsPage {
    fn default() -> SuppressionsPage {
        SuppressionsPage {
            suppressions: Vec::new(),
            next_cursor: Value::Null,
            done: true,
        }
    }
}

/// An HTTP request a plugin asks the host to perform.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpRequest {
    /// `GET`, `POST`, … (default `GET`).
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body as UTF-8 text (JSON, form).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Overrides the host's per-request timeout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Rate-limit bucket within the plugin (shop domain, API key id); requests of one plugin
    /// and account share one limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Whether the host may retry on 5xx and transport errors. Defaults to true for GET, HEAD,
    /// PUT, DELETE and OPTIONS, false otherwise (a 429 is always retried: it was not processed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// Extra values to redact from every log line (tokens inside bodies, say). The host already
    /// redacts config secrets and sensitive headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The vendor's limit for this request's account, when the plugin knows it (a plan or tier
    /// named in its config): the host paces the account's bucket to it instead of its default.
    /// A limit the instance is configured with (a destination's `rate_limit`) wins; of two
    /// different limits for one account, the stricter applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// The vendor's limit of simultaneous requests for this request's account (Mailchimp:
    /// 10), when it limits connections rather than (or as well as) requests per second. The
    /// host lets at most this many of the account's requests be out at once, across every
    /// instance of the plugin in the process; a request waits for a place before each attempt
    /// and gives it back while it waits to retry. Of two different limits for one account, the
    /// stricter applies. ABI 1.4: an older host ignores it, so the SDK's
    /// [`Client::connections`](crate::sdk::http::Client::connections) caps in the plugin there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
}

/// A token-bucket rate limit a plugin asks for its account ([`HttpRequest::rate_limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: u32,
}

/// The host's answer to an [`HttpRequest`]: whatever the server finally said.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// Headers, lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    /// Body as text (invalid UTF-8 is replaced).
    pub body: String,
    /// How many attempts the host made.
    pub attempts: u32,
}

impl HttpResponse {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcome_json_is_flat_with_a_status_tag() {
        let o = Outcome {
            key: "k1".into(),
            status: OutcomeStatus::Retry {
                reason: "busy".into(),
                retry_after_ms: Some(500),
            },
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(
            v,
            json!({"key":"k1","status":"retry","reason":"busy","retry_after_ms":500})
        );
        let back: Outcome = serde_json::from_value(json!({"key":"k2","status":"ok"})).unwrap();
        assert_eq!(back.status, OutcomeStatus::Ok);
    }

    #[test]
    fn page_reads_canonical_records_and_ignores_unknown_fields() {
        let page: Page<Order> = serde_json::from_value(json!({
            "records": [{"id": "1", "customer_id": "7", "total": "12.5"}],
            "next_cursor": {"offset": 10},
            "done": false,
            "added_in_a_later_minor": true
        }))
        .unwrap();
        assert_eq!(page.records[0].customer_id.as_str(), "7");
        assert!(page.rejects.is_empty());
    }

    #[test]
    fn manifest_problems_name_each_mistake() {
        let m = Manifest {
            name: "Bad Name".into(),
            version: "1.0.0".into(),
            description: String::new(),
            kinds: vec![Kind::Source],
            capabilities: Capabilities::default(),
            config_schema: json!({"type": "object"}),
            example: None,
        };
        let problems = m.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`Bad Name`"));
        assert!(problems[1].contains("capabilities.streams"));
    }

    #[test]
    fn a_batch_size_hint_is_for_destinations_and_at_least_one() {
        let destination = Manifest::destination("d", "1.0.0").modes([DestinationMode::Upsert]);
        assert!(destination.clone().batch_size(20_000).problems().is_empty());
        assert_eq!(
            destination.batch_size(0).problems(),
            ["capabilities.batch_size must be 1 or more"]
        );
        let mut source = Manifest::source("s", "1.0.0").streams([Stream::Customers]);
        source.capabilities.batch_size = Some(10);
        assert_eq!(
            source.problems(),
            ["capabilities.batch_size is set but the plugin is not a destination"]
        );
    }

    #[test]
    fn concurrent_pushes_are_for_destinations_and_at_least_one() {
        let destination = Manifest::destination("d", "1.0.0").modes([DestinationMode::Upsert]);
        assert!(
            destination
                .clone()
                .concurrent_pushes(2)
                .problems()
                .is_empty()
        );
        assert_eq!(
            destination.concurrent_pushes(0).problems(),
            ["capabilities.concurrent_pushes must be 1 or more"]
        );
        let mut source = Manifest::source("s", "1.0.0").streams([Stream::Customers]);
        source.capabilities.concurrent_pushes = Some(2);
        assert_eq!(
            source.problems(),
            ["capabilities.concurrent_pushes is set but the plugin is not a destination"]
        );
    }

    #[test]
    fn a_manifest_without_concurrent_pushes_reads_as_one_push_at_a_time() {
        let json = r#"{"name":"d","version":"1","kinds":["destination"],"config_schema":{},
                       "capabilities":{"destination_modes":["upsert"]}}"#;
        let manifest: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(manifest.capabilities.concurrent_pushes, None);
        let written = serde_json::to_value(&manifest).unwrap();
        assert!(written["capabilities"].get("concurrent_pushes").is_none());
    }
}
