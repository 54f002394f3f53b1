//! From raw files to a [`Config`]: a pure function (no I/O), collecting every problem.
//!
//! Template files (`html_file`, `text_file`) are read by the caller beforehand and passed in,
//! so this stays pure and is tested with plain strings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::diag::{Diagnostic, Diagnostics, Location, suggest};
use crate::duration::parse_duration;
use crate::model::{
    Campaign, Config, DEFAULT_MISFIRE_GRACE, DEFAULT_RETRY_BACKOFF, Destination, Email, Identity,
    Job, Misfire, Mode, PluginsSection, RateLimit, Segment, ServerSection, Source, StoreSection,
    Template, Workspace,
};
use crate::raw::{
    RawCampaign, RawDestination, RawEmail, RawFile, RawIdentity, RawJob, RawPluginConfig,
    RawWorkspace, Str, Val,
};
use crate::schedule::Schedule;
use crate::secret::{PluginConfig, SecretTemplate};

/// Default `batch_size` of a destination whose config and plugin name none.
pub const DEFAULT_BATCH_SIZE: usize = 500;

/// What the caller read for each template file: its text, or why it could not.
pub(crate) type TemplateFiles = BTreeMap<PathBuf, Result<String, String>>;

/// Checks `files` (in order) and builds the config: everything that could be read, and every
/// problem (an entry whose name or plugin is missing is left out; other mistakes keep a
/// default so later checks still see the entry).
pub(crate) fn validate(files: &[RawFile], templates: &TemplateFiles) -> (Config, Diagnostics) {
    let mut v = Validator {
        diags: Diagnostics::new(),
        templates,
    };
    let config = v.config(files);
    (config, v.diags)
}

struct Validator<'a> {
    diags: Diagnostics,
    templates: &'a TemplateFiles,
}

