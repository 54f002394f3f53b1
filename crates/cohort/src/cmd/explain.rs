//! `cohort segment explain`: one customer, or one person with `[identity]`, as the last run's
//! data makes them: their source records, where each field came from, and each segment's
//! verdict node by node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use cohort_core::segment::{Explanation, SegmentDef, SegmentSet};
use cohort_core::{Customer, CustomerId};
use cohort_engine::{Computed, Engine, SystemClock};
use serde::Serialize;

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Config file or folder.
    #[arg(long, short, value_name = "PATH")]
    config: PathBuf,
    /// The workspace [default: the config's only workspace].
    #[arg(long, short, value_name = "ID")]
    workspace: Option<String>,
    /// The customer: its id (a person id such as `p-12` with `[identity]`), or one of its
    /// records as `SOURCE:ID`.
    #[arg(long, value_name = "ID")]
    customer: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
struct Report<'a> {
    customer: &'a str,
    records: Vec<RecordView<'a>>,
    /// Each field of the profile, with its value and the source it came from.
    fields: BTreeMap<String, FieldView>,
    segments: Vec<Explanation>,
}

#[derive(Debug, Serialize)]
struct RecordView<'a> {
    source: &'a str,
    id: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    accepts_email_marketing: bool,
}

#[derive(Debug, Serialize)]
struct FieldView {
    value: serde_json::Value,
    source: Option<String>,
}

pub(crate) fn run(args: &ExplainArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let workspaces = cohort_engine::workspaces(&config, args.workspace.as_deref())?;
    let [workspace] = workspaces[..] else {
        bail!("the config has several workspaces: choose one with --workspace");
    };
    super::runtime()?.block_on(async {
        let engine = Engine::open(&config, std::sync::Arc::new(SystemClock)).await?;
        let ws = engine.workspace(workspace).await?;
        let clock = engine.as_of(workspace);
        let mut errors = Vec::new();
        let computed = cohort_engine::compute(&ws, workspace, clock, cohort_engine::templates::Wanted::default(), &mut errors).await?;
        engine.close().await;
        if computed.customers.is_empty() {
            bail!(
                "the store has no customers for workspace `{}` yet: run `cohort run --config {} --dry-run` first (it pulls without pushing)",
                workspace.id,
                args.config.display()
            );
        }
        let Some(id) = find(&computed, &args.customer) else {
            bail!(
                "no customer `{}` in workspace `{}`{}",
                args.customer,
                workspace.id,
                if computed.people.is_some() {
                    " (give a person id such as `p-12`, or a record as `SOURCE:ID`)"
                } else {
                    ""
                }
            );
        };
        let report = report(&computed, workspace, &id)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text(&report));
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The customer `reference` names: an id, or with `[identity]` a person id or `SOURCE:ID`.
fn find(computed: &Computed, reference: &str) -> Option<CustomerId> {
    if let Some(people) = &computed.people {
        return people.person(reference).cloned();
    }
    let id = reference.split_once(':').map_or(reference, |(_, id)| id);
    computed.customer(id).map(|(_, c)| c.id.clone())
}

fn report<'a>(
    computed: &'a Computed,
    workspace: &cohort_config::Workspace,
    id: &'a CustomerId,
) -> Result<Report<'a>> {
    let Some((row, customer)) = computed.customer(id.as_str()) else {
        bail!(
            "customer `{}` has no features (see the run's record errors)",
            id.as_str()
        );
    };
    let (records, provenance): (Vec<RecordView<'a>>, BTreeMap<String, String>) =
        match &computed.people {
            Some(people) => {
                let records = people
                    .records_of(id)
                    .into_iter()
                    .map(|(source, c)| view(source, c))
                    .collect();
                let provenance = people
                    .profiles
                    .iter()
                    .find(|p| p.customer.id == *id)
                    .map(|p| p.provenance.clone())
                    .unwrap_or_default();
                (records, provenance)
            }
            None => (vec![view("", customer)], BTreeMap::new()),
        };
    let defs: Vec<SegmentDef> = workspace
        .segments
        .iter()
        .map(|s| SegmentDef::new(&s.name, &s.expr))
        .collect();
    let Ok(set) = SegmentSet::compile(&defs, &computed.table) else {
        bail!("the segments do not compile: run `cohort validate` to see why");
    };
    let segments = workspace
        .segments
        .iter()
        .filter_map(|s| set.explain(&s.name, row))
        .collect();
    Ok(Report {
        customer: id.as_str(),
        records,
        fields: fields(customer, &provenance),
        segments,
    })
}

fn view<'a>(source: &'a str, c: &'a Customer) -> RecordView<'a> {
    RecordView {
        source,
        id: c.id.as_str(),
        email: c.email.as_deref(),
        phone: c.phone.as_deref(),
        accepts_email_marketing: c.accepts_email_marketing,
    }
}

/// The profile's fields that have a value, each with its source.
fn fields(
    customer: &Customer,
    provenance: &BTreeMap<String, String>,
) -> BTreeMap<String, FieldView> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(customer) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (name, value) in map {
        if name == "id"
            || value.is_null()
            || value == serde_json::json!([])
            || value == serde_json::json!({})
        {
            continue;
        }
        if let (serde_json::Value::Object(attrs), "attributes") = (&value, name.as_str()) {
            for (k, v) in attrs {
                let key = format!("attributes.{k}");
                let source = provenance.get(&key).cloned();
                out.insert(
                    key,
                    FieldView {
                        value: v.clone(),
                        source,
                    },
                );
            }
            continue;
        }
        let source = provenance.get(&name).cloned();
        out.insert(name, FieldView { value, source });
    }
    out
}

fn text(report: &Report<'_>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "customer {}", report.customer);
    if report.records.iter().any(|r| !r.source.is_empty()) {
        let _ = writeln!(out, "\nrecords:");
        for r in &report.records {
            let _ = writeln!(
                out,
                "  {}:{}  email {}  phone {}  consent {}",
                r.source,
                r.id,
                r.email.unwrap_or("-"),
                r.phone.unwrap_or("-"),
                if r.accepts_email_marketing {
                    "yes"
                } else {
                    "no"
                }
            );
        }
    }
    let _ = writeln!(out, "\nfields:");
    let width = report.fields.keys().map(String::len).max().unwrap_or(0);
    for (name, field) in &report.fields {
        let value = match &field.value {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        match &field.source {
            // Consent names every source that withheld it, or all of them.
            Some(how) if how.starts_with("withheld") || how == "every source" => {
                let _ = writeln!(out, "  {name:width$}  {value}  ({how})");
            }
            Some(source) => {
                let _ = writeln!(out, "  {name:width$}  {value}  (from {source})");
            }
            None => {
                let _ = writeln!(out, "  {name:width$}  {value}");
            }
        }
    }
    for e in &report.segments {
        let _ = writeln!(out, "\n{e}");
    }
    out
}
