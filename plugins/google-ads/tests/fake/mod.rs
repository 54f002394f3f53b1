//! A fake Data Manager API and OAuth token endpoint, built from the v1 protos
//! (`shared/specs/google-ads/protos/google/ads/datamanager/v1`: `ingestion_service.proto`,
//! `audience.proto`, `user_data.proto`, `consent.proto`, `destination.proto`,
//! `terms_of_service.proto`, `error.proto`) in their REST/JSON mapping:
//!
//! - it checks every request: a bearer token it issued (and not expired), the destination
//!   (`GOOGLE_ADS` operating account, a known user list), `encoding: HEX`, the Customer Match
//!   terms accepted on ingestion, at most 10,000 members and 10 identifiers each, hashes as 64
//!   lowercase hex digits, region codes as two capitals, consent granted for both purposes on
//!   every ingested member (a request that breaks a rule gets INVALID_ARGUMENT and a
//!   *violation*, which tests assert never happens);
//! - it keeps each list's members by their email hash (else phone hash);
//! - faults are queued (RESOURCE_EXHAUSTED with RetryInfo, UNAVAILABLE, INTERNAL, a member
//!   refused by name), and `requestStatus:retrieve` answers PROCESSING a set number of times
//!   before SUCCESS, or FAILED for requests marked so;
//! - the token endpoint takes a refresh token or a service account's RS256 JWT (checked
//!   against the test key's public half) and issues tokens that expire.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_plugin_testkit::{FakeServer, Recorded, Reply};
use serde_json::{Value, json};

pub const ACCOUNT: &str = "1234567890";
pub const CLIENT_ID: &str = "cohort-test.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "GOCSPX-TOPSECRET-client";
pub const REFRESH_TOKEN: &str = "1//TOPSECRET-refresh";
pub const STATIC_TOKEN: &str = "ya29.TOPSECRET-static";
pub const SERVICE_ACCOUNT: &str = "cohort-test@cohort-test.iam.gserviceaccount.com";
const PUBLIC_KEY: &[u8] = include_bytes!("../fixtures/public-key.der");

#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 RESOURCE_EXHAUSTED with a RetryInfo of this many milliseconds.
    Exhausted(u64),
    /// 503 UNAVAILABLE.
    Unavailable,
    /// 500 INTERNAL.
    Internal,
}

#[derive(Debug, Default)]
pub struct Stats {
    /// (verb, members) of each request applied.
    pub requests: Vec<(String, usize)>,
    pub ingests: usize,
    pub removes: usize,
    pub faults: usize,
    pub tokens_issued: usize,
    pub status_reads: usize,
    pub violations: Vec<String>,
}

#[derive(Default)]
struct State {
    lists: BTreeMap<String, BTreeMap<String, Value>>,
    known_lists: BTreeSet<String>,
    faults: VecDeque<Fault>,
    /// Hashes refused by name (INVALID_ARGUMENT on that member).
    refuse: BTreeSet<String>,
    tokens: HashMap<String, Instant>,
    token_lifetime: u64,
    next_id: u64,
    /// request id → (reads before done, final status).
    requests: HashMap<String, (u32, &'static str)>,
    processing_reads: u32,
    fail_next: bool,
    stats: Stats,
}

pub struct Fake {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
}

impl Fake {
    pub fn start() -> Fake {
        let fake = Fake {
            server: FakeServer::start(),
            state: Arc::new(Mutex::new(State {
                token_lifetime: 3599,
                ..State::default()
            })),
        };
        fake.state.lock().unwrap().tokens.insert(
            STATIC_TOKEN.to_owned(),
            Instant::now() + Duration::from_secs(3600),
        );
        for verb in ["ingest", "remove"] {
            let state = fake.state.clone();
            fake.server
                .on("POST", &format!("/v1/audienceMembers:{verb}"), move |r| {
                    members(&state, verb, r)
                });
        }
        let state = fake.state.clone();
        fake.server
            .on("GET", "/v1/requestStatus:retrieve", move |r| {
                status(&state, r)
            });
        let state = fake.state.clone();
        fake.server.on("POST", "/token", move |r| token(&state, r));
        fake
    }

    pub fn url(&self) -> &str {
        self.server.url()
    }

    pub fn token_url(&self) -> String {
        self.server.url_of("/token")
    }

    pub fn list(&self, id: &str) -> &Fake {
        self.state.lock().unwrap().known_lists.insert(id.to_owned());
        self
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().unwrap().faults.push_back(f);
    }

    pub fn refuse(&self, hash: &str) {
        self.state.lock().unwrap().refuse.insert(hash.to_owned());
    }

    pub fn token_lifetime(&self, secs: u64) {
        self.state.lock().unwrap().token_lifetime = secs;
    }