impl Validator<'_> {
    fn err(&mut self, at: &Location, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(Some(at.clone()), message));
    }

    fn err_help(&mut self, at: &Location, message: impl Into<String>, help: Option<String>) {
        self.diags
            .push(Diagnostic::new(Some(at.clone()), message).maybe_help(help));
    }

    fn config(&mut self, files: &[RawFile]) -> Config {
        let mut config = Config {
            store: StoreSection::default(),
            plugins: PluginsSection::default(),
            server: ServerSection::default(),
            workspaces: Vec::new(),
            files: files.iter().map(|f| f.path.clone()).collect(),
        };
        // Global sections: at most one file may hold them.
        let mut global_file: Option<(&Path, Location)> = None;
        for f in files {
            let at = [
                f.store.as_ref().and_then(|s| s.at.clone()),
                f.plugins.as_ref().and_then(|s| s.at.clone()),
                f.server.as_ref().and_then(|s| s.at.clone()),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(at) = at else { continue };
            if let Some((first, first_at)) = &global_file {
                if *first != f.path.as_path() {
                    let first_at = first_at.clone();
                    self.err_help(
                        &at,
                        "[store], [plugins] and [server] may appear in only one file",
                        Some(format!("they are already in {first_at}")),
                    );
                    continue;
                }
            } else {
                global_file = Some((&f.path, at));
            }
            self.globals(f, &mut config);
        }

        let mut ids: BTreeMap<String, Location> = BTreeMap::new();
        for f in files {
            match &f.workspace {
                Some(w) => {
                    if let Some(ws) = self.workspace(f, w) {
                        if let Some(first) = ids.get(&ws.id) {
                            let first = first.clone();
                            self.err_help(
                                &ws.at,
                                format!("workspace id `{}` is used twice", ws.id),
                                Some(format!("first defined at {first}")),
                            );
                        } else {
                            ids.insert(ws.id.clone(), ws.at.clone());
                        }
                        config.workspaces.push(ws);
                    }
                }
                None => {
                    if let Some(at) = &f.first_list_at {
                        self.err_help(
                            at,
                            "sources, segments, destinations, campaigns and jobs belong to a workspace, and this file has no [workspace]",
                            Some("add `[workspace]` with `id = \"...\"` at the top of the file".to_owned()),
                        );
                    }
                }
            }
        }
        if config.workspaces.is_empty() && !files.iter().any(|f| f.workspace.is_some()) {
            let at = files.first().map(|f| Location::start_of(&f.path));
            self.diags.push(
                Diagnostic::new(at, "no workspace is defined").help(
                    "add a `[workspace]` table with `id`, `name`, `timezone` and `currency` (`cohort init` writes a starter config)",
                ),
            );
        }
        config
    }

    fn globals(&mut self, f: &RawFile, config: &mut Config) {
        if let Some(url) = f.store.as_ref().and_then(|s| s.url.as_ref()) {
            match SecretTemplate::parse(&url.v, &f.dir, format!("store.url ({})", url.at)) {
                Ok(t) => config.store.url = Some(t),
                Err(why) => self.err(&url.at, format!("store.url: {why}")),
            }
        }
        if let Some(dir) = f.plugins.as_ref().and_then(|s| s.dir.as_ref()) {
            if dir.v.trim().is_empty() {
                self.err(&dir.at, "plugins.dir is empty");
            } else {
                config.plugins.dir = Some(f.dir.join(&dir.v));
            }
        }
        if let Some(listen) = f.server.as_ref().and_then(|s| s.listen.as_ref()) {
            let ok = listen
                .v
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if ok {
                config.server.listen = Some(listen.v.clone());
            } else {
                self.err_help(
                    &listen.at,
                    format!("server.listen `{}` is not host:port", listen.v),
                    Some("for example \"127.0.0.1:8686\"".to_owned()),
                );
            }
        }
        if let Some(workers) = f.server.as_ref().and_then(|s| s.workers.as_ref()) {
            if (1..=1024).contains(&workers.v) {
                config.server.workers = workers.v as usize;
            } else {
                self.err(
                    &workers.at,
                    format!("server.workers is {}; use 1 to 1024", workers.v),
                );
            }
        }
        if let Some(grace) = f.server.as_ref().and_then(|s| s.shutdown_grace.as_ref())
            && let Some(d) = self.duration(grace, "server.shutdown_grace")
        {
            config.server.shutdown_grace = d;
        }
        if let Some(tokens) = f.server.as_ref().and_then(|s| s.admin_tokens.as_ref()) {
            config.server.admin_tokens = self.tokens(tokens, &f.dir, "server.admin_tokens");
        }
    }

    /// A list of bearer tokens, each usually a `${env:}` or `${file:}` placeholder.
    fn tokens(&mut self, list: &Val<Vec<Str>>, dir: &Path, key: &str) -> Vec<SecretTemplate> {
        let mut out = Vec::new();
        for t in &list.v {
            if t.v.trim().is_empty() {
                self.err(&t.at, format!("{key}: a token is empty"));
                continue;
            }
            match SecretTemplate::parse(&t.v, dir, format!("{key} ({})", t.at)) {
                Ok(tpl) => out.push(tpl),
                Err(why) => self.err(&t.at, format!("{key}: {why}")),
            }
        }
        out
    }

    /// A duration value, or an error at its place.
    fn duration(&mut self, s: &Str, key: &str) -> Option<std::time::Duration> {
        match parse_duration(&s.v) {
            Ok(d) => Some(d),
            Err(why) => {
                self.err(&s.at, format!("{key} {why}"));
                None
            }
        }
    }

    fn workspace(&mut self, f: &RawFile, w: &RawWorkspace) -> Option<Workspace> {
        let id = match &w.id {
            Some(id) if valid_id(&id.v) => id.v.clone(),
            Some(id) => {
                self.err_help(
                    &id.at,
                    format!("workspace id `{}` is not valid", id.v),
                    Some("an id is lower-case letters, digits, `_` and `-`, starting with a letter or digit".to_owned()),
                );
                id.v.clone()
            }
            None => {
                self.err_help(
                    &w.at,
                    "[workspace] has no `id`",
                    Some("add `id = \"shop\"` (lower-case letters, digits, `_`, `-`)".to_owned()),
                );
                String::new()
            }
        };
        let name = w.name.as_ref().map_or_else(|| id.clone(), |n| n.v.clone());
        let timezone = match &w.timezone {
            None => chrono_tz::UTC,
            Some(tz) => match tz.v.parse::<chrono_tz::Tz>() {
                Ok(t) => t,
                Err(_) => {
                    let help = suggest(&tz.v, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
                        .or_else(|| {
                            Some("use an IANA name such as \"Europe/Paris\" or \"UTC\"".to_owned())
                        });
                    self.err_help(&tz.at, format!("unknown time zone `{}`", tz.v), help);
                    chrono_tz::UTC
                }
            },
        };
        let currency = match &w.currency {
            None => "USD".to_owned(),
            Some(c) => {
                if c.v.len() != 3 || !c.v.chars().all(|ch| ch.is_ascii_uppercase()) {
                    self.err_help(
                        &c.at,
                        format!("currency `{}` is not an ISO 4217 code", c.v),
                        Some("three upper-case letters, such as \"USD\" or \"EUR\"".to_owned()),
                    );
                }
                c.v.clone()
            }
        };
        let as_of = w.as_of.as_ref().and_then(|a| match parse_as_of(&a.v) {
            Some(t) => Some(t),
            None => {
                self.err_help(
                    &a.at,
                    format!("as_of `{}` is not a date or time", a.v),
                    Some(
                        "write YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS (UTC) or an RFC 3339 time"
                            .to_owned(),
                    ),
                );
                None
            }
        });
        let unsubscribe_url = w
            .unsubscribe_url
            .as_ref()
            .map(|u| template("unsubscribe_url", u));

        let mut ws = Workspace {
            id,
            name,
            timezone,
            currency,
            as_of,
            unsubscribe_url,
            api_tokens: w
                .api_tokens
                .as_ref()
                .map(|t| self.tokens(t, &f.dir, "workspace.api_tokens"))
                .unwrap_or_default(),
            sources: Vec::new(),
            segments: Vec::new(),
            destinations: Vec::new(),
            campaigns: Vec::new(),
            jobs: Vec::new(),
            identity: None,
            file: f.path.clone(),
            dir: f.dir.clone(),
            at: w.at.clone(),
        };

        let mut names = Names::default();
        for s in &f.sources {
            let Some(name) = self.name(&s.name, &s.at, "[[sources]]", &mut names.sources) else {
                continue;
            };
            let Some(plugin) = self.required(&s.plugin, &s.at, "[[sources]]", "plugin") else {
                continue;
            };
            ws.sources.push(Source {
                config: plugin_config(
                    s.config.as_ref(),
                    &f.dir,
                    format!("source `{name}` config"),
                    &s.at,
                ),
                name,
                plugin: plugin.v.clone(),
                plugin_at: plugin.at.clone(),
                at: s.at.clone(),
            });
        }
        for s in &f.segments {
            let Some(name) = self.name(&s.name, &s.at, "[[segments]]", &mut names.segments) else {
                continue;
            };
            let Some(expr) = self.required(&s.expr, &s.at, "[[segments]]", "where") else {
                continue;
            };
            let min_size = match &s.min_size {
                None => 0,
                Some(m) => usize::try_from(m.v).unwrap_or_else(|_| {
                    self.err(&m.at, "min_size must be 0 or more");
                    0
                }),
            };
            ws.segments.push(Segment {
                name,
                description: s.description.as_ref().map(|d| d.v.clone()),
                expr: expr.v.clone(),
                min_size,
                at: s.at.clone(),
                expr_at: expr.exact.then(|| expr.inner.clone()),
            });
        }
        for d in &f.destinations {
            if let Some(dest) = self.destination(f, d, &mut names.destinations) {
                ws.destinations.push(dest);
            }
        }
        // References are checked against every name written, even of an entry with other
        // mistakes, so one mistake is not reported again at each place that names it.
        let segment_names = keys(&names.segments);
        let destination_names = keys(&names.destinations);
        for c in &f.campaigns {
            if let Some(campaign) = self.campaign(
                c,
                &ws,
                &segment_names,
                &destination_names,
                &mut names.campaigns,
            ) {
                ws.campaigns.push(campaign);
            }
        }
        let source_names = keys(&names.sources);
        let campaign_names = keys(&names.campaigns);
        for j in &f.jobs {
            if let Some(job) = self.job(j, &source_names, &campaign_names, &mut names.jobs) {
                ws.jobs.push(job);
            }
        }
        ws.identity = f.identity.as_ref().map(|i| self.identity(i, &source_names));
        tighten(&mut ws);
        Some(ws)
    }

    /// `[identity]`: what to match on, and sources that must exist.
    fn identity(&mut self, i: &RawIdentity, source_names: &[&str]) -> Identity {
        let (mut email, mut phone) = (false, false);
        match &i.match_on {
            None => email = true,
            Some(list) => {
                if list.v.is_empty() {
                    self.err_help(
                        &list.at,
                        "identity.match_on is empty",
                        Some("list what makes two records one person: [\"email\"], [\"phone\"] or both".to_owned()),
                    );
                }
                for m in &list.v {
                    match m.v.as_str() {
                        "email" => email = true,
                        "phone" => phone = true,
                        other => self.err_help(
                            &m.at,
                            format!("identity.match_on: unknown key `{other}`"),
                            suggest(other, ["email", "phone"])
                                .or_else(|| Some("use \"email\" or \"phone\"".to_owned())),
                        ),
                    }
                }
            }
        }
        let names = |this: &mut Self, list: &Option<Val<Vec<Str>>>| {
            list.as_ref().map(|l| {
                for s in &l.v {
                    this.reference(s, source_names, "source");
                }
                l.v.iter().map(|s| s.v.clone()).collect::<Vec<_>>()
            })
        };
        let prefer = names(self, &i.prefer).unwrap_or_default();
        let order_sources = names(self, &i.order_sources);
        Identity {
            match_email: email,
            match_phone: phone,
            prefer,
            order_sources,
            at: i.at.clone(),
        }
    }

    /// A required, well-formed, unique name.
    fn name(
        &mut self,
        name: &Option<Str>,
        at: &Location,
        what: &str,
        seen: &mut BTreeMap<String, Location>,
    ) -> Option<String> {
        let name = self.required(name, at, what, "name")?;
        if !valid_name(&name.v) {
            self.err_help(
                &name.at,
                format!("{what} name `{}` is not valid", name.v),
                Some("a name is letters, digits, `_` and `-`".to_owned()),
            );
        }
        if let Some(first) = seen.get(&name.v) {
            let first = first.clone();
            self.err_help(
                &name.at,
                format!("{what} name `{}` is used twice", name.v),
                Some(format!("first defined at {first}")),
            );
            return None;
        }
        seen.insert(name.v.clone(), name.at.clone());
        Some(name.v.clone())
    }

    fn required<'s>(
        &mut self,
        value: &'s Option<Str>,
        at: &Location,
        what: &str,
        key: &str,
    ) -> Option<&'s Str> {
        if value.is_none() {
            self.err(at, format!("{what} needs `{key}`"));
        }
        value.as_ref()
    }

    fn destination(
        &mut self,
        f: &RawFile,
        d: &RawDestination,
        seen: &mut BTreeMap<String, Location>,
    ) -> Option<Destination> {
        let what = "[[destinations]]";
        let name = self.name(&d.name, &d.at, what, seen)?;
        let plugin = self.required(&d.plugin, &d.at, what, "plugin")?;
        let batch_size = match &d.batch_size {
            None => None,
            Some(b) if b.v >= 1 => Some(usize::try_from(b.v).unwrap_or(usize::MAX)),
            Some(b) => {
                self.err(&b.at, "batch_size must be 1 or more");
                None
            }
        };
        let rate_limit = d.rate_limit.as_ref().and_then(|r| {
            let Some(per_second) = &r.per_second else {
                self.err(&r.at, "rate_limit needs `per_second`");
                return None;
            };
            if !(per_second.v.is_finite() && per_second.v > 0.0) {
                self.err(&per_second.at, "rate_limit.per_second must be more than 0");
                return None;
            }
            let burst = match &r.burst {
                None => per_second.v.ceil().max(1.0) as u32,
                Some(b) => match u32::try_from(b.v) {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        self.err(&b.at, "rate_limit.burst must be 1 or more");
                        return None;
                    }
                },
            };
            Some(RateLimit {
                per_second: per_second.v,
                burst,
            })
        });
        Some(Destination {
            config: plugin_config(
                d.config.as_ref(),
                &f.dir,
                format!("destination `{name}` config"),
                &d.at,
            ),
            name,
            plugin: plugin.v.clone(),
            plugin_at: plugin.at.clone(),
            batch_size,
            rate_limit,
            at: d.at.clone(),
        })
    }

    fn campaign(
        &mut self,
        c: &RawCampaign,
        ws: &Workspace,
        segment_names: &[&str],
        dest_names: &[&str],
        seen: &mut BTreeMap<String, Location>,
    ) -> Option<Campaign> {
        let what = "[[campaigns]]";
        let name = self.name(&c.name, &c.at, what, seen)?;
        let segments = match &c.segments {
            None => {
                self.err(
                    &c.at,
                    format!("campaign `{name}` needs `segments = [\"...\"]`"),
                );
                Vec::new()
            }
            Some(list) if list.v.is_empty() => {
                self.err(&list.at, format!("campaign `{name}` has no segments"));
                Vec::new()
            }
            Some(list) => {
                for s in &list.v {
                    self.reference(s, segment_names, "segment");
                }
                list.v.iter().map(|s| s.v.clone()).collect()
            }
        };
        let destination = match &c.destination {
            None => {
                self.err(&c.at, format!("campaign `{name}` needs `destination`"));
                String::new()
            }
            Some(d) => {
                self.reference(d, dest_names, "destination");
                d.v.clone()
            }
        };
        let mode = match &c.mode {
            None => {
                self.err_help(
                    &c.at,
                    format!("campaign `{name}` needs `mode`"),
                    Some("mode is \"upsert\", \"mirror\" or \"send\"".to_owned()),
                );
                None
            }
            Some(m) => match Mode::parse(&m.v) {
                Some(mode) => Some(mode),
                None => {
                    let help = suggest(&m.v, Mode::ALL)
                        .or_else(|| Some("mode is \"upsert\", \"mirror\" or \"send\"".to_owned()));
                    self.err_help(&m.at, format!("unknown mode `{}`", m.v), help);
                    None
                }
            },
        };
        let audience = c
            .audience
            .as_ref()
            .map_or_else(|| name.clone(), |a| a.v.clone());
        let mut email = None;
        let mut fields = Vec::new();
        match mode {
            Some(Mode::Send) => {
                match &c.email {
                    None => self.err_help(
                        &c.at,
                        format!("campaign `{name}` sends email but has no [campaigns.email]"),
                        Some("add `[campaigns.email]` with `from`, `subject` and `html_file` (or `html`, `text`)".to_owned()),
                    ),
                    Some(e) => email = self.email(&name, e, ws),
                }
                if let Some(f) = &c.fields {
                    self.err_help(
                        &f.at,
                        format!(
                            "campaign `{name}` sends email; [campaigns.fields] is for audiences"
                        ),
                        Some("remove it, or use mode \"upsert\" or \"mirror\"".to_owned()),
                    );
                }
            }
            Some(mode @ (Mode::Upsert | Mode::Mirror)) => {
                if let Some(e) = &c.email {
                    self.err_help(
                        &e.at,
                        format!("campaign `{name}` is in {mode} mode; [campaigns.email] is only for send mode"),
                        Some("remove it, or use mode \"send\"".to_owned()),
                    );
                }
                match &c.fields {
                    None => fields.push((
                        "email".to_owned(),
                        Template {
                            name: format!("{name}.fields.email"),
                            text: "{{email}}".to_owned(),
                            at: c.at.clone(),
                        },
                    )),
                    Some(list) => {
                        // Which fields identify a member is the destination's to say (`email`
                        // for most, `EMAIL`/`PHONE` for Meta); an empty list identifies no one.
                        if list.v.is_empty() {
                            self.err_help(
                                &list.at,
                                format!("campaign `{name}`: [campaigns.fields] is empty"),
                                Some("map the fields the destination identifies members by, e.g. `email = \"{{email}}\"`".to_owned()),
                            );
                        }
                        for (k, t) in &list.v {
                            fields.push((
                                k.v.clone(),
                                template(&format!("{name}.fields.{}", k.v), t),
                            ));
                        }
                    }
                }
            }
            None => {}
        }
        Some(Campaign {
            name,
            segments,
            destination,
            mode: mode.unwrap_or(Mode::Upsert),
            audience,
            email,
            fields,
            at: c.at.clone(),
        })
    }

    fn email(&mut self, campaign: &str, e: &RawEmail, ws: &Workspace) -> Option<Email> {
        let from = e.from.as_ref().map(|f| f.v.clone());
        if from.is_none() {
            self.err_help(
                &e.at,
                format!("campaign `{campaign}`: [campaigns.email] needs `from`"),
                Some("for example from = \"Shop <hello@shop.example>\"".to_owned()),
            );
        }
        let subject = e
            .subject
            .as_ref()
            .map(|s| template(&format!("{campaign}.subject"), s));
        if subject.is_none() {
            self.err(
                &e.at,
                format!("campaign `{campaign}`: [campaigns.email] needs `subject`"),
            );
        }
        let html = self.body(campaign, "html", &e.html, &e.html_file, ws);
        let text = self.body(campaign, "text", &e.text, &e.text_file, ws);
        let bodies_written =
            e.html.is_some() || e.html_file.is_some() || e.text.is_some() || e.text_file.is_some();
        if !bodies_written {
            self.err_help(
                &e.at,
                format!("campaign `{campaign}`: [campaigns.email] has no body"),
                Some(
                    "add `html_file = \"templates/x.html\"` (or `html`, `text`, `text_file`)"
                        .to_owned(),
                ),
            );
        }
        Some(Email {
            from: from?,
            reply_to: e.reply_to.as_ref().map(|r| r.v.clone()),
            subject: subject?,
            html,
            text,
        })
    }

    /// An inline body or one read from a file beside the config.
    fn body(
        &mut self,
        campaign: &str,
        kind: &str,
        inline: &Option<Str>,
        file: &Option<Str>,
        ws: &Workspace,
    ) -> Option<Template> {
        let name = format!("{campaign}.{kind}");
        match (inline, file) {
            (Some(i), Some(f)) => {
                self.err_help(
                    &f.at,
                    format!("campaign `{campaign}` has both `{kind}` and `{kind}_file`"),
                    Some("keep one".to_owned()),
                );
                Some(template(&name, i))
            }
            (Some(i), None) => Some(template(&name, i)),
            (None, Some(f)) => {
                let path = crate::raw::beside(&ws.dir, &f.v);
                match self.templates.get(&path) {
                    Some(Ok(text)) => Some(Template {
                        name,
                        text: text.clone(),
                        at: Location::start_of(&path),
                    }),
                    Some(Err(why)) => {
                        self.err(&f.at, format!("{kind}_file {}: {why}", path.display()));
                        None
                    }
                    None => {
                        self.err(
                            &f.at,
                            format!("{kind}_file {} was not read", path.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    fn job(
        &mut self,
        j: &RawJob,
        source_names: &[&str],
        campaign_names: &[&str],
        seen: &mut BTreeMap<String, Location>,
    ) -> Option<Job> {
        let name = self.name(&j.name, &j.at, "[[jobs]]", seen)?;
        let schedule = j
            .schedule
            .as_ref()
            .and_then(|s| match Schedule::parse(&s.v) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.err(&s.at, format!("job `{name}` schedule: {e}"));
                    None
                }
            });
        let sources = j.sources.as_ref().map(|list| {
            for s in &list.v {
                self.reference(s, source_names, "source");
            }
            list.v.iter().map(|s| s.v.clone()).collect()
        });
        let campaigns = j.campaigns.as_ref().map(|list| {
            for s in &list.v {
                self.reference(s, campaign_names, "campaign");
            }
            list.v.iter().map(|s| s.v.clone()).collect()
        });
        let misfire = match j.misfire.as_ref().map(|m| (m, m.v.as_str())) {
            None | Some((_, "run_once")) => Misfire::RunOnce,
            Some((_, "skip")) => Misfire::Skip,
            Some((m, other)) => {
                let help = suggest(other, ["run_once", "skip"])
                    .or_else(|| Some("use \"run_once\" or \"skip\"".to_owned()));
                self.err_help(
                    &m.at,
                    format!("job `{name}` misfire `{other}` is not a policy"),
                    help,
                );
                Misfire::RunOnce
            }
        };
        let mut duration = |s: &Option<Str>, key: &str| {
            s.as_ref()
                .and_then(|s| self.duration(s, &format!("job `{name}` {key}")))
        };
        let misfire_grace = duration(&j.misfire_grace, "misfire_grace");
        let jitter = duration(&j.jitter, "jitter");
        let timeout = duration(&j.timeout, "timeout");
        let retry_backoff = duration(&j.retry_backoff, "retry_backoff");
        if let (Some(t), Some(s)) = (timeout, &j.timeout)
            && t.is_zero()
        {
            self.err(
                &s.at,
                format!("job `{name}` timeout is 0; leave it out for no timeout"),
            );
        }
        let retries = match &j.retries {
            None => 0,
            Some(r) if (0..=100).contains(&r.v) => r.v as u32,
            Some(r) => {
                self.err(
                    &r.at,
                    format!("job `{name}` retries is {}; use 0 to 100", r.v),
                );
                0
            }
        };
        Some(Job {
            name,
            schedule,
            sources,
            campaigns,
            enabled: j.enabled.as_ref().is_none_or(|e| e.v),
            misfire,
            misfire_grace: misfire_grace.unwrap_or(DEFAULT_MISFIRE_GRACE),
            jitter: jitter.unwrap_or_default(),
            timeout: timeout.filter(|t| !t.is_zero()),
            retries,
            retry_backoff: retry_backoff.unwrap_or(DEFAULT_RETRY_BACKOFF),
            at: j.at.clone(),
        })
    }

    /// A name that must be one of `known`.
    fn reference(&mut self, r: &Str, known: &[&str], what: &str) {
        if known.contains(&r.v.as_str()) {
            return;
        }
        let help = suggest(&r.v, known.iter().copied()).or_else(|| {
            if known.is_empty() {
                Some(format!("this workspace defines no {what}s"))
            } else {
                Some(format!("defined {what}s: {}", known.join(", ")))
            }
        });
        self.err_help(&r.at, format!("unknown {what} `{}`", r.v), help);
    }
}

#[derive(Default)]
struct Names {
    sources: BTreeMap<String, Location>,
    segments: BTreeMap<String, Location>,
    destinations: BTreeMap<String, Location>,
    campaigns: BTreeMap<String, Location>,
    jobs: BTreeMap<String, Location>,
}

fn keys(map: &BTreeMap<String, Location>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

fn template(name: &str, s: &Str) -> Template {
    Template {
        name: name.to_owned(),
        text: s.v.clone(),
        at: s.inner.clone(),
    }
}

/// Gives back the room the lists grew into while they were filled.
///
/// A config lives as long as the daemon; with a thousand workspaces, lists of one campaign
/// with room for four (a campaign is some 500 bytes) added up to megabytes of idle memory.
fn tighten(ws: &mut Workspace) {
    ws.sources.shrink_to_fit();
    ws.segments.shrink_to_fit();
    ws.destinations.shrink_to_fit();
    ws.campaigns.shrink_to_fit();
    for c in &mut ws.campaigns {
        c.segments.shrink_to_fit();
        c.fields.shrink_to_fit();
    }
    ws.jobs.shrink_to_fit();
    ws.api_tokens.shrink_to_fit();
}

fn plugin_config(
    raw: Option<&RawPluginConfig>,
    dir: &Path,
    owner: String,
    at: &Location,
) -> PluginConfig {
    match raw {
        Some(r) => PluginConfig::new(&r.value, r.locations.clone(), dir.to_path_buf(), owner),
        None => {
            let mut locations = BTreeMap::new();
            locations.insert(String::new(), at.clone());
            PluginConfig::new(
                &serde_json::Value::Object(serde_json::Map::new()),
                locations,
                dir.to_path_buf(),
                owner,
            )
        }
    }
}

/// `[a-z0-9][a-z0-9_-]*`.
pub(crate) fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Letters, digits, `_` and `-`: names appear in file names, keys and `in_segment('...')`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `YYYY-MM-DD` (midnight UTC), `YYYY-MM-DDTHH:MM:SS` (UTC) or RFC 3339; as `segment eval
/// --as-of` reads it.
fn parse_as_of(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_reads_dates_and_times() {
        assert_eq!(
            parse_as_of("1998-07-01").unwrap().to_rfc3339(),
            "1998-07-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_as_of("1998-07-01T12:30:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "1998-07-01T10:30:00+00:00"
        );
        assert_eq!(
            parse_as_of("1998-07-01T12:30:00").unwrap().to_rfc3339(),
            "1998-07-01T12:30:00+00:00"
        );
        assert!(parse_as_of("July 1st").is_none());
    }

    #[test]
    fn ids_are_lower_case_slugs() {
        assert!(valid_id("demo") && valid_id("acme-2") && valid_id("0x_y"));
        assert!(!valid_id("Demo") && !valid_id("-a") && !valid_id("") && !valid_id("a b"));
    }
}
