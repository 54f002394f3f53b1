//! The validated configuration: what the rest of Cohort reads.
//!
//! Every value here has passed the checks that need nothing but the config itself (types,
//! names, references, time zones, cron). Plugins, segment expressions and templates are
//! checked by `cohort validate`, which knows the plugins, the features and the renderer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::diag::Location;
use crate::schedule::Schedule;
use crate::secret::{PluginConfig, SecretError, SecretString, SecretTemplate};

/// The environment variable that overrides the store URL.
pub const DATABASE_URL_ENV: &str = "COHORT_DATABASE_URL";

/// The store URL when none is configured, relative to the first config file's folder.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://cohort.db?mode=rwc";

/// A whole configuration: global sections and every workspace, from one file or a folder.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[store]`.
    pub store: StoreSection,
    /// `[plugins]`.
    pub plugins: PluginsSection,
    /// `[server]`.
    pub server: ServerSection,
    /// One per file with a `[workspace]`, in file order.
    pub workspaces: Vec<Workspace>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// The workspace with this id.
    pub fn workspace(&self, id: &str) -> Option<&Workspace> {
        self.workspaces.iter().find(|w| w.id == id)
    }

    /// The store URL: `COHORT_DATABASE_URL`, else `store.url` with its secrets resolved, else
    /// SQLite `cohort.db` beside the first config file. A relative SQLite path in `store.url`
    /// (or the default) is taken relative to the config file that holds it; in
    /// `COHORT_DATABASE_URL` it stays relative to the working folder, as typed in the shell.
    pub fn database_url(&self) -> Result<SecretString, SecretError> {
        if let Ok(url) = std::env::var(DATABASE_URL_ENV)
            && !url.trim().is_empty()
        {
            return Ok(SecretString::new(url));
        }
        match &self.store.url {
            Some(t) => {
                let url = t.resolve()?;
                Ok(SecretString::new(sqlite_beside(url.expose(), t.base_dir())))
            }
            None => {
                let dir = self
                    .files
                    .first()
                    .and_then(|f| f.parent())
                    .unwrap_or(Path::new("."));
                Ok(SecretString::new(sqlite_beside(DEFAULT_DATABASE_URL, dir)))
            }
        }
    }
}

