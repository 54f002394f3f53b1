//! A fake Mailchimp Marketing API 3.0, in process, on the test kit's `FakeServer`, that holds
//! state (members, their status, merge fields and tags; batch jobs) so a test can check what
//! the list holds after a run.
//!
//! Every request is first checked against the vendor's OpenAPI file in ../shared/specs
//! (`mailchimp/marketing-lists-members.openapi.json`): path, method, parameters, body schema,
//! HTTP Basic auth. One that breaks it is answered 400 and counted in `Stats::invalid`, which
//! tests expect to stay 0. The spec's known defect (`merge_fields` values typed as objects,
//! SOURCES.md) is relaxed to any type, as its note says.
//!
//! What Mailchimp does, as its docs describe it:
//! - HTTP Basic with any user and the API key as password; a wrong key is a 401 problem
//!   document (`API Key Invalid`).
//! - `PUT /lists/{list}/members/{hash}`: the hash must be the MD5 of the lower-cased address;
//!   a new member gets `status_if_new`, an existing one keeps its status; merge fields must be
//!   defined on the list; an address on a domain that cannot receive mail is
//!   `400 Invalid Resource` ("… looks fake or invalid").
//! - `POST …/members/{hash}/tags`: 204; a member not on the list is a 404.
//! - `POST /batches` then `GET /batches/{id}`: the job runs its operations when first polled
//!   after `batch_polls_before_done` polls.
//! - Errors are `application/problem+json` with `type`, `title`, `status`, `detail`,
//!   `instance`; 429 is `Too Many Requests` with `Retry-After`.
//! - `GET /lists/{list}/members?status=…&since_last_changed=…&count=…&offset=…`: the members
//!   of that status whose `last_changed` is after the time given, a page at a time, with
//!   `total_items`.
//! - At most 10 simultaneous connections per account: a request that arrives while 10 are
//!   being answered is a 429 (`You have exceeded the limit of 10 simultaneous connections.`).
//!   With [`Fake::set_latency`] every answer takes that long, as across the internet, so the
//!   connections a client keeps busy can be counted ([`Stats::busy`], [`Stats::peak`]).
//! - Faults on demand: a 429, a 500, a 401 (a key revoked mid-run), or an answer slower than
//!   the client waits.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cohort_plugin_mailchimp::mapping::subscriber_hash;
use cohort_plugin_testkit::{FakeServer, OpenApi, Recorded, Reply};
use serde_json::{Value, json};

/// The key the fake accepts.
pub const API_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-us6";
/// The list it holds.
pub const LIST: &str = "a1b2c3d4e5";

/// A fault to answer instead of the real thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: 1`.
    TooMany,
    /// 500 with a problem document.
    Internal,
    /// The real answer, after this long.
    Slow(Duration),
    /// 401 `API Key Invalid`, as for a key revoked mid-run.
    Revoked,
}

/// A member of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// As given.
    pub email: String,
    /// `subscribed`, `unsubscribed`, `pending`, …
    pub status: String,
    /// Tag → value.
    pub merge_fields: BTreeMap<String, String>,
    /// Active tags.
    pub tags: BTreeSet<String>,
}

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Requests of any kind.
    pub requests: u64,
    /// Member `PUT`s (one by one).
    pub puts: u64,
    /// Tag `POST`s (one by one).
    pub tag_posts: u64,
    /// Batch jobs submitted.
    pub jobs: u64,
    /// The most batch jobs submitted and not yet finished at once.
    pub open_jobs_peak: usize,
    /// Operations run inside jobs.
    pub job_operations: u64,
    /// Faults answered.
    pub injected: u64,
    /// 429s given because more than 10 requests were in flight.
    pub throttled: u64,
    /// Time the requests were in, summed: from each one's head arriving to its answer going
    /// out (the server's [`FakeServer::busy`](cohort_plugin_testkit::FakeServer::busy)).
    /// Divided by the wall time, the average number of connections in use.
    pub busy: Duration,
    /// The same, from when each body had been read to when its answer was due: what `busy`
    /// counted until 2026-12-06, kept so that figures from before compare. It leaves out
    /// the upload, and an answer the fake sent late because its threads were busy.
    pub busy_after_body: Duration,
    /// The most requests in flight at once.
    pub peak: usize,
    /// Requests that broke the spec (answered 400).
    pub invalid: u64,
    /// What was wrong with them.
    pub invalid_reasons: Vec<String>,
}