    /// `requestStatus:retrieve` answers PROCESSING this many times before the end.
    pub fn processing_reads(&self, n: u32) {
        self.state.lock().unwrap().processing_reads = n;
    }

    /// The next request is accepted, then FAILED at processing.
    pub fn fail_next(&self) {
        self.state.lock().unwrap().fail_next = true;
    }

    pub fn members(&self, list: &str) -> BTreeMap<String, Value> {
        self.state
            .lock()
            .unwrap()
            .lists
            .get(list)
            .cloned()
            .unwrap_or_default()
    }

    pub fn keys(&self, list: &str) -> BTreeSet<String> {
        self.members(list).into_keys().collect()
    }

    pub fn stats<T>(&self, f: impl FnOnce(&Stats) -> T) -> T {
        f(&self.state.lock().unwrap().stats)
    }
}

fn rpc_error(code: u16, status: &str, message: &str, details: &Value) -> Reply {
    Reply::status(code).with_json(&json!({"error": {
        "code": code, "message": message, "status": status, "details": details
    }}))
}

fn authorized(s: &State, r: &Recorded) -> bool {
    r.header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| s.tokens.get(t))
        .is_some_and(|expires| Instant::now() < *expires)
}

fn unauthenticated() -> Reply {
    rpc_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        &json!([]),
    )
}

fn is_hash(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn violation(s: &mut State, field: &str, what: &str) -> Reply {
    s.stats.violations.push(format!("{field}: {what}"));
    rpc_error(
        400,
        "INVALID_ARGUMENT",
        "Request contains an invalid argument.",
        &json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": what}]}]),
    )
}

fn members(state: &Mutex<State>, verb: &str, r: &Recorded) -> Reply {
    let mut s = state.lock().unwrap();
    if let Some(fault) = s.faults.pop_front() {
        s.stats.faults += 1;
        return match fault {
            Fault::Exhausted(ms) => rpc_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Requests' of service 'datamanager.googleapis.com'.",
                &json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": format!("{}s", ms as f64 / 1000.0)}]),
            ),
            Fault::Unavailable => rpc_error(
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                &json!([]),
            ),
            Fault::Internal => {
                rpc_error(500, "INTERNAL", "Internal error encountered.", &json!([]))
            }
        };
    }
    if !authorized(&s, r) {
        return unauthenticated();
    }
    let body = r.json();
    let d = &body["destinations"][0];
    if body["destinations"].as_array().map(Vec::len) != Some(1)
        || d["operatingAccount"]["accountType"] != "GOOGLE_ADS"
    {
        return violation(
            &mut s,
            "destinations[0].operating_account",
            "not one GOOGLE_ADS destination",
        );
    }
    if d["operatingAccount"]["accountId"] != ACCOUNT {
        return rpc_error(
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
            &json!([]),
        );
    }
    let list = d["productDestinationId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if !s.known_lists.contains(&list) {
        return violation(
            &mut s,
            "destinations[0].product_destination_id",
            &format!("unknown user list {list}"),
        );
    }
    if body["encoding"] != "HEX" {
        return violation(&mut s, "encoding", "HEX required for hashed user data");
    }
    if verb == "ingest" && body["termsOfService"]["customerMatchTermsOfServiceStatus"] != "ACCEPTED"
    {
        return rpc_error(
            400,
            "INVALID_ARGUMENT",
            "TERMS_AND_CONDITIONS_NOT_SIGNED",
            &json!([
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "TERMS_AND_CONDITIONS_NOT_SIGNED"}]),
        );
    }
    let Some(list_members) = body["audienceMembers"].as_array() else {
        return violation(&mut s, "audience_members", "missing");
    };
    if list_members.is_empty() || list_members.len() > 10_000 {
        return violation(
            &mut s,
            "audience_members",
            &format!("{} members (TOO_MANY_AUDIENCE_MEMBERS)", list_members.len()),
        );
    }
    let mut keyed = Vec::new();
    let mut refused = Vec::new();
    for (n, m) in list_members.iter().enumerate() {
        let ids = m["userData"]["userIdentifiers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ids.is_empty() || ids.len() > 10 {
            return violation(
                &mut s,
                &format!("audience_members[{n}]"),
                "1 to 10 identifiers",
            );
        }
        if verb == "ingest"
            && (m["consent"]["adUserData"] != "CONSENT_GRANTED"
                || m["consent"]["adPersonalization"] != "CONSENT_GRANTED")
        {
            return violation(
                &mut s,
                &format!("audience_members[{n}].consent"),
                "consent not granted",
            );
        }
        if verb == "remove" && !m["consent"].is_null() {
            return violation(
                &mut s,
                &format!("audience_members[{n}].consent"),
                "no consent on removal",
            );
        }
        let mut key = None;
        for (k, id) in ids.iter().enumerate() {
            let field = format!("audience_members[{n}].user_data.user_identifiers[{k}]");
            let obj = id.as_object().cloned().unwrap_or_default();
            if obj.len() != 1 {
                return violation(&mut s, &field, "exactly one identifier");
            }
            if let Some(h) = obj.get("emailAddress").or(obj.get("phoneNumber")) {
                if !is_hash(h) {
                    return violation(&mut s, &field, &format!("INVALID_SHA256_FORMAT {h}"));
                }
                if s.refuse.contains(h.as_str().unwrap()) {
                    refused.push(json!({"field": field, "description": "The SHA256 encoded value is malformed.", "reason": "INVALID_SHA256_FORMAT"}));
                }
                key.get_or_insert_with(|| h.as_str().unwrap().to_owned());
            } else if let Some(a) = obj.get("address") {
                let ok = is_hash(&a["givenName"])
                    && is_hash(&a["familyName"])
                    && a["regionCode"]
                        .as_str()
                        .is_some_and(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()))
                    && a["postalCode"].as_str().is_some_and(|p| !p.is_empty());
                if !ok {
                    return violation(&mut s, &field, &format!("bad address {a}"));
                }
            } else {
                return violation(&mut s, &field, &format!("unknown identifier {id}"));
            }
        }
        keyed.push((key.unwrap_or_default(), m.clone()));
    }
    if !refused.is_empty() {
        return rpc_error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            &json!([
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": refused}]),
        );
    }
    let stored = s.lists.entry(list).or_default();
    for (key, m) in keyed {
        if verb == "ingest" {
            stored.insert(key, m);
        } else {
            stored.remove(&key);
        }
    }
    if verb == "ingest" {
        s.stats.ingests += 1;
    } else {
        s.stats.removes += 1;
    }
    s.stats.requests.push((verb.to_owned(), list_members.len()));
    s.next_id += 1;
    let id = format!("req-{}", s.next_id);
    let end = if std::mem::take(&mut s.fail_next) {
        "FAILED"
    } else {
        "SUCCESS"
    };
    let reads = s.processing_reads;
    s.requests.insert(id.clone(), (reads, end));
    Reply::json(&json!({"requestId": id}))
}

