//! HubSpot's CRM v3 API through the host: what to ask for each page, how to read the answer
//! (the SDK's `Paged`), and the limits.
//!
//! **Full sync** (a stream's first run): the objects list endpoint, paged with `after`. A
//! listing is in id order, not in time order, so its records carry no watermark; the pass
//! starts the next one at the time it began (HubSpot's clock, from the first page's `Date`),
//! less the search lag below, and it is a *full pass*: what it does not list is gone.
//!
//! **Incremental**: the search endpoint, `lastmodifieddate` (deals: `hs_lastmodifieddate`) at
//! or after the watermark and before an upper bound, sorted ascending. Search answers at most
//! 10,000 results a query, so the walk goes in windows: when a window is cut at 10,000, the
//! next one starts at the last modified time seen. Sorting on one property leaves the order of
//! records sharing a millisecond unspecified, so that millisecond is first read on its own,
//! sorted by `hs_object_id` and walked by id (`hs_object_id > last`, again in windows), however
//! many records share it; then the walk goes on after it. A record read twice at a window's
//! edge is harmless (the store keeps one); one skipped would not be.
//!
//! **The upper bound**: HubSpot's search index lags behind writes ("it may take a few moments
//! for newly created or updated objects to appear"). A pass reads only what was modified at
//! least [`SEARCH_SETTLE_MS`] before HubSpot's clock (taken from the `Date` of its answers),
//! at a whole second, so the watermark never passes a record the index has not shown yet;
//! what was modified since, or during the pull, is read by the next run.
//!
//! **Archived** records leave search; an incremental pass ends by listing the archived ones
//! (`archived=true`) and deleting those archived since its watermark.
//!
//! **Limits.** Requests are paced by the host's shared HTTP service, in buckets named after the
//! token (never the token itself): one for the tier's limit per 10 seconds, one for search's 5
//! per second. A bucket allows a burst of a twentieth of the limit, then a steady rate that
//! leaves two requests of room: no rolling 10-second window ever sees more than the limit.
//! The `X-HubSpot-RateLimit-*` headers are read on every answer: a token HubSpot limits below
//! the tier is paced to HubSpot's figure, a window nearly spent by another app waits, and a
//! spent daily limit ends the pull as retryable. The host retries 429s, 5xx and dropped
//! connections (searches are safe to repeat); what outlasts its retries comes back as a retry
//! with HubSpot's `category` and `correlationId` in the message, and never the token.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cohort_plugin_api::cohort_core::hash::fnv1a_64;
use cohort_plugin_api::cohort_core::text::did_you_mean;
use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::paged::{Mark, Paged, VendorPage};
use cohort_plugin_api::wire::ConfigIssue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, Tier};
use crate::mapping::{self, Contacts, Deal, Kind, Object};

/// How long before HubSpot's clock a search pass stops: its index shows a write within a few
/// seconds; a minute leaves it room.
pub const SEARCH_SETTLE_MS: i64 = 60_000;
/// Results a search query answers at most.
pub const SEARCH_CAP: u32 = 10_000;
/// Results per search page (HubSpot's most).
pub const SEARCH_PAGE: u32 = 200;
/// Records per list page (HubSpot's most).
pub const LIST_PAGE: u32 = 100;
/// Deals per associations batch read.
const BATCH: usize = 100;
/// Search's own limit: 5 requests a second per token. Paced at 4 a second without a burst, no
/// rolling second ever holds more than 5.
const SEARCH_PACE: (f64, u32) = (4.0, 1);
/// How long a pull waits before trying again once the daily limit is spent: it resets at
/// midnight in the account's time zone, which the API does not say.
const DAILY_RETRY: Duration = Duration::from_secs(3600);