#[derive(Debug)]
struct Job {
    operations: Vec<Value>,
    polls: u32,
    finished: bool,
    errored: u64,
    results: Vec<(String, u16)>,
}

#[derive(Debug)]
struct State {
    members: BTreeMap<String, Member>,
    merge_tags: BTreeSet<String>,
    jobs: BTreeMap<String, Job>,
    polls_before_done: u32,
    faults: VecDeque<(String, Fault)>,
    /// When each answer in flight is done.
    in_flight: Vec<Instant>,
    /// Requests let in whose answer is still being made: counted with `in_flight`, so that
    /// two requests arriving together cannot both take the last place.
    admitted: usize,
    /// Added to every answer.
    latency: Duration,
    stats: Stats,
    next: u64,
    /// Subscriber hash → when its status last changed at Mailchimp (ISO 8601).
    last_changed: BTreeMap<String, String>,
}

/// Mailchimp's limit of simultaneous connections per account.
pub const MAX_CONNECTIONS: usize = 10;

/// The fake Mailchimp.
pub struct Fake {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec() -> OpenApi {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/specs/mailchimp/marketing-lists-members.openapi.json"
    );
    // The vendor's defect (SOURCES.md): `merge_fields` values are typed as objects, so a real
    // `{"FNAME": "Jane"}` would fail. Relaxed to any type, as the note says.
    OpenApi::load(path).patch(|doc| {
        if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
            for schema in schemas.values_mut() {
                if let Some(mf) = schema.pointer_mut("/properties/merge_fields")
                    && mf.get("additionalProperties").is_some()
                {
                    mf["additionalProperties"] = json!({});
                }
            }
        }
    })
}

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply::status(status)
        .with_header("Content-Type", "application/problem+json")
        .with_body(
            json!({
                "type": "https://mailchimp.com/developer/marketing/docs/errors/",
                "title": title,
                "status": status,
                "detail": detail,
                "instance": format!("{:08x}-fake", status as u32 * 7919),
            })
            .to_string(),
        )
}

fn auth_ok(r: &Recorded) -> bool {
    let Some(v) = r.header("authorization") else {
        return false;
    };
    let Some(encoded) = v.strip_prefix("Basic ") else {
        return false;
    };
    decode_base64(encoded)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(_, p)| p == API_KEY))
        .unwrap_or(false)
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

impl Fake {
    /// A fake holding an empty list whose merge fields are `FNAME`, `LNAME`, `COUNTRY` and
    /// `TIER`.
    pub fn start() -> Fake {
        let state = Arc::new(Mutex::new(State {
            members: BTreeMap::new(),
            merge_tags: ["FNAME", "LNAME", "COUNTRY", "TIER", "PHONE"]
                .into_iter()
                .map(str::to_owned)
                .collect(),
            jobs: BTreeMap::new(),
            polls_before_done: 1,
            faults: VecDeque::new(),
            in_flight: Vec::new(),
            admitted: 0,
            latency: Duration::ZERO,
            stats: Stats::default(),
            next: 1,
            last_changed: BTreeMap::new(),
        }));
        let server = FakeServer::start();
        let spec = Arc::new(spec());
        for method in ["GET", "PUT", "POST", "PATCH", "DELETE"] {
            let state = state.clone();
            let spec = spec.clone();
            server.on(method, "/3.0/*", move |r| limited(&state, &spec, r));
        }
        Fake { server, state }
    }

