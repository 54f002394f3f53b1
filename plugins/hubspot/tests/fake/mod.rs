//! A fake HubSpot, in process, on the test kit's `FakeServer`, following HubSpot's public
//! developer docs for the CRM v3 API (there is no machine-readable spec to check against):
//!
//! - `GET /crm/v3/objects/{contacts,deals}`: `limit` (at most 100), `after` (opaque),
//!   `properties` (comma-separated), `archived`; records in id order.
//! - `POST /crm/v3/objects/{contacts,deals}/search`: `filterGroups` (OR of ANDs; at most 5
//!   groups, 6 filters a group, 18 in all), one sort at most, `limit` (at most 200), `after`;
//!   at most 10,000 results a query (an `after` past them is a 400); archived records never
//!   appear; the index lags behind writes (`lag`); records sharing the sorted value come in an
//!   order of HubSpot's own, not by id; 5 searches a second per token.
//! - `POST /crm/v4/associations/deals/contacts/batch/read`, `GET /crm/v3/properties/contacts`.
//! - Limits per token: a rolling 10 seconds (the tier's), a daily count, the
//!   `X-HubSpot-RateLimit-*` headers on every answer but searches, 429 bodies with `category`,
//!   `policyName` and `correlationId`.
//! - Faults on demand: 429s, 502s with an HTML body, errors that echo the credentials.
//!
//! Every request is checked against those rules; one that breaks them is answered 400 and
//! counted in `Stats::invalid`, which tests expect to stay 0. Time is HubSpot's clock: the real
//! one plus an offset tests move with [`Fake::advance`]; rate windows use real time.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cohort_plugin_testkit::{FakeServer, Recorded, Reply};
use serde_json::{Map, Value, json};

/// The token the fake accepts.
pub const TOKEN: &str = "pat-na1-TOPSECRET-0000-1111";

/// Date-time properties: compared and sorted as instants.
const DATES: &[&str] = &[
    "createdate",
    "lastmodifieddate",
    "hs_lastmodifieddate",
    "closedate",
];
/// Properties every answer carries, asked for or not.
const DEFAULTS: &[&str] = &["createdate", "hs_object_id"];

/// A fault to answer instead of the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429, ten-secondly policy.
    TooMany,
    /// 502 with an HTML page, as HubSpot's edge answers.
    BadGatewayHtml,
    /// 500 with HubSpot's JSON error body.
    Internal,
    /// 400 whose message echoes the request's `Authorization` header.
    EchoCredentials,
}

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Requests of any kind.
    pub requests: u64,
    /// Requests that count toward the 10-second window (all but searches).
    pub windowed: u64,
    /// Searches.
    pub searches: u64,
    /// 429s the fake gave because the client went too fast (never injected ones).
    pub throttled: u64,
    /// Faults injected and answered.
    pub injected: u64,
    /// Requests that broke the documented rules.
    pub invalid: u64,
    /// The most windowed requests seen in any rolling 10 seconds.
    pub busiest_window: usize,
    /// Search pages that asked past the 10,000 cap.
    pub past_cap: u64,
}

#[derive(Debug, Clone)]
struct Rec {
    props: BTreeMap<String, String>,
    modified: i64,
    archived_at: Option<i64>,
    /// The version the search index shows, and when the current one shows.
    indexed: Option<(BTreeMap<String, String>, i64)>,
    shows_at: i64,
}

#[derive(Debug, Default)]
struct Kind {
    records: BTreeMap<u64, Rec>,
}

#[derive(Debug)]
struct State {
    contacts: Kind,
    deals: Kind,
    /// Deal id → contact ids.
    assoc: BTreeMap<u64, Vec<u64>>,
    offset_ms: i64,
    lag_ms: i64,
    per_ten: usize,
    daily: u64,
    daily_used: u64,
    window: VecDeque<Instant>,
    searches: VecDeque<Instant>,
    faults: VecDeque<(String, Fault)>,
    stats: Stats,
    correlation: u64,
    next_id: u64,
}