/// Where a vendor page is: the pager keeps it in the cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case", deny_unknown_fields)]
pub enum Token {
    /// The list endpoint at HubSpot's `after` (empty: the first page).
    List {
        /// HubSpot's paging token.
        after: String,
    },
    /// A search window: modified in `[from, upper)` (milliseconds), at offset `after`; with
    /// `tie`, the millisecond `from` alone, by id, after that id.
    Search {
        /// Lower bound, inclusive.
        from: i64,
        /// Upper bound, exclusive.
        upper: i64,
        /// Offset in the window's results.
        #[serde(default)]
        after: u32,
        /// Walking the millisecond `from` by id, after this one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tie: Option<u64>,
    },
    /// The archived listing at HubSpot's `after` (absent: the first page).
    Archived {
        /// HubSpot's paging token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
}

/// The requests per second and burst that keep every rolling 10 seconds within `per_ten`.
pub fn pace(per_ten: u32) -> (f64, u32) {
    let burst = (per_ten / 20).max(1);
    let steady = per_ten.saturating_sub(burst + 2).max(1);
    (f64::from(steady) / 10.0, burst)
}

/// HubSpot's API for one source instance.
#[derive(Debug)]
pub struct Api {
    host: Host,
    /// Objects, lists, properties, associations: the tier's bucket.
    general: Client,
    /// Search: its own bucket.
    search: Client,
    token: String,
    tier: Tier,
    /// The limit per 10 seconds paced to: the tier's, or HubSpot's when lower.
    per_ten: u32,
    config: Config,
    /// Set once HubSpot's properties confirmed the config.
    contacts: Option<Contacts>,
    /// HubSpot's clock at its last answer, and when that was here.
    clock: Option<(i64, Instant)>,
    /// The request being read: its token, as sent, and `METHOD /path`.
    pending: Option<(Token, String)>,
    /// Deletions archived before this (ms) were handed over by an earlier pass.
    archived_since: Option<i64>,
    /// A wait owed before the next request (the window is spent by someone else).
    hold: Option<Duration>,
    /// The daily limit is spent.
    daily_spent: bool,
}

impl Api {
    /// The API of a validated config.
    pub fn new(host: Host, config: Config) -> Api {
        let account = format!("token-{:016x}", fnv1a_64(config.access_token.as_bytes()));
        let per_ten = config.tier.per_ten_seconds();
        let (rate, burst) = pace(per_ten);
        let base = Client::new(host, config.base_url.clone())
            .bearer("/access_token", &config.access_token)
            .header("Accept", "application/json")
            .timeout(Duration::from_secs(30));
        Api {
            host,
            general: base
                .clone()
                .account(account.clone())
                .rate_limit(rate, burst),
            search: base
                .account(format!("{account}:search"))
                .rate_limit(SEARCH_PACE.0, SEARCH_PACE.1),
            token: config.access_token.clone(),
            tier: config.tier,
            per_ten,
            config,
            contacts: None,
            clock: None,
            pending: None,
            archived_since: None,
            hold: None,
            daily_spent: false,
        }
    }

    /// Whether deals are read as orders.
    pub fn deals(&self) -> bool {
        self.config.deals_as_orders
    }

