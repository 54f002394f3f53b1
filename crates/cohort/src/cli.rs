//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Segment-based campaigns from your customer data.
///
/// Cohort pulls customers, orders and engagement events, computes features (spend, recency,
/// RFM, engagement), evaluates segments written in a small query language, and pushes
/// tailored campaigns to email and ad platforms.
#[derive(Debug, Parser)]
#[command(
    name = "cohort",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Evaluate, check and explain segments.
    #[command(subcommand)]
    Segment(SegmentCommand),
    /// List plugins and check plugin files against the plugin ABI.
    #[command(subcommand)]
    Plugins(crate::cmd::plugins::PluginsCommand),
    /// Check a config before any run and report every problem at once: TOML, keys, names and
    /// references, plugins and their configs, segments, templates, schedules.
    ///
    /// Example:
    ///   cohort validate --config cohort.toml
    #[command(verbatim_doc_comment)]
    Validate(crate::cmd::validate::ValidateArgs),
    /// Write a commented starter config (cohort.toml, templates/, the demo data) into DIR.
    ///
    /// Example:
    ///   cohort init my-shop && cohort validate --config my-shop/cohort.toml
    #[command(verbatim_doc_comment)]
    Init(crate::cmd::init::InitArgs),
    /// Run a job once: pull, segment, diff, render, push, record.
    ///
    /// Example:
    ///   cohort run --config cohort.toml --workspace demo --job nightly --dry-run
    #[command(verbatim_doc_comment)]
    Run(crate::cmd::run::RunArgs),
    /// Run every workspace's jobs on their schedules, and serve the HTTP API and metrics.
    ///
    /// SIGTERM drains (running jobs finish within `[server] shutdown_grace`), SIGHUP
    /// reloads the config. Several daemons share the work on one PostgreSQL store.
    ///
    /// Example:
    ///   cohort daemon --config cohort.toml --listen 127.0.0.1:8686 --log-format json
    Daemon(crate::daemon::DaemonArgs),
    /// Read recorded runs back.
    #[command(subcommand)]
    Runs(crate::cmd::runs::RunsCommand),
    /// Preview campaigns without pushing anything.
    #[command(subcommand)]
    Campaign(crate::cmd::campaign::CampaignCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SegmentCommand {
    /// Compute features from CSV files and evaluate a segments file over them.
    ///
    /// Example:
    ///   cohort segment eval --customers customers.csv --orders orders.csv \
    ///       --segments segments.toml --as-of 2025-01-01
    #[command(verbatim_doc_comment)]
    Eval(EvalArgs),
    /// Check a segments file (syntax, field names, types, references) without any data.
    Check {
        /// The segments file (TOML, `[[segment]]` with `name` and `where`).
        #[arg(long, short)]
        segments: PathBuf,
    },
    /// Explain one customer (a person, with `[identity]`) from the stored data: the source
    /// records that make them up, where each field came from, and why they are in or out of
    /// each segment.
    ///
    /// Example:
    ///   cohort segment explain --config cohort.toml --customer shop:42
    #[command(verbatim_doc_comment)]
    Explain(crate::cmd::explain::ExplainArgs),
    /// List every feature segments can use, with its type and meaning.
    Fields {
        /// Print the list as a Markdown page (docs/features.md is generated this way).
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct EvalArgs {
    /// Customers CSV (the shared generator's layout, Shopify's export, or mapped with --map).
    #[arg(long, value_name = "FILE")]
    pub(crate) customers: PathBuf,
    /// Orders CSV.
    #[arg(long, value_name = "FILE")]
    pub(crate) orders: Option<PathBuf>,
    /// Engagement events CSV (customer_id, kind, occurred_at).
    #[arg(long, value_name = "FILE")]
    pub(crate) events: Option<PathBuf>,
    /// Segments file: TOML with `[[segment]]` tables of `name`, `where`, optional
    /// `description` and `min_size`.
    #[arg(long, short, value_name = "FILE")]
    pub(crate) segments: PathBuf,
    /// The run's clock: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS (UTC) or RFC 3339. Defaults to now.
    #[arg(long, value_name = "DATETIME")]
    pub(crate) as_of: Option<String>,
    /// Time zone for calendar days and relative months (IANA name, e.g. Europe/Paris).
    #[arg(long, default_value = "UTC", value_name = "ZONE")]
    pub(crate) timezone: String,
    /// What to print on stdout.
    #[arg(long, short, value_enum, default_value_t = Output::Counts)]
    pub(crate) output: Output,
    /// Explain, segment by segment, why this customer is in or out.
    #[arg(long, value_name = "CUSTOMER_ID")]
    pub(crate) explain: Option<String>,
    /// Map a field to a column: KIND.FIELD=COLUMN, e.g. customers.email="E-mail",
    /// customers.attributes.tier=Tier. Repeatable.
    #[arg(long = "map", value_name = "KIND.FIELD=COLUMN")]
    pub(crate) maps: Vec<String>,
    /// Show a progress bar: auto (when stderr is a terminal and the input is large), always or
    /// never.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub(crate) progress: Progress,
    /// How many bad rows to print one by one before only counting them.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub(crate) max_bad_rows: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// A table of segment, members, share and evaluation time.
    Counts,
    /// CSV rows `segment,customer_id`.
    Members,
    /// CSV of every feature of every customer.
    Features,
    /// Everything, as one JSON document.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Progress {
    /// When stderr is a terminal and the input is large.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}
