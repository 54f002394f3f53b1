//! The conformance kit: what every plugin must do, checked against the real library.
//!
//! Each plugin's own tests run it on the `cdylib` cargo built, and `cohort plugins check PATH`
//! runs it on any file, so an integrator and an operator see the same verdict. It goes through
//! the same loader and the same ABI calls as a real run: nothing here trusts the plugin.
//!
//! Checks: the library loads and speaks this ABI; the manifest and config schema are valid; the
//! fixture config is accepted and a bad one is rejected with its path; for a source, every stream
//! pages to an end within bounds, its binary pages (when it declares them) hold exactly what its
//! JSON pages hold, a cursor resumes exactly where it stopped, a finished cursor
//! yields nothing new (incremental sources), and a cursor the plugin never made is refused
//! without a panic; for a destination, each push answers one outcome per operation and repeating
//! a batch is harmless; and, given a config that makes the plugin panic, the panic is contained
//! and the host goes on.

use std::fmt;
use std::path::{Path, PathBuf};

use cohort_plugin_api::wire::{
    Action, Batch, DestinationMode, Kind, Message, Operation, OutcomeStatus, PageFormat, Stream,
    StreamRecord,
};
use cohort_plugin_api::{Customer, CustomerId, Event, Order};
use serde_json::{Value, json};

use crate::error::CallError;
use crate::http::HttpService;
use crate::plugin::{Instance, LoadedPlugin};
use crate::services::HostServices;

/// What the kit needs to know about a plugin to exercise it.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// A config the plugin must accept (and, for a source, that yields some records).
    pub config: Value,
    /// A config the plugin must reject; by default the valid config plus an unknown field.
    pub bad_config: Option<Value>,
    /// A config that makes the plugin panic when pulled or pushed (test plugins only).
    pub panic_config: Option<Value>,
    /// Records per page; small, so that several pages are exercised.
    pub page_size: usize,
    /// Pages after which paging is declared endless.
    pub max_pages: usize,
    /// The batch to push to a destination; a small upsert (or send) batch by default.
    pub batch: Option<Batch>,
    /// Services handed to every instance: HTTP included (the process's shared service), so a
    /// connector is exercised as in a run.
    pub services: HostServices,
}

impl Fixture {
    /// A fixture with a valid config and defaults for the rest.
    pub fn new(config: Value) -> Fixture {
        let services = HostServices {
            http: HttpService::shared().ok(),
            ..HostServices::default()
        };
        Fixture {
            config,
            bad_config: None,
            panic_config: None,
            page_size: 3,
            max_pages: 100_000,
            batch: None,
            services,
        }
    }

    /// Offers plugins this HTTP service (one with a quick policy, say) instead of the shared
    /// one; the config points the plugin at a local server (the test kit's fake server).
    pub fn with_http(mut self, http: HttpService) -> Fixture {
        self.services.http = Some(http);
        self
    }

    /// Hands every instance these services (a log collector, say).
    pub fn services(mut self, services: HostServices) -> Fixture {
        self.services = services;
        self
    }

    /// Sets the config that must be rejected.
    pub fn bad_config(mut self, config: Value) -> Fixture {
        self.bad_config = Some(config);
        self
    }

    /// Sets a config that makes the plugin panic.
    pub fn panic_config(mut self, config: Value) -> Fixture {
        self.panic_config = Some(config);
        self
    }

    /// Sets the page size.
    pub fn page_size(mut self, n: usize) -> Fixture {
        self.page_size = n.max(1);
        self
    }

    /// Sets the batch pushed to a destination.
    pub fn batch(mut self, batch: Batch) -> Fixture {
        self.batch = Some(batch);
        self
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It holds; the text says what was seen.
    Passed(String),
    /// It does not hold; the text says why.
    Failed(String),
    /// It could not be checked; the text says what would allow it.
    Skipped(String),
}

/// One check and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// Every check run against one plugin file.
#[derive(Debug, Clone)]
pub struct Report {
    /// The file.
    pub path: PathBuf,
    /// `name version` once the manifest was read.
    pub plugin: Option<String>,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether no check failed.
    pub fn passed(&self) -> bool {
        !self
            .checks
            .iter()
            .any(|c| matches!(c.verdict, Verdict::Failed(_)))
    }