/// A relative SQLite path made relative to `dir`; anything else unchanged.
pub(crate) fn sqlite_beside(url: &str, dir: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    if rest.is_empty() || rest.starts_with(":memory:") || rest.starts_with('/') {
        return url.to_owned();
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if Path::new(path).is_absolute() {
        return url.to_owned();
    }
    let full = dir.join(path);
    let mut out = format!("sqlite://{}", full.display());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `[store]`: where Cohort keeps its data.
#[derive(Debug, Clone, Default)]
pub struct StoreSection {
    /// `store.url`, placeholders unresolved; read it with [`Config::database_url`].
    pub url: Option<SecretTemplate>,
}

/// `[plugins]`.
#[derive(Debug, Clone, Default)]
pub struct PluginsSection {
    /// `plugins.dir`, made absolute against its config file's folder.
    pub dir: Option<PathBuf>,
}

/// `[server]`: the daemon (`cohort daemon`) and its HTTP API.
#[derive(Debug, Clone)]
pub struct ServerSection {
    /// `host:port` the HTTP API listens on (`--listen` overrides it).
    pub listen: Option<String>,
    /// `workers`: how many runs this daemon runs at once, over all workspaces.
    pub workers: usize,
    /// `admin_tokens`: bearer tokens that see every workspace (placeholders unresolved).
    pub admin_tokens: Vec<SecretTemplate>,
    /// `shutdown_grace`: how long SIGTERM lets running jobs finish before their leases are
    /// released.
    pub shutdown_grace: Duration,
}

/// `server.workers` when none is set.
pub const DEFAULT_WORKERS: usize = 4;

/// `server.shutdown_grace` when none is set.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl Default for ServerSection {
    fn default() -> ServerSection {
        ServerSection {
            listen: None,
            workers: DEFAULT_WORKERS,
            admin_tokens: Vec::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// One client workspace: its data, segments, destinations, campaigns and jobs.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// `[a-z0-9][a-z0-9_-]*`, unique across files.
    pub id: String,
    /// Display name (defaults to the id).
    pub name: String,
    /// Calendar days, relative months, schedules and dates in templates use it.
    pub timezone: chrono_tz::Tz,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// A pinned run clock, for replaying history.
    pub as_of: Option<DateTime<Utc>>,
    /// Template of the unsubscribe link.
    pub unsubscribe_url: Option<Template>,
    /// `[[sources]]`.
    pub sources: Vec<Source>,
    /// `[[segments]]`.
    pub segments: Vec<Segment>,
    /// `[[destinations]]`.
    pub destinations: Vec<Destination>,
    /// `[[campaigns]]`.
    pub campaigns: Vec<Campaign>,
    /// `[[jobs]]`.
    pub jobs: Vec<Job>,
    /// `api_tokens`: bearer tokens of this workspace's client for the HTTP API (placeholders
    /// unresolved); they see this workspace only.
    pub api_tokens: Vec<SecretTemplate>,
    /// `[identity]`: customers of several sources are one person. `None`: each customer
    /// record is its own person, as before.
    pub identity: Option<Identity>,
    /// The file it is defined in.
    pub file: PathBuf,
    /// That file's folder, which relative paths are resolved against.
    pub dir: PathBuf,
    /// Where `[workspace]` is.
    pub at: Location,
}

/// `[identity]`: how customer records of several sources become one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Match on the normalised email.
    pub match_email: bool,
    /// Match on the normalised phone (E.164).
    pub match_phone: bool,
    /// Sources in order of preference: each field of a person comes from the first that has
    /// a value.
    pub prefer: Vec<String>,
    /// The sources whose orders count (`None`: every source's). Marking the shop as the order
    /// source keeps a purchase the CRM also records from counting twice.
    pub order_sources: Option<Vec<String>>,
    /// Where `[identity]` is.
    pub at: Location,
}

impl Workspace {
    /// The source of this name.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// The segment of this name.
    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// The destination of this name.
    pub fn destination(&self, name: &str) -> Option<&Destination> {
        self.destinations.iter().find(|s| s.name == name)
    }

    /// The campaign of this name.
    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|s| s.name == name)
    }

    /// The job of this name.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|s| s.name == name)
    }
}

/// A source plugin and its config.
#[derive(Debug, Clone)]
pub struct Source {
    /// Unique in the workspace.
    pub name: String,
    /// The plugin's name (`csv`).
    pub plugin: String,
    /// Where the plugin's name is written.
    pub plugin_at: Location,
    /// The plugin's config, placeholders unresolved.
    pub config: PluginConfig,
    /// Where the source is defined.
    pub at: Location,
}

/// A segment: an expression over customer features.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Unique in the workspace.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// The `where` expression.
    pub expr: String,
    /// A smaller segment is a run warning.
    pub min_size: usize,
    /// Where the segment is defined.
    pub at: Location,
    /// Where the expression's first character is, when offsets inside the expression map one
    /// to one onto the file (no escapes in the string).
    pub expr_at: Option<Location>,
}

/// A destination plugin, its config and how fast to push.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Unique in the workspace.
    pub name: String,
    /// The plugin's name (`outbox`).
    pub plugin: String,
    /// Where the plugin's name is written.
    pub plugin_at: Location,
    /// The plugin's config, placeholders unresolved.
    pub config: PluginConfig,
    /// Records per push, as configured; `None`: the plugin's preferred size (its manifest's
    /// `capabilities.batch_size`), else [`DEFAULT_BATCH_SIZE`](crate::DEFAULT_BATCH_SIZE).
    pub batch_size: Option<usize>,
    /// Pushes per second.
    pub rate_limit: Option<RateLimit>,
    /// Where the destination is defined.
    pub at: Location,
}

/// A token bucket: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Average rate.
    pub per_second: f64,
    /// Bucket size.
    pub burst: u32,
}

