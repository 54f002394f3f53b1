//! The checks a workspace must pass before anything runs, shared by `cohort validate`, by
//! `cohort run` (which makes them before it pulls anything) and by the daemon (on every
//! config load).
//!
//! cohort-config checks what the config alone can tell (syntax, keys, names, references, time
//! zones, schedules). This adds what needs the rest of Cohort: the plugins (found, of the right
//! kind, supporting the campaign's mode, config matching their schema with the secrets
//! resolved, and accepted by the plugin itself when opened: files that exist, values that
//! agree), the segment expressions (parsed and type-checked against the feature catalogue) and
//! the templates (compiled, using only fields that exist). Nothing is pulled, stored or pushed.
//!
//! Opening a plugin here is why plugins must not do network I/O in `open` (docs/plugins.md):
//! a check must be quick, and must work with the vendor down.

use std::path::Path;

use cohort_config::{Diagnostic, Diagnostics, Location, PluginConfig, Workspace, did_you_mean};
use cohort_core::segment::{SegmentDef, SegmentSet};
use cohort_plugin_host::discovery::{Registry, SearchDir};
use cohort_plugin_host::wire::Kind;
use cohort_plugin_host::{CallError, HostServices, LoadedPlugin};
use cohort_render::TemplateError;

use crate::plugins::{Plugins, prepare};
use crate::templates;

/// Every check of one workspace that needs plugins, features or templates: every problem,
/// each at its place in the config, sorted.
pub fn check_workspace(ws: &Workspace, plugins: &Plugins) -> Diagnostics {
    let mut diags = Diagnostics::new();
    check_plugins(ws, plugins, &mut diags);
    check_segments(ws, &mut diags);
    check_templates(ws, &mut diags);
    diags.sort();
    diags
}

fn check_plugins(ws: &Workspace, plugins: &Plugins, diags: &mut Diagnostics) {
    let (registry, dirs) = (plugins.registry(), plugins.search_dirs());
    for s in &ws.sources {
        let what = format!("source `{}`", s.name);
        if let Some(p) = find_plugin(registry, dirs, &s.plugin, &what, &s.plugin_at, diags)
            && check_kind(p, Kind::Source, &what, &s.plugin_at, diags)
        {
            check_config(p, &s.config, &what, &s.at, diags);
        }
    }
    for d in &ws.destinations {
        let what = format!("destination `{}`", d.name);
        let Some(p) = find_plugin(registry, dirs, &d.plugin, &what, &d.plugin_at, diags) else {
            continue;
        };
        if !check_kind(p, Kind::Destination, &what, &d.plugin_at, diags) {
            continue;
        }
        check_config(p, &d.config, &what, &d.at, diags);
        let modes = &p.manifest().capabilities.destination_modes;
        for c in ws.campaigns.iter().filter(|c| c.destination == d.name) {
            if !modes.iter().any(|m| m.as_str() == c.mode.as_str()) {
                let supported: Vec<String> = modes.iter().map(|m| m.as_str().to_owned()).collect();
                diags.push(
                    Diagnostic::new(
                        Some(c.at.clone()),
                        format!(
                            "campaign `{}`: destination `{}` (plugin `{}`) does not support {} mode",
                            c.name, d.name, p.name(), c.mode
                        ),
                    )
                    .help(if supported.is_empty() {
                        "the plugin declares no destination modes".to_owned()
                    } else {
                        format!("it supports: {}", supported.join(", "))
                    }),
                );
            }
        }
    }
}

fn find_plugin<'r>(
    registry: &'r Registry,
    dirs: &[SearchDir],
    name: &str,
    what: &str,
    at: &Location,
    diags: &mut Diagnostics,
) -> Option<&'r LoadedPlugin> {
    if let Some(p) = registry.get(name) {
        return Some(p);
    }
    let names: Vec<&str> = registry.plugins.keys().map(String::as_str).collect();
    let help = match did_you_mean(name, names.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => {
            let searched: Vec<String> = dirs
                .iter()
                .map(|d| format!("{} ({})", d.dir.display(), d.origin))
                .collect();
            format!(
                "searched {}; found: {}. Build it beside cohort, or point [plugins] dir or COHORT_PLUGIN_PATH at it",
                searched.join(", "),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )
        }
    };
    diags.push(
        Diagnostic::new(
            Some(at.clone()),
            format!("{what}: plugin `{name}` not found"),
        )
        .help(help),
    );
    None
}