    /// The base URL to configure (`…/3.0`).
    pub fn url(&self) -> String {
        self.server.url_of("/3.0")
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// What the fake saw.
    pub fn stats(&self) -> Stats {
        Stats {
            busy: self.server.busy(),
            ..lock(&self.state).stats.clone()
        }
    }

    /// The member with this address, if on the list.
    pub fn member(&self, email: &str) -> Option<Member> {
        lock(&self.state)
            .members
            .get(&subscriber_hash(email))
            .cloned()
    }

    /// Addresses of the members that carry `tag`, sorted.
    pub fn tagged(&self, tag: &str) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.state)
            .members
            .values()
            .filter(|m| m.tags.contains(tag))
            .map(|m| m.email.to_lowercase())
            .collect();
        v.sort();
        v
    }

    /// How many members the list holds.
    pub fn member_count(&self) -> usize {
        lock(&self.state).members.len()
    }

    /// Puts a member on the list as if they had signed up (or unsubscribed) at Mailchimp.
    pub fn add_member(&self, email: &str, status: &str) {
        lock(&self.state).members.insert(
            subscriber_hash(email),
            Member {
                email: email.to_owned(),
                status: status.to_owned(),
                merge_fields: BTreeMap::new(),
                tags: BTreeSet::new(),
            },
        );
    }

    /// The member with this address changes status at Mailchimp (`unsubscribed` through a
    /// link, `cleaned` after bounces) at `at` (ISO 8601).
    pub fn set_status(&self, email: &str, status: &str, at: &str) {
        let mut s = lock(&self.state);
        let hash = subscriber_hash(email);
        if let Some(m) = s.members.get_mut(&hash) {
            m.status = status.to_owned();
        }
        s.last_changed.insert(hash, at.to_owned());
    }

    /// The next `count` requests whose path contains `path` get `fault`.
    pub fn inject(&self, path: &str, fault: Fault, count: usize) {
        let mut s = lock(&self.state);
        for _ in 0..count {
            s.faults.push_back((path.to_owned(), fault));
        }
    }

    /// Every answer takes `latency` more, as it would across the internet.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.state).latency = latency;
    }

    /// Jobs finish on the poll after this many (default 1: the first poll finds them running).
    pub fn set_polls_before_done(&self, polls: u32) {
        lock(&self.state).polls_before_done = polls;
    }

    /// The per-operation results of every job: `(operation_id, status)`.
    pub fn job_results(&self) -> Vec<(String, u16)> {
        lock(&self.state)
            .jobs
            .values()
            .flat_map(|j| j.results.iter().cloned())
            .collect()
    }
}

/// Answers within the limit of simultaneous connections, and counts the time they are busy.
fn limited(state: &Mutex<State>, spec: &OpenApi, r: &Recorded) -> Reply {
    let arrived = Instant::now();
    {
        let mut s = lock(state);
        s.in_flight.retain(|done| *done > arrived);
        if s.in_flight.len() + s.admitted >= MAX_CONNECTIONS {
            s.stats.requests += 1;
            s.stats.throttled += 1;
            return problem(
                429,
                "Too Many Requests",
                "You have exceeded the limit of 10 simultaneous connections.",
            )
            .retry_after(1);
        }
        s.admitted += 1;
    }
    let mut reply = answer(state, spec, r);
    let mut s = lock(state);
    reply.delay += s.latency;
    let now = Instant::now();
    let done = now + reply.delay;
    s.admitted -= 1;
    s.in_flight.retain(|d| *d > now);
    s.in_flight.push(done);
    s.stats.busy_after_body += done - arrived;
    let open = s.in_flight.len() + s.admitted;
    s.stats.peak = s.stats.peak.max(open);
    reply
}