    /// The verdict of the named check, if it ran.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| &c.verdict)
    }

    /// Panics with the whole report unless every check passed or was skipped (for tests).
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.passed(), "conformance failed:\n{self}");
    }

    fn push(&mut self, name: impl Into<String>, verdict: Verdict) {
        self.checks.push(Check {
            name: name.into(),
            verdict,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({})",
            self.plugin.as_deref().unwrap_or("?"),
            self.path.display()
        )?;
        for c in &self.checks {
            let (tag, text) = match &c.verdict {
                Verdict::Passed(t) => ("pass", t),
                Verdict::Failed(t) => ("FAIL", t),
                Verdict::Skipped(t) => ("skip", t),
            };
            if text.is_empty() {
                writeln!(f, "  {tag}  {}", c.name)?;
            } else {
                writeln!(f, "  {tag}  {}: {text}", c.name)?;
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Failed(_)))
            .count();
        let skipped = self
            .checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Skipped(_)))
            .count();
        write!(
            f,
            "{} checks: {} passed, {failed} failed, {skipped} skipped",
            self.checks.len(),
            self.checks.len() - failed - skipped
        )
    }
}

/// Runs every applicable check against the plugin at `path`.
pub fn run(path: &Path, fixture: &Fixture) -> Report {
    let mut report = Report {
        path: path.to_path_buf(),
        plugin: None,
        checks: Vec::new(),
    };
    let plugin = match LoadedPlugin::load(path) {
        Ok(p) => p,
        Err(e) => {
            report.push("loads and speaks this ABI", Verdict::Failed(e.to_string()));
            return report;
        }
    };
    let m = plugin.manifest();
    report.plugin = Some(format!("{} {}", m.name, m.version));
    let (major, minor) = plugin.abi_version();
    report.push(
        "loads and speaks this ABI",
        Verdict::Passed(format!("ABI {major}.{minor}")),
    );
    report.push(
        "manifest and config schema are valid",
        Verdict::Passed(format!(
            "{}; streams [{}]; modes [{}]{}",
            m.kinds_label(),
            m.capabilities
                .streams
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            m.capabilities
                .destination_modes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if m.capabilities.incremental {
                "; incremental"
            } else {
                ""
            }
        )),
    );

    let config_ok = match plugin.validate_config(&fixture.config) {
        Ok(()) => {
            report.push(
                "the fixture config is accepted by the schema",
                Verdict::Passed(String::new()),
            );
            true
        }
        Err(e) => {
            report.push(
                "the fixture config is accepted by the schema",
                Verdict::Failed(e.to_string()),
            );
            false
        }
    };
    check_bad_config(&plugin, fixture, &mut report);
    if !config_ok {
        report.push(
            "exercising the plugin",
            Verdict::Skipped("needs a config the schema accepts".to_owned()),
        );
        return report;
    }
    match plugin.open(&fixture.config, fixture.services.clone()) {
        Ok(_) => report.push(
            "opens with the fixture config",
            Verdict::Passed(String::new()),
        ),
        Err(e) => {
            report.push(
                "opens with the fixture config",
                Verdict::Failed(e.to_string()),
            );
            return report;
        }
    }
    if plugin.manifest().is(Kind::Source) {
        for stream in plugin.manifest().capabilities.streams.clone() {
            check_stream(&plugin, fixture, stream, &mut report);
        }
        check_foreign_cursor(&plugin, fixture, &mut report);
    }
    if plugin.manifest().is(Kind::Destination) {
        check_push(&plugin, fixture, &mut report);
    }
    check_panic(&plugin, fixture, &mut report);
    report
}

