//! The fake's Marketing Campaigns side: contacts, one list, custom fields, import jobs and the
//! account's global unsubscribes, kept in state so a test can check what the list holds.
//!
//! Every request under `/v3/marketing` is checked against SendGrid's OpenAPI files
//! (`tsg_mc_contacts_v3.json`, `tsg_mc_lists_v3.json`, `tsg_mc_custom_fields_v3.json`: path,
//! method, query, body schema, Bearer auth); a violation is answered 400 and recorded. What
//! SendGrid does, as its docs describe it:
//! - `PUT /v3/marketing/contacts` answers 202 with a `job_id`; the job runs when it is polled
//!   (`GET /v3/marketing/contacts/imports/{id}`, `pending` first), and a contact whose address
//!   is at `invalid.example` is an error of the job, listed in its `errors_url` (a CSV download
//!   on another path, which must not carry the API key).
//! - Custom fields are keyed by id; an id the account does not define is a 400 naming it.
//! - `POST /v3/marketing/contacts/search/emails` answers found contacts and a `contact not
//!   found` error for the others, or 404 when none is found.
//! - `DELETE /v3/marketing/lists/{id}/contacts?contact_ids=…` takes them off the list (they stay
//!   contacts); an unknown list or contact is a 404.
//! - `GET /v3/suppression/unsubscribes` (no spec file: SendGrid's documented shape): the global
//!   unsubscribes `[{"email", "created"}]`, filtered by `start_time`/`end_time` (Unix seconds),
//!   paged by `limit`/`offset`.
//! - Rate limits, as SendGrid's "Rate Limits" page describes them: each endpoint allows a fixed
//!   number of requests per refresh period, and every answer says where it stands in
//!   `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (the Unix time the
//!   period ends); past the limit, a 429 `{"errors":[{"field":null,"message":"too many
//!   requests"}]}` with the same headers and no `Retry-After`. SendGrid publishes no figure for
//!   the marketing endpoints; the fake takes its published default, 600 requests a minute per
//!   endpoint (changelog of 2019-10-10), with periods on whole minutes of the Unix clock
//!   ([`Marketing::set_rate_limit`] changes it). Endpoints are counted apart: the path with its
//!   ids replaced (`GET /v3/marketing/contacts/imports/{id}`).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cohort_plugin_testkit::{OpenApi, Recorded, Reply};
use serde_json::{Value, json};

use super::KEY;

/// The list the fake holds.
pub const LIST: &str = "ca7a3796-e8a8-4029-9ccb-df8937940562";

/// A contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub custom_fields: BTreeMap<String, Value>,
    pub list_ids: BTreeSet<String>,
}

#[derive(Debug)]
struct Job {
    contacts: Vec<Value>,
    list_ids: Vec<String>,
    polls: u32,
    errors: Vec<(String, String)>,
    done: bool,
}

#[derive(Debug)]
pub(super) struct State {
    contacts: BTreeMap<String, Contact>,
    fields: Vec<Value>,
    jobs: BTreeMap<String, Job>,
    /// Global unsubscribes: address and Unix time.
    unsubscribes: Vec<(String, i64)>,
    polls_before_done: u32,
    faults: VecDeque<(String, Reply)>,
    violations: Vec<String>,
    next: u64,
    /// Requests per period, and the period in seconds.
    rate_limit: (u64, u64),
    /// Endpoint → (period's start, Unix seconds) → requests admitted in it.
    periods: BTreeMap<String, BTreeMap<u64, u64>>,
    /// 429s given because an endpoint's period was used up.
    throttled: u64,
}

/// What the rate limiter saw, for a benchmark.
#[derive(Debug, Clone, Default)]
pub struct RateStats {
    /// Requests per period and the period in seconds.
    pub limit: (u64, u64),
    /// Endpoint → period start (Unix seconds) → requests admitted in it.
    pub periods: BTreeMap<String, BTreeMap<u64, u64>>,
    /// 429s given.
    pub throttled: u64,
}