fn answer(state: &Mutex<State>, spec: &OpenApi, r: &Recorded) -> Reply {
    let path = r.path.strip_prefix("/3.0").unwrap_or(&r.path).to_owned();
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
            return problem(
                429,
                "Too Many Requests",
                "You have exceeded the limit of 10 simultaneous connections.",
            )
            .retry_after(1);
        }
        Some(Fault::Internal) => {
            lock(state).stats.injected += 1;
            return problem(
                500,
                "Internal Server Error",
                "An unexpected internal error has occurred. Please contact Support for more information.",
            );
        }
        Some(Fault::Revoked) => {
            lock(state).stats.injected += 1;
            return problem(401, "API Key Invalid", "Your API key may be invalid.");
        }
        Some(Fault::Slow(d)) => {
            lock(state).stats.injected += 1;
            delay = d;
        }
        None => {}
    }
    if !auth_ok(r) {
        return problem(
            401,
            "API Key Invalid",
            &format!(
                "Your API key may be invalid, or you've attempted to access the wrong datacenter. (got {})",
                r.header("authorization").unwrap_or("nothing")
            ),
        );
    }
    let body = (!r.body.trim().is_empty()).then(|| r.json());
    if let Err(why) = spec.check(&r.method, &path, &r.query, &r.headers, body.as_ref()) {
        let mut s = lock(state);
        s.stats.invalid += 1;
        s.stats.invalid_reasons.push(why.clone());
        return problem(400, "Invalid Resource", &why);
    }
    let mut s = lock(state);
    if r.method == "GET" && path == format!("/lists/{LIST}/members") {
        return Reply::json(&list_members(&s, r)).delay(delay);
    }
    let (status, value) = route(&mut s, &r.method, &path, body, true);
    drop(s);
    let reply = match status {
        204 => Reply::status(204),
        s if s >= 400 => Reply::status(s)
            .with_header("Content-Type", "application/problem+json")
            .with_body(value.to_string()),
        s => Reply::status(s).with_json(&value),
    };
    reply.delay(delay)
}

/// A page of the list's members, filtered by `status` and `since_last_changed`.
fn list_members(s: &State, r: &Recorded) -> Value {
    let since = r.query("since_last_changed");
    let matching: Vec<Value> = s
        .members
        .iter()
        .filter(|(_, m)| r.query("status").is_none_or(|st| m.status == st))
        .filter_map(|(hash, m)| {
            let changed = s.last_changed.get(hash).map_or("", String::as_str);
            since.is_none_or(|t| changed > t).then(|| {
                json!({"email_address": m.email, "status": m.status,
                                "last_changed": changed})
            })
        })
        .collect();
    let number = |name: &str, default: usize| {
        r.query(name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(default)
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(number("offset", 0))
        .take(number("count", 10))
        .cloned()
        .collect();
    json!({"members": page, "list_id": LIST, "total_items": matching.len()})
}

fn problem_value(status: u16, title: &str, detail: &str) -> Value {
    json!({
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": title, "status": status, "detail": detail, "instance": "fake-instance",
    })
}

/// Runs one operation on the state (a request, or an operation inside a job).
fn route(
    s: &mut State,
    method: &str,
    path: &str,
    body: Option<Value>,
    direct: bool,
) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", ["ping"]) => (200, json!({"health_status": "Everything's Chimpy!"})),
        ("PUT", ["lists", list, "members", hash]) if *list == LIST => {
            if direct {
                s.stats.puts += 1;
            }
            put_member(s, hash, &body.unwrap_or_default())
        }
        ("POST", ["lists", list, "members", hash, "tags"]) if *list == LIST => {
            if direct {
                s.stats.tag_posts += 1;
            }
            let Some(member) = s.members.get_mut(*hash) else {
                return (
                    404,
                    problem_value(
                        404,
                        "Resource Not Found",
                        "The requested resource could not be found.",
                    ),
                );
            };
            for t in body
                .as_ref()
                .and_then(|b| b["tags"].as_array())
                .into_iter()
                .flatten()
            {
                let name = t["name"].as_str().unwrap_or_default().to_owned();
                if t["status"] == "active" {
                    member.tags.insert(name);
                } else {
                    member.tags.remove(&name);
                }
            }
            (204, Value::Null)
        }
        ("POST", ["batches"]) => {
            let id = format!("fake{:06}", s.next);
            s.next += 1;
            s.stats.jobs += 1;
            let operations = match body.and_then(|mut b| b.get_mut("operations").map(Value::take)) {
                Some(Value::Array(ops)) => ops,
                _ => Vec::new(),
            };
            let total = operations.len();
            s.jobs.insert(
                id.clone(),
                Job {
                    operations,
                    polls: 0,
                    finished: false,
                    errored: 0,
                    results: Vec::new(),
                },
            );
            let open = s.jobs.values().filter(|j| !j.finished).count();
            s.stats.open_jobs_peak = s.stats.open_jobs_peak.max(open);
            (
                200,
                json!({"id": id, "status": "pending", "total_operations": total,
                         "finished_operations": 0, "errored_operations": 0,
                         "submitted_at": "2026-01-01T00:00:00+00:00", "response_body_url": ""}),
            )
        }
        ("GET", ["batches", id]) => {
            let before = s.polls_before_done;
            let Some(job) = s.jobs.get_mut(*id) else {
                return (
                    404,
                    problem_value(
                        404,
                        "Resource Not Found",
                        "The requested resource could not be found.",
                    ),
                );
            };
            job.polls += 1;
            if job.polls > before && !job.finished {
                let ops = std::mem::take(&mut job.operations);
                let mut results = Vec::new();
                let mut errored = 0;
                for op in &ops {
                    let body: Option<Value> = op["body"]
                        .as_str()
                        .and_then(|b| serde_json::from_str(b).ok());
                    let (status, _) = route(
                        s,
                        op["method"].as_str().unwrap_or_default(),
                        op["path"].as_str().unwrap_or_default(),
                        body,
                        false,
                    );
                    s.stats.job_operations += 1;
                    if status >= 400 {
                        errored += 1;
                    }
                    results.push((
                        op["operation_id"].as_str().unwrap_or_default().to_owned(),
                        status,
                    ));
                }
                let job = s.jobs.get_mut(*id).unwrap();
                job.operations = ops;
                job.results = results;
                job.errored = errored;
                job.finished = true;
            }
            let job = &s.jobs[*id];
            let total = job.operations.len();
            let (status, finished) = match (job.finished, job.polls) {
                (true, _) => ("finished", total),
                (false, 1) => ("pending", 0),
                _ => ("started", 0),
            };
            (
                200,
                json!({"id": id, "status": status, "total_operations": total,
                         "finished_operations": finished, "errored_operations": job.errored,
                         "response_body_url": if job.finished { format!("https://mailchimp-api-batch.s3.amazonaws.com/{id}-response.tar.gz") } else { String::new() }}),
            )
        }
        _ => (
            404,
            problem_value(
                404,
                "Resource Not Found",
                "The requested resource could not be found.",
            ),
        ),
    }
}