fn check_bad_config(plugin: &LoadedPlugin, fixture: &Fixture, report: &mut Report) {
    let name = "a bad config is rejected, naming its path";
    let bad = match &fixture.bad_config {
        Some(b) => b.clone(),
        None => {
            let mut b = fixture.config.clone();
            match b.as_object_mut() {
                Some(obj) => {
                    obj.insert("conformance_unknown_field".to_owned(), json!(true));
                }
                None => b = json!({"conformance_unknown_field": true}),
            }
            b
        }
    };
    let issues = match plugin.validate_config(&bad) {
        Err(CallError::Config(issues)) => issues,
        _ => {
            // The schema lets it through; then the plugin itself must refuse it.
            return match plugin.open_unvalidated(&bad, fixture.services.clone()) {
                Err(CallError::Config(issues)) if !issues.is_empty() => {
                    report.push(
                        name,
                        Verdict::Passed(format!("by the plugin: {}", issues[0])),
                    );
                }
                Err(CallError::Panicked { message }) => report.push(
                    name,
                    Verdict::Failed(format!("the plugin panicked: {message}")),
                ),
                Err(e) => report.push(
                    name,
                    Verdict::Failed(format!("rejected, but not as a config error: {e}")),
                ),
                Ok(_) if fixture.bad_config.is_none() => report.push(
                    name,
                    Verdict::Skipped(
                        "the schema allows unknown fields; give the fixture a bad_config to check"
                            .to_owned(),
                    ),
                ),
                Ok(_) => report.push(name, Verdict::Failed(format!("{bad} was accepted"))),
            };
        }
    };
    let unclear: Vec<String> = issues
        .iter()
        .filter(|i| i.message.trim().is_empty() || !(i.path.is_empty() || i.path.starts_with('/')))
        .map(ToString::to_string)
        .collect();
    if !unclear.is_empty() {
        report.push(
            name,
            Verdict::Failed(format!("unclear issues: {}", unclear.join("; "))),
        );
        return;
    }
    // Defence in depth: the plugin must not panic on a config the host would have refused.
    let by_plugin = match plugin.open_unvalidated(&bad, fixture.services.clone()) {
        Err(CallError::Panicked { message }) => {
            report.push(
                name,
                Verdict::Failed(format!(
                    "without the host's validation the plugin panicked: {message}"
                )),
            );
            return;
        }
        Err(_) => "; the plugin refuses it too",
        Ok(_) => "",
    };
    report.push(name, Verdict::Passed(format!("{}{by_plugin}", issues[0])));
}

/// A stream pulled to its end: records as JSON, the cursor after each page (with the number of
/// records before it), and the number of rejects.
#[derive(Debug, Default)]
struct Pulled {
    records: Vec<Value>,
    cursors: Vec<(usize, Value)>,
    rejects: usize,
}

/// Pulls a stream to its end from `cursor`.
fn pull_all(
    instance: &mut Instance,
    stream: Stream,
    cursor: Value,
    page_size: usize,
    max_pages: usize,
) -> Result<Pulled, String> {
    fn pull_typed<R: StreamRecord>(
        instance: &mut Instance,
        mut cursor: Value,
        page_size: usize,
        max_pages: usize,
    ) -> Result<Pulled, String> {
        let mut out = Pulled::default();
        for _ in 0..max_pages {
            let page = instance
                .next_page::<R>(&cursor, page_size)
                .map_err(|e| e.to_string())?;
            out.rejects += page.rejects.len();
            for r in &page.records {
                out.records
                    .push(serde_json::to_value(r).map_err(|e| e.to_string())?);
            }
            cursor = page.next_cursor;
            out.cursors.push((out.records.len(), cursor.clone()));
            if page.done {
                return Ok(out);
            }
        }
        Err(format!(
            "still not done after {max_pages} pages of {page_size}"
        ))
    }
    match stream {
        Stream::Customers => pull_typed::<Customer>(instance, cursor, page_size, max_pages),
        Stream::Orders => pull_typed::<Order>(instance, cursor, page_size, max_pages),
        Stream::Events => pull_typed::<Event>(instance, cursor, page_size, max_pages),
    }
}