pub(super) struct Marketing {
    pub(super) state: Arc<Mutex<State>>,
    specs: Arc<[OpenApi; 3]>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec(name: &str) -> OpenApi {
    OpenApi::load(format!(
        "{}/../../../shared/specs/sendgrid/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn errors(list: &[(&str, Option<&str>)]) -> Value {
    json!({"errors": list.iter().map(|(m, f)| json!({"message": m, "field": f})).collect::<Vec<_>>()})
}

impl Marketing {
    pub(super) fn new() -> Marketing {
        Marketing {
            state: Arc::new(Mutex::new(State {
                contacts: BTreeMap::new(),
                fields: vec![
                    json!({"id": "e1_T", "name": "tier", "field_type": "Text"}),
                    json!({"id": "e2_N", "name": "orders", "field_type": "Number"}),
                ],
                jobs: BTreeMap::new(),
                unsubscribes: Vec::new(),
                polls_before_done: 1,
                faults: VecDeque::new(),
                violations: Vec::new(),
                next: 1,
                rate_limit: (600, 60),
                periods: BTreeMap::new(),
                throttled: 0,
            })),
            specs: Arc::new([
                spec("tsg_mc_contacts_v3.json"),
                spec("tsg_mc_lists_v3.json"),
                spec("tsg_mc_custom_fields_v3.json"),
            ]),
        }
    }

    pub(super) fn handler(&self) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
        let state = self.state.clone();
        let specs = self.specs.clone();
        move |req| answer(&state, &specs, req)
    }

    pub(super) fn fault_on(&self, prefix: &str, reply: Reply) {
        lock(&self.state)
            .faults
            .push_back((prefix.to_owned(), reply));
    }

    /// Each endpoint allows `requests` per `seconds` (default 600 per 60).
    pub(super) fn set_rate_limit(&self, requests: u64, seconds: u64) {
        lock(&self.state).rate_limit = (requests, seconds.max(1));
    }

    /// Jobs finish at the poll after this many (default 1: the first poll finds them pending).
    pub(super) fn set_polls_before_done(&self, polls: u32) {
        lock(&self.state).polls_before_done = polls;
    }

    pub(super) fn rate_stats(&self) -> RateStats {
        let st = lock(&self.state);
        RateStats {
            limit: st.rate_limit,
            periods: st.periods.clone(),
            throttled: st.throttled,
        }
    }

    pub(super) fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    pub(super) fn members(&self) -> Vec<Contact> {
        lock(&self.state)
            .contacts
            .values()
            .filter(|c| c.list_ids.contains(LIST))
            .cloned()
            .collect()
    }

    pub(super) fn contacts(&self) -> Vec<Contact> {
        lock(&self.state).contacts.values().cloned().collect()
    }

    pub(super) fn unsubscribe(&self, email: &str, at: i64) {
        lock(&self.state).unsubscribes.push((email.to_owned(), at));
    }

    pub(super) fn add_member(&self, email: &str) {
        let mut st = lock(&self.state);
        let id = format!("contact-{}", st.next);
        st.next += 1;
        st.contacts.insert(
            email.to_owned(),
            Contact {
                id,
                email: email.to_owned(),
                first_name: None,
                last_name: None,
                custom_fields: BTreeMap::new(),
                list_ids: [LIST.to_owned()].into(),
            },
        );
    }
}

fn answer(state: &Mutex<State>, specs: &[OpenApi; 3], req: &Recorded) -> Reply {
    if req.path.starts_with("/downloads/") {
        if req.header("authorization").is_some() {
            let mut st = lock(state);
            st.violations
                .push(format!("the API key was sent to the download {}", req.path));
            return Reply::status(400).with_body("credentials sent to a download link");
        }
        return download(&lock(state), req);
    }
    if req.header("authorization") != Some(format!("Bearer {KEY}").as_str()) {
        return Reply::status(401).with_json(&errors(&[("authorization required", None)]));
    }
    let limits = match admit(&mut lock(state), &endpoint(req)) {
        Ok(headers) => headers,
        Err(headers) => {
            return with_limits(
                Reply::status(429).with_json(&json!({"errors": [
                    {"field": null, "message": "too many requests"}]})),
                headers,
            );
        }
    };
    let reply = answer_within_limits(state, specs, req);
    // An injected 429 says what the test wrote, not what the limiter would.
    if reply.status == 429 {
        return reply;
    }
    with_limits(reply, limits)
}

/// The endpoint a request counts against: its method and path, ids replaced by `{id}`.
fn endpoint(req: &Recorded) -> String {
    let parts: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let template: Vec<&str> = match parts.as_slice() {
        ["v3", "marketing", "contacts", "imports", _] => {
            vec!["v3", "marketing", "contacts", "imports", "{id}"]
        }
        ["v3", "marketing", "lists", _, rest @ ..] => {
            let mut t = vec!["v3", "marketing", "lists", "{id}"];
            t.extend(rest);
            t
        }
        other => other.to_vec(),
    };
    format!("{} /{}", req.method, template.join("/"))
}

/// Counts a request against its endpoint's period: `Ok` with the headers to answer when it is
/// within the limit, `Err` with them when the period is used up.
fn admit(st: &mut State, endpoint: &str) -> Result<(u64, u64, u64), (u64, u64, u64)> {
    let (limit, period) = st.rate_limit;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = now - now % period;
    let used = st
        .periods
        .entry(endpoint.to_owned())
        .or_default()
        .entry(start)
        .or_default();
    if *used >= limit {
        st.throttled += 1;
        return Err((limit, 0, start + period));
    }
    *used += 1;
    Ok((limit, limit - *used, start + period))
}

fn with_limits(reply: Reply, (limit, remaining, reset): (u64, u64, u64)) -> Reply {
    reply
        .with_header("X-RateLimit-Limit", &limit.to_string())
        .with_header("X-RateLimit-Remaining", &remaining.to_string())
        .with_header("X-RateLimit-Reset", &reset.to_string())
}

fn answer_within_limits(state: &Mutex<State>, specs: &[OpenApi; 3], req: &Recorded) -> Reply {
    let body = (!req.body.is_empty()).then(|| req.json());
    if req.path.starts_with("/v3/marketing") {
        let spec = if req.path.starts_with("/v3/marketing/lists") {
            &specs[1]
        } else if req.path.starts_with("/v3/marketing/field_definitions") {
            &specs[2]
        } else {
            &specs[0]
        };
        if let Err(problem) = spec.check(
            &req.method,
            &req.path,
            &req.query,
            &req.headers,
            body.as_ref(),
        ) {
            let mut st = lock(state);
            st.violations.push(problem.clone());
            return Reply::status(400).with_json(&errors(&[(problem.as_str(), None)]));
        }
    }
    let mut st = lock(state);
    if let Some(at) = st
        .faults
        .iter()
        .position(|(prefix, _)| req.path.starts_with(prefix.as_str()))
        && let Some((_, reply)) = st.faults.remove(at)
    {
        return reply;
    }
    let body = body.unwrap_or(Value::Null);
    let path: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), path.as_slice()) {
        ("GET", ["v3", "marketing", "field_definitions"]) => Reply::json(&json!({
            "custom_fields": st.fields,
            "reserved_fields": [{"id": "_rf0_T", "name": "first_name", "field_type": "Text"}],
        })),
        ("PUT", ["v3", "marketing", "contacts"]) => upsert(&mut st, &body),
        ("GET", ["v3", "marketing", "contacts", "imports", id]) => {
            let host = req.header("host").unwrap_or("127.0.0.1").to_owned();
            poll(&mut st, id, &host)
        }
        ("POST", ["v3", "marketing", "contacts", "search", "emails"]) => search(&st, &body),
        ("DELETE", ["v3", "marketing", "lists", list, "contacts"]) => {
            remove(&mut st, list, req.query("contact_ids").unwrap_or_default())
        }
        ("GET", ["v3", "suppression", "unsubscribes"]) => unsubscribes(&st, req),
        _ => Reply::status(404).with_json(&errors(&[("not found", None)])),
    }
}