    /// Checks the config's properties against HubSpot's, once: each exists, the consent
    /// property is a boolean, the tags property a selection or text. Every problem is a config
    /// issue at its path.
    pub fn prepare(&mut self) -> Result<(), PluginError> {
        if self.contacts.is_some() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Property {
            name: String,
            #[serde(rename = "type", default)]
            kind: String,
            #[serde(rename = "fieldType", default)]
            field: String,
        }
        #[derive(Deserialize)]
        struct Properties {
            results: Vec<Property>,
        }
        let request = self.general.get("/crm/v3/properties/contacts");
        let known: Properties = self.send(request, false)?.json()?;
        let types: BTreeMap<&str, (&str, &str)> = known
            .results
            .iter()
            .map(|p| (p.name.as_str(), (p.kind.as_str(), p.field.as_str())))
            .collect();
        let mut issues = Vec::new();
        let missing = |path: String, name: &str| {
            let hint = did_you_mean(name, types.keys().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ConfigIssue {
                path,
                message: format!("HubSpot has no contact property `{name}`{hint}"),
            }
        };
        let mut rules = Contacts::default();
        for (i, name) in self.config.properties.iter().enumerate() {
            match types.get(name.as_str()) {
                Some((kind, _)) => rules.extra.push((name.clone(), Kind::of(kind))),
                None => issues.push(missing(format!("/properties/{i}"), name)),
            }
        }
        if let Some(name) = &self.config.consent_property {
            match types.get(name.as_str()) {
                Some(("bool", _)) => rules.consent = Some(name.clone()),
                Some((kind, field)) => issues.push(ConfigIssue {
                    path: "/consent_property".into(),
                    message: format!(
                        "`{name}` is a {kind} property ({field}); consent needs a boolean \
                         (single checkbox) property"
                    ),
                }),
                None => issues.push(missing("/consent_property".into(), name)),
            }
        }
        if let Some(name) = &self.config.tags_property {
            match types.get(name.as_str()) {
                Some(("enumeration" | "string", _)) => rules.tags = Some(name.clone()),
                Some((kind, field)) => issues.push(ConfigIssue {
                    path: "/tags_property".into(),
                    message: format!(
                        "`{name}` is a {kind} property ({field}); tags need a multiple \
                         checkboxes (enumeration) property"
                    ),
                }),
                None => issues.push(missing("/tags_property".into(), name)),
            }
        }
        if !issues.is_empty() {
            return Err(PluginError::Config(issues));
        }
        self.contacts = Some(rules);
        Ok(())
    }

    /// HubSpot's clock now, in milliseconds: its last `Date`, plus the time since.
    fn now(&self) -> i64 {
        match self.clock {
            Some((at, seen)) => {
                at + i64::try_from(seen.elapsed().as_millis()).unwrap_or(i64::MAX / 2)
            }
            None => chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Sends a request with the pacing and the error mapping described in the module doc.
    fn send(&mut self, request: Request, search: bool) -> Result<Response, PluginError> {
        let what = self.describe(&request);
        let response = self.ready(request)?.send()?;
        self.checked(response, search, &what)
    }

    /// `METHOD /path`, for messages.
    fn describe(&self, request: &Request) -> String {
        let http = request.as_http();
        let url = http.url.split('?').next().unwrap_or_default();
        let path = url.strip_prefix(self.general.base_url()).unwrap_or(url);
        format!("{} {path}", http.method)
    }

    /// A request about to go: waits owed first, and every error status handed back to
    /// [`checked`](Self::checked) (but 401 and 403, which the SDK maps to `/access_token`).
    fn ready(&mut self, mut request: Request) -> Result<Request, PluginError> {
        if self.daily_spent {
            return Err(daily_spent());
        }
        if let Some(wait) = self.hold.take() {
            sleep(&self.host, wait)?;
        }
        for status in (400..600).filter(|s| *s != 401 && *s != 403) {
            request = request.allow(status);
        }
        Ok(request)
    }

    /// Reads the limit headers of an answer, and maps an error status.
    fn checked(
        &mut self,
        response: Response,
        search: bool,
        what: &str,
    ) -> Result<Response, PluginError> {
        self.observe(&response, search);
        if response.status() < 400 {
            return Ok(response);
        }
        Err(self.refusal(what, &response))
    }

    /// Reads HubSpot's clock and limit headers.
    fn observe(&mut self, response: &Response, search: bool) {
        let number = |name: &str| response.header(name)?.trim().parse::<u64>().ok();
        if let Some(date) = response
            .header("date")
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        {
            self.clock = Some((date.timestamp_millis(), Instant::now()));
        }
        if number("x-hubspot-ratelimit-daily-remaining") == Some(0) {
            self.daily_spent = true;
        }
        if search {
            return;
        }
        let (Some(max), Some(interval)) = (
            number("x-hubspot-ratelimit-max"),
            number("x-hubspot-ratelimit-interval-milliseconds"),
        ) else {
            return;
        };
        if max == 0 || interval == 0 {
            return;
        }
        let per_ten = u32::try_from(max.saturating_mul(10_000) / interval).unwrap_or(u32::MAX);
        if per_ten < self.per_ten {
            self.host.warn(&format!(
                "HubSpot allows this token {max} requests per {interval} ms, fewer than the \
                 `{}` tier's {} per 10 s; pacing to HubSpot's figure (is `tier` right?)",
                self.tier.name(),
                self.per_ten
            ));
            self.per_ten = per_ten;
            let (rate, burst) = pace(per_ten);
            self.general = self.general.clone().rate_limit(rate, burst);
        }
        if number("x-hubspot-ratelimit-remaining").is_some_and(|left| left <= 1) {
            // Another app spends this token's window: leave it a slot's time.
            self.hold = Some(Duration::from_millis(interval / max));
        }
        if let (Some(per_second), Some(0)) = (
            number("x-hubspot-ratelimit-secondly"),
            number("x-hubspot-ratelimit-secondly-remaining"),
        ) {
            self.hold = Some(Duration::from_millis(1000 / per_second.max(1)));
        }
    }

    /// What an error answer (after the host's retries) means, in HubSpot's own words.
    fn refusal(&mut self, what: &str, response: &Response) -> PluginError {
        let status = response.status();
        let body: Value = serde_json::from_str(response.text()).unwrap_or(Value::Null);
        let field = |name: &str| body.get(name).and_then(Value::as_str);
        let mut said = Vec::new();
        if let Some(category) = field("category") {
            said.push(category.to_owned());
        }
        if let Some(policy) = field("policyName") {
            said.push(format!("policy {policy}"));
        }
        if let Some(message) = field("message") {
            said.push(message.to_owned());
        }
        if let Some(id) = field("correlationId") {
            said.push(format!("correlationId {id}"));
        }
        let detail = if !said.is_empty() {
            format!(": {}", said.join("; "))
        } else if response.text().trim_start().starts_with('<') {
            " (an HTML error page)".to_owned()
        } else if response.is_empty() {
            String::new()
        } else {
            format!(": {}", response.excerpt())
        };
        let attempts = match response.attempts() {
            0 | 1 => String::new(),
            n => format!(" after {n} attempts"),
        };
        let message = self.scrub(&format!(
            "HubSpot answered {what} with {status}{detail}{attempts}"
        ));
        match status {
            429 if field("policyName") == Some("DAILY") => {
                self.daily_spent = true;
                daily_spent()
            }
            429 | 500..=599 => PluginError::retry(
                format!("{message}; the pull goes on from here next time"),
                response.retry_after().or(Some(Duration::from_secs(10))),
            ),
            _ => PluginError::failed(message),
        }
    }

    /// `text` without the token, whatever HubSpot echoed.
    fn scrub(&self, text: &str) -> String {
        if self.token.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.token, "[REDACTED]")
        }
    }

    /// The associated contacts of won deals: the first (lowest id) of each.
    fn first_contacts(&mut self, deals: &[&str]) -> Result<BTreeMap<String, String>, PluginError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            results: Vec<Associations>,
        }
        #[derive(Deserialize)]
        struct Associations {
            from: From,
            #[serde(default)]
            to: Vec<To>,
        }
        #[derive(Deserialize)]
        struct From {
            id: Value,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct To {
            to_object_id: Value,
        }
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut first = BTreeMap::new();
        for chunk in deals.chunks(BATCH) {
            let inputs: Vec<Value> = chunk.iter().map(|id| json!({"id": id})).collect();
            let request = self
                .general
                .post("/crm/v4/associations/deals/contacts/batch/read")
                .retry(true)
                .json(&json!({"inputs": inputs}))?;
            let answer: Answer = self.send(request, false)?.json()?;
            for a in answer.results {
                let lowest =
                    a.to.iter()
                        .map(|t| text(&t.to_object_id))
                        .min_by(|x, y| cohort_plugin_api::cohort_core::record::natural_cmp(x, y));
                if let Some(contact) = lowest {
                    first.insert(text(&a.from.id), contact);
                }
            }
        }
        Ok(first)
    }

