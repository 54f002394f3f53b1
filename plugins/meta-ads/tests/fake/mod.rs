//! A fake Graph API for custom audiences, built from Meta's users-edge reference and
//! `shared/specs/meta` (`CustomAudience.json`: `POST`/`DELETE users`, `POST usersreplace`):
//!
//! - it checks every request: the token, the `appsecret_proof`, the form body, the schema's
//!   keys, at most 10,000 rows, each row as long as the schema, each hashed value 64 lowercase
//!   hex digits (a value that is not is a *violation*, which tests assert never happens);
//! - it keeps each audience's members (keyed by their first identifier: EMAIL, else PHONE,
//!   else EXTERN_ID), so a test checks the audience member by member against expected hashes;
//! - replace sessions stage their rows and swap them in at `last_batch_flag`, and refuse a
//!   `batch_seq` out of order;
//! - faults are queued: Meta's throttling codes (17, 613, 80003 with
//!   `X-Business-Use-Case-Usage`), code 2 `is_transient`, HTTP statuses; and "poisoned"
//!   hashes are counted in `num_invalid_entries` and quoted in `invalid_entry_samples`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use cohort_plugin_meta_ads::client::appsecret_proof;
use cohort_plugin_testkit::{FakeServer, Recorded, Reply};
use serde_json::{Value, json};

pub const TOKEN: &str = "EAAB-TOPSECRET-system-user-token";
pub const APP_SECRET: &str = "app-TOPSECRET-secret";
pub const VERSION: &str = "v25.0";

const KEYS: &[&str] = &[
    "EXTERN_ID",
    "EMAIL",
    "PHONE",
    "GEN",
    "DOBY",
    "DOBM",
    "DOBD",
    "LN",
    "FN",
    "FI",
    "CT",
    "ST",
    "ZIP",
    "MADID",
    "COUNTRY",
    "LOOKALIKE_VALUE",
];

/// A fault the next request meets.
#[derive(Debug, Clone)]
pub enum Fault {
    /// A Graph throttling error with this code; for 80003, the business use case header
    /// names `regain` minutes.
    Throttle { code: i64, regain: u64 },
    /// Code 2, `is_transient`.
    Transient,
    /// A bare HTTP status (429, 500 …) with `Retry-After: 0`.
    Status(u16),
}

/// A member: the row as the fake received it, column → value.
pub type Member = BTreeMap<String, Value>;

#[derive(Debug, Default)]
pub struct Stats {
    pub adds: usize,
    pub removes: usize,
    pub replaces: usize,
    /// Rows of each request the fake applied, in order, with its edge.
    pub requests: Vec<(String, usize)>,
    pub throttled: usize,
    pub violations: Vec<String>,
}

#[derive(Default)]
struct State {
    members: BTreeMap<String, BTreeMap<String, Member>>,
    faults: VecDeque<Fault>,
    poison: BTreeSet<String>,
    /// session id → (audience, last batch_seq, staged rows).
    sessions: HashMap<u64, (String, u32, Vec<Member>)>,
    stats: Stats,
}

pub struct Fake {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
    proof: bool,
}

impl Fake {
    /// A fake Graph API; `proof`: whether it requires `appsecret_proof`.
    pub fn start(proof: bool) -> Fake {
        Fake {
            server: FakeServer::start(),
            state: Arc::default(),
            proof,
        }
    }

    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Serves the edges of audience `id`.
    pub fn audience(&self, id: &str) -> &Fake {
        for (method, edge) in [
            ("POST", "users"),
            ("DELETE", "users"),
            ("POST", "usersreplace"),
        ] {
            let state = self.state.clone();
            let audience = id.to_owned();
            let proof = self.proof;
            let edge_name = if method == "DELETE" {
                "remove"
            } else if edge == "users" {
                "add"
            } else {
                "replace"
            };
            self.server
                .on(method, &format!("/{VERSION}/{id}/{edge}"), move |r| {
                    handle(&state, &audience, edge_name, proof, r)
                });
        }
        self
    }

    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    pub fn poison(&self, hash: &str) {
        self.state.lock().unwrap().poison.insert(hash.to_owned());
    }

    /// The audience's members, by their match key (the EMAIL hash for email audiences).
    pub fn members(&self, audience: &str) -> BTreeMap<String, Member> {
        self.state
            .lock()
            .unwrap()
            .members
            .get(audience)
            .cloned()
            .unwrap_or_default()
    }

    /// The match keys of the audience.
    pub fn keys(&self, audience: &str) -> BTreeSet<String> {
        self.members(audience).into_keys().collect()
    }

    pub fn stats<T>(&self, f: impl FnOnce(&Stats) -> T) -> T {
        f(&self.state.lock().unwrap().stats)
    }
}

fn graph_error(status: u16, code: i64, message: &str) -> Reply {
    Reply::status(status).with_json(&json!({"error": {
        "message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"
    }}))
}

