//! `cohort init [DIR]`: a commented starter config that runs on the demo data.
//!
//! Writes `cohort.toml` and `templates/*.html`, and copies the demo CSVs into `data/` when it
//! finds them, so the folder is self-contained and every path in it is relative to it. It never
//! overwrites a file unless `--force` is given, and checks nothing it writes would be: either
//! every file is written or none.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

/// Arguments of `cohort init`.
#[derive(Debug, clap::Args)]
pub(crate) struct InitArgs {
    /// Folder to write into (created when missing).
    #[arg(default_value = ".", value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub(crate) force: bool,
    /// Folder holding the demo customers.csv, orders.csv and events.csv (by default the
    /// repository's config/demo, looked for from the working folder and the executable).
    #[arg(long, value_name = "DIR")]
    pub(crate) demo_data: Option<PathBuf>,
}

/// The demo CSVs, by file name.
const DEMO_FILES: [&str; 3] = ["customers.csv", "orders.csv", "events.csv"];

pub(crate) fn run(args: &InitArgs) -> Result<ExitCode> {
    let demo = match &args.demo_data {
        Some(dir) => {
            if !has_demo_files(dir) {
                bail!("{} does not hold {}", dir.display(), DEMO_FILES.join(", "));
            }
            Some(dir.clone())
        }
        None => find_demo_data(),
    };
    let mut files: Vec<(PathBuf, Content)> = vec![
        (PathBuf::from("cohort.toml"), Content::Text(STARTER_CONFIG)),
        (
            PathBuf::from("templates/winback.html"),
            Content::Text(WINBACK_HTML),
        ),
        (
            PathBuf::from("templates/welcome.html"),
            Content::Text(WELCOME_HTML),
        ),
    ];
    if let Some(demo) = &demo {
        for name in DEMO_FILES {
            files.push((Path::new("data").join(name), Content::Copy(demo.join(name))));
        }
    }

    let existing: Vec<String> = files
        .iter()
        .map(|(rel, _)| args.dir.join(rel))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "not overwriting {}; pass --force to replace {}",
            existing.join(", "),
            if existing.len() == 1 { "it" } else { "them" }
        );
    }
    for (rel, content) in &files {
        let path = args.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match content {
            Content::Text(text) => std::fs::write(&path, text)
                .with_context(|| format!("writing {}", path.display()))?,
            Content::Copy(from) => {
                std::fs::copy(from, &path)
                    .with_context(|| format!("copying {} to {}", from.display(), path.display()))?;
            }
        }
    }

    let config = args.dir.join("cohort.toml");
    println!("Wrote {}", config.display());
    for (rel, _) in files.iter().skip(1) {
        println!("  and {}", args.dir.join(rel).display());
    }
    if demo.is_none() {
        println!(
            "The demo data was not found (pass --demo-data DIR): put customers.csv, orders.csv and events.csv in {} before running.",
            args.dir.join("data").display()
        );
    }
    println!(
        "Next:\n  cohort validate --config {0}\n  cohort run --config {0}",
        config.display()
    );
    Ok(ExitCode::SUCCESS)
}

enum Content {
    Text(&'static str),
    Copy(PathBuf),
}

fn has_demo_files(dir: &Path) -> bool {
    DEMO_FILES.iter().all(|f| dir.join(f).is_file())
}

/// `config/demo` of the repository: from the working folder up, from the executable up (a
/// cargo build sits in the repository's target/), then where this binary was built from.
fn find_demo_data() -> Option<PathBuf> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    starts
        .iter()
        .flat_map(|s| s.ancestors().map(|a| a.join("config").join("demo")))
        .find(|d| has_demo_files(d))
}

const STARTER_CONFIG: &str = r#"# A Cohort config, written by `cohort init`. Every key is documented in docs/config.md.
#
#   cohort validate --config cohort.toml    checks everything, reports every problem at once
#   cohort run --config cohort.toml         pulls, segments, renders and pushes, once
#
# Paths are relative to this file. Secrets never go in here: write "${env:NAME}" or
# "${file:PATH}" in a plugin's config (or store.url) and Cohort reads them when it needs them.