    /// Reads one page of objects into `page`: contacts as customers, deals as orders (or
    /// deletions, when not won), each placed at `mark` (`None` in a listing).
    fn read_objects(
        &mut self,
        stream: Stream,
        objects: &[Object],
        marked: bool,
        page: &mut VendorPage<Token>,
    ) -> Result<(), PluginError> {
        let modified = modified_property(stream);
        let mark = |o: &Object| -> Result<Option<Mark>, String> {
            if !marked {
                return Ok(None);
            }
            Ok(o.millis(modified)?
                .map(|ms| Mark::new(mapping::timestamp(ms), &o.id)))
        };
        if stream == Stream::Customers {
            let rules = self.contacts.clone().unwrap_or_default();
            for o in objects {
                match mapping::customer(o, &rules).and_then(|(c, _)| Ok((c, mark(o)?))) {
                    Ok((c, m)) => page.push_marked(c, m),
                    Err(why) => page.reject(format!("contact {}", o.id), why),
                }
            }
            return Ok(());
        }
        let won: Vec<&str> = objects
            .iter()
            .filter(|o| mapping::is_won(o))
            .map(|o| o.id.as_str())
            .collect();
        let contacts = if won.is_empty() {
            BTreeMap::new()
        } else {
            self.first_contacts(&won)?
        };
        for o in objects {
            let read = mapping::deal(o, contacts.get(&o.id).map(String::as_str))
                .and_then(|d| Ok((d, mark(o)?)));
            match read {
                Ok((Deal::Won(order), m)) => page.push_marked(order, m),
                Ok((Deal::NotWon, m)) => page.delete(o.id.clone(), m),
                Err(why) => page.reject(format!("deal {}", o.id), why),
            }
        }
        Ok(())
    }
}

/// The HubSpot object type behind a stream.
fn object_type(stream: Stream) -> &'static str {
    match stream {
        Stream::Orders => "deals",
        _ => "contacts",
    }
}