fn handle(state: &Mutex<State>, audience: &str, edge: &str, proof: bool, r: &Recorded) -> Reply {
    let mut s = state.lock().unwrap();
    if let Some(fault) = s.faults.pop_front() {
        s.stats.throttled += 1;
        return match fault {
            Fault::Throttle { code, regain } => {
                let mut reply = graph_error(400, code, "There have been too many calls");
                if code == 80003 {
                    reply = reply.with_header(
                        "X-Business-Use-Case-Usage",
                        &json!({"1234": [{"type": "custom_audience", "call_count": 100,
                            "total_cputime": 10, "total_time": 10,
                            "estimated_time_to_regain_access": regain}]})
                        .to_string(),
                    );
                }
                reply
            }
            Fault::Transient => Reply::status(500).with_json(&json!({"error": {
                "message": "An unexpected error has occurred. Please retry your request later.",
                "type": "OAuthException", "code": 2, "is_transient": true, "fbtrace_id": "x"}})),
            Fault::Status(status) => Reply::status(status).retry_after(0).with_body("slow down"),
        };
    }
    if r.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return graph_error(
            400,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    if proof && r.query("appsecret_proof") != Some(&appsecret_proof(APP_SECRET, TOKEN)) {
        return graph_error(
            400,
            100,
            "Invalid appsecret_proof provided in the API argument",
        );
    }
    if !r
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        return violation(&mut s, "the body is not form-encoded");
    }
    let form = parse_form(&r.body);
    let Some(payload) = form
        .get("payload")
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    else {
        return violation(&mut s, "no payload parameter, or not JSON");
    };
    let schema: Vec<String> = payload["schema"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if schema.is_empty() || schema.iter().any(|k| !KEYS.contains(&k.as_str())) {
        return violation(&mut s, &format!("bad schema {}", payload["schema"]));
    }
    let Some(data) = payload["data"].as_array() else {
        return violation(&mut s, "no data");
    };
    if data.len() > 10_000 {
        return violation(&mut s, &format!("{} rows in one request", data.len()));
    }
    let mut rows = Vec::new();
    let mut invalid = BTreeMap::new();
    for (n, row) in data.iter().enumerate() {
        let Some(cells) = row.as_array().filter(|c| c.len() == schema.len()) else {
            return violation(&mut s, &format!("row {n} does not match the schema"));
        };
        let mut member = Member::new();
        for (key, cell) in schema.iter().zip(cells) {
            let ok = match key.as_str() {
                "EXTERN_ID" => cell.is_string(),
                "LOOKALIKE_VALUE" => cell.as_f64().is_some_and(|v| v >= 0.0),
                _ => cell.as_str().is_some_and(|h| {
                    h.is_empty()
                        || (h.len() == 64
                            && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                }),
            };
            if !ok {
                return violation(
                    &mut s,
                    &format!("row {n}: {key} = {cell} is not a SHA-256 hex"),
                );
            }
            if let Some(h) = cell.as_str().filter(|h| s.poison.contains(*h)) {
                invalid.insert(h.to_owned(), format!("Invalid {key} hash"));
            }
            member.insert(key.clone(), cell.clone());
        }
        if !cells
            .iter()
            .any(|c| c.as_str().is_some_and(|h| s.poison.contains(h)))
        {
            rows.push(member);
        }
    }
    let received = data.len();
    let applied = rows.len();
    match edge {
        "add" => {
            s.stats.adds += 1;
            let members = s.members.entry(audience.to_owned()).or_default();
            for m in rows {
                members.insert(match_key(&m), m);
            }
        }
        "remove" => {
            s.stats.removes += 1;
            let members = s.members.entry(audience.to_owned()).or_default();
            for m in rows {
                members.remove(&match_key(&m));
            }
        }
        _ => {
            let Some(session) = form
                .get("session")
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
            else {
                return graph_error(400, 100, "(#100) The parameter session is required");
            };
            let (Some(id), Some(seq), Some(last), Some(_total)) = (
                session["session_id"].as_u64(),
                session["batch_seq"].as_u64(),
                session["last_batch_flag"].as_bool(),
                session["estimated_num_total"].as_u64(),
            ) else {
                return violation(&mut s, &format!("bad session {session}"));
            };
            s.stats.replaces += 1;
            let entry = s
                .sessions
                .entry(id)
                .or_insert_with(|| (audience.to_owned(), 0, Vec::new()));
            if u64::from(entry.1) + 1 != seq {
                let want = entry.1 + 1;
                return violation(&mut s, &format!("batch_seq {seq} after {}", want - 1));
            }
            entry.1 += 1;
            entry.2.extend(rows);
            if last {
                let (audience, _, staged) = s.sessions.remove(&id).unwrap();
                let members = s.members.entry(audience).or_default();
                members.clear();
                for m in staged {
                    members.insert(match_key(&m), m);
                }
            }
        }
    }
    s.stats.requests.push((edge.to_owned(), applied));
    Reply::json(&json!({
        "audience_id": audience,
        "session_id": "7312345678901234",
        "num_received": received,
        "num_invalid_entries": received - applied,
        "invalid_entry_samples": invalid,
    }))
}

fn violation(s: &mut State, what: &str) -> Reply {
    s.stats.violations.push(what.to_owned());
    graph_error(400, 100, &format!("(#100) Invalid parameter: {what}"))
}

fn match_key(m: &Member) -> String {
    for key in ["EMAIL", "PHONE", "EXTERN_ID"] {
        if let Some(v) = m.get(key).and_then(Value::as_str).filter(|v| !v.is_empty()) {
            return v.to_owned();
        }
    }
    String::new()
}

/// `application/x-www-form-urlencoded` into its parameters.
fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
