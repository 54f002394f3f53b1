//! `cargo xtask new-plugin NAME --kind source|destination [--http]`: scaffolds `plugins/NAME`, a
//! plugin crate that builds, loads and passes the conformance kit as generated, so an integrator
//! starts from something green and changes it step by step.
//!
//! With `--http`, the crate is a connector to a vendor's API on the SDK's toolkit, in the same
//! files as every connector: `config.rs`, `client.rs` (a `Paged` source or a `Batcher`
//! destination), `mapping.rs`, and a test against the test kit's fake server.
//!
//! The crate is named `cohort-plugin-NAME`, so cargo builds it to `libcohort_plugin_NAME.so`
//! beside the `cohort` binary, where discovery finds it.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::paths;

mod http;

const USAGE: &str = "\
Usage: cargo xtask new-plugin NAME --kind source|destination [--http]

Creates plugins/NAME, a Cohort plugin crate (cohort-plugin-NAME) with a config, the trait
implementation, and a test that runs the conformance kit against the built library. With
--http (the kind defaults to source), a connector to an HTTP API on the SDK's toolkit:
config.rs, client.rs, mapping.rs, and tests against a fake server. Then:
  cargo test -p cohort-plugin-NAME
  cargo build -p cohort-plugin-NAME && cargo run -p cohort -- plugins list";

/// What kind of plugin to scaffold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PluginKind {
    Source,
    Destination,
    /// A paged source over an HTTP API.
    HttpSource,
    /// A batching destination over an HTTP API.
    HttpDestination,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut name = None;
    let mut kind = None;
    let mut http = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--kind" => {
                kind = Some(match it.next().map(String::as_str) {
                    Some("source") => PluginKind::Source,
                    Some("destination") => PluginKind::Destination,
                    other => bail!("--kind must be `source` or `destination`, not {other:?}"),
                });
            }
            "--http" => http = true,
            other if other.starts_with('-') => bail!("unknown option `{other}`\n\n{USAGE}"),
            other if name.is_none() => name = Some(other.to_owned()),
            other => bail!("unexpected argument `{other}`\n\n{USAGE}"),
        }
    }
    let Some(name) = name else {
        bail!("missing NAME\n\n{USAGE}")
    };
    let kind = match (kind, http) {
        (Some(PluginKind::Destination), true) => PluginKind::HttpDestination,
        (Some(kind), false) => kind,
        (_, true) => PluginKind::HttpSource,
        (None, false) => bail!("missing --kind source|destination\n\n{USAGE}"),
    };
    let dir = paths::repo_root().join("plugins").join(&name);
    scaffold(&dir, &name, kind)?;
    println!("created {} (package cohort-plugin-{name})", dir.display());
    println!("next: cargo test -p cohort-plugin-{name}");
    Ok(())
}

/// Checks a plugin name: what the manifest and the file name can both carry.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "plugin name `{name}` must start with a lowercase letter and use only a-z, 0-9 and `-`"
        );
    }
    Ok(())
}

/// Writes the crate into `dir`, which must not exist.
pub(crate) fn scaffold(dir: &Path, name: &str, kind: PluginKind) -> Result<()> {
    check_name(name)?;
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    for (path, text) in files(name, kind) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The files of the crate, relative to its folder.
pub(crate) fn files(name: &str, kind: PluginKind) -> Vec<(&'static str, String)> {
    let ty = type_name(name);
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{Type}}", &ty);
    let (lib, test) = match kind {
        PluginKind::Source => (SOURCE_LIB, SOURCE_TEST),
        PluginKind::Destination => (DESTINATION_LIB, DESTINATION_TEST),
        PluginKind::HttpSource => {
            return vec![
                ("Cargo.toml", fill(HTTP_CARGO_TOML)),
                ("src/lib.rs", fill(http::SOURCE_LIB)),
                ("src/config.rs", fill(http::CONFIG)),
                ("src/client.rs", fill(http::SOURCE_CLIENT)),
                ("src/mapping.rs", fill(http::SOURCE_MAPPING)),
                ("tests/plugin.rs", fill(http::SOURCE_TEST)),
            ];
        }
        PluginKind::HttpDestination => {
            return vec![
                ("Cargo.toml", fill(HTTP_CARGO_TOML)),
                ("src/lib.rs", fill(http::DESTINATION_LIB)),
                ("src/config.rs", fill(http::CONFIG)),
                ("src/client.rs", fill(http::DESTINATION_CLIENT)),
                ("src/mapping.rs", fill(http::DESTINATION_MAPPING)),
                ("tests/plugin.rs", fill(http::DESTINATION_TEST)),
            ];
        }
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(lib)),
        ("tests/conformance.rs", fill(test)),
    ]
}

const HTTP_CARGO_TOML: &str = r#"[package]
name = "cohort-plugin-{{name}}"
description = "Cohort plugin: {{name}}"
version = "0.1.0"
edition.workspace = true
license.workspace = true
publish = false