fn status(state: &Mutex<State>, r: &Recorded) -> Reply {
    let mut s = state.lock().unwrap();
    if !authorized(&s, r) {
        return unauthenticated();
    }
    s.stats.status_reads += 1;
    let id = r.query("requestId").unwrap_or_default().to_owned();
    let Some((reads, end)) = s.requests.get_mut(&id) else {
        return rpc_error(404, "NOT_FOUND", "Request not found", &json!([]));
    };
    if *reads > 0 {
        *reads -= 1;
        return Reply::json(
            &json!({"requestStatusPerDestination": [{"requestStatus": "PROCESSING"}]}),
        );
    }
    let end = *end;
    let mut d = json!({"requestStatus": end});
    if end == "FAILED" {
        d["errorInfo"] = json!({"errorCounts": [{"recordCount": "2", "reason": "PROCESSING_ERROR_REASON_INTERNAL_ERROR"}]});
    }
    Reply::json(&json!({"requestStatusPerDestination": [d]}))
}

fn token(state: &Mutex<State>, r: &Recorded) -> Reply {
    let mut s = state.lock().unwrap();
    let form: HashMap<String, String> = r
        .body
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let ok = match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
                && form.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN)
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            form.get("assertion").is_some_and(|a| valid_jwt(a, &r.path))
        }
        _ => false,
    };
    if !ok {
        return Reply::status(400)
            .with_json(&json!({"error": "invalid_grant", "error_description": "Bad Request"}));
    }
    s.stats.tokens_issued += 1;
    let token = format!("ya29.issued-{}", s.stats.tokens_issued);
    let lifetime = s.token_lifetime;
    s.tokens.insert(
        token.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    Reply::json(&json!({"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}))
}

/// An RS256 JWT signed by the test service account, for the datamanager scope.
fn valid_jwt(jwt: &str, _path: &str) -> bool {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    let signed = format!("{}.{}", parts[0], parts[1]);
    let Some(signature) = b64url(parts[2]) else {
        return false;
    };
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        PUBLIC_KEY,
    );
    if key.verify(signed.as_bytes(), &signature).is_err() {
        return false;
    }
    let claims: Value = b64url(parts[1])
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or(Value::Null);
    claims["iss"] == SERVICE_ACCOUNT
        && claims["scope"] == "https://www.googleapis.com/auth/datamanager"
        && claims["aud"]
            .as_str()
            .is_some_and(|a| a.ends_with("/token"))
}

fn b64url(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
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