/// What a campaign does at its destination: the core's delivery mode, shared with the plugin
/// wire and the store.
pub use cohort_core::delivery::Mode;

/// A campaign: who (segments), where (destination), how (mode) and what (templates).
#[derive(Debug, Clone)]
pub struct Campaign {
    /// Unique in the workspace.
    pub name: String,
    /// Customers in any of these segments are in the campaign.
    pub segments: Vec<String>,
    /// The destination's name.
    pub destination: String,
    /// Upsert, mirror or send.
    pub mode: Mode,
    /// The audience's name at the destination (defaults to the campaign's name).
    pub audience: String,
    /// The email, in send mode.
    pub email: Option<Email>,
    /// Destination field → template, in upsert and mirror mode; in the order written.
    pub fields: Vec<(String, Template)>,
    /// Where the campaign is defined.
    pub at: Location,
}

/// An email's headers and bodies.
#[derive(Debug, Clone)]
pub struct Email {
    /// `From:`.
    pub from: String,
    /// `Reply-To:`.
    pub reply_to: Option<String>,
    /// The subject template.
    pub subject: Template,
    /// The HTML body template (escapes).
    pub html: Option<Template>,
    /// The text body template; derived from the HTML when absent.
    pub text: Option<Template>,
}

/// A handlebars template and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `winback.subject`, `winback.html`, `winback.fields.email`, `unsubscribe_url`.
    pub name: String,
    /// The source.
    pub text: String,
    /// Where the text starts: inside the inline string, or line 1 of `html_file`/`text_file`.
    pub at: Location,
}

/// A job: what to run, and when.
#[derive(Debug, Clone)]
pub struct Job {
    /// Unique in the workspace.
    pub name: String,
    /// When the daemon runs it; `None` runs only on demand (`cohort run --job`).
    pub schedule: Option<Schedule>,
    /// The sources to pull; `None` means all.
    pub sources: Option<Vec<String>>,
    /// The campaigns to run; `None` means all.
    pub campaigns: Option<Vec<String>>,
    /// A disabled job is never scheduled.
    pub enabled: bool,
    /// `misfire`: what a tick found later than `misfire_grace` does.
    pub misfire: Misfire,
    /// `misfire_grace`: how late a tick may start and still be on time.
    pub misfire_grace: Duration,
    /// `jitter`: the job's starts are delayed by a fixed share of this window, so jobs on one
    /// schedule do not all start at once.
    pub jitter: Duration,
    /// `timeout`: a run still going after this long is cancelled and recorded as timed out.
    pub timeout: Option<Duration>,
    /// `retries`: how many times a failed scheduled run is tried again.
    pub retries: u32,
    /// `retry_backoff`: the wait before the first retry; each next one waits twice as long.
    pub retry_backoff: Duration,
    /// Where the job is defined.
    pub at: Location,
}

/// `misfire`: what the daemon does with a tick it finds later than the job's grace (after
/// downtime, or when every worker was busy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misfire {
    /// `run_once`: run once for everything missed, however many ticks that was.
    #[default]
    RunOnce,
    /// `skip`: drop the late ticks and wait for the next one.
    Skip,
}

impl Misfire {
    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Misfire::RunOnce => "run_once",
            Misfire::Skip => "skip",
        }
    }
}

/// `misfire_grace` when none is set.
pub const DEFAULT_MISFIRE_GRACE: Duration = Duration::from_secs(60);

/// `retry_backoff` when none is set.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_paths_are_made_relative_to_the_config() {
        let dir = Path::new("/srv/cohort");
        assert_eq!(
            sqlite_beside("sqlite://cohort.db?mode=rwc", dir),
            "sqlite:///srv/cohort/cohort.db?mode=rwc"
        );
        assert_eq!(
            sqlite_beside("sqlite:data/c.db", dir),
            "sqlite:///srv/cohort/data/c.db"
        );
        for unchanged in [
            "sqlite:///var/c.db?mode=rwc",
            "sqlite::memory:",
            "postgres://u@h/db",
        ] {
            assert_eq!(sqlite_beside(unchanged, dir), unchanged);
        }
    }
}