# Where Cohort keeps customers, segments, destination state and runs. SQLite beside this file
# by default; PostgreSQL with url = "postgres://cohort:${env:COHORT_DB_PASSWORD}@localhost/cohort".
# COHORT_DATABASE_URL overrides it.
[store]
url = "sqlite://cohort.db?mode=rwc"

[workspace]
id = "demo"                       # lower-case letters, digits, _ and -; scopes all stored data
name = "Demo Record Shop"
timezone = "America/New_York"     # days, "last 30 days", schedules and dates use it
currency = "USD"
# The demo data is CDNOW's history, which ends on 1998-06-30: pin the clock to the day after.
# Remove this line for real data.
as_of = "1998-07-01"
unsubscribe_url = "https://shop.example/unsubscribe?customer={{customer_id}}"

# ---- sources: where customers, orders and events come from --------------------------------
[[sources]]
name = "shop"
plugin = "csv"                    # `cohort plugins list` shows the plugins found
[sources.config]
base_dir = "data"
customers = { paths = ["customers.csv"] }
orders = { paths = ["orders.csv"] }
events = { paths = ["events.csv"] }

# ---- segments: who (the language: docs/segments.md; fields: `cohort segment fields`) -------
[[segments]]
name = "champions"
description = "Bought recently and often, and spent the most."
where = "rfm_group = 'champions'"

[[segments]]
name = "at_risk"
description = "Used to buy often and spend well, but not lately."
where = "r_score <= 2 and f_score >= 3 and m_score >= 3"
min_size = 10                     # fewer members is a warning in the run

[[segments]]
name = "new_customers"
description = "Made their first purchase in the last 30 days."
where = "first_order_at > -30d"

# ---- destinations: where campaigns go ----------------------------------------------------
# The outbox writes every email (.eml) and audience change (.json) to a folder: look before
# connecting a real email service or ad platform.
[[destinations]]
name = "outbox"
plugin = "outbox"
config = { dir = "outbox" }
batch_size = 500

# ---- campaigns: which segments, which destination, what it says --------------------------
# mode = "send": one email to each customer who enters the segments.
[[campaigns]]
name = "winback"
segments = ["at_risk"]
destination = "outbox"
mode = "send"
[campaigns.email]
from = "Demo Record Shop <hello@shop.example>"
subject = "We miss you, {{default first_name \"there\"}}"
html_file = "templates/winback.html"   # the text part is derived from the HTML

[[campaigns]]
name = "welcome"
segments = ["new_customers"]
destination = "outbox"
mode = "send"
[campaigns.email]
from = "Demo Record Shop <hello@shop.example>"
subject = "Welcome, {{default first_name \"music lover\"}}!"
html_file = "templates/welcome.html"

# mode = "mirror": keep an audience equal to the segment (leavers are removed). Customers
# without marketing consent never appear in it.
[[campaigns]]
name = "champions_audience"
segments = ["champions"]
destination = "outbox"
mode = "mirror"
audience = "champions"
[campaigns.fields]
email = "{{lower email}}"
first_name = "{{default first_name \"\"}}"

# ---- jobs: what to run, and when (crontab; day of week 0 and 7 are Sunday) ---------------
[[jobs]]
name = "nightly"
schedule = "0 3 * * *"            # 03:00 every day, in the workspace's time zone
"#;

const WINBACK_HTML: &str = r#"<p>Hi {{default first_name "there"}},</p>
<p>It has been {{pluralize days_since_last_order "day"}} since your last order
({{date last_order_at "%B %-d, %Y"}}). Plenty of new music has come in since, and 15% off your
next order is waiting with the code <strong>COMEBACK15</strong>.</p>
<p><small>You get this because you are in our {{segment.name}} list.
<a href="{{unsubscribe_url}}">Unsubscribe</a></small></p>
"#;

const WELCOME_HTML: &str = r#"<p>Hi {{default first_name "there"}},</p>
<p>Thank you for your first order with {{workspace.name}}: {{pluralize total_items "CD"}} for
{{money total_spent}}.</p>
<p><small><a href="{{unsubscribe_url}}">Unsubscribe</a></small></p>
"#;
