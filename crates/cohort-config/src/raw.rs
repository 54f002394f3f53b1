//! Reading one file into raw structs: every value with its place, types checked, unknown keys
//! reported. Meaning (required keys, formats, references) is `validate`'s job.
//!
//! The walk goes over toml's span-keeping `DeTable` instead of serde derives: serde stops at
//! the first unknown key or wrong type, and `cohort validate` must report them all.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, Diagnostics, Location, dotted_pointer, suggest};
use crate::secret::check_placeholders;

/// The keys allowed in each table, by section path. Free-form tables (a plugin's `config`,
/// `campaigns.fields`) are not listed. Drives unknown-key errors and their did-you-mean, and a
/// test checks that docs/config.md describes every key listed here.
pub(crate) const ALLOWED_KEYS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "store",
            "plugins",
            "server",
            "workspace",
            "identity",
            "sources",
            "segments",
            "segment",
            "destinations",
            "campaigns",
            "jobs",
        ],
    ),
    ("store", &["url"]),
    ("plugins", &["dir"]),
    (
        "server",
        &["listen", "workers", "admin_tokens", "shutdown_grace"],
    ),
    (
        "workspace",
        &[
            "id",
            "name",
            "timezone",
            "currency",
            "as_of",
            "unsubscribe_url",
            "api_tokens",
        ],
    ),
    ("identity", &["match_on", "prefer", "order_sources"]),
    ("sources", &["name", "plugin", "config"]),
    ("segments", &["name", "description", "where", "min_size"]),
    (
        "destinations",
        &["name", "plugin", "config", "batch_size", "rate_limit"],
    ),
    ("destinations.rate_limit", &["per_second", "burst"]),
    (
        "campaigns",
        &[
            "name",
            "segments",
            "destination",
            "mode",
            "audience",
            "email",
            "fields",
        ],
    ),
    (
        "campaigns.email",
        &[
            "from",
            "reply_to",
            "subject",
            "html",
            "html_file",
            "text",
            "text_file",
        ],
    ),
    (
        "jobs",
        &[
            "name",
            "schedule",
            "sources",
            "campaigns",
            "enabled",
            "misfire",
            "misfire_grace",
            "jitter",
            "timeout",
            "retries",
            "retry_backoff",
        ],
    ),
];

fn allowed(section: &str) -> &'static [&'static str] {
    ALLOWED_KEYS
        .iter()
        .find(|(s, _)| *s == section)
        .map_or(&[], |(_, keys)| *keys)
}

/// How a section is written, for messages.
fn label(section: &str) -> String {
    match section {
        "" => "the top level".to_owned(),
        "sources" | "segments" | "segment" | "destinations" | "campaigns" | "jobs" => {
            format!("[[{section}]]")
        }
        "destinations.rate_limit" => "rate_limit".to_owned(),
        other => format!("[{other}]"),
    }
}

/// A value with its place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Val<T> {
    pub(crate) v: T,
    pub(crate) at: Location,
}

