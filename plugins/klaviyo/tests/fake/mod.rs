//! A fake Klaviyo API (revision 2026-07-15), in process, on the test kit's `FakeServer`, that
//! holds state (profiles, the list's members, bulk import jobs) so a test can check what the
//! list holds after a run.
//!
//! Every request is first checked against the vendor's OpenAPI files in ../shared/specs
//! (`klaviyo/profiles.json`, `klaviyo/lists.json`): path, method, parameters (the `revision`
//! header among them), body schema, the `Klaviyo-API-Key` auth. One that breaks them is
//! answered 400 and counted in `Stats::invalid`, which tests expect to stay 0.
//!
//! What Klaviyo does, as its docs describe it:
//! - `Authorization: Klaviyo-API-Key <private key>`; a wrong key is a 401 JSON:API error; a
//!   `revision` other than the spec's is a 400.
//! - Limits per endpoint family and account: a burst per second and a steady rate per
//!   minute (profile-import 75/s, 750/m; lists and bulk jobs 10/s, 150/m), both sliding
//!   windows; on every answer `RateLimit-Limit` (the steady limit), `RateLimit-Remaining`
//!   (what is left of it) and `RateLimit-Reset` (seconds until the oldest request of the
//!   minute leaves it, rounded up), and beyond either limit a 429 whose `Retry-After` is the
//!   seconds until the window that refused it has room.
//! - `POST /api/profile-import`: an upsert by address (201 created, 200 updated); an address
//!   on a domain that cannot receive mail is `400 Invalid input.`.
//! - `POST`/`DELETE /api/lists/{id}/relationships/profiles`: at most 1000 profiles; unknown
//!   ids are a 404.
//! - `GET /api/profiles?filter=any(email,[…])`: pages of at most `page[size]`.
//! - `GET /api/profiles?filter=greater-or-equal(subscriptions.email.marketing.suppression.timestamp,…)`
//!   with `additional-fields[profile]=subscriptions`: the profiles suppressed since then, each
//!   with its `subscriptions.email.marketing.suppression` (reason, timestamp).
//! - `POST /api/profile-bulk-import-jobs`: a job, run when polled after `polls_before_done`
//!   polls; invalid profiles become import errors (`GET …/import-errors`).
//! - Faults on demand: a 429, a 500, or an answer slower than the client waits.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cohort_plugin_testkit::{FakeServer, OpenApi, Recorded, Reply};
use serde_json::{Value, json};

/// The key the fake accepts.
pub const API_KEY: &str = "pk_0123456789abcdef0123456789abcdef01";
/// The list it holds.
pub const LIST: &str = "VRgFBd";
/// The revision of the spec.
pub const REVISION: &str = "2026-07-15";

/// A fault to answer instead of the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: 1`.
    TooMany,
    /// 500 with a JSON:API error.
    Internal,
    /// The real answer, after this long.
    Slow(Duration),
}

/// A profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Klaviyo's id.
    pub id: String,
    /// Attributes as last written (`properties` merged).
    pub attributes: serde_json::Map<String, Value>,
}

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Requests of any kind.
    pub requests: u64,
    /// Profile upserts one by one.
    pub imports: u64,
    /// Bulk jobs submitted.
    pub jobs: u64,
    /// Faults answered.
    pub injected: u64,
    /// 429s given because the client went too fast.
    pub throttled: u64,
    /// The same, by family.
    pub throttled_by_family: BTreeMap<&'static str, u64>,
    /// By family: answers after which its burst or steady window was full, so that the next
    /// request had to wait (a run where this stays 0 was not bound by the limits).
    pub limit_reached: BTreeMap<&'static str, u64>,
    /// Requests that broke the spec.
    pub invalid: u64,
    /// What was wrong with them.
    pub invalid_reasons: Vec<String>,
}

#[derive(Debug)]
struct Job {
    profiles: Vec<Value>,
    polls: u32,
    done: bool,
    failed: Vec<Value>,
}