/// The fake HubSpot.
pub struct Fake {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn real_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `2024-05-01T12:00:00.123Z`.
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl Fake {
    /// A fake with no records, limits of `per_ten` requests per 10 s and `daily` a day.
    pub fn start(per_ten: usize, daily: u64) -> Fake {
        let state = Arc::new(Mutex::new(State {
            contacts: Kind::default(),
            deals: Kind::default(),
            assoc: BTreeMap::new(),
            offset_ms: 0,
            lag_ms: 0,
            per_ten,
            daily,
            daily_used: 0,
            window: VecDeque::new(),
            searches: VecDeque::new(),
            faults: VecDeque::new(),
            stats: Stats::default(),
            correlation: 0,
            next_id: 1,
        }));
        let server = FakeServer::start();
        for (method, path) in [
            ("GET", "/crm/v3/properties/contacts"),
            ("GET", "/crm/v3/objects/contacts"),
            ("GET", "/crm/v3/objects/deals"),
            ("POST", "/crm/v3/objects/contacts/search"),
            ("POST", "/crm/v3/objects/deals/search"),
            ("POST", "/crm/v4/associations/deals/contacts/batch/read"),
        ] {
            let state = state.clone();
            server.on(method, path, move |r| answer(&state, r));
        }
        Fake { server, state }
    }

    /// The base URL to configure.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// HubSpot's clock, in milliseconds.
    pub fn now(&self) -> i64 {
        real_now_ms() + lock(&self.state).offset_ms
    }

    /// Moves HubSpot's clock forward.
    pub fn advance(&self, by: Duration) {
        lock(&self.state).offset_ms += i64::try_from(by.as_millis()).unwrap();
    }

    /// How long a write takes to show in search from now on.
    pub fn set_lag(&self, lag: Duration) {
        lock(&self.state).lag_ms = i64::try_from(lag.as_millis()).unwrap();
    }

    /// The next `count` requests whose path contains `path` get `fault`.
    pub fn inject(&self, path: &str, fault: Fault, count: usize) {
        let mut s = lock(&self.state);
        for _ in 0..count {
            s.faults.push_back((path.to_owned(), fault));
        }
    }

    /// What the fake saw.
    pub fn stats(&self) -> Stats {
        lock(&self.state).stats.clone()
    }

    /// Forgets the stats (and the rate windows keep going).
    pub fn reset_stats(&self) {
        lock(&self.state).stats = Stats::default();
    }

    /// Adds `n` contacts, all last modified at `modified` (ms), already indexed. Returns their ids.
    pub fn add_contacts(&self, n: usize, modified: i64) -> Vec<u64> {
        let mut s = lock(&self.state);
        (0..n)
            .map(|_| {
                let id = s.next_id;
                s.next_id += 1;
                let props = contact_props(id, modified);
                s.contacts.records.insert(
                    id,
                    Rec {
                        indexed: Some((props.clone(), modified)),
                        props,
                        modified,
                        archived_at: None,
                        shows_at: 0,
                    },
                );
                id
            })
            .collect()
    }

    /// Changes a contact now (its `lastmodifieddate` becomes HubSpot's clock, or `at`); search
    /// shows the change after the lag.
    pub fn update_contact(&self, id: u64, props: &[(&str, &str)], at: Option<i64>) {
        let mut s = lock(&self.state);
        let now = real_now_ms() + s.offset_ms;
        let lag = s.lag_ms;
        let rec = s.contacts.records.get_mut(&id).unwrap();
        for (k, v) in props {
            rec.props.insert((*k).to_owned(), (*v).to_owned());
        }
        let modified = at.unwrap_or(now);
        rec.modified = modified;
        rec.props.insert("lastmodifieddate".into(), iso(modified));
        rec.shows_at = now + lag;
    }

    /// Archives a contact now.
    pub fn archive_contact(&self, id: u64) {
        let mut s = lock(&self.state);
        let now = real_now_ms() + s.offset_ms;
        s.contacts.records.get_mut(&id).unwrap().archived_at = Some(now);
    }

    /// Adds a deal associated with `contacts` (in that order), indexed.
    pub fn add_deal(&self, won: bool, amount: &str, contacts: &[u64], modified: i64) -> u64 {
        let mut s = lock(&self.state);
        let id = 5_000_000 + s.next_id;
        s.next_id += 1;
        let mut props = BTreeMap::new();
        for (k, v) in [
            ("hs_object_id", id.to_string()),
            ("dealname", format!("Deal {id}")),
            ("amount", amount.to_owned()),
            ("closedate", iso(modified - 3_600_000)),
            ("createdate", iso(modified - 86_400_000)),
            ("hs_lastmodifieddate", iso(modified)),
            ("deal_currency_code", "EUR".to_owned()),
            (
                "dealstage",
                if won { "closedwon" } else { "qualifiedtobuy" }.to_owned(),
            ),
            ("hs_is_closed_won", won.to_string()),
        ] {
            props.insert(k.to_owned(), v);
        }
        s.deals.records.insert(
            id,
            Rec {
                indexed: Some((props.clone(), modified)),
                props,
                modified,
                archived_at: None,
                shows_at: 0,
            },
        );
        s.assoc.insert(id, contacts.to_vec());
        id
    }

    /// Moves a deal to another stage now.
    pub fn set_deal_won(&self, id: u64, won: bool) {
        let mut s = lock(&self.state);
        let now = real_now_ms() + s.offset_ms;
        let lag = s.lag_ms;
        let rec = s.deals.records.get_mut(&id).unwrap();
        rec.props.insert("hs_is_closed_won".into(), won.to_string());
        rec.props.insert(
            "dealstage".into(),
            if won { "closedwon" } else { "closedlost" }.into(),
        );
        rec.modified = now;
        rec.props.insert("hs_lastmodifieddate".into(), iso(now));
        rec.shows_at = now + lag;
    }

    /// The ids of live (not archived) contacts.
    pub fn live_contacts(&self) -> Vec<u64> {
        let s = lock(&self.state);
        s.contacts
            .records
            .iter()
            .filter(|(_, r)| r.archived_at.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// A live contact's current properties.
    pub fn contact(&self, id: u64) -> BTreeMap<String, String> {
        lock(&self.state).contacts.records[&id].props.clone()
    }
}

/// A seeded contact's properties: every fifth consents, every seventh opted out, tags cycle.
fn contact_props(id: u64, modified: i64) -> BTreeMap<String, String> {
    let interests = ["running", "yoga;running", "cycling", ""][usize::try_from(id % 4).unwrap()];
    let mut p = BTreeMap::new();
    for (k, v) in [
        ("hs_object_id", id.to_string()),
        ("email", format!("contact{id}@example.com")),
        ("firstname", format!("First{id}")),
        ("lastname", format!("Last{id}")),
        ("phone", format!("+4930{id:07}")),
        ("city", "Berlin".to_owned()),
        ("state", "BE".to_owned()),
        ("country", "de".to_owned()),
        ("zip", format!("{:05}", id % 100_000)),
        ("lifecyclestage", "lead".to_owned()),
        ("createdate", iso(modified - 86_400_000)),
        ("lastmodifieddate", iso(modified)),
        ("hs_email_optout", id.is_multiple_of(7).to_string()),
        ("marketing_opt_in", id.is_multiple_of(5).to_string()),
        ("interests", interests.to_owned()),
        ("company", format!("Company {}", id % 13)),
        ("score", (id % 100).to_string()),
    ] {
        p.insert(k.to_owned(), v);
    }
    p
}

fn properties_answer() -> Value {
    let props: Vec<Value> = [
        ("email", "string", "text"),
        ("firstname", "string", "text"),
        ("lastname", "string", "text"),
        ("phone", "string", "phonenumber"),
        ("city", "string", "text"),
        ("state", "string", "text"),
        ("country", "string", "text"),
        ("zip", "string", "text"),
        ("lifecyclestage", "enumeration", "radio"),
        ("createdate", "datetime", "date"),
        ("lastmodifieddate", "datetime", "date"),
        ("hs_email_optout", "bool", "booleancheckbox"),
        ("hs_object_id", "number", "number"),
        ("marketing_opt_in", "bool", "booleancheckbox"),
        ("interests", "enumeration", "checkbox"),
        ("company", "string", "text"),
        ("score", "number", "number"),
    ]
    .iter()
    .map(|(name, kind, field)| {
        json!({"name": name, "label": name, "type": kind, "fieldType": field,
               "groupName": "contactinformation", "hubspotDefined": !matches!(*name, "marketing_opt_in" | "interests" | "score")})
    })
    .collect();
    json!({"results": props})
}

fn http_date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

impl State {
    fn now(&self) -> i64 {
        real_now_ms() + self.offset_ms
    }

    fn error(&mut self, status: u16, category: &str, message: &str, extra: Value) -> Reply {
        self.correlation += 1;
        let mut body = json!({"status": "error", "message": message, "category": category,
                              "correlationId": format!("0b6c-{:08x}", self.correlation)});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        Reply::status(status).with_json(&body)
    }

    fn invalid(&mut self, message: &str) -> Reply {
        self.stats.invalid += 1;
        self.error(400, "VALIDATION_ERROR", message, json!({}))
    }

    fn kind(&mut self, object: &str) -> &mut Kind {
        if object == "deals" {
            &mut self.deals
        } else {
            &mut self.contacts
        }
    }
}

fn answer(state: &Mutex<State>, r: &Recorded) -> Reply {
    let mut s = lock(state);
    s.stats.requests += 1;
    if r.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return s.error(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            json!({}),
        );
    }
    let search = r.path.ends_with("/search");
    let date = http_date(s.now());
    if let Some(i) = s
        .faults
        .iter()
        .position(|(p, _)| r.path.contains(p.as_str()))
    {
        let (_, fault) = s.faults.remove(i).unwrap();
        s.stats.injected += 1;
        let reply = match fault {
            Fault::TooMany => s.error(
                429,
                "RATE_LIMITS",
                "You have reached your ten_secondly_rolling limit.",
                json!({"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
            ),
            Fault::BadGatewayHtml => Reply::status(502)
                .with_header("Content-Type", "text/html")
                .with_body("<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"),
            Fault::Internal => s.error(500, "INTERNAL_ERROR", "internal error", json!({})),
            Fault::EchoCredentials => {
                let echoed = format!(
                    "Bad request; you sent Authorization: {}",
                    r.header("authorization").unwrap_or_default()
                );
                s.error(400, "VALIDATION_ERROR", &echoed, json!({}))
            }
        };
        return reply.with_header("Date", &date);
    }
    // The daily limit counts every request.
    if s.daily_used >= s.daily {
        return s
            .error(
                429,
                "RATE_LIMITS",
                "You have reached your daily limit.",
                json!({"errorType": "RATE_LIMIT", "policyName": "DAILY"}),
            )
            .with_header("Date", &date);
    }
    s.daily_used += 1;
    let now = Instant::now();
    if search {
        s.stats.searches += 1;
        while s
            .searches
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            s.searches.pop_front();
        }
        s.searches.push_back(now);
        if s.searches.len() > 5 {
            s.stats.throttled += 1;
            return s
                .error(
                    429,
                    "RATE_LIMITS",
                    "You have reached your secondly limit.",
                    json!({"errorType": "RATE_LIMIT", "policyName": "SECONDLY"}),
                )
                .with_header("Date", &date);
        }
    } else {
        s.stats.windowed += 1;
        while s
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(10))
        {
            s.window.pop_front();
        }
        s.window.push_back(now);
        let used = s.window.len();
        s.stats.busiest_window = s.stats.busiest_window.max(used);
        if used > s.per_ten {
            s.stats.throttled += 1;
            let reply = s.error(
                429,
                "RATE_LIMITS",
                "You have reached your ten_secondly_rolling limit.",
                json!({"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
            );
            return limit_headers(&s, reply).with_header("Date", &date);
        }
    }
    let reply = match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/crm/v3/properties/contacts") => Reply::json(&properties_answer()),
        ("GET", path) => {
            let object = path.trim_start_matches("/crm/v3/objects/").to_owned();
            list(&mut s, &object, r)
        }
        ("POST", "/crm/v4/associations/deals/contacts/batch/read") => associations(&mut s, r),
        ("POST", path) => {
            let object = path
                .trim_start_matches("/crm/v3/objects/")
                .trim_end_matches("/search")
                .to_owned();
            search_answer(&mut s, &object, r)
        }
        _ => s.invalid("no such endpoint"),
    };
    let reply = reply.with_header("Date", &date);
    if search {
        reply
    } else {
        limit_headers(&s, reply)
    }
}

fn limit_headers(s: &State, reply: Reply) -> Reply {
    reply
        .with_header("X-HubSpot-RateLimit-Daily", &s.daily.to_string())
        .with_header(
            "X-HubSpot-RateLimit-Daily-Remaining",
            &s.daily.saturating_sub(s.daily_used).to_string(),
        )
        .with_header("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")
        .with_header("X-HubSpot-RateLimit-Max", &s.per_ten.to_string())
        .with_header(
            "X-HubSpot-RateLimit-Remaining",
            &s.per_ten.saturating_sub(s.window.len()).to_string(),
        )
}

/// A record as HubSpot answers it, with the properties asked for (and the defaults).
fn render(id: u64, props: &BTreeMap<String, String>, rec: &Rec, wanted: &[String]) -> Value {
    let mut out = Map::new();
    for name in wanted
        .iter()
        .map(String::as_str)
        .chain(DEFAULTS.iter().copied())
    {
        out.insert(
            name.to_owned(),
            props
                .get(name)
                .map_or(Value::Null, |v| Value::String(v.clone())),
        );
    }
    let modified = props
        .get("lastmodifieddate")
        .or_else(|| props.get("hs_lastmodifieddate"))
        .cloned()
        .unwrap_or_default();
    let mut o = json!({
        "id": id.to_string(),
        "properties": out,
        "createdAt": props.get("createdate").cloned().unwrap_or_default(),
        "updatedAt": modified,
        "archived": rec.archived_at.is_some(),
    });
    if let Some(at) = rec.archived_at {
        o["archivedAt"] = json!(iso(at));
    }
    o
}

fn list(s: &mut State, object: &str, r: &Recorded) -> Reply {
    if object != "contacts" && object != "deals" {
        return s.invalid(&format!("unknown object type {object}"));
    }
    for (k, _) in &r.query {
        if ![
            "limit",
            "after",
            "properties",
            "archived",
            "associations",
            "propertiesWithHistory",
        ]
        .contains(&k.as_str())
        {
            return s.invalid(&format!("unknown query parameter {k}"));
        }
    }
    let limit: usize = match r.query("limit").map(str::parse) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => return s.invalid("limit must be between 1 and 100"),
    };
    let archived = match r.query("archived") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return s.invalid("archived must be true or false"),
    };
    let after: u64 = match r.query("after").map(decode_after) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return s.invalid("after is not a paging token this API gave"),
    };
    let wanted: Vec<String> = r
        .query("properties")
        .map(|p| p.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let kind = s.kind(object);
    let mut results = Vec::new();
    let mut next = None;
    for (id, rec) in kind.records.range(after..) {
        if rec.archived_at.is_some() != archived {
            continue;
        }
        if results.len() == limit {
            next = Some(*id);
            break;
        }
        results.push(render(*id, &rec.props, rec, &wanted));
    }
    let mut body = json!({"results": results});
    if let Some(n) = next {
        body["paging"] = json!({"next": {"after": encode_after(n), "link": format!("?after={}", encode_after(n))}});
    }
    Reply::json(&body)
}

/// HubSpot's list `after` is opaque: here the next id, reversed and prefixed.
fn encode_after(id: u64) -> String {
    format!("NTI{}", id.to_string().chars().rev().collect::<String>())
}

fn decode_after(text: &str) -> Option<u64> {
    text.strip_prefix("NTI")?
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .ok()
}

/// A value to compare: instants and ids as numbers, the rest as text.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Cmp {
    Num(f64),
    Text(String),
}