/// The property that says when a record of the stream last changed.
fn modified_property(stream: Stream) -> &'static str {
    match stream {
        Stream::Orders => "hs_lastmodifieddate",
        _ => "lastmodifieddate",
    }
}

/// `ms` less the search lag, at a whole second below.
fn settled(ms: i64) -> i64 {
    (ms - SEARCH_SETTLE_MS).div_euclid(1000) * 1000
}

fn daily_spent() -> PluginError {
    PluginError::retry(
        "HubSpot's daily API limit for this token is spent (it resets at midnight in the \
         account's time zone); the pull goes on from here then",
        Some(DAILY_RETRY),
    )
}

/// Sleeps `total`, waking to see whether the host cancelled the work.
fn sleep(host: &Host, total: Duration) -> Result<(), PluginError> {
    let end = Instant::now() + total;
    loop {
        host.check_cancelled()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    results: Vec<Object>,
    #[serde(default)]
    paging: Option<Paging>,
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Deserialize)]
struct Paging {
    next: Option<Next>,
}

#[derive(Deserialize)]
struct Next {
    after: Value,
}

impl Listing {
    fn after(&self) -> Option<String> {
        match &self.paging.as_ref()?.next.as_ref()?.after {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl Paged for Api {
    type Token = Token;

    fn request(
        &mut self,
        stream: Stream,
        token: Option<&Token>,
        since: Option<&Mark>,
    ) -> Result<Request, PluginError> {
        let object = object_type(stream);
        let token = match (token, since) {
            (Some(t), _) => t.clone(),
            (None, None) => Token::List {
                after: String::new(),
            },
            (None, Some(mark)) => Token::Search {
                from: mark.at.secs() * 1000,
                upper: settled(self.now()),
                after: 0,
                tie: None,
            },
        };
        self.archived_since = since.map(|m| m.at.secs() * 1000);
        let properties = match stream {
            Stream::Orders => mapping::DEAL_PROPERTIES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            _ => self.contacts.clone().unwrap_or_default().properties(),
        };
        let path = format!("/crm/v3/objects/{object}");
        let request = match &token {
            Token::List { after } => self
                .general
                .get(&path)
                .query("limit", LIST_PAGE)
                .query("archived", "false")
                .query("properties", properties.join(","))
                .query_opt("after", Some(after).filter(|a| !a.is_empty())),
            Token::Archived { after } => self
                .general
                .get(&path)
                .query("limit", LIST_PAGE)
                .query("archived", "true")
                .query_opt("after", after.as_ref()),
            Token::Search {
                from,
                upper,
                after,
                tie,
            } => {
                let modified = modified_property(stream);
                let (filters, sort) = match tie {
                    None => (
                        json!([
                            {"propertyName": modified, "operator": "GTE", "value": from.to_string()},
                            {"propertyName": modified, "operator": "LT", "value": upper.to_string()},
                        ]),
                        modified,
                    ),
                    Some(id) => (
                        json!([
                            {"propertyName": modified, "operator": "EQ", "value": from.to_string()},
                            {"propertyName": "hs_object_id", "operator": "GT", "value": id.to_string()},
                        ]),
                        "hs_object_id",
                    ),
                };
                self.search
                    .post(&format!("{path}/search"))
                    .retry(true)
                    .json(&json!({
                        "filterGroups": [{"filters": filters}],
                        "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
                        "properties": properties,
                        "limit": SEARCH_PAGE,
                        "after": after.to_string(),
                    }))?
            }
        };
        self.pending = Some((token, self.describe(&request)));
        self.ready(request)
    }

    fn parse(
        &mut self,
        stream: Stream,
        _token: Option<&Token>,
        response: Response,
    ) -> Result<VendorPage<Token>, PluginError> {
        let Some((token, what)) = self.pending.take() else {
            return Err(PluginError::failed("plugin bug: an answer to no request"));
        };
        // The pager sent the request `ready` prepared; its answer is checked here.
        let search = matches!(token, Token::Search { .. });
        let response = self.checked(response, search, &what)?;
        let body: Listing = response.json()?;
        let after = body.after();
        let mut page = VendorPage::new();
        page.total = body.total;
        match token {
            Token::List { .. } => {
                let began = self.clock.map_or_else(|| self.now(), |(at, _)| at);
                page = page.start_mark(Mark::new(mapping::timestamp(settled(began)), ""));
                self.read_objects(stream, &body.results, false, &mut page)?;
                Ok(page.next(after.map(|after| Token::List { after })))
            }
            Token::Archived { .. } => {
                for o in &body.results {
                    let at = o.archived_at.as_deref().map(mapping::millis).transpose();
                    match at {
                        Ok(at) if at.zip(self.archived_since).is_some_and(|(a, s)| a < s) => {}
                        Ok(_) => page.delete(o.id.clone(), None),
                        Err(why) => {
                            page.reject(format!("archived {} {}", object_type(stream), o.id), why);
                        }
                    }
                }
                Ok(page.next(after.map(|a| Token::Archived { after: Some(a) })))
            }
            Token::Search {
                from, upper, tie, ..
            } => {
                self.read_objects(stream, &body.results, true, &mut page)?;
                let next_after = after.and_then(|a| a.parse::<u32>().ok());
                let last = body.results.last();
                let next = match (next_after, tie) {
                    (Some(a), _) if a < SEARCH_CAP => Some(Token::Search {
                        from,
                        upper,
                        after: a,
                        tie,
                    }),
                    // Cut at 10,000: read the last millisecond by id, then go on after it.
                    (Some(_), None) => {
                        let at = last
                            .map(|o| o.millis(modified_property(stream)))
                            .transpose()
                            .map_err(PluginError::failed)?
                            .flatten()
                            .unwrap_or(from);
                        Some(Token::Search {
                            from: at,
                            upper,
                            after: 0,
                            tie: Some(0),
                        })
                    }
                    (Some(_), Some(_)) => {
                        let id = last.and_then(|o| o.id.parse::<u64>().ok()).unwrap_or(0);
                        Some(Token::Search {
                            from,
                            upper,
                            after: 0,
                            tie: Some(id),
                        })
                    }
                    (None, Some(_)) => Some(Token::Search {
                        from: from + 1,
                        upper,
                        after: 0,
                        tie: None,
                    }),
                    (None, None) => Some(Token::Archived { after: None }),
                };
                Ok(page.next(next))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_keeps_every_ten_seconds_under_the_limit_and_uses_over_nine_tenths() {
        for tier in [Tier::Free, Tier::Professional, Tier::ApiAddOn] {
            let limit = tier.per_ten_seconds();
            let (rate, burst) = pace(limit);
            let worst = f64::from(burst) + rate * 10.0;
            assert!(worst <= f64::from(limit), "{tier:?}: {worst} > {limit}");
            assert!(rate * 10.0 >= 0.9 * f64::from(limit), "{tier:?}: {rate}/s");
        }
    }

    #[test]
    fn the_settled_bound_is_a_whole_second_a_minute_back() {
        assert_eq!(settled(1_700_000_061_999), 1_700_000_001_000);
    }
}