fn upsert(st: &mut State, body: &Value) -> Reply {
    let list_ids: Vec<String> = body["list_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    if let Some(unknown) = list_ids.iter().find(|l| *l != LIST) {
        let message = format!("list {unknown} does not exist");
        return Reply::status(404).with_json(&errors(&[(message.as_str(), Some("list_ids"))]));
    }
    let known: BTreeSet<&str> = st.fields.iter().filter_map(|f| f["id"].as_str()).collect();
    let contacts = body["contacts"].as_array().cloned().unwrap_or_default();
    for (i, c) in contacts.iter().enumerate() {
        for id in c["custom_fields"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
        {
            if !known.contains(id.as_str()) {
                let message = format!("custom field id {id} does not exist");
                let field = format!("contacts[{i}].custom_fields.{id}");
                return Reply::status(400)
                    .with_json(&errors(&[(message.as_str(), Some(field.as_str()))]));
            }
        }
    }
    let id = format!("job-{}", st.next);
    st.next += 1;
    st.jobs.insert(
        id.clone(),
        Job {
            contacts,
            list_ids,
            polls: 0,
            errors: Vec::new(),
            done: false,
        },
    );
    Reply::status(202).with_json(&json!({ "job_id": id }))
}

fn poll(st: &mut State, id: &str, host: &str) -> Reply {
    let before = st.polls_before_done;
    let Some(job) = st.jobs.get_mut(id) else {
        return Reply::status(404).with_json(&errors(&[("job not found", Some("id"))]));
    };
    job.polls += 1;
    if job.polls <= before {
        return Reply::json(&json!({"id": id, "status": "pending", "job_type": "upsert",
                                    "results": {"requested_count": job.contacts.len()}}));
    }
    if !job.done {
        job.done = true;
        let (contacts, list_ids) = (job.contacts.clone(), job.list_ids.clone());
        let mut failed = Vec::new();
        for c in contacts {
            let email = c["email"].as_str().unwrap_or_default().to_lowercase();
            if email.ends_with("@invalid.example") || !email.contains('@') {
                failed.push((email, "email is not a valid email address".to_owned()));
                continue;
            }
            let next = st.next;
            let entry = st.contacts.entry(email.clone()).or_insert_with(|| Contact {
                id: format!("contact-{next}"),
                email: email.clone(),
                first_name: None,
                last_name: None,
                custom_fields: BTreeMap::new(),
                list_ids: BTreeSet::new(),
            });
            if let Some(f) = c["first_name"].as_str() {
                entry.first_name = Some(f.to_owned());
            }
            if let Some(l) = c["last_name"].as_str() {
                entry.last_name = Some(l.to_owned());
            }
            for (k, v) in c["custom_fields"].as_object().into_iter().flatten() {
                entry.custom_fields.insert(k.clone(), v.clone());
            }
            entry.list_ids.extend(list_ids.iter().cloned());
            st.next += 1;
        }
        if let Some(job) = st.jobs.get_mut(id) {
            job.errors = failed;
        }
    }
    let job = &st.jobs[id];
    let errored = job.errors.len();
    let status = match (errored, job.contacts.len()) {
        (0, _) => "completed",
        (e, n) if e == n => "failed",
        _ => "errored",
    };
    let mut results = json!({"requested_count": job.contacts.len(),
                             "created_count": job.contacts.len() - errored,
                             "updated_count": 0, "errored_count": errored});
    if errored > 0 {
        results["errors_url"] = json!(format!("http://{host}/downloads/import-errors/{id}.csv"));
    }
    Reply::json(
        &json!({"id": id, "status": status, "job_type": "upsert", "results": results,
                        "started_at": "2026-12-05T10:00:00Z", "finished_at": "2026-12-05T10:00:01Z"}),
    )
}

fn download(st: &State, req: &Recorded) -> Reply {
    let id = req
        .path
        .trim_start_matches("/downloads/import-errors/")
        .trim_end_matches(".csv");
    let Some(job) = st.jobs.get(id) else {
        return Reply::status(404).with_body("no such file");
    };
    let mut csv = String::from("email,errors\n");
    for (email, reason) in &job.errors {
        csv.push_str(&format!("{email},\"{reason}\"\n"));
    }
    Reply::text(csv).with_header("Content-Type", "text/csv")
}

fn search(st: &State, body: &Value) -> Reply {
    let mut result = serde_json::Map::new();
    let mut found = 0;
    for e in body["emails"].as_array().into_iter().flatten() {
        let email = e.as_str().unwrap_or_default().to_lowercase();
        match st.contacts.get(&email) {
            Some(c) => {
                found += 1;
                result.insert(
                    email,
                    json!({"contact": {"id": c.id, "email": c.email,
                                       "list_ids": c.list_ids, "segment_ids": [],
                                       "custom_fields": c.custom_fields,
                                       "created_at": "2026-12-05T10:00:00Z",
                                       "updated_at": "2026-12-05T10:00:00Z"}}),
                );
            }
            None => {
                result.insert(email, json!({"error": "contact not found"}));
            }
        }
    }
    if found == 0 {
        return Reply::status(404).with_json(&errors(&[("No contacts found", None)]));
    }
    Reply::json(&json!({ "result": result }))
}

fn remove(st: &mut State, list: &str, ids: &str) -> Reply {
    if list != LIST {
        return Reply::status(404).with_json(&errors(&[("list not found", Some("id"))]));
    }
    let ids: Vec<&str> = ids.split(',').filter(|i| !i.is_empty()).collect();
    if ids.len() > 100 {
        st.violations
            .push(format!("{} contact ids in one removal", ids.len()));
    }
    for id in &ids {
        if !st.contacts.values().any(|c| c.id == *id) {
            let message = format!("contact {id} does not exist");
            return Reply::status(404)
                .with_json(&errors(&[(message.as_str(), Some("contact_ids"))]));
        }
    }
    for c in st.contacts.values_mut() {
        if ids.contains(&c.id.as_str()) {
            c.list_ids.remove(LIST);
        }
    }
    let job = format!("job-{}", st.next);
    st.next += 1;
    Reply::status(202).with_json(&json!({ "job_id": job }))
}

fn unsubscribes(st: &State, req: &Recorded) -> Reply {
    let number = |name: &str| req.query(name).and_then(|v| v.parse::<i64>().ok());
    let (start, end) = (number("start_time"), number("end_time"));
    let limit = number("limit").unwrap_or(500).clamp(1, 500) as usize;
    let offset = number("offset").unwrap_or(0).max(0) as usize;
    let mut rows: Vec<&(String, i64)> = st
        .unsubscribes
        .iter()
        .filter(|(_, at)| start.is_none_or(|s| *at >= s) && end.is_none_or(|e| *at <= e))
        .collect();
    rows.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
    let page: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(email, at)| json!({"email": email, "created": at}))
        .collect();
    Reply::json(&Value::Array(page))
}