fn value_of(name: &str, text: &str) -> Option<Cmp> {
    if DATES.contains(&name) {
        let ms = if text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse::<i64>().ok()?
        } else {
            chrono::DateTime::parse_from_rfc3339(text)
                .ok()?
                .timestamp_millis()
        };
        #[allow(clippy::cast_precision_loss)]
        return Some(Cmp::Num(ms as f64));
    }
    if name == "hs_object_id" || name == "amount" {
        return text.parse().ok().map(Cmp::Num);
    }
    Some(Cmp::Text(text.to_owned()))
}

fn matches(props: &BTreeMap<String, String>, filter: &Value) -> Result<bool, String> {
    let name = filter["propertyName"]
        .as_str()
        .ok_or("a filter without propertyName")?;
    let op = filter["operator"]
        .as_str()
        .ok_or("a filter without operator")?;
    let have = props.get(name).filter(|v| !v.is_empty());
    if op == "HAS_PROPERTY" {
        return Ok(have.is_some());
    }
    if op == "NOT_HAS_PROPERTY" {
        return Ok(have.is_none());
    }
    let want = match &filter["value"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(format!("filter on {name}: {op} needs a value")),
    };
    let want = value_of(name, &want).ok_or(format!("filter on {name}: bad value {want}"))?;
    let Some(have) = have.and_then(|h| value_of(name, h)) else {
        return Ok(op == "NEQ");
    };
    Ok(match op {
        "EQ" => have == want,
        "NEQ" => have != want,
        "LT" => have < want,
        "LTE" => have <= want,
        "GT" => have > want,
        "GTE" => have >= want,
        other => return Err(format!("operator {other} is not supported here")),
    })
}

