//! Running a plugin's own example (its manifest's `example`) through the conformance kit.
//!
//! This is what `cohort plugins check PATH` does with no `--config`, and what a plugin's tests do
//! to prove that the example it ships works: the example's files are written to a fresh
//! temporary folder (`{dir}`), its HTTP exchanges are served by a [`FakeServer`] (`{base_url}`),
//! the placeholders are filled in everywhere, and the kit runs against the real library through
//! the ABI and the host's HTTP service. The same code serves the CLI and the tests, so the
//! example a plugin documents is the example that is checked.

use std::fmt;
use std::path::{Component, Path};

use cohort_plugin_api::wire::{Example, Exchange};
use cohort_plugin_host::LoadedPlugin;
use cohort_plugin_host::conformance::{self, Fixture, Report};
use serde_json::{Value, json};

use crate::server::FakeServer;

/// An example made ready to run: its config filled in, its files written, its server started.
/// Dropping it stops the server and removes the files.
pub struct Prepared {
    /// The example's config with `{dir}` and `{base_url}` filled in.
    pub config: Value,
    /// The server answering the example's exchanges, when it has any.
    pub server: Option<FakeServer>,
    /// The folder holding the example's files.
    pub dir: tempfile::TempDir,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("config", &self.config)
            .field("server", &self.server)
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Prepared {
    /// Writes `example`'s files into a fresh folder and starts its server.
    pub fn new(example: &Example) -> Result<Prepared, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("making a temporary folder: {e}"))?;
        let needs_server = !example.http.is_empty()
            || example.config.to_string().contains("{base_url}")
            || example.files.iter().any(|(_, t)| t.contains("{base_url}"));
        let server = needs_server.then(FakeServer::start);
        let dir_text = dir.path().to_string_lossy().into_owned();
        let base_url = server.as_ref().map(|s| s.url().to_owned());
        let fill = |text: &str| {
            let text = text.replace("{dir}", &dir_text);
            match &base_url {
                Some(url) => text.replace("{base_url}", url),
                None => text,
            }
        };
        for (name, text) in &example.files {
            let relative = Path::new(name);
            if !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(format!(
                    "the example's file `{name}` must be a relative path without `..`"
                ));
            }
            let path = dir.path().join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::write(&path, fill(text))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
        }
        if let Some(server) = &server {
            let exchanges: Vec<Exchange> = example
                .http
                .iter()
                .map(|e| Exchange {
                    headers: e
                        .headers
                        .iter()
                        .map(|(k, v)| (k.clone(), fill(v)))
                        .collect(),
                    body: fill(&e.body),
                    ..e.clone()
                })
                .collect();
            server.serve_exchanges(&exchanges);
        }
        let config = fill_strings(&example.config, &fill);
        Ok(Prepared {
            config,
            server,
            dir,
        })
    }
}

fn fill_strings(value: &Value, fill: &impl Fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(fill(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_strings(v, fill)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill_strings(v, fill)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What [`check_example`] ran, and the verdict.
#[derive(Debug)]
pub struct Checked {
    /// Every check and its verdict.
    pub report: Report,
    /// One line on what the plugin was exercised with, for people.
    pub setup: String,
}

impl Checked {
    /// Panics with the report unless every check passed or was skipped (for tests).
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(
            self.report.passed(),
            "{}\nconformance failed:\n{}",
            self.setup,
            self.report
        );
    }
}

/// Runs the conformance kit on the plugin at `path` with the example its manifest ships (with
/// `{}` when it ships none), `page_size` records per page.
pub fn check_example(path: &Path, page_size: usize) -> Checked {
    let example = LoadedPlugin::load(path)
        .ok()
        .and_then(|p| p.manifest().example.clone());
    let Some(example) = example else {
        let report = conformance::run(path, &Fixture::new(json!({})).page_size(page_size));
        return Checked {
            report,
            setup: "the manifest ships no example: checked with an empty config `{}`".to_owned(),
        };
    };
    let prepared = match Prepared::new(&example) {
        Ok(p) => p,
        Err(e) => {
            let report = conformance::run(path, &Fixture::new(json!({})).page_size(page_size));
            return Checked {
                report,
                setup: format!(
                    "the manifest's example could not be set up ({e}): checked with `{{}}`"
                ),
            };
        }
    };
    let fixture = Fixture::new(prepared.config.clone()).page_size(page_size);
    let report = conformance::run(path, &fixture);
    let mut setup = format!(
        "with the example from the manifest: {} file(s) in {}",
        example.files.len(),
        prepared.dir.path().display()
    );
    if let Some(server) = &prepared.server {
        setup.push_str(&format!(
            ", {} canned HTTP exchange(s) at {} ({} request(s) made)",
            example.http.len(),
            server.url(),
            server.count()
        ));
    }
    Checked { report, setup }
}
