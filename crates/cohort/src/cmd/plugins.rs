//! `cohort plugins`: what plugins this cohort finds, and whether a plugin file behaves.
//!
//! Discovery (see `cohort_plugin_host::discovery`): beside the `cohort` executable and its
//! `plugins/` folder, then `plugins.dir` from the config, then `COHORT_PLUGIN_PATH`; only files
//! named `libcohort_plugin_NAME.so` (`.dylib` on macOS, `cohort_plugin_NAME.dll` on Windows) are
//! loaded, and the first plugin of a name wins.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cohort_plugin_host::conformance::{self, Fixture};
use cohort_plugin_host::discovery::{self, Registry};
use serde_json::{Value, json};

/// Subcommands of `cohort plugins`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PluginsCommand {
    /// List the plugins found: name, version, kinds, ABI and path.
    ///
    /// Searched in order: beside the cohort executable (and its plugins/ folder), plugins.dir
    /// from the config, then each folder of COHORT_PLUGIN_PATH. Only files named
    /// libcohort_plugin_NAME.so (.dylib on macOS, cohort_plugin_NAME.dll on Windows) are loaded;
    /// the first plugin of a name wins.
    #[command(verbatim_doc_comment)]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// A Cohort config (file or folder): its `[plugins] dir` is searched too.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Run the conformance kit against a plugin file (any path, any file name).
    ///
    /// Without --config, the plugin is exercised with the example its manifest ships: its
    /// files are written to a temporary folder and its HTTP exchanges answered by a local
    /// server, so every bundled plugin is checked fully with no flags.
    ///
    /// Examples:
    ///   cohort plugins check target/release/libcohort_plugin_csv.so
    ///   cohort plugins check target/release/libcohort_plugin_csv.so --config csv.toml
    #[command(verbatim_doc_comment)]
    Check {
        /// The plugin library.
        path: PathBuf,
        /// A config to exercise the plugin with (TOML or JSON file), instead of the example the
        /// plugin ships (or `{}` when it ships none). HTTP goes to the real URLs it names.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A config the plugin must reject (TOML or JSON file). By default, the config plus an
        /// unknown field.
        #[arg(long, value_name = "FILE")]
        bad_config: Option<PathBuf>,
        /// Records per page while checking paging and cursors.
        #[arg(long, default_value_t = 3, value_name = "N")]
        page_size: usize,
    },
}

/// Runs a `cohort plugins` subcommand. `config_plugins_dir` is `plugins.dir` from the config.
pub(crate) fn run(cmd: PluginsCommand, config_plugins_dir: Option<&Path>) -> Result<()> {
    match cmd {
        PluginsCommand::List { json, config } => match config {
            Some(path) => {
                let config = cohort_config::load(&path).map_err(|d| {
                    anyhow::anyhow!("{d}\n{} problem(s) in {}", d.len(), path.display())
                })?;
                let dir = config.plugins.dir.as_deref().or(config_plugins_dir);
                list(dir, json)
            }
            None => list(config_plugins_dir, json),
        },
        PluginsCommand::Check {
            path,
            config,
            bad_config,
            page_size,
        } => check(&path, config.as_deref(), bad_config.as_deref(), page_size),
    }
}

fn list(config_plugins_dir: Option<&Path>, as_json: bool) -> Result<()> {
    let dirs = discovery::default_search_dirs(config_plugins_dir);
    let reg = Registry::discover(&dirs);
    if as_json {
        let plugins: Vec<Value> = reg
            .plugins
            .values()
            .map(|(p, origin)| {
                let m = p.manifest();
                let (major, minor) = p.abi_version();
                json!({
                    "name": m.name, "version": m.version, "kinds": m.kinds,
                    "description": m.description, "capabilities": m.capabilities,
                    "abi": format!("{major}.{minor}"), "path": p.path(), "found": origin.to_string(),
                })
            })
            .collect();
        let failed: Vec<Value> = reg
            .failed
            .iter()
            .map(|(path, _, e)| json!({"path": path, "error": e.to_string()}))
            .collect();
        let searched: Vec<Value> = dirs
            .iter()
            .map(|d| json!({"dir": d.dir, "origin": d.origin.to_string()}))
            .collect();
        let doc = json!({"plugins": plugins, "failed": failed, "searched": searched});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if reg.plugins.is_empty() {
        println!("No plugins found. Searched:");
        for d in &dirs {
            println!("  {} ({})", d.dir.display(), d.origin);
        }
    } else {
        let rows: Vec<[String; 5]> = reg
            .plugins
            .values()
            .map(|(p, _)| {
                let m = p.manifest();
                let (major, minor) = p.abi_version();
                [
                    m.name.clone(),
                    m.version.clone(),
                    m.kinds_label(),
                    format!("{major}.{minor}"),
                    p.path().display().to_string(),
                ]
            })
            .collect();
        let header = ["NAME", "VERSION", "KINDS", "ABI", "PATH"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut out = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == 4 {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            out
        };
        println!("{}", line(header));
        for row in &rows {
            println!("{}", line([&row[0], &row[1], &row[2], &row[3], &row[4]]));
        }
    }
    for (path, origin, hidden_by) in &reg.shadowed {
        eprintln!(
            "note: {} ({origin}) is hidden by {}, found earlier",
            path.display(),
            hidden_by.display()
        );
    }
    for (_, _, err) in &reg.failed {
        eprintln!("warning: {err}");
    }
    Ok(())
}

/// Reads a config file: TOML, or JSON when the name ends in `.json`.
fn read_config(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        serde_json::from_str(&text)
            .with_context(|| format!("parsing JSON config {}", path.display()))
    } else {
        let value: toml::Value = toml::from_str(&text)
            .with_context(|| format!("parsing TOML config {}", path.display()))?;
        Ok(serde_json::to_value(value)?)
    }
}

fn check(
    path: &Path,
    config: Option<&Path>,
    bad_config: Option<&Path>,
    page_size: usize,
) -> Result<()> {
    let report = match config {
        Some(config) => {
            let mut fixture = Fixture::new(read_config(config)?).page_size(page_size);
            if let Some(p) = bad_config {
                fixture = fixture.bad_config(read_config(p)?);
            }
            println!("with the config in {}", config.display());
            conformance::run(path, &fixture)
        }
        None if bad_config.is_some() => bail!("--bad-config needs --config"),
        None => {
            let checked = cohort_plugin_testkit::check_example(path, page_size);
            println!("{}", checked.setup);
            checked.report
        }
    };
    println!("{report}");
    if !report.passed() {
        bail!(
            "{} does not conform to the Cohort plugin ABI",
            path.display()
        );
    }
    Ok(())
}
