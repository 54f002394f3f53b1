//! Secrets: `${env:NAME}` and `${file:PATH}` placeholders.
//!
//! A config keeps placeholders as written; values are read only when a plugin is opened or
//! validated ([`PluginConfig::resolve`]) or the store is connected (`Config::database_url`), so
//! loading a config never needs the secrets, and a config printed with `{:?}` shows
//! `${env:SHOP_TOKEN}`, never the token. Resolved values travel in [`SecretString`] or
//! [`Resolved`], whose `Debug` redacts them. Errors name the placeholder and where it is
//! written, never a value.
//!
//! Grammar: `${env:NAME}` (NAME is letters, digits and `_`, not starting with a digit),
//! `${file:PATH}` (PATH relative to the config file's folder; trailing newlines of the file are
//! dropped). Either may be the whole value or part of a longer string. `$${` writes a literal
//! `${`; any other `${` is left as it is.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diag::Location;

/// A resolved secret. `Debug` and `Display` print `[redacted]`; [`SecretString::expose`] is the
/// one way to the value, so every use of it is easy to find.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value that must not be printed.
    pub fn new(value: impl Into<String>) -> SecretString {
        SecretString(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A placeholder could not be resolved. Names the placeholder and the config path, never a
/// value: the user must set the variable or fix the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("{path}: `{placeholder}`: the environment variable {name} is not set")]
    MissingEnv {
        /// As written, e.g. `${env:SHOP_TOKEN}`.
        placeholder: String,
        /// The variable.
        name: String,
        /// Where it is written, e.g. ``source `shop` config.token (cohort.toml:12:9)``.
        path: String,
    },
    /// The environment variable is set but is not UTF-8.
    #[error("{path}: `{placeholder}`: the environment variable {name} is not valid UTF-8")]
    NotUnicode {
        /// As written.
        placeholder: String,
        /// The variable.
        name: String,
        /// Where it is written.
        path: String,
    },
    /// The file cannot be read.
    #[error("{path}: `{placeholder}`: cannot read {}: {reason}", file.display())]
    UnreadableFile {
        /// As written.
        placeholder: String,
        /// The file, resolved against the config's folder.
        file: PathBuf,
        /// Where it is written.
        path: String,
        /// Why (the I/O error).
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Env(String),
    File(String),
}

/// Splits a string into text and placeholders. `Err` says what is wrong with a placeholder.
fn parse_parts(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            lit.push_str("${");
            rest = after;
            continue;
        }
        let (kind, body) = if let Some(b) = tail.strip_prefix("${env:") {
            ("env", b)
        } else if let Some(b) = tail.strip_prefix("${file:") {
            ("file", b)
        } else {
            lit.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(format!("`${{{kind}:` is not closed with `}}`"));
        };
        let arg = &body[..end];
        if !lit.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut lit)));
        }
        if kind == "env" {
            let valid = arg
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{env:{arg}}}`: a variable name is letters, digits and `_`, not starting with a digit"
                ));
            }
            parts.push(Part::Env(arg.to_owned()));
        } else {
            if arg.trim().is_empty() {
                return Err("`${file:}` needs a path".to_owned());
            }
            parts.push(Part::File(arg.to_owned()));
        }
        rest = &body[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() || parts.is_empty() {
        parts.push(Part::Text(lit));
    }
    Ok(parts)
}

/// Checks the placeholders of a string without resolving them.
pub(crate) fn check_placeholders(text: &str) -> Result<(), String> {
    parse_parts(text).map(|_| ())
}

/// A string that may hold placeholders, as written in the config. `Debug` shows it as written.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretTemplate {
    text: String,
    parts: Vec<Part>,
    base: PathBuf,
    path: String,
}

impl SecretTemplate {
    /// Reads `text`; `base` is the folder `${file:..}` paths are relative to, `path` says where
    /// the string is written (for errors). `Err` explains a malformed placeholder.
    pub fn parse(
        text: &str,
        base: impl Into<PathBuf>,
        path: impl Into<String>,
    ) -> Result<SecretTemplate, String> {
        Ok(SecretTemplate {
            parts: parse_parts(text)?,
            text: text.to_owned(),
            base: base.into(),
            path: path.into(),
        })
    }

    /// The string as written, placeholders and all.
    pub fn as_written(&self) -> &str {
        &self.text
    }

    /// Whether any placeholder is in it.
    pub fn has_placeholders(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Text(_)))
    }

    /// The folder `${file:..}` paths are relative to (the config file's).
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// Reads the environment and files the placeholders name.
    pub fn resolve(&self) -> Result<SecretString, SecretError> {
        let mut secrets = Vec::new();
        resolve_parts(&self.parts, &self.base, &self.path, &mut secrets).map(SecretString)
    }
}

impl fmt::Debug for SecretTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretTemplate").field(&self.text).finish()
    }
}

fn resolve_parts(
    parts: &[Part],
    base: &Path,
    path: &str,
    secrets: &mut Vec<String>,
) -> Result<String, SecretError> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(t) => out.push_str(t),
            Part::Env(name) => {
                let placeholder = format!("${{env:{name}}}");
                let value = match std::env::var(name) {
                    Ok(v) => v,
                    Err(std::env::VarError::NotPresent) => {
                        return Err(SecretError::MissingEnv {
                            placeholder,
                            name: name.clone(),
                            path: path.to_owned(),
                        });
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(SecretError::NotUnicode {
                            placeholder,
                            name: name.clone(),
                            path: path.to_owned(),
                        });
                    }
                };
                crate::mask::register(&value);
                out.push_str(&value);
                secrets.push(value);
            }
            Part::File(file) => {
                let full = base.join(file);
                let value =
                    std::fs::read_to_string(&full).map_err(|e| SecretError::UnreadableFile {
                        placeholder: format!("${{file:{file}}}"),
                        file: full.clone(),
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
                let value = value.trim_end_matches(['\n', '\r']).to_owned();
                crate::mask::register(&value);
                out.push_str(&value);
                secrets.push(value);
            }
        }
    }
    Ok(out)
}

/// A plugin's `config` table as written: a JSON value whose strings may hold placeholders,
/// with the place of every value in the file. `Debug` shows the placeholders.
///
/// It is kept as compact JSON text and parsed again when a run resolves it: a daemon holds
/// every workspace's configs for as long as it runs, and a parsed value's maps took ten times
/// the room of its text (a thousand small configs held 2.5 MB as values). Parsing a config
/// of a few hundred bytes costs microseconds per run.
#[derive(Clone)]
pub struct PluginConfig {
    written: Box<str>,
    /// JSON pointer → place, sorted by pointer.
    locations: Box<[(Box<str>, Location)]>,
    base: PathBuf,
    owner: String,
}

impl PluginConfig {
    /// A config; `locations` maps JSON pointers (`/customers/paths/0`, `""` for the whole) to
    /// places, `base` is the config file's folder, `owner` names it in errors
    /// (``source `shop` config``).
    pub fn new(
        value: &Value,
        locations: BTreeMap<String, Location>,
        base: PathBuf,
        owner: String,
    ) -> PluginConfig {
        PluginConfig {
            written: value.to_string().into_boxed_str(),
            locations: locations
                .into_iter()
                .map(|(pointer, at)| (pointer.into_boxed_str(), at))
                .collect(),
            base,
            owner,
        }
    }

    /// The value as written, placeholders unresolved.
    pub fn as_written(&self) -> Value {
        // The text was written from a `Value` by `new`, so it always parses.
        serde_json::from_str(&self.written).unwrap_or_default()
    }

    /// The config file's folder: `${file:..}` paths are relative to it.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The value with every placeholder resolved, for the plugin.
    pub fn resolve(&self) -> Result<Resolved, SecretError> {
        let mut secrets = Vec::new();
        let value = self.resolve_value(&self.as_written(), &mut String::new(), &mut secrets)?;
        Ok(Resolved { value, secrets })
    }

    fn resolve_value(
        &self,
        v: &Value,
        pointer: &mut String,
        secrets: &mut Vec<String>,
    ) -> Result<Value, SecretError> {
        Ok(match v {
            Value::String(s) => match parse_parts(s) {
                Ok(parts) if parts.iter().any(|p| !matches!(p, Part::Text(_))) => {
                    let path = self.describe(pointer);
                    Value::String(resolve_parts(&parts, &self.base, &path, secrets)?)
                }
                Ok(parts) => match parts.as_slice() {
                    [Part::Text(t)] => Value::String(t.clone()),
                    _ => Value::String(s.clone()),
                },
                Err(_) => Value::String(s.clone()),
            },
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{i}"));
                    out.push(self.resolve_value(item, pointer, secrets)?);
                    pointer.truncate(len);
                }
                Value::Array(out)
            }
            Value::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, item) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    out.insert(k.clone(), self.resolve_value(item, pointer, secrets)?);
                    pointer.truncate(len);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    /// ``source `shop` config.api.token (cohort.toml:12:9)``.
    fn describe(&self, pointer: &str) -> String {
        let dotted = crate::diag::dotted_pointer(pointer);
        match self.location_of(pointer) {
            Some(at) => format!("{}{dotted} ({at})", self.owner),
            None => format!("{}{dotted}", self.owner),
        }
    }

    /// Where a value of the config is written. Takes a JSON pointer (`/a/b/0`) or a dotted path
    /// (`a.b[0]`, `a.b.0`); falls back to the closest enclosing value, then the whole table.
    pub fn location_of(&self, path: &str) -> Option<Location> {
        let segments: Vec<&str> = path
            .split(['/', '.', '[', ']'])
            .filter(|s| !s.is_empty())
            .collect();
        for n in (0..=segments.len()).rev() {
            let pointer: String = segments[..n].iter().map(|s| format!("/{s}")).collect();
            if let Ok(i) = self
                .locations
                .binary_search_by(|(p, _)| p.as_ref().cmp(pointer.as_str()))
            {
                return Some(self.locations[i].1.clone());
            }
        }
        None
    }
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginConfig")
            .field("value", &format_args!("{}", self.written))
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// A plugin config with its secrets resolved. `Debug` replaces every secret with
/// `[redacted]`; `secrets` lets a caller scrub them from anything else it prints.
#[derive(Clone)]
pub struct Resolved {
    /// The value for the plugin.
    pub value: Value,
    /// Every resolved secret, to scrub from logs.
    pub secrets: Vec<String>,
}

impl Resolved {
    /// `text` with every secret replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        let mut secrets: Vec<&String> = self.secrets.iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so a secret containing another is redacted whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let mut out = text.to_owned();
        for s in secrets {
            out = out.replace(s.as_str(), "[redacted]");
        }
        out
    }
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.redact(&self.value.to_string());
        f.debug_struct("Resolved")
            .field("value", &format_args!("{shown}"))
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholders_parse_whole_or_embedded_and_dollars_escape() {
        assert_eq!(
            parse_parts("Bearer ${env:TOKEN}!").unwrap(),
            vec![
                Part::Text("Bearer ".into()),
                Part::Env("TOKEN".into()),
                Part::Text("!".into())
            ]
        );
        assert_eq!(
            parse_parts("${file:secrets/key}").unwrap(),
            vec![Part::File("secrets/key".into())]
        );
        assert_eq!(
            parse_parts("$${env:X} costs $5 ${other}").unwrap(),
            vec![Part::Text("${env:X} costs $5 ${other}".into())]
        );
        assert!(
            parse_parts("${env:OPEN")
                .unwrap_err()
                .contains("not closed")
        );
        assert!(
            parse_parts("${env:1X}")
                .unwrap_err()
                .contains("variable name")
        );
        assert!(
            parse_parts("${file:}")
                .unwrap_err()
                .contains("needs a path")
        );
    }

    #[test]
    fn a_missing_variable_names_the_placeholder_and_the_place() {
        let t = SecretTemplate::parse(
            "postgres://u:${env:COHORT_TEST_SURELY_UNSET_VAR}@h/db",
            "/cfg",
            "store.url (cohort.toml:2:7)",
        )
        .unwrap();
        let err = t.resolve().unwrap_err().to_string();
        assert_eq!(
            err,
            "store.url (cohort.toml:2:7): `${env:COHORT_TEST_SURELY_UNSET_VAR}`: the environment variable COHORT_TEST_SURELY_UNSET_VAR is not set"
        );
    }

    #[test]
    fn file_secrets_are_read_beside_the_config_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key.txt"), "s3cr3t-value\n").unwrap();
        let t = SecretTemplate::parse("k=${file:key.txt}", dir.path(), "store.url").unwrap();
        let v = t.resolve().unwrap();
        assert_eq!(v.expose(), "k=s3cr3t-value");
        assert_eq!(format!("{v:?} {v}"), "[redacted] [redacted]");
        assert!(!format!("{t:?}").contains("s3cr3t"));

        let missing = SecretTemplate::parse("${file:nope.txt}", dir.path(), "x").unwrap();
        let err = missing.resolve().unwrap_err().to_string();
        assert!(
            err.starts_with("x: `${file:nope.txt}`: cannot read ") && err.contains("nope.txt"),
            "{err}"
        );
    }

    #[test]
    fn plugin_config_resolves_nested_strings_and_redacts_them_in_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "hunter2-token").unwrap();
        let mut locations = BTreeMap::new();
        let at = |line| Location {
            file: std::path::Path::new("c.toml").into(),
            line,
            column: 3,
        };
        locations.insert(String::new(), at(1));
        locations.insert("/auth".to_owned(), at(2));
        locations.insert("/auth/token".to_owned(), at(3));
        let cfg = PluginConfig::new(
            &json!({"auth": {"token": "Bearer ${file:tok}"}, "pages": [1, 2], "n": "$${x}"}),
            locations,
            dir.path().to_path_buf(),
            "source `shop` config".into(),
        );
        let r = cfg.resolve().unwrap();
        assert_eq!(r.value["auth"]["token"], "Bearer hunter2-token");
        assert_eq!(r.value["n"], "${x}");
        assert_eq!(r.secrets, vec!["hunter2-token".to_owned()]);
        let debug = format!("{r:?} {cfg:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("${file:tok}") && debug.contains("[redacted]"));
        assert_eq!(cfg.location_of("/auth/token"), Some(at(3)));
        assert_eq!(cfg.location_of("auth.token"), Some(at(3)));
        assert_eq!(cfg.location_of("auth.missing"), Some(at(2)));
        assert_eq!(cfg.location_of(""), Some(at(1)));
    }

    #[test]
    fn plugin_config_errors_say_which_value_needs_the_secret() {
        let mut locations = BTreeMap::new();
        locations.insert(
            "/token".to_owned(),
            Location {
                file: std::path::Path::new("c.toml").into(),
                line: 4,
                column: 9,
            },
        );
        let cfg = PluginConfig::new(
            &json!({"token": "${env:COHORT_TEST_SURELY_UNSET_VAR}"}),
            locations,
            PathBuf::from("/"),
            "destination `ads` config".into(),
        );
        let err = cfg.resolve().unwrap_err().to_string();
        assert!(
            err.starts_with(
                "destination `ads` config.token (c.toml:4:9): `${env:COHORT_TEST_SURELY_UNSET_VAR}`"
            ),
            "{err}"
        );
    }
}