/// A string with its place, and where its text starts inside the quotes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Str {
    pub(crate) v: String,
    /// The value (its opening quote).
    pub(crate) at: Location,
    /// The first character of the text.
    pub(crate) inner: Location,
    /// Whether offsets in the text map one to one onto the file (no escapes).
    pub(crate) exact: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct RawPluginConfig {
    pub(crate) value: Value,
    pub(crate) locations: BTreeMap<String, Location>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RawStore {
    pub(crate) at: Option<Location>,
    pub(crate) url: Option<Str>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RawPlugins {
    pub(crate) at: Option<Location>,
    pub(crate) dir: Option<Str>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RawServer {
    pub(crate) at: Option<Location>,
    pub(crate) listen: Option<Str>,
    pub(crate) workers: Option<Val<i64>>,
    pub(crate) admin_tokens: Option<Val<Vec<Str>>>,
    pub(crate) shutdown_grace: Option<Str>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawIdentity {
    pub(crate) at: Location,
    pub(crate) match_on: Option<Val<Vec<Str>>>,
    pub(crate) prefer: Option<Val<Vec<Str>>>,
    pub(crate) order_sources: Option<Val<Vec<Str>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawWorkspace {
    pub(crate) at: Location,
    pub(crate) id: Option<Str>,
    pub(crate) name: Option<Str>,
    pub(crate) timezone: Option<Str>,
    pub(crate) currency: Option<Str>,
    /// A string, or a TOML date/datetime in its written form.
    pub(crate) as_of: Option<Str>,
    pub(crate) unsubscribe_url: Option<Str>,
    pub(crate) api_tokens: Option<Val<Vec<Str>>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawSource {
    pub(crate) at: Location,
    pub(crate) name: Option<Str>,
    pub(crate) plugin: Option<Str>,
    pub(crate) config: Option<RawPluginConfig>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawSegment {
    pub(crate) at: Location,
    pub(crate) name: Option<Str>,
    pub(crate) description: Option<Str>,
    pub(crate) expr: Option<Str>,
    pub(crate) min_size: Option<Val<i64>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawRateLimit {
    pub(crate) at: Location,
    pub(crate) per_second: Option<Val<f64>>,
    pub(crate) burst: Option<Val<i64>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawDestination {
    pub(crate) at: Location,
    pub(crate) name: Option<Str>,
    pub(crate) plugin: Option<Str>,
    pub(crate) config: Option<RawPluginConfig>,
    pub(crate) batch_size: Option<Val<i64>>,
    pub(crate) rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawEmail {
    pub(crate) at: Location,
    pub(crate) from: Option<Str>,
    pub(crate) reply_to: Option<Str>,
    pub(crate) subject: Option<Str>,
    pub(crate) html: Option<Str>,
    pub(crate) html_file: Option<Str>,
    pub(crate) text: Option<Str>,
    pub(crate) text_file: Option<Str>,
}

/// `[campaigns.fields]`: each field's name (with the key's place) and template.
pub(crate) type Fields = Vec<(Val<String>, Str)>;

#[derive(Debug, Clone)]
pub(crate) struct RawCampaign {
    pub(crate) at: Location,
    pub(crate) name: Option<Str>,
    pub(crate) segments: Option<Val<Vec<Str>>>,
    pub(crate) destination: Option<Str>,
    pub(crate) mode: Option<Str>,
    pub(crate) audience: Option<Str>,
    pub(crate) email: Option<RawEmail>,
    /// Field name (with the key's place) → template.
    pub(crate) fields: Option<Val<Fields>>,
}

#[derive(Debug, Clone)]
pub(crate) struct RawJob {
    pub(crate) at: Location,
    pub(crate) name: Option<Str>,
    pub(crate) schedule: Option<Str>,
    pub(crate) sources: Option<Val<Vec<Str>>>,
    pub(crate) campaigns: Option<Val<Vec<Str>>>,
    pub(crate) enabled: Option<Val<bool>>,
    pub(crate) misfire: Option<Str>,
    pub(crate) misfire_grace: Option<Str>,
    pub(crate) jitter: Option<Str>,
    pub(crate) timeout: Option<Str>,
    pub(crate) retries: Option<Val<i64>>,
    pub(crate) retry_backoff: Option<Str>,
}

/// One file, read.
#[derive(Debug, Clone)]
pub(crate) struct RawFile {
    pub(crate) path: PathBuf,
    /// The file's folder (absolute when the path is).
    pub(crate) dir: PathBuf,
    pub(crate) store: Option<RawStore>,
    pub(crate) plugins: Option<RawPlugins>,
    pub(crate) server: Option<RawServer>,
    pub(crate) workspace: Option<RawWorkspace>,
    pub(crate) identity: Option<RawIdentity>,
    pub(crate) sources: Vec<RawSource>,
    pub(crate) segments: Vec<RawSegment>,
    pub(crate) destinations: Vec<RawDestination>,
    pub(crate) campaigns: Vec<RawCampaign>,
    pub(crate) jobs: Vec<RawJob>,
    /// Where the first list (`[[sources]]`…) is, to report lists without a workspace.
    pub(crate) first_list_at: Option<Location>,
}

impl RawFile {
    /// The template files its campaigns name, resolved against its folder.
    pub(crate) fn template_files(&self) -> Vec<PathBuf> {
        self.campaigns
            .iter()
            .filter_map(|c| c.email.as_ref())
            .flat_map(|e| [&e.html_file, &e.text_file])
            .flatten()
            .map(|f| beside(&self.dir, &f.v))
            .collect()
    }
}

struct Reader<'a> {
    /// Shared by every location in the file.
    path: Arc<Path>,
    text: &'a str,
    diags: &'a mut Diagnostics,
}

type Table<'i> = DeTable<'i>;
type Item<'i> = Spanned<DeValue<'i>>;

/// Reads `text`, the contents of `path`, pushing every syntax, key and type problem.
pub(crate) fn parse_file(path: &Path, text: &str, diags: &mut Diagnostics) -> RawFile {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut r = Reader {
        path: path.into(),
        text,
        diags,
    };
    for e in errors {
        let at = e.span().map(|s| r.loc(s));
        r.diags.push(Diagnostic::new(
            at,
            format!("TOML syntax: {}", e.message().trim_end()),
        ));
    }
    let root = doc.get_ref();
    r.check_keys(root, "");
    let mut file = RawFile {
        path: path.to_path_buf(),
        dir,
        store: None,
        plugins: None,
        server: None,
        workspace: None,
        identity: None,
        sources: Vec::new(),
        segments: Vec::new(),
        destinations: Vec::new(),
        campaigns: Vec::new(),
        jobs: Vec::new(),
        first_list_at: None,
    };
    if let Some((t, at)) = r.section(root, "store") {
        file.store = Some(RawStore {
            at: Some(at),
            url: r.string(t, "url", "store"),
        });
    }
    if let Some((t, at)) = r.section(root, "plugins") {
        file.plugins = Some(RawPlugins {
            at: Some(at),
            dir: r.string(t, "dir", "plugins"),
        });
    }
    if let Some((t, at)) = r.section(root, "server") {
        file.server = Some(RawServer {
            at: Some(at),
            listen: r.string(t, "listen", "server"),
            workers: r.integer(t, "workers", "server"),
            admin_tokens: r.string_list(t, "admin_tokens", "server"),
            shutdown_grace: r.duration(t, "shutdown_grace", "server"),
        });
    }
    if let Some((t, at)) = r.section(root, "workspace") {
        let s = "workspace";
        file.workspace = Some(RawWorkspace {
            at,
            id: r.string(t, "id", s),
            name: r.string(t, "name", s),
            timezone: r.string(t, "timezone", s),
            currency: r.string(t, "currency", s),
            as_of: r.string_or_datetime(t, "as_of", s),
            unsubscribe_url: r.string(t, "unsubscribe_url", s),
            api_tokens: r.string_list(t, "api_tokens", s),
        });
    }
    if let Some((t, at)) = r.section(root, "identity") {
        let s = "identity";
        file.identity = Some(RawIdentity {
            at,
            match_on: r.string_list(t, "match_on", s),
            prefer: r.string_list(t, "prefer", s),
            order_sources: r.string_list(t, "order_sources", s),
        });
    }
    for (t, at) in r.list(root, "sources") {
        file.first_list_at.get_or_insert(at.clone());
        let s = "sources";
        file.sources.push(RawSource {
            name: r.string(t, "name", s),
            plugin: r.string(t, "plugin", s),
            config: r.plugin_config(t, "source"),
            at,
        });
    }
    // `[[segment]]` is how segments files spell it; accept it here too, in file order.
    let mut segment_tables = r.list(root, "segments");
    segment_tables.extend(r.list_as(root, "segment", "segments"));
    segment_tables.sort_by(|a, b| a.1.cmp(&b.1));
    for (t, at) in segment_tables {
        file.first_list_at.get_or_insert(at.clone());
        let s = "segments";
        file.segments.push(RawSegment {
            name: r.string(t, "name", s),
            description: r.string(t, "description", s),
            expr: r.string(t, "where", s),
            min_size: r.integer(t, "min_size", s),
            at,
        });
    }
    for (t, at) in r.list(root, "destinations") {
        file.first_list_at.get_or_insert(at.clone());
        let s = "destinations";
        let rate_limit =
            r.sub_table(t, "rate_limit", "destinations.rate_limit")
                .map(|(rt, rat)| RawRateLimit {
                    at: rat,
                    per_second: r.float(rt, "per_second", "destinations.rate_limit"),
                    burst: r.integer(rt, "burst", "destinations.rate_limit"),
                });
        file.destinations.push(RawDestination {
            name: r.string(t, "name", s),
            plugin: r.string(t, "plugin", s),
            config: r.plugin_config(t, "destination"),
            batch_size: r.integer(t, "batch_size", s),
            rate_limit,
            at,
        });
    }
    for (t, at) in r.list(root, "campaigns") {
        file.first_list_at.get_or_insert(at.clone());
        let s = "campaigns";
        let email = r.sub_table(t, "email", "campaigns.email").map(|(et, eat)| {
            let s = "campaigns.email";
            RawEmail {
                at: eat,
                from: r.string(et, "from", s),
                reply_to: r.string(et, "reply_to", s),
                subject: r.string(et, "subject", s),
                html: r.string(et, "html", s),
                html_file: r.string(et, "html_file", s),
                text: r.string(et, "text", s),
                text_file: r.string(et, "text_file", s),
            }
        });
        let fields = r.string_map(t, "fields", "campaigns.fields");
        file.campaigns.push(RawCampaign {
            name: r.string(t, "name", s),
            segments: r.string_list(t, "segments", s),
            destination: r.string(t, "destination", s),
            mode: r.string(t, "mode", s),
            audience: r.string(t, "audience", s),
            email,
            fields,
            at,
        });
    }
    for (t, at) in r.list(root, "jobs") {
        file.first_list_at.get_or_insert(at.clone());
        let s = "jobs";
        file.jobs.push(RawJob {
            name: r.string(t, "name", s),
            schedule: r.string(t, "schedule", s),
            sources: r.string_list(t, "sources", s),
            campaigns: r.string_list(t, "campaigns", s),
            enabled: r.boolean(t, "enabled", s),
            misfire: r.string(t, "misfire", s),
            misfire_grace: r.duration(t, "misfire_grace", s),
            jitter: r.duration(t, "jitter", s),
            timeout: r.duration(t, "timeout", s),
            retries: r.integer(t, "retries", s),
            retry_backoff: r.duration(t, "retry_backoff", s),
            at,
        });
    }
    file
}

impl<'a> Reader<'a> {
    fn loc(&self, span: Range<usize>) -> Location {
        Location::at_offset(&self.path, self.text, span.start)
    }

    fn push(&mut self, at: Location, message: String) {
        self.diags.push(Diagnostic::new(Some(at), message));
    }

    fn check_keys(&mut self, table: &Table<'_>, section: &str) {
        self.check_keys_of(table, section, &label(section));
    }

    /// Checks the keys of a table of `section`, written as `written` in messages.
    fn check_keys_of(&mut self, table: &Table<'_>, section: &str, written: &str) {
        let keys = allowed(section);
        for (k, _) in table.iter() {
            let key = k.get_ref().as_ref();
            if !keys.contains(&key) {
                let at = self.loc(k.span());
                let help = suggest(key, keys.iter().copied())
                    .or_else(|| Some(format!("expected one of: {}", keys.join(", "))));
                self.diags.push(
                    Diagnostic::new(Some(at), format!("unknown key `{key}` in {written}"))
                        .maybe_help(help),
                );
            }
        }
    }

    fn wrong_type(&mut self, item: &Item<'_>, what: &str, expected: &str) {
        let at = self.loc(item.span());
        let found = item.get_ref().type_str();
        self.push(at, format!("`{what}` must be {expected}, not {found}"));
    }

    /// A single table (`[store]`), its keys checked.
    fn section<'t, 'i>(
        &mut self,
        root: &'t Table<'i>,
        key: &str,
    ) -> Option<(&'t Table<'i>, Location)> {
        self.sub_table(root, key, key)
    }

    /// A table under `parent` at `key`, its keys checked against `section`.
    fn sub_table<'t, 'i>(
        &mut self,
        parent: &'t Table<'i>,
        key: &str,
        section: &str,
    ) -> Option<(&'t Table<'i>, Location)> {
        let (k, item) = parent.get_key_value(key)?;
        match item.get_ref() {
            DeValue::Table(t) => {
                self.check_keys(t, section);
                Some((t, self.header_or(k.span())))
            }
            _ => {
                self.wrong_type(item, section, "a table");
                None
            }
        }
    }

    /// An array of tables (`[[sources]]`), each one's keys checked.
    fn list<'t, 'i>(&mut self, root: &'t Table<'i>, key: &str) -> Vec<(&'t Table<'i>, Location)> {
        self.list_as(root, key, key)
    }

    /// An array of tables written `[[key]]` whose keys are those of `section`: another
    /// spelling of it.
    fn list_as<'t, 'i>(
        &mut self,
        root: &'t Table<'i>,
        key: &str,
        section: &str,
    ) -> Vec<(&'t Table<'i>, Location)> {
        let Some(item) = root.get(key) else {
            return Vec::new();
        };
        let DeValue::Array(items) = item.get_ref() else {
            let at = self.loc(item.span());
            self.push(
                at,
                format!("`{key}` must be a list of tables, written [[{key}]]"),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for it in items.iter() {
            match it.get_ref() {
                DeValue::Table(t) => {
                    self.check_keys_of(t, section, &label(key));
                    out.push((t, self.header_or(it.span())));
                }
                _ => self.wrong_type(it, key, "a table"),
            }
        }
        out
    }

    /// Where a table starts: its `[header]` line when the span is inside one, else the span.
    fn header_or(&self, span: Range<usize>) -> Location {
        let start = span.start.min(self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        if self.text[line_start..].trim_start().starts_with('[') {
            return self.loc(line_start..line_start);
        }
        self.loc(span)
    }

    fn string(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Str> {
        let item = t.get(key)?;
        match item.get_ref() {
            DeValue::String(s) => Some(self.str_of(s, item.span())),
            _ => {
                self.wrong_type(item, &dotted(section, key), "a string");
                None
            }
        }
    }

    fn str_of(&self, value: &str, span: Range<usize>) -> Str {
        let written = self.text.get(span.clone()).unwrap_or("");
        let (open, literal) = if written.starts_with("\"\"\"") {
            (3, false)
        } else if written.starts_with("'''") {
            (3, true)
        } else if written.starts_with('"') {
            (1, false)
        } else if written.starts_with('\'') {
            (1, true)
        } else {
            (0, true)
        };
        let mut inner_start = span.start + open;
        if open == 3 {
            let rest = &self.text[inner_start.min(self.text.len())..];
            if rest.starts_with("\r\n") {
                inner_start += 2;
            } else if rest.starts_with('\n') {
                inner_start += 1;
            }
        }
        let inner_end = span.end.saturating_sub(open).max(inner_start);
        let inner_written = self.text.get(inner_start..inner_end).unwrap_or("");
        Str {
            v: value.to_owned(),
            at: self.loc(span),
            inner: self.loc(inner_start..inner_start),
            exact: (literal || !inner_written.contains('\\')) && inner_written == value,
        }
    }

    /// A duration: a string (`"90s"`, `"5m"`, `"1h30m"`) or a whole number of seconds, both
    /// read by `crate::duration`.
    fn duration(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Str> {
        let item = t.get(key)?;
        match item.get_ref() {
            DeValue::String(s) => Some(self.str_of(s, item.span())),
            DeValue::Integer(i) => {
                let at = self.loc(item.span());
                Some(Str {
                    v: format!("{}s", i.as_str()),
                    inner: at.clone(),
                    at,
                    exact: false,
                })
            }
            _ => {
                self.wrong_type(
                    item,
                    &dotted(section, key),
                    "a duration such as \"30s\", \"5m\" or \"1h\"",
                );
                None
            }
        }
    }

    fn string_or_datetime(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Str> {
        let item = t.get(key)?;
        match item.get_ref() {
            DeValue::String(s) => Some(self.str_of(s, item.span())),
            DeValue::Datetime(d) => {
                let at = self.loc(item.span());
                Some(Str {
                    v: d.to_string(),
                    inner: at.clone(),
                    at,
                    exact: true,
                })
            }
            _ => {
                self.wrong_type(item, &dotted(section, key), "a date or a string");
                None
            }
        }
    }

    fn integer(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Val<i64>> {
        let item = t.get(key)?;
        let at = self.loc(item.span());
        match item.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(v) => Some(Val { v, at }),
                Err(_) => {
                    self.push(at, format!("`{}` is too large", dotted(section, key)));
                    None
                }
            },
            _ => {
                self.wrong_type(item, &dotted(section, key), "an integer");
                None
            }
        }
    }

    fn float(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Val<f64>> {
        let item = t.get(key)?;
        let at = self.loc(item.span());
        match item.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|v| Val { v: v as f64, at }),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok().map(|v| Val { v, at }),
            _ => {
                self.wrong_type(item, &dotted(section, key), "a number");
                None
            }
        }
    }

    fn boolean(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Val<bool>> {
        let item = t.get(key)?;
        let at = self.loc(item.span());
        match item.get_ref() {
            DeValue::Boolean(b) => Some(Val { v: *b, at }),
            _ => {
                self.wrong_type(item, &dotted(section, key), "true or false");
                None
            }
        }
    }

    fn string_list(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Val<Vec<Str>>> {
        let item = t.get(key)?;
        let at = self.loc(item.span());
        let DeValue::Array(items) = item.get_ref() else {
            self.wrong_type(item, &dotted(section, key), "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for it in items.iter() {
            match it.get_ref() {
                DeValue::String(s) => out.push(self.str_of(s, it.span())),
                _ => self.wrong_type(it, &dotted(section, key), "a list of strings"),
            }
        }
        Some(Val { v: out, at })
    }

    /// A table of string values in the order written (`[campaigns.fields]`).
    fn string_map(&mut self, t: &Table<'_>, key: &str, section: &str) -> Option<Val<Fields>> {
        let (k, item) = t.get_key_value(key)?;
        let DeValue::Table(map) = item.get_ref() else {
            self.wrong_type(item, section, "a table");
            return None;
        };
        let mut out = Vec::new();
        for (fk, fv) in map.iter() {
            let name = fk.get_ref().to_string();
            match fv.get_ref() {
                DeValue::String(s) => {
                    let s = self.str_of(s, fv.span());
                    out.push((
                        Val {
                            v: name,
                            at: self.loc(fk.span()),
                        },
                        s,
                    ));
                }
                _ => self.wrong_type(fv, &format!("{section}.{name}"), "a template string"),
            }
        }
        // The map may not keep the written order; the file does.
        out.sort_by_key(|(k, _)| (k.at.line, k.at.column));
        Some(Val {
            v: out,
            at: self.loc(k.span()),
        })
    }

    /// A plugin's free-form `config` table, as JSON, with each value's place.
    fn plugin_config(&mut self, t: &Table<'_>, owner: &str) -> Option<RawPluginConfig> {
        let item = t.get("config")?;
        if !matches!(item.get_ref(), DeValue::Table(_)) {
            self.wrong_type(item, &format!("{owner} config"), "a table");
            return None;
        }
        let mut locations = BTreeMap::new();
        let value = self.json_of(item, &mut String::new(), &mut locations);
        Some(RawPluginConfig { value, locations })
    }

    fn json_of(
        &mut self,
        item: &Item<'_>,
        pointer: &mut String,
        locations: &mut BTreeMap<String, Location>,
    ) -> Value {
        let at = self.loc(item.span());
        locations.insert(pointer.clone(), at.clone());
        match item.get_ref() {
            DeValue::String(s) => {
                if let Err(why) = check_placeholders(s) {
                    self.push(at, format!("config{}: {why}", dotted_pointer(pointer)));
                }
                Value::String(s.to_string())
            }
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(v) => Value::from(v),
                Err(_) => {
                    self.push(
                        at,
                        format!("config{}: integer too large", dotted_pointer(pointer)),
                    );
                    Value::Null
                }
            },
            DeValue::Float(f) => {
                match f
                    .as_str()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                {
                    Some(n) => Value::Number(n),
                    None => {
                        self.push(
                        at,
                        format!("config{}: {} cannot be passed to a plugin (JSON has no inf or nan)", dotted_pointer(pointer), f.as_str()),
                    );
                        Value::Null
                    }
                }
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::String(d.to_string()),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    out.push(self.json_of(it, pointer, locations));
                    pointer.truncate(len);
                }
                Value::Array(out)
            }
            DeValue::Table(t) => {
                let mut out = serde_json::Map::new();
                for (k, v) in t.iter() {
                    let key = k.get_ref().to_string();
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    let value = self.json_of(v, pointer, locations);
                    // A key's place is the better place for a value that is a table.
                    if matches!(v.get_ref(), DeValue::Table(_)) {
                        locations.insert(pointer.clone(), self.loc(k.span()));
                    }
                    pointer.truncate(len);
                    out.insert(key, value);
                }
                Value::Object(out)
            }
        }
    }
}

/// `rel` in `dir`, without a `./` in front when `dir` is the working folder (for messages).
pub(crate) fn beside(dir: &Path, rel: &str) -> PathBuf {
    if dir == Path::new(".") {
        PathBuf::from(rel)
    } else {
        dir.join(rel)
    }
}

fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_owned()
    } else {
        format!("{section}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (RawFile, Diagnostics) {
        let mut d = Diagnostics::new();
        let f = parse_file(Path::new("c.toml"), text, &mut d);
        d.sort();
        (f, d)
    }

    #[test]
    fn list_entries_are_located_at_their_header() {
        let (f, d) = parse(
            "[workspace]\nid = \"a\"\n\n[[sources]]\nname = \"s\"\n\n[[sources]]\nname = \"t\"\n",
        );
        assert!(d.is_empty(), "{d}");
        assert_eq!(f.sources[0].at.line, 4);
        assert_eq!(f.sources[1].at.line, 7);
        assert_eq!(f.sources[1].at.column, 1);
        assert_eq!(f.workspace.unwrap().at.line, 1);
    }

    #[test]
    fn segments_may_be_spelled_segment_as_in_segments_files() {
        let (f, d) = parse(
            "[[segment]]\nname = \"a\"\nwhere = \"x > 1\"\n[[segments]]\nname = \"b\"\nwhere = \"x > 2\"\n[[segment]]\nname = \"c\"\nwher = \"x > 3\"\n",
        );
        let names: Vec<&str> = f
            .segments
            .iter()
            .filter_map(|s| s.name.as_ref().map(|n| n.v.as_str()))
            .collect();
        assert_eq!(names, ["a", "b", "c"], "both spellings, in file order");
        let text = d.to_string();
        assert!(
            text.contains("c.toml:9:1: unknown key `wher` in [[segment]]; did you mean `where`?"),
            "{text}"
        );
    }

    #[test]
    fn strings_know_where_their_text_starts() {
        let (f, _) = parse(
            "[[segments]]\nname = \"a\"\nwhere = \"x > 1\"\ndescription = \"say \\\"hi\\\"\"\n",
        );
        let s = &f.segments[0];
        let expr = s.expr.as_ref().unwrap();
        assert_eq!(
            (expr.inner.line, expr.inner.column, expr.exact),
            (3, 10, true)
        );
        assert!(!s.description.as_ref().unwrap().exact);
        let (f, _) = parse("[[segments]]\nwhere = '''\nx > 1'''\n");
        let expr = f.segments[0].expr.as_ref().unwrap();
        assert_eq!(
            (expr.inner.line, expr.inner.column, expr.exact),
            (3, 1, true)
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_all_reported_with_places() {
        let (_, d) = parse(
            "[workspace]\nid = 3\ntimezon = \"UTC\"\n[[segments]]\nname = \"a\"\nwher = \"x\"\nmin_size = \"ten\"\n[[campaigns]]\n[campaigns.email]\nsubjet = \"hi\"\n",
        );
        let text = d.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[0],
            "c.toml:2:6: `workspace.id` must be a string, not integer"
        );
        assert_eq!(
            lines[1],
            "c.toml:3:1: unknown key `timezon` in [workspace]; did you mean `timezone`?"
        );
        assert_eq!(
            lines[2],
            "c.toml:6:1: unknown key `wher` in [[segments]]; did you mean `where`?"
        );
        assert!(lines[3].starts_with("c.toml:7:12: `segments.min_size` must be an integer"));
        assert_eq!(
            lines[4],
            "c.toml:10:1: unknown key `subjet` in [campaigns.email]; did you mean `subject`?"
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column_and_do_not_hide_the_rest() {
        let (f, d) = parse("[workspace]\nid = \"a\"\nname = \n[[segments]]\nname = \"x\"\n");
        assert!(d.to_string().starts_with("c.toml:3:"), "{d}");
        assert!(d.to_string().contains("TOML syntax"), "{d}");
        assert_eq!(f.segments.len(), 1, "the rest of the file is still read");
    }

    #[test]
    fn plugin_config_becomes_json_with_places() {
        let (f, d) = parse(
            "[[sources]]\nname = \"s\"\nconfig = { base_dir = \"demo\", customers = { paths = [\"a.csv\", \"b.csv\"] }, n = 0x10, bad = \"${env:}\" }\n",
        );
        let cfg = f.sources[0].config.as_ref().unwrap();
        assert_eq!(cfg.value["customers"]["paths"][1], "b.csv");
        assert_eq!(cfg.value["n"], 16);
        assert_eq!(cfg.locations["/customers/paths/1"].column, 63);
        assert!(d.to_string().contains("config.bad: `${env:}`"), "{d}");
    }
}