[lib]
# cdylib: the library Cohort loads; rlib: lets the tests and other crates use the types.
crate-type = ["cdylib", "rlib"]

[dependencies]
cohort-plugin-api.workspace = true
schemars.workspace = true
serde.workspace = true
serde_json.workspace = true

[dev-dependencies]
cohort-plugin-host.workspace = true
cohort-plugin-testkit.workspace = true

[lints]
workspace = true
"#;

const CARGO_TOML: &str = r#"[package]
name = "cohort-plugin-{{name}}"
description = "Cohort plugin: {{name}}"
version = "0.1.0"
edition.workspace = true
license.workspace = true
publish = false

[lib]
# cdylib: the library Cohort loads; rlib: lets the tests and other crates use the types.
crate-type = ["cdylib", "rlib"]

[dependencies]
cohort-plugin-api.workspace = true
schemars.workspace = true
serde.workspace = true
serde_json.workspace = true

[dev-dependencies]
cohort-plugin-host.workspace = true

[lints]
workspace = true
"#;

const SOURCE_LIB: &str = r#"//! `{{name}}`: a Cohort source plugin.
//!
//! Generated by `cargo xtask new-plugin`. It makes up customers so that it passes the
//! conformance kit as generated; replace `next_page` with calls to your system, through
//! `self.host.http(...)` to get the host's timeouts, retries, rate limits and redaction.

use cohort_plugin_api::prelude::*;
use serde::Deserialize;

/// Config of the `{{name}}` source. Doc comments become the schema's descriptions.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How many customers to produce.
    #[serde(default = "default_count")]
    pub count: u32,
    /// API token; marked secret, so the host redacts it from every log.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub api_token: Option<String>,
}

fn default_count() -> u32 {
    10
}

/// The plugin.
#[derive(Debug)]
pub struct {{Type}} {
    config: Config,
    host: Host,
}

impl Plugin for {{Type}} {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::source("{{name}}", env!("CARGO_PKG_VERSION"))
            .description("Customers from {{name}}")
            .streams([Stream::Customers])
            .incremental()
            .config_schema_of::<Config>()
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        if config.count > 1_000_000 {
            return Err(PluginError::config("/count", "at most 1000000"));
        }
        Ok({{Type}} { config, host })
    }
}

impl Source for {{Type}} {
    /// Index of the next customer; a real source keeps an API cursor or an `updated_at` here.
    type Cursor = u32;

    fn next_page(
        &mut self,
        _stream: Stream,
        cursor: Option<u32>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<u32>, PluginError> {
        let mut next = cursor.unwrap_or(0);
        if next > self.config.count {
            return Err(PluginError::BadCursor(format!("{next} is past the end")));
        }
        while next < self.config.count && !page.is_full() {
            self.host.check_cancelled()?;
            next += 1;
            let mut customer = Customer::new(next.to_string());
            customer.email = Some(format!("customer{next}@example.com"));
            page.push(&customer)?;
        }
        self.host.progress(u64::from(next), Some(u64::from(self.config.count)));
        Ok(PageEnd { next_cursor: next, done: next >= self.config.count })
    }
}

cohort_plugin_api::export_plugin!(source: {{Type}});
"#;

const SOURCE_TEST: &str = r#"//! Runs the conformance kit against the library cargo builds.

use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::dev::build_cdylib;
use serde_json::json;

#[test]
fn the_plugin_passes_the_conformance_kit() {
    let path = build_cdylib("cohort-plugin-{{name}}", false).expect("building the plugin");
    let fixture = Fixture::new(json!({"count": 10})).bad_config(json!({"count": -1}));
    conformance::run(&path, &fixture).assert_passed();
}
"#;

const DESTINATION_LIB: &str = r#"//! `{{name}}`: a Cohort destination plugin.
//!
//! Generated by `cargo xtask new-plugin`. It acknowledges every operation once per key so that it
//! passes the conformance kit as generated; replace `push` with calls to your system, through
//! `self.host.http(...)` to get the host's timeouts, retries, rate limits and redaction, and
//! keep the rule: an operation whose key was applied before must not be applied again.

use std::collections::HashSet;

use cohort_plugin_api::prelude::*;
use serde::Deserialize;

/// Config of the `{{name}}` destination. Doc comments become the schema's descriptions.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to send (an API base URL, a list id).
    #[serde(default)]
    pub target: Option<String>,
    /// API token; marked secret, so the host redacts it from every log.
    #[serde(default)]
    #[schemars(extend("x-cohort-secret" = true))]
    pub api_token: Option<String>,
}

/// The plugin.
#[derive(Debug)]
pub struct {{Type}} {
    host: Host,
    /// Keys applied so far; a real destination asks the remote system or keeps them durably.
    applied: HashSet<String>,
}

impl Plugin for {{Type}} {
    type Config = Config;

    fn manifest() -> Manifest {
        Manifest::destination("{{name}}", env!("CARGO_PKG_VERSION"))
            .description("Sends audiences to {{name}}")
            .modes([DestinationMode::Upsert, DestinationMode::Mirror])
            .config_schema_of::<Config>()
    }