/// HubSpot's own order for records sharing a sort value: not the id.
fn shuffle_key(id: u64) -> u64 {
    id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

fn search_answer(s: &mut State, object: &str, r: &Recorded) -> Reply {
    if object != "contacts" && object != "deals" {
        return s.invalid(&format!("unknown object type {object}"));
    }
    let body = r.json();
    let Some(o) = body.as_object() else {
        return s.invalid("the body is not a JSON object");
    };
    for k in o.keys() {
        if ![
            "filterGroups",
            "sorts",
            "properties",
            "limit",
            "after",
            "query",
        ]
        .contains(&k.as_str())
        {
            return s.invalid(&format!("unknown field {k}"));
        }
    }
    let groups = body["filterGroups"].as_array().cloned().unwrap_or_default();
    let total_filters: usize = groups
        .iter()
        .map(|g| g["filters"].as_array().map_or(0, Vec::len))
        .sum();
    if groups.len() > 5
        || total_filters > 18
        || groups
            .iter()
            .any(|g| g["filters"].as_array().is_none_or(|f| f.len() > 6))
    {
        return s.invalid("too many filter groups or filters");
    }
    let sorts = body["sorts"].as_array().cloned().unwrap_or_default();
    if sorts.len() > 1 {
        return s.invalid("only one sort is allowed");
    }
    let limit = match body.get("limit") {
        None => 10,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=200).contains(&n) => usize::try_from(n).unwrap(),
            _ => return s.invalid("limit must be between 1 and 200"),
        },
    };
    let after: usize = match body.get("after") {
        None => 0,
        Some(Value::String(a)) => match a.parse() {
            Ok(n) => n,
            Err(_) => return s.invalid("after must be a number"),
        },
        Some(Value::Number(n)) => {
            usize::try_from(n.as_u64().unwrap_or(u64::MAX)).unwrap_or(usize::MAX)
        }
        Some(_) => return s.invalid("after must be a number"),
    };
    if after >= 10_000 {
        s.stats.past_cap += 1;
        return s.error(
            400,
            "VALIDATION_ERROR",
            "The search API is limited to 10,000 results per query; page no further.",
            json!({}),
        );
    }
    let wanted: Vec<String> = body["properties"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let now = s.now();
    // The index catches up with writes older than the lag.
    for rec in s.kind(object).records.values_mut() {
        if rec.shows_at <= now {
            rec.indexed = Some((rec.props.clone(), rec.modified));
        }
    }
    let kind = s.kind(object);
    let mut hits: Vec<(u64, &BTreeMap<String, String>, &Rec)> = Vec::new();
    for (id, rec) in &kind.records {
        if rec.archived_at.is_some() {
            continue;
        }
        let Some((props, _)) = &rec.indexed else {
            continue;
        };
        let mut any = groups.is_empty();
        for g in &groups {
            let mut all = true;
            for f in g["filters"].as_array().unwrap() {
                match matches(props, f) {
                    Ok(true) => {}
                    Ok(false) => {
                        all = false;
                        break;
                    }
                    Err(e) => return s.invalid(&e),
                }
            }
            if all {
                any = true;
                break;
            }
        }
        if any {
            hits.push((*id, props, rec));
        }
    }
    if let Some(sort) = sorts.first() {
        let (name, descending) = match sort {
            Value::String(n) => (n.trim_start_matches('-').to_owned(), n.starts_with('-')),
            other => (
                other["propertyName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                other["direction"].as_str() == Some("DESCENDING"),
            ),
        };
        hits.sort_by(|a, b| {
            let va = a.1.get(&name).and_then(|v| value_of(&name, v));
            let vb = b.1.get(&name).and_then(|v| value_of(&name, v));
            let ord = va.partial_cmp(&vb).unwrap_or(std::cmp::Ordering::Equal);
            let ord = if descending { ord.reverse() } else { ord };
            ord.then_with(|| shuffle_key(a.0).cmp(&shuffle_key(b.0)))
        });
    } else {
        hits.sort_by_key(|h| h.0);
    }
    let total = hits.len();
    let page: Vec<Value> = hits
        .iter()
        .skip(after)
        .take(limit)
        .map(|(id, props, rec)| render(*id, props, rec, &wanted))
        .collect();
    let mut out = json!({"total": total, "results": page});
    if after + limit < total {
        out["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    Reply::json(&out)
}

fn associations(s: &mut State, r: &Recorded) -> Reply {
    let body = r.json();
    let Some(inputs) = body["inputs"].as_array() else {
        return s.invalid("inputs is required");
    };
    if inputs.len() > 1000 {
        return s.invalid("at most 1000 inputs");
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let Some(id) = input["id"].as_str().and_then(|i| i.parse::<u64>().ok()) else {
            return s.invalid("each input needs an id");
        };
        match s.assoc.get(&id).filter(|c| !c.is_empty()) {
            Some(contacts) => results.push(json!({
                "from": {"id": id.to_string()},
                "to": contacts.iter().map(|c| json!({"toObjectId": c, "associationTypes":
                    [{"category": "HUBSPOT_DEFINED", "typeId": 3, "label": null}]})).collect::<Vec<_>>(),
            })),
            None => errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                "message": format!("No contacts are associated with deal {id}."), "context": {"fromObjectId": [id.to_string()]}})),
        }
    }
    let status = if errors.is_empty() { 200 } else { 207 };
    Reply::status(status).with_json(
        &json!({"status": "COMPLETE", "results": results, "errors": errors,
        "startedAt": iso(s.now()), "completedAt": iso(s.now())}),
    )
}