fn put_member(s: &mut State, hash: &str, body: &Value) -> (u16, Value) {
    let email = body["email_address"].as_str().unwrap_or_default();
    if subscriber_hash(email) != hash {
        return (
            400,
            problem_value(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
            ),
        );
    }
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if domain.ends_with(".invalid") || domain.is_empty() {
        return (
            400,
            problem_value(
                400,
                "Invalid Resource",
                &format!("{email} looks fake or invalid, please enter a real email address."),
            ),
        );
    }
    let mut unknown = Vec::new();
    let mut fields = BTreeMap::new();
    for (k, v) in body["merge_fields"].as_object().into_iter().flatten() {
        if !s.merge_tags.contains(k) {
            unknown.push(json!({"field": k, "message": "This merge field does not exist"}));
        }
        fields.insert(
            k.clone(),
            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
        );
    }
    if !unknown.is_empty() {
        let mut p = problem_value(400, "Invalid Resource", "Your merge fields were invalid.");
        p["errors"] = Value::Array(unknown);
        return (400, p);
    }
    let member = s.members.entry(hash.to_owned()).or_insert_with(|| Member {
        email: email.to_owned(),
        status: body["status_if_new"]
            .as_str()
            .unwrap_or("subscribed")
            .to_owned(),
        merge_fields: BTreeMap::new(),
        tags: BTreeSet::new(),
    });
    if let Some(status) = body["status"].as_str() {
        member.status = status.to_owned();
    }
    member.email = email.to_owned();
    member.merge_fields.extend(fields);
    (
        200,
        json!({"id": hash, "email_address": email, "status": member.status, "list_id": LIST}),
    )
}