fn check_stream(plugin: &LoadedPlugin, fixture: &Fixture, stream: Stream, report: &mut Report) {
    let open = || {
        plugin
            .open(&fixture.config, fixture.services.clone())
            .map_err(|e| e.to_string())
    };
    let name = format!("{stream}: paging terminates within bounds");
    let full = open().and_then(|mut i| {
        pull_all(
            &mut i,
            stream,
            Value::Null,
            fixture.page_size,
            fixture.max_pages,
        )
    });
    let Pulled {
        records,
        cursors,
        rejects,
    } = match full {
        Ok(r) => r,
        Err(e) => {
            report.push(name, Verdict::Failed(e));
            return;
        }
    };
    report.push(
        name,
        Verdict::Passed(format!(
            "{} records, {rejects} rejected, in {} pages of at most {}",
            records.len(),
            cursors.len(),
            fixture.page_size
        )),
    );

    let name = format!("{stream}: binary pages hold what JSON pages hold");
    if plugin
        .manifest()
        .capabilities
        .page_formats
        .contains(&PageFormat::Binary)
    {
        let as_json = open().and_then(|mut i| {
            i.set_page_format(PageFormat::Json)
                .map_err(|e| e.to_string())?;
            pull_all(
                &mut i,
                stream,
                Value::Null,
                fixture.page_size,
                fixture.max_pages,
            )
        });
        match as_json {
            Ok(j) if j.records == records && j.cursors == cursors && j.rejects == rejects => {
                report.push(
                    name,
                    Verdict::Passed(format!("{} records, same cursors", records.len())),
                );
            }
            Ok(j) => report.push(
                name,
                Verdict::Failed(format!(
                    "binary: {} records, {} pages, {rejects} rejects; JSON: {} records, {} pages, \
                     {} rejects{}",
                    records.len(),
                    cursors.len(),
                    j.records.len(),
                    j.cursors.len(),
                    j.rejects,
                    first_difference(&records, &j.records)
                )),
            ),
            Err(e) => report.push(name, Verdict::Failed(format!("as JSON: {e}"))),
        }
    } else {
        report.push(
            name,
            Verdict::Skipped("the source writes JSON pages only".to_owned()),
        );
    }

    let name = format!("{stream}: a cursor resumes where it stopped");
    if cursors.len() < 2 {
        report.push(
            name,
            Verdict::Skipped(format!(
                "only one page; the fixture needs more than {} records",
                fixture.page_size
            )),
        );
    } else {
        let (at, cursor) = cursors[0].clone();
        let resumed = open().and_then(|mut i| {
            pull_all(&mut i, stream, cursor, fixture.page_size, fixture.max_pages)
        });
        match resumed {
            Ok(Pulled { records: rest, .. }) if rest == records[at..] => {
                report.push(
                    name,
                    Verdict::Passed(format!(
                        "resumed after record {at}, got the remaining {}",
                        rest.len()
                    )),
                );
            }
            Ok(Pulled { records: rest, .. }) => report.push(
                name,
                Verdict::Failed(format!(
                    "resuming after record {at} gave {} records, expected the remaining {}{}",
                    rest.len(),
                    records.len() - at,
                    first_difference(&rest, &records[at..])
                )),
            ),
            Err(e) => report.push(name, Verdict::Failed(e)),
        }
    }

    let name = format!("{stream}: a finished cursor yields nothing new");
    if !plugin.manifest().capabilities.incremental {
        report.push(
            name,
            Verdict::Skipped("the source is not incremental".to_owned()),
        );
        return;
    }
    let Some((_, last)) = cursors.last().cloned() else {
        return;
    };
    match open()
        .and_then(|mut i| pull_all(&mut i, stream, last, fixture.page_size, fixture.max_pages))
    {
        Ok(again) if again.records.is_empty() => report.push(name, Verdict::Passed(String::new())),
        Ok(again) => {
            report.push(
                name,
                Verdict::Failed(format!(
                    "{} records came back a second time",
                    again.records.len()
                )),
            );
        }
        Err(e) => report.push(name, Verdict::Failed(e)),
    }
}