#[derive(Debug)]
struct State {
    profiles: BTreeMap<String, Profile>,
    /// Lower-cased address → profile id: an upsert finds its profile without a scan (the
    /// benchmark holds 100,000).
    by_email: BTreeMap<String, String>,
    list: BTreeSet<String>,
    jobs: BTreeMap<String, Job>,
    polls_before_done: u32,
    faults: VecDeque<(String, Fault)>,
    /// Family → arrival times, for the burst and steady windows.
    windows: BTreeMap<&'static str, VecDeque<Instant>>,
    /// Family → (per second, per minute).
    limits: BTreeMap<&'static str, (usize, usize)>,
    /// The steady window: a minute, as at Klaviyo (shorter only to keep a test short).
    steady_window: Duration,
    stats: Stats,
    next: u64,
    /// Address → Klaviyo's suppression of its email marketing (reason, ISO 8601 timestamp).
    suppressed: BTreeMap<String, (String, String)>,
}

/// The fake Klaviyo.
pub struct Fake {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec(name: &str) -> OpenApi {
    OpenApi::load(format!(
        "{}/../../../shared/specs/klaviyo/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn error(status: u16, code: &str, title: &str, detail: &str, pointer: Option<&str>) -> Value {
    let mut e = json!({"id": format!("fake-{status}-{code}"), "status": status, "code": code,
                       "title": title, "detail": detail});
    if let Some(p) = pointer {
        e["source"] = json!({"pointer": p});
    }
    json!({"errors": [e]})
}

fn family(path: &str) -> &'static str {
    if path.starts_with("/api/profile-import") {
        "profile-import"
    } else if path.starts_with("/api/lists") {
        "lists"
    } else if path.starts_with("/api/profile-bulk-import-jobs") {
        "bulk-jobs"
    } else {
        "profiles"
    }
}

impl Fake {
    /// An empty account with one list, at Klaviyo's published limits.
    pub fn start() -> Fake {
        let limits = [
            ("profile-import", (75, 750)),
            ("profiles", (75, 750)),
            ("lists", (10, 150)),
            ("bulk-jobs", (10, 150)),
        ]
        .into_iter()
        .collect();
        let state = Arc::new(Mutex::new(State {
            profiles: BTreeMap::new(),
            by_email: BTreeMap::new(),
            list: BTreeSet::new(),
            jobs: BTreeMap::new(),
            polls_before_done: 1,
            faults: VecDeque::new(),
            windows: BTreeMap::new(),
            limits,
            steady_window: Duration::from_secs(60),
            stats: Stats::default(),
            next: 1,
            suppressed: BTreeMap::new(),
        }));
        let server = FakeServer::start();
        let specs = Arc::new((spec("profiles.json"), spec("lists.json")));
        for method in ["GET", "POST", "PATCH", "DELETE"] {
            let state = state.clone();
            let specs = specs.clone();
            server.on(method, "/api/*", move |r| answer(&state, &specs, r));
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

    /// What the fake saw.
    pub fn stats(&self) -> Stats {
        lock(&self.state).stats.clone()
    }

    /// The profile with this address.
    pub fn profile(&self, email: &str) -> Option<Profile> {
        lock(&self.state)
            .profiles
            .values()
            .find(|p| p.attributes["email"] == email.to_lowercase())
            .cloned()
    }

    /// Klaviyo suppresses the email marketing of `email` (`UNSUBSCRIBE`, `HARD_BOUNCE`, …) at
    /// `at` (ISO 8601), as when the person clicks an unsubscribe link.
    pub fn suppress(&self, email: &str, reason: &str, at: &str) {
        lock(&self.state)
            .suppressed
            .insert(email.to_lowercase(), (reason.to_owned(), at.to_owned()));
    }

    /// Addresses of the list's members, sorted.
    pub fn members(&self) -> Vec<String> {
        let s = lock(&self.state);
        let mut v: Vec<String> = s
            .list
            .iter()
            .filter_map(|id| s.profiles.get(id))
            .map(|p| {
                p.attributes["email"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        v.sort();
        v
    }

    /// How many profiles the account holds.
    pub fn profile_count(&self) -> usize {
        lock(&self.state).profiles.len()
    }

    /// The next `count` requests whose path contains `path` get `fault`.
    pub fn inject(&self, path: &str, fault: Fault, count: usize) {
        let mut s = lock(&self.state);
        for _ in 0..count {
            s.faults.push_back((path.to_owned(), fault));
        }
    }

    /// Jobs finish on the poll after this many.
    pub fn set_polls_before_done(&self, polls: u32) {
        lock(&self.state).polls_before_done = polls;
    }

    /// Requests made, throttled ones included, by endpoint family (`profile-import`,
    /// `profiles`, `lists`, `bulk-jobs`).
    pub fn requests_by_family(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for r in self.server.requests() {
            *counts.entry(family(&r.path)).or_default() += 1;
        }
        counts
    }

    /// A family's limits: (per second, per minute).
    pub fn limits(&self, family: &str) -> (usize, usize) {
        lock(&self.state).limits[family]
    }

    /// Makes the steady limits count over `window` instead of a minute, so a test can reach
    /// them and see them reset in seconds.
    pub fn set_steady_window(&self, window: Duration) {
        lock(&self.state).steady_window = window;
    }

    /// Changes a family's limits (per second, per minute).
    pub fn set_limits(&self, family: &'static str, per_second: usize, per_minute: usize) {
        lock(&self.state)
            .limits
            .insert(family, (per_second, per_minute));
    }
}

fn reply(status: u16, body: &Value, limits: Option<(usize, usize, u64)>) -> Reply {
    let mut r = if status == 204 {
        Reply::status(204)
    } else {
        Reply::status(status)
            .with_header("Content-Type", "application/vnd.api+json")
            .with_body(body.to_string())
    };
    if let Some((limit, remaining, reset)) = limits {
        r = r
            .with_header("RateLimit-Limit", &limit.to_string())
            .with_header("RateLimit-Remaining", &remaining.to_string())
            .with_header("RateLimit-Reset", &reset.to_string());
    }
    r
}

fn answer(state: &Mutex<State>, specs: &(OpenApi, OpenApi), r: &Recorded) -> Reply {
    let fault = {
        let mut s = lock(state);
        s.stats.requests += 1;
        let hit = s
            .faults
            .iter()
            .position(|(p, _)| r.path.contains(p.as_str()));
        hit.and_then(|i| s.faults.remove(i)).map(|(_, f)| f)
    };
    let mut delay = Duration::ZERO;
    match fault {
        Some(Fault::TooMany) => {
            lock(state).stats.injected += 1;
            return reply(
                429,
                &error(
                    429,
                    "throttled",
                    "Request was throttled.",
                    "Request was throttled. Expected available in 1 second.",
                    None,
                ),
                None,
            )
            .retry_after(1);
        }
        Some(Fault::Internal) => {
            lock(state).stats.injected += 1;
            return reply(
                500,
                &error(
                    500,
                    "error",
                    "A server error occurred.",
                    "A server error occurred.",
                    None,
                ),
                None,
            );
        }
        Some(Fault::Slow(d)) => {
            lock(state).stats.injected += 1;
            delay = d;
        }
        None => {}
    }
    let key_ok = r.header("authorization") == Some(&format!("Klaviyo-API-Key {API_KEY}"));
    if !key_ok {
        return reply(
            401,
            &error(
                401,
                "not_authenticated",
                "Authentication credentials were not provided.",
                &format!(
                    "Missing or invalid private key: {}",
                    r.header("authorization").unwrap_or("")
                ),
                None,
            ),
            None,
        );
    }
    if r.header("revision") != Some(REVISION) {
        return reply(
            400,
            &error(
                400,
                "invalid",
                "Invalid input.",
                "Invalid revision header",
                None,
            ),
            None,
        );
    }
    let body = (!r.body.trim().is_empty()).then(|| r.json());
    let spec = if r.path.starts_with("/api/lists") {
        &specs.1
    } else {
        &specs.0
    };
    if let Err(why) = spec.check(&r.method, &r.path, &r.query, &r.headers, body.as_ref()) {
        let mut s = lock(state);
        s.stats.invalid += 1;
        s.stats.invalid_reasons.push(why.clone());
        return reply(
            400,
            &error(400, "invalid", "Invalid input.", &why, None),
            None,
        );
    }
    let fam = family(&r.path);
    let limits = {
        let mut s = lock(state);
        match admit(&mut s, fam, Instant::now()) {
            Ok(window) => window,
            Err((window, wait)) => {
                s.stats.throttled += 1;
                return reply(
                    429,
                    &error(
                        429,
                        "throttled",
                        "Request was throttled.",
                        &format!("Request was throttled. Expected available in {wait} second."),
                        None,
                    ),
                    Some(window),
                )
                .retry_after(wait);
            }
        }
    };
    let mut s = lock(state);
    let (status, value) = route(&mut s, r, body.as_ref());
    drop(s);
    reply(status, &value, Some(limits)).delay(delay)
}

/// Whole seconds, rounded up: how Klaviyo states a wait.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// `(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset)`.
type Headers = (usize, usize, u64);

/// Counts a request of family `fam` arriving at `now` against its two sliding windows, the
/// burst (a second) and the steady limit (a minute), and answers the headers:
/// `(RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset)`, the steady window's limit, what
/// is left of it, and the seconds until its oldest request leaves it. A request beyond either
/// limit is not counted: `Err` with the headers and the `Retry-After`, the seconds until the
/// window that refused it has room.
fn admit(s: &mut State, fam: &'static str, now: Instant) -> Result<Headers, (Headers, u64)> {
    const SECOND: Duration = Duration::from_secs(1);
    let (per_second, per_minute) = s.limits[fam];
    let minute = s.steady_window;
    let window = s.windows.entry(fam).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) > minute)
    {
        window.pop_front();
    }
    let until_leaves =
        |t: &Instant, span: Duration| ceil_secs((*t + span).saturating_duration_since(now));
    let reset = |w: &VecDeque<Instant>| w.front().map_or(0, |t| until_leaves(t, minute));
    let in_second: Vec<Instant> = window
        .iter()
        .copied()
        .filter(|t| now.duration_since(*t) < SECOND)
        .collect();
    let burst_wait = (in_second.len() >= per_second)
        .then(|| until_leaves(&in_second[in_second.len() - per_second], SECOND));
    let steady_wait = (window.len() >= per_minute)
        .then(|| until_leaves(&window[window.len() - per_minute], minute));
    let headers = (
        per_minute,
        per_minute.saturating_sub(window.len()),
        reset(window),
    );
    if let Some(wait) = burst_wait.into_iter().chain(steady_wait).max() {
        *s.stats.throttled_by_family.entry(fam).or_default() += 1;
        return Err((headers, wait));
    }
    window.push_back(now);
    let full = window.len() >= per_minute || in_second.len() + 1 >= per_second;
    let headers = (per_minute, per_minute - window.len(), reset(window));
    if full {
        *s.stats.limit_reached.entry(fam).or_default() += 1;
    }
    Ok(headers)
}

fn invalid_email(email: &str) -> bool {
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    domain.is_empty() || domain.ends_with(".invalid")
}

/// Creates or updates a profile by address; `(created, id)` or the error.
fn upsert(s: &mut State, attributes: &Value) -> Result<(bool, String), Value> {
    let email = attributes["email"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    if invalid_email(&email) {
        return Err(error(
            400,
            "invalid",
            "Invalid input.",
            "Invalid email address",
            Some("/data/attributes/email"),
        ));
    }
    let existing = s.by_email.get(&email).cloned();
    let (created, id) = match existing {
        Some(id) => (false, id),
        None => {
            let id = format!("01FAKE{:06}", s.next);
            s.next += 1;
            s.by_email.insert(email.clone(), id.clone());
            s.profiles.insert(
                id.clone(),
                Profile {
                    id: id.clone(),
                    attributes: serde_json::Map::new(),
                },
            );
            (true, id)
        }
    };
    let profile = s.profiles.get_mut(&id).unwrap();
    for (k, v) in attributes.as_object().into_iter().flatten() {
        if k == "properties" {
            let props = profile
                .attributes
                .entry("properties")
                .or_insert_with(|| json!({}));
            for (pk, pv) in v.as_object().into_iter().flatten() {
                props[pk] = pv.clone();
            }
        } else {
            profile.attributes.insert(k.clone(), v.clone());
        }
    }
    profile
        .attributes
        .insert("email".into(), Value::String(email));
    Ok((created, id))
}

fn route(s: &mut State, r: &Recorded, body: Option<&Value>) -> (u16, Value) {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let body = body.cloned().unwrap_or(Value::Null);
    match (r.method.as_str(), parts.as_slice()) {
        ("POST", ["api", "profile-import"]) => {
            s.stats.imports += 1;
            match upsert(s, &body["data"]["attributes"]) {
                Ok((created, id)) => {
                    let attributes = Value::Object(s.profiles[&id].attributes.clone());
                    (
                        if created { 201 } else { 200 },
                        json!({"data": {"type": "profile", "id": id, "attributes": attributes}}),
                    )
                }
                Err(e) => (400, e),
            }
        }
        (m @ ("POST" | "DELETE"), ["api", "lists", list, "relationships", "profiles"]) => {
            if *list != LIST {
                return (
                    404,
                    error(
                        404,
                        "not_found",
                        "Not found.",
                        "A list with id was not found.",
                        None,
                    ),
                );
            }
            let ids: Vec<String> = body["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d["id"].as_str().map(str::to_owned))
                .collect();
            if ids.len() > 1000 {
                return (
                    400,
                    error(
                        400,
                        "invalid",
                        "Invalid input.",
                        "At most 1000 profiles per call",
                        Some("/data"),
                    ),
                );
            }
            if let Some(unknown) = ids.iter().find(|id| !s.profiles.contains_key(*id)) {
                return (
                    404,
                    error(
                        404,
                        "not_found",
                        "Not found.",
                        &format!("A profile with id {unknown} was not found."),
                        None,
                    ),
                );
            }
            for id in ids {
                if m == "POST" {
                    s.list.insert(id);
                } else {
                    s.list.remove(&id);
                }
            }
            (204, Value::Null)
        }
        ("GET", ["api", "profiles"])
            if r.query("filter").is_some_and(|f| {
                f.starts_with("greater-or-equal(subscriptions.email.marketing.suppression.")
            }) =>
        {
            suppressed_page(s, r)
        }
        ("GET", ["api", "profiles"]) => {
            let filter = r.query("filter").unwrap_or_default();
            let wanted: Vec<String> = filter
                .strip_prefix("any(email,")
                .and_then(|f| f.strip_suffix(')'))
                .and_then(|list| serde_json::from_str::<Vec<String>>(list).ok())
                .unwrap_or_default();
            let size: usize = r
                .query("page[size]")
                .and_then(|v| v.parse().ok())
                .unwrap_or(20);
            let offset: usize = r
                .query("page[cursor]")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let all: Vec<Value> = s.profiles.values()
                .filter(|p| wanted.iter().any(|w| p.attributes["email"] == w.to_lowercase()))
                .map(|p| json!({"type": "profile", "id": p.id, "attributes": {"email": p.attributes["email"]}}))
                .collect();
            let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
            let next = (offset + size < all.len()).then(|| {
                format!("http://{}/api/profiles?filter={}&fields%5Bprofile%5D=email&page%5Bsize%5D={size}&page%5Bcursor%5D={}",
                        r.header("host").unwrap_or_default(), urlencode(filter), offset + size)
            });
            (
                200,
                json!({"data": page, "links": {"self": "x", "next": next}}),
            )
        }
        ("POST", ["api", "profile-bulk-import-jobs"]) => {
            let id = format!("fakejob{:04}", s.next);
            s.next += 1;
            s.stats.jobs += 1;
            let profiles = body["data"]["attributes"]["profiles"]["data"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let n = profiles.len();
            s.jobs.insert(
                id.clone(),
                Job {
                    profiles,
                    polls: 0,
                    done: false,
                    failed: Vec::new(),
                },
            );
            (
                202,
                json!({"data": {"type": "profile-bulk-import-job", "id": id,
                         "attributes": {"status": "queued", "total_count": n, "completed_count": 0, "failed_count": 0}}}),
            )
        }
        ("GET", ["api", "profile-bulk-import-jobs", id]) => {
            let before = s.polls_before_done;
            let Some(job) = s.jobs.get_mut(*id) else {
                return (
                    404,
                    error(404, "not_found", "Not found.", "No such job.", None),
                );
            };
            job.polls += 1;
            if job.polls > before && !job.done {
                let profiles = job.profiles.clone();
                let mut failed = Vec::new();
                for p in &profiles {
                    match upsert(s, &p["attributes"]) {
                        Ok((_, pid)) => {
                            s.list.insert(pid);
                        }
                        Err(e) => failed.push(json!({"type": "import-error", "id": format!("err{}", failed.len()),
                            "attributes": {"code": e["errors"][0]["code"], "title": e["errors"][0]["title"],
                                           "detail": e["errors"][0]["detail"], "source": e["errors"][0]["source"],
                                           "original_payload": p["attributes"]}})),
                    }
                }
                let job = s.jobs.get_mut(*id).unwrap();
                job.failed = failed;
                job.done = true;
            }
            let job = &s.jobs[*id];
            let n = job.profiles.len();
            let status = if job.done {
                "complete"
            } else if job.polls == 1 {
                "queued"
            } else {
                "processing"
            };
            (
                200,
                json!({"data": {"type": "profile-bulk-import-job", "id": id, "attributes": {
                "status": status, "total_count": n, "completed_count": if job.done { n } else { 0 },
                "failed_count": job.failed.len()}}}),
            )
        }
        ("GET", ["api", "profile-bulk-import-jobs", id, "import-errors"]) => {
            let Some(job) = s.jobs.get(*id) else {
                return (
                    404,
                    error(404, "not_found", "Not found.", "No such job.", None),
                );
            };
            (
                200,
                json!({"data": job.failed, "links": {"self": "x", "next": null}}),
            )
        }
        _ => (
            404,
            error(
                404,
                "not_found",
                "Not found.",
                "No such endpoint in the fake.",
                None,
            ),
        ),
    }
}

/// A page of the profiles suppressed at or after the filter's timestamp.
fn suppressed_page(s: &State, r: &Recorded) -> (u16, Value) {
    let filter = r.query("filter").unwrap_or_default();
    let since = filter
        .rsplit_once(',')
        .map_or("", |(_, t)| t.trim_end_matches(')'));
    let size: usize = r
        .query("page[size]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let offset: usize = r
        .query("page[cursor]")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let all: Vec<Value> = s
        .suppressed
        .iter()
        .filter(|(_, (_, at))| at.as_str() >= since)
        .map(|(email, (reason, at))| {
            let id = s
                .profiles
                .values()
                .find(|p| p.attributes["email"] == *email)
                .map_or_else(|| format!("suppressed-{email}"), |p| p.id.clone());
            json!({"type": "profile", "id": id, "attributes": {
                "email": email,
                "subscriptions": {"email": {"marketing": {
                    "suppression": [{"reason": reason, "timestamp": at}]}}}}})
        })
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(size).cloned().collect();
    let next = (offset + size < all.len()).then(|| {
        format!(
            "http://{}/api/profiles?filter={}&additional-fields%5Bprofile%5D=subscriptions&page%5Bsize%5D={size}&page%5Bcursor%5D={}",
            r.header("host").unwrap_or_default(),
            urlencode(filter),
            offset + size
        )
    });
    (
        200,
        json!({"data": page, "links": {"self": "x", "next": next}}),
    )
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
