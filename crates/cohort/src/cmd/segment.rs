//! `cohort segment …`: evaluate, check and explain segments over CSV inputs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cohort_core::features::catalog::{self, FEATURES};
use cohort_core::features::{FeatureTable, Value};
use cohort_core::membership::{Overlap, OverlapWarning, overlap};
use cohort_core::segment::{Explanation, SegmentSet, parse};
use cohort_core::{AsOf, Bitset, Timestamp};
use cohort_csv::Overrides;
use serde::Serialize;

use crate::cli::{EvalArgs, Output, Progress, SegmentCommand};
use crate::load::{self, Inputs, LoadReport, ShowProgress};
use crate::segments_file::SegmentsFile;

pub(crate) fn run(cmd: SegmentCommand) -> Result<ExitCode> {
    match cmd {
        SegmentCommand::Eval(args) => eval(&args),
        SegmentCommand::Explain(args) => super::explain::run(&args),
        SegmentCommand::Check { segments } => {
            let file = SegmentsFile::read(&segments)?;
            match SegmentSet::check(&file.defs(), &cohort_core::features::catalogue_fields()) {
                Ok(()) => {
                    println!(
                        "{}: {} segments OK",
                        segments.display(),
                        file.segments.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => bail!("{}", file.render_errors(&errors)),
            }
        }
        SegmentCommand::Fields { markdown } => {
            if markdown {
                print!("{}", catalog::markdown());
            } else {
                let width = FEATURES.iter().map(|f| f.name.len()).max().unwrap_or(0);
                for f in FEATURES {
                    println!("{:width$}  {:9}  {}", f.name, f.ty.to_string(), f.doc);
                }
                println!(
                    "{:width$}  {:9}  Custom attributes, mapped with --map customers.attributes.NAME=COLUMN.",
                    "attributes.NAME", "any"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_as_of(text: Option<&str>, tz: &str) -> Result<AsOf> {
    let tz: chrono_tz::Tz = tz
        .parse()
        .map_err(|_| anyhow::anyhow!("`{tz}` is not an IANA time zone (e.g. UTC, Europe/Paris)"))?;
    let now = match text {
        Some(t) => Timestamp::parse(t).with_context(|| "reading --as-of")?,
        None => Timestamp::from(chrono::Utc::now()),
    };
    Ok(AsOf { now, tz })
}

/// One evaluated segment.
#[derive(Debug, Serialize)]
struct SegmentOutcome {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    members: usize,
    share: f64,
    eval_ms: f64,
    #[serde(skip)]
    rows: Bitset,
}

fn eval(args: &EvalArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let as_of = parse_as_of(args.as_of.as_deref(), &args.timezone)?;
    let file = SegmentsFile::read(&args.segments)?;
    // Check the segments before reading possibly gigabytes of input.
    if let Err(errors) = SegmentSet::check(&file.defs(), &cohort_core::features::catalogue_fields())
    {
        // Custom attributes are only known once the data is read; anything else is final.
        if errors
            .iter()
            .any(|e| !e.diagnostic.message.contains("attributes."))
        {
            bail!("{}", file.render_errors(&errors));
        }
    }
    let mut overrides = Overrides::new();
    for spec in &args.maps {
        overrides
            .add_spec(spec)
            .with_context(|| format!("reading --map {spec}"))?;
    }
    let inputs = Inputs {
        customers: args.customers.clone(),
        orders: args.orders.clone(),
        events: args.events.clone(),
        overrides,
    };
    let show = match args.progress {
        Progress::Auto => ShowProgress::Auto,
        Progress::Always => ShowProgress::Always,
        Progress::Never => ShowProgress::Never,
    };
    // Build only the features the segments use, unless every feature is to be printed.
    let keep: Option<Vec<String>> = (args.output != Output::Features).then(|| used_fields(&file));
    let (table, report) = load::load(&inputs, as_of, keep.as_deref(), show, args.max_bad_rows)?;

    let set = SegmentSet::compile(&file.defs(), &table)
        .map_err(|errors| anyhow::anyhow!("{}", file.render_errors(&errors)))?;
    let seg_started = Instant::now();
    let mut outcomes: Vec<Option<SegmentOutcome>> = (0..set.len()).map(|_| None).collect();
    let mut last = Instant::now();
    for result in set.run() {
        let took = last.elapsed();
        last = Instant::now();
        let meta = &file.segments[result.index];
        let members = result.members.count();
        outcomes[result.index] = Some(SegmentOutcome {
            name: result.name.to_owned(),
            description: meta.description.clone(),
            members,
            share: if table.is_empty() {
                0.0
            } else {
                members as f64 / table.len() as f64
            },
            eval_ms: ms(took),
            rows: result.members,
        });
    }
    let segments_time = seg_started.elapsed();
    let outcomes: Vec<SegmentOutcome> = outcomes.into_iter().flatten().collect();

    let named: Vec<(String, Bitset)> = outcomes
        .iter()
        .map(|o| (o.name.clone(), o.rows.clone()))
        .collect();
    let mut overlap = overlap(&named, |i| file.segments[i].min_size);
    // A segment defined with in_segment('other') is a deliberate refinement of it, not the
    // over-segmenting the warning is about.
    let refines = refinements(&file);
    overlap.warnings.retain(|w| match w {
        OverlapWarning::MostlyInside { segment, other, .. } => {
            !refines.contains(&(segment.clone(), other.clone()))
        }
        OverlapWarning::TooSmall { .. } => true,
    });
    let explanations = match &args.explain {
        None => Vec::new(),
        Some(id) => {
            let row = table
                .row_of(id)
                .with_context(|| format!("--explain: no customer with id `{id}`"))?;
            outcomes
                .iter()
                .filter_map(|o| set.explain(&o.name, row))
                .collect()
        }
    };

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match args.output {
        Output::Counts => write_counts(&mut out, &outcomes)?,
        Output::Members => write_members(&mut out, &table, &outcomes)?,
        Output::Features => write_features(&mut out, &table)?,
        Output::Json => {
            let doc = JsonReport {
                as_of: as_of.now,
                timezone: as_of.tz.name(),
                customers: table.len(),
                input: &report,
                segments: outcomes
                    .iter()
                    .map(|o| JsonSegment {
                        outcome: o,
                        customer_ids: o.rows.iter().map(|r| table.ids()[r].as_str()).collect(),
                    })
                    .collect(),
                overlap: &overlap,
                explain: &explanations,
                timings: Timings::new(&report, segments_time, started.elapsed()),
            };
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
    }
    if args.output != Output::Json {
        for e in &explanations {
            writeln!(out, "\n{e}")?;
        }
    }
    out.flush()?;
    drop(out);

    for w in &overlap.warnings {
        eprintln!("warning: {w}");
    }
    summarise(&report, as_of, table.len());
    let t = Timings::new(&report, segments_time, started.elapsed());
    eprintln!(
        "timings: read_ms={:.1} features_ms={:.1} segments_ms={:.1} total_ms={:.1}",
        t.read_ms, t.features_ms, t.segments_ms, t.total_ms
    );
    Ok(ExitCode::SUCCESS)
}

/// Pairs `(a, b)` where segment `a` uses `b` through `in_segment`, directly or through other
/// segments.
fn refinements(file: &SegmentsFile) -> BTreeSet<(String, String)> {
    let direct: BTreeMap<String, Vec<String>> = file
        .segments
        .iter()
        .map(|s| {
            let refs = parse(&s.def.expr)
                .map(|e| {
                    e.segment_refs()
                        .into_iter()
                        .map(|r| r.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            (s.def.name.clone(), refs)
        })
        .collect();
    let mut pairs = BTreeSet::new();
    for start in direct.keys() {
        let mut stack: Vec<&String> = direct[start].iter().collect();
        while let Some(next) = stack.pop() {
            if pairs.insert((start.clone(), next.clone())) {
                stack.extend(direct.get(next).into_iter().flatten());
            }
        }
    }
    pairs
}

/// Every field any segment of the file tests (the file has been checked already).
fn used_fields(file: &SegmentsFile) -> Vec<String> {
    let mut names: Vec<String> = file
        .segments
        .iter()
        .filter_map(|s| parse(&s.def.expr).ok())
        .flat_map(|expr| {
            expr.predicates()
                .into_iter()
                .map(|p| p.field.name.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summarise(report: &LoadReport, as_of: AsOf, customers: usize) {
    let s = &report.stats;
    let mut parts = vec![
        format!("{customers} customers"),
        format!("{} orders", s.orders),
    ];
    if s.refunds > 0 {
        parts.push(format!("{} refunds", s.refunds));
    }
    if s.events > 0 {
        parts.push(format!("{} events", s.events));
    }
    let mut notes = Vec::new();
    if report.bad_total > 0 {
        notes.push(format!("{} bad rows skipped", report.bad_total));
    }
    if s.orders_after_as_of + s.events_after_as_of > 0 {
        notes.push(format!(
            "{} orders and {} events after the as-of clock ignored",
            s.orders_after_as_of, s.events_after_as_of
        ));
    }
    if s.orders_void > 0 {
        notes.push(format!("{} cancelled orders not counted", s.orders_void));
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join(", "))
    };
    eprintln!(
        "{} as of {} ({}){notes}",
        parts.join(", "),
        as_of.now,
        as_of.tz.name()
    );
}

#[derive(Debug, Serialize)]
struct Timings {
    read_ms: f64,
    features_ms: f64,
    segments_ms: f64,
    total_ms: f64,
}

impl Timings {
    fn new(report: &LoadReport, segments: Duration, total: Duration) -> Self {
        Timings {
            read_ms: ms(report.read),
            features_ms: ms(report.features),
            segments_ms: ms(segments),
            total_ms: ms(total),
        }
    }
}

#[derive(Debug, Serialize)]
struct JsonSegment<'a> {
    #[serde(flatten)]
    outcome: &'a SegmentOutcome,
    customer_ids: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    as_of: Timestamp,
    timezone: &'a str,
    customers: usize,
    input: &'a LoadReport,
    segments: Vec<JsonSegment<'a>>,
    overlap: &'a Overlap,
    explain: &'a [Explanation],
    timings: Timings,
}

fn write_counts(out: &mut impl Write, outcomes: &[SegmentOutcome]) -> io::Result<()> {
    let width = outcomes
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(0)
        .max("segment".len());
    writeln!(
        out,
        "{:width$}  {:>10}  {:>7}  {:>10}",
        "segment", "members", "share", "time"
    )?;
    for o in outcomes {
        writeln!(
            out,
            "{:width$}  {:>10}  {:>6.2}%  {:>7.2} ms",
            o.name,
            o.members,
            o.share * 100.0,
            o.eval_ms
        )?;
    }
    Ok(())
}

fn write_members(
    out: &mut impl Write,
    table: &FeatureTable,
    outcomes: &[SegmentOutcome],
) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["segment", "customer_id"])?;
    for o in outcomes {
        for row in o.rows.iter() {
            w.write_record([o.name.as_str(), table.ids()[row].as_str()])?;
        }
    }
    w.flush()?;
    Ok(())
}

fn write_features(out: &mut impl Write, table: &FeatureTable) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(table.fields().iter().map(|f| f.name.as_str()))?;
    let mut record: Vec<String> = Vec::with_capacity(table.fields().len());
    for row in 0..table.len() {
        record.clear();
        record.extend(table.row_values(row).into_iter().map(|(_, v)| csv_value(v)));
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

fn csv_value(v: Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Str(s) => s,
        Value::Tags(t) => t.join(","),
        other => other.to_string(),
    }
}