    fn open(_config: Config, host: Host) -> Result<Self, PluginError> {
        Ok({{Type}} { host, applied: HashSet::new() })
    }
}

impl Destination for {{Type}} {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let mut outcomes = Vec::with_capacity(batch.operations.len());
        for op in batch.operations {
            self.host.check_cancelled()?;
            let status = if op.action == Action::Remove && batch.mode != DestinationMode::Mirror {
                OutcomeStatus::Rejected { reason: "remove needs mode `mirror`".to_owned() }
            } else {
                // Apply the operation here, unless `op.key` was applied before.
                self.applied.insert(op.key.clone());
                OutcomeStatus::Ok
            };
            outcomes.push(Outcome { key: op.key, status });
        }
        Ok(PushResult { outcomes })
    }
}

cohort_plugin_api::export_plugin!(destination: {{Type}});
"#;

const DESTINATION_TEST: &str = r#"//! Runs the conformance kit against the library cargo builds.

use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::dev::build_cdylib;
use serde_json::json;

#[test]
fn the_plugin_passes_the_conformance_kit() {
    let path = build_cdylib("cohort-plugin-{{name}}", false).expect("building the plugin");
    let fixture = Fixture::new(json!({})).bad_config(json!({"target": 5}));
    conformance::run(&path, &fixture).assert_passed();
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_written() {
        assert!(check_name("shop-sync2").is_ok());
        for bad in ["", "Shop", "2shop", "shop_sync", "shop-", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_scaffolds_have_the_connector_files_and_fill_every_placeholder() {
        for kind in [PluginKind::HttpSource, PluginKind::HttpDestination] {
            let files = files("acme-api", kind);
            let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
            assert_eq!(
                names,
                [
                    "Cargo.toml",
                    "src/lib.rs",
                    "src/config.rs",
                    "src/client.rs",
                    "src/mapping.rs",
                    "tests/plugin.rs"
                ]
            );
            for (name, text) in &files {
                assert!(!text.contains("{{"), "{name} has an unfilled placeholder");
            }
        }
    }

    /// The scaffolds build and their tests pass, in a throwaway workspace that uses this
    /// repository's crates (and lock, and target folder): what an integrator gets.
    #[test]
    fn http_scaffolds_build_and_their_tests_pass() {
        let root = paths::repo_root();
        let ws = std::env::temp_dir().join(format!("cohort-http-scaffold-{}", std::process::id()));
        let _ = fs::remove_dir_all(&ws);
        scaffold(
            &ws.join("plugins/acme-api"),
            "acme-api",
            PluginKind::HttpSource,
        )
        .unwrap();
        scaffold(
            &ws.join("plugins/acme-hook"),
            "acme-hook",
            PluginKind::HttpDestination,
        )
        .unwrap();
        let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let start = manifest.find("members = [").unwrap();
        let end = start + manifest[start..].find("[workspace.package]").unwrap();
        let manifest = format!(
            "{}members = [\"plugins/*\"]\n\n{}",
            &manifest[..start],
            &manifest[end..]
        )
        .replace(
            "path = \"crates/",
            &format!("path = \"{}/crates/", root.display()),
        );
        fs::write(ws.join("Cargo.toml"), manifest).unwrap();
        fs::copy(root.join("Cargo.lock"), ws.join("Cargo.lock")).unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || {
                let exe = std::env::current_exe().unwrap();
                exe.ancestors().nth(3).unwrap().to_path_buf()
            },
            std::path::PathBuf::from,
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let out = std::process::Command::new(cargo)
            .args(["test", "--offline", "--quiet"])
            .current_dir(&ws)
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap();
        let log = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(&ws).unwrap();
        assert!(out.status.success(), "{log}");
        assert!(log.contains("test result: ok. 2 passed"), "{log}");
    }

    #[test]
    fn the_scaffold_names_the_package_type_and_manifest_consistently() {
        let dir =
            std::env::temp_dir().join(format!("cohort-new-plugin-test-{}", std::process::id()));
        let root = dir.join("acme-crm");
        scaffold(&root, "acme-crm", PluginKind::Source).unwrap();
        let cargo = fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let lib = fs::read_to_string(root.join("src/lib.rs")).unwrap();
        let test = fs::read_to_string(root.join("tests/conformance.rs")).unwrap();
        assert!(cargo.contains("name = \"cohort-plugin-acme-crm\""));
        assert!(lib.contains("pub struct AcmeCrm {"));
        assert!(lib.contains("Manifest::source(\"acme-crm\""));
        assert!(lib.contains("export_plugin!(source: AcmeCrm)"));
        assert!(test.contains("build_cdylib(\"cohort-plugin-acme-crm\""));
        assert!(
            !format!("{cargo}{lib}{test}").contains("{{"),
            "every placeholder is filled"
        );
        assert!(
            scaffold(&root, "acme-crm", PluginKind::Source).is_err(),
            "never overwrites"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