fn first_difference(got: &[Value], want: &[Value]) -> String {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => format!("; first difference at {i}: got {} want {}", got[i], want[i]),
        None => String::new(),
    }
}

fn check_foreign_cursor(plugin: &LoadedPlugin, fixture: &Fixture, report: &mut Report) {
    let name = "a cursor the plugin never made is refused cleanly";
    let Some(stream) = plugin.manifest().capabilities.streams.first().copied() else {
        return;
    };
    let mut instance = match plugin.open(&fixture.config, fixture.services.clone()) {
        Ok(i) => i,
        Err(e) => return report.push(name, Verdict::Failed(e.to_string())),
    };
    let foreign = json!({"conformance": "not a cursor this plugin wrote", "n": [1, 2, 3]});
    match instance.next_page_raw(stream, &foreign, fixture.page_size) {
        Err(CallError::Panicked { message }) => {
            report.push(name, Verdict::Failed(format!("it panicked: {message}")));
        }
        Err(e) => report.push(name, Verdict::Passed(e.to_string())),
        Ok(_) => report.push(
            name,
            Verdict::Failed("it was accepted; answer a bad-cursor error instead".to_owned()),
        ),
    }
}

fn sample_batch(plugin: &LoadedPlugin) -> Batch {
    let mode = plugin
        .manifest()
        .capabilities
        .destination_modes
        .first()
        .copied()
        .unwrap_or(DestinationMode::Upsert);
    let operations = (1..=2)
        .map(|n| {
            // As Cohort sends them: the campaign's fields, never the customer record.
            let email = format!("conformance-{n}@example.com");
            Operation {
                key: format!("conformance-key-{n}"),
                action: if mode == DestinationMode::Send {
                    Action::Send
                } else {
                    Action::Upsert
                },
                customer_id: CustomerId::new(format!("conformance-{n}")),
                customer: None,
                payload: if mode == DestinationMode::Send {
                    Value::Null
                } else {
                    json!({"email": email, "segment": "conformance", "n": n})
                },
                previous: Value::Null,
                message: (mode == DestinationMode::Send).then(|| Message {
                    from: Some("shop@example.com".to_owned()),
                    to: vec![email.clone()],
                    subject: Some("Conformance".to_owned()),
                    text: Some("Hello".to_owned()),
                    ..Message::default()
                }),
            }
        })
        .collect();
    Batch {
        workspace: Some("conformance".to_owned()),
        campaign: Some("conformance".to_owned()),
        mode,
        audience: Some("conformance".to_owned()),
        replace: None,
        operations,
    }
}