fn check_kind(
    p: &LoadedPlugin,
    kind: Kind,
    what: &str,
    at: &Location,
    diags: &mut Diagnostics,
) -> bool {
    let kinds = &p.manifest().kinds;
    if kinds.contains(&kind) {
        return true;
    }
    diags.push(Diagnostic::new(
        Some(at.clone()),
        format!(
            "{what}: plugin `{}` is not a {kind} plugin (it is: {})",
            p.name(),
            p.manifest().kinds_label()
        ),
    ));
    false
}

/// Resolves the secrets (a missing one is a problem now, not at 3 a.m.), checks the config
/// against the plugin's schema, then opens the plugin with it, so that it can check what a
/// schema cannot (a file that does not exist, a folder given as a file). Each issue is placed
/// at its value in the file.
fn check_config(
    p: &LoadedPlugin,
    config: &PluginConfig,
    what: &str,
    at: &Location,
    diags: &mut Diagnostics,
) {
    if let Err(e) = config.resolve() {
        diags.push(
            Diagnostic::new(Some(at.clone()), e.to_string())
                .help("set the variable or create the file before running"),
        );
        return;
    }
    let prepared = match prepare(p, config) {
        Ok(prepared) => prepared,
        Err(e) => {
            diags.push(Diagnostic::new(
                Some(at.clone()),
                format!("{what} config: {e}"),
            ));
            return;
        }
    };
    let issues = match p.validate_config(&prepared.value) {
        Err(CallError::Config(issues)) => issues,
        Err(e) => {
            diags.push(Diagnostic::new(Some(at.clone()), format!("{what}: {e}")));
            return;
        }
        Ok(()) => match p.open(&prepared.value, HostServices::default()) {
            Ok(_) => return,
            Err(CallError::Config(issues)) => issues,
            Err(e) => {
                diags.push(Diagnostic::new(
                    Some(at.clone()),
                    format!("{what}: plugin `{}` refused its config: {e}", p.name()),
                ));
                return;
            }
        },
    };
    for issue in issues {
        let place = config
            .location_of(&issue.path)
            .unwrap_or_else(|| at.clone());
        let path = cohort_config::dotted_pointer(&issue.path);
        diags.push(Diagnostic::new(
            Some(place),
            format!(
                "{what} config{path}: {} (plugin `{}`)",
                issue.message,
                p.name()
            ),
        ));
    }
}

/// The features segments can use without data (custom attributes are only known once data is
/// read, so errors about them are left to the run, as `cohort segment eval` does).
fn check_segments(ws: &Workspace, diags: &mut Diagnostics) {
    let defs: Vec<SegmentDef> = ws
        .segments
        .iter()
        .map(|s| SegmentDef::new(s.name.clone(), s.expr.clone()))
        .collect();
    let Err(errors) = SegmentSet::check(&defs, &cohort_core::features::catalogue_fields()) else {
        return;
    };
    for e in errors {
        if e.diagnostic.message.contains("attributes.") {
            continue;
        }
        let seg = ws.segment(&e.segment);
        let at = seg.map(|s| match &s.expr_at {
            Some(start) => {
                let prefix = s.expr.get(..e.diagnostic.span.start).unwrap_or(&s.expr);
                start.advanced(prefix)
            }
            None => s.at.clone(),
        });
        diags.push(
            Diagnostic::new(
                at,
                format!("segment `{}`: {}", e.segment, e.diagnostic.message),
            )
            .maybe_help(e.diagnostic.help.clone()),
        );
    }
}

/// Every template of the workspace, compiled by the renderer the run uses and checked for
/// unknown fields and helpers.
fn check_templates(ws: &Workspace, diags: &mut Diagnostics) {
    let (renderer, errors) = templates::renderer(ws);
    for e in &errors {
        diags.push(template_diagnostic(e));
    }
    for (t, _) in templates::all(ws) {
        if renderer.has(&t.name) {
            for e in renderer.check_fields(&t.name) {
                diags.push(template_diagnostic(&e));
            }
        }
    }
}

fn template_diagnostic(e: &TemplateError) -> Diagnostic {
    Diagnostic::new(
        Some(Location {
            file: Path::new(&e.origin).into(),
            line: e.line,
            column: e.column,
        }),
        format!("template `{}`: {}", e.template, e.message),
    )
    .maybe_help(e.help.clone())
}