fn check_push(plugin: &LoadedPlugin, fixture: &Fixture, report: &mut Report) {
    let batch = fixture
        .batch
        .clone()
        .unwrap_or_else(|| sample_batch(plugin));
    let name = "push answers one outcome per operation";
    let mut instance = match plugin.open(&fixture.config, fixture.services.clone()) {
        Ok(i) => i,
        Err(e) => return report.push(name, Verdict::Failed(e.to_string())),
    };
    match instance.push(&batch) {
        Ok(result) => {
            let (ok, rejected, retry) = crate::plugin::tally(&result);
            report.push(
                name,
                Verdict::Passed(format!("{ok} ok, {rejected} rejected, {retry} to retry")),
            );
        }
        Err(e) => return report.push(name, Verdict::Failed(e.to_string())),
    }
    let name = "pushing the same keys again is harmless";
    match instance.push(&batch) {
        Ok(result) => {
            let bad: Vec<String> = result
                .outcomes
                .iter()
                .filter(|o| !matches!(o.status, OutcomeStatus::Ok))
                .map(|o| format!("{}: {:?}", o.key, o.status))
                .collect();
            if bad.is_empty() {
                report.push(name, Verdict::Passed(String::new()));
            } else {
                report.push(
                    name,
                    Verdict::Failed(format!(
                        "a repeated key was not acknowledged: {}",
                        bad.join("; ")
                    )),
                );
            }
        }
        Err(e) => report.push(name, Verdict::Failed(e.to_string())),
    }
    let name = "an empty batch gets no outcomes";
    match instance.push(&Batch {
        operations: Vec::new(),
        ..batch
    }) {
        Ok(r) if r.outcomes.is_empty() => report.push(name, Verdict::Passed(String::new())),
        Ok(r) => report.push(
            name,
            Verdict::Failed(format!("{} outcomes", r.outcomes.len())),
        ),
        Err(e) => report.push(name, Verdict::Failed(e.to_string())),
    }
    if plugin.manifest().capabilities.suppressions {
        let name = "suppressions are read, and each names an address (ABI 1.3)";
        match instance.suppressions(&serde_json::Value::Null) {
            Ok(page) => match page.suppressions.iter().find(|s| !s.email.contains('@')) {
                None => report.push(
                    name,
                    Verdict::Passed(format!("{} addresses", page.suppressions.len())),
                ),
                Some(bad) => report.push(
                    name,
                    Verdict::Failed(format!("`{}` is not an address", bad.email)),
                ),
            },
            Err(e) => report.push(name, Verdict::Failed(e.to_string())),
        }
    }
}

fn check_panic(plugin: &LoadedPlugin, fixture: &Fixture, report: &mut Report) {
    let name = "a panic is contained and the host goes on";
    let Some(panic_config) = &fixture.panic_config else {
        report.push(
            name,
            Verdict::Skipped("the fixture has no panic_config".to_owned()),
        );
        return;
    };
    let first = match plugin.open(panic_config, fixture.services.clone()) {
        Err(CallError::Panicked { message }) => Ok(message),
        Err(e) => Err(format!(
            "opening with panic_config failed without a panic: {e}"
        )),
        Ok(mut instance) => {
            let result = if plugin.manifest().is(Kind::Source) {
                let stream = plugin
                    .manifest()
                    .capabilities
                    .streams
                    .first()
                    .copied()
                    .unwrap_or(Stream::Customers);
                instance
                    .next_page_raw(stream, &Value::Null, fixture.page_size)
                    .map(|_| ())
            } else {
                instance
                    .push(
                        &fixture
                            .batch
                            .clone()
                            .unwrap_or_else(|| sample_batch(plugin)),
                    )
                    .map(|_| ())
            };
            match result {
                Err(CallError::Panicked { message }) => {
                    // The instance must now refuse work instead of running on broken state.
                    match instance.next_page_raw(Stream::Customers, &Value::Null, 1) {
                        Err(CallError::Poisoned(_)) => Ok(message),
                        other => Err(format!(
                            "after the panic the instance still answered: {other:?}"
                        )),
                    }
                }
                Err(e) => Err(format!("expected a contained panic, got: {e}")),
                Ok(()) => Err("panic_config did not make the plugin panic".to_owned()),
            }
        }
    };
    let verdict = match first {
        Ok(message) => match plugin.open(&fixture.config, fixture.services.clone()) {
            Ok(_) => Verdict::Passed(message),
            Err(e) => Verdict::Failed(format!(
                "after the panic, a fresh instance failed to open: {e}"
            )),
        },
        Err(e) => Verdict::Failed(e),
    };
    report.push(name, verdict);
}
