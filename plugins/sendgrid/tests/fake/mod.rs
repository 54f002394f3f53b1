//! A fake SendGrid on 127.0.0.1 (the test kit's server) that follows the vendor's OpenAPI files
//! (`../shared/specs/sendgrid/`): every request is checked against the spec (path, method,
//! Bearer auth, body schema) and a violation is answered 400 and recorded. Mail Send keeps the
//! messages it accepted, refuses addresses at `invalid.example` the way SendGrid does (400, the
//! personalization's field), and answers queued faults first; the Marketing Campaigns side
//! ([`marketing`]) keeps contacts, a list and import jobs.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

mod marketing;
mod spec;

pub use marketing::{Contact, LIST, RateStats};

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use cohort_plugin_testkit::{FakeServer, Recorded, Reply};
use serde_json::{Value, json};

pub use spec::Spec;

pub const KEY: &str = "SG.test-TOPSECRET-key.abc";

#[derive(Debug, Default)]
struct State {
    accepted: Vec<Value>,
    faults: VecDeque<Reply>,
    violations: Vec<String>,
    next_id: u64,
}

pub struct Fake {
    pub server: FakeServer,
    state: Arc<Mutex<State>>,
    marketing: marketing::Marketing,
}

impl Fake {
    pub fn start() -> Fake {
        let server = FakeServer::start();
        let state = Arc::new(Mutex::new(State::default()));
        let spec = Arc::new(Spec::load("sendgrid/tsg_mail_v3.json"));
        let s = state.clone();
        server.on("POST", "/v3/mail/send", move |req| handle(&spec, &s, req));
        let marketing = marketing::Marketing::new();
        for method in ["GET", "PUT", "POST", "DELETE"] {
            server.on(method, "/v3/marketing/*", marketing.handler());
        }
        server.on("GET", "/v3/suppression/*", marketing.handler());
        server.on("GET", "/downloads/*", marketing.handler());
        Fake {
            server,
            state,
            marketing,
        }
    }

    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Answers the next request with `reply` (after checking it against the spec).
    pub fn fault(&self, reply: Reply) {
        self.state.lock().unwrap().faults.push_back(reply);
    }

    /// Every personalization accepted, with the request's shared parts under `message`.
    pub fn accepted(&self) -> Vec<Value> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// How many accepted messages each address got.
    pub fn copies(&self) -> BTreeMap<String, usize> {
        let mut copies = BTreeMap::new();
        for p in self.accepted() {
            for to in p["to"].as_array().unwrap() {
                *copies
                    .entry(to["email"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        copies
    }

    /// Requests that broke the spec (Mail Send's and the marketing endpoints').
    pub fn violations(&self) -> Vec<String> {
        let mut all = self.state.lock().unwrap().violations.clone();
        all.extend(self.marketing.violations());
        all
    }

    /// Answers the next marketing request whose path starts with `prefix` with `reply` (after
    /// checking it against the spec).
    pub fn fault_on(&self, prefix: &str, reply: Reply) {
        self.marketing.fault_on(prefix, reply);
    }

    /// Each marketing endpoint allows `requests` per `seconds` (default 600 per 60).
    pub fn set_rate_limit(&self, requests: u64, seconds: u64) {
        self.marketing.set_rate_limit(requests, seconds);
    }

    /// Import jobs finish at the poll after this many (default 1).
    pub fn set_polls_before_done(&self, polls: u32) {
        self.marketing.set_polls_before_done(polls);
    }

    /// What the marketing endpoints' rate limiter saw.
    pub fn rate_stats(&self) -> RateStats {
        self.marketing.rate_stats()
    }

    /// The contacts on the list, by address.
    pub fn members(&self) -> Vec<Contact> {
        self.marketing.members()
    }

    /// The addresses on the list, sorted.
    pub fn member_emails(&self) -> Vec<String> {
        self.members().into_iter().map(|c| c.email).collect()
    }

    /// Every contact, on the list or not.
    pub fn contacts(&self) -> Vec<Contact> {
        self.marketing.contacts()
    }

    /// A contact already on the list (added in SendGrid, not by Cohort).
    pub fn add_member(&self, email: &str) {
        self.marketing.add_member(email);
    }

    /// `email` unsubscribes globally at Unix time `at`.
    pub fn unsubscribe(&self, email: &str, at: i64) {
        self.marketing.unsubscribe(email, at);
    }
}

fn errors(list: &[(String, Option<String>)]) -> Value {
    json!({"errors": list.iter().map(|(m, f)| json!({"message": m, "field": f, "help": null})).collect::<Vec<_>>()})
}

fn handle(spec: &Spec, state: &Mutex<State>, req: &Recorded) -> Reply {
    if req.header("authorization") != Some(format!("Bearer {KEY}").as_str()) {
        return Reply::status(401).with_json(&errors(&[(
            format!(
                "The provided authorization grant is invalid, expired, or revoked: {}",
                req.header("authorization").unwrap_or("")
            ),
            None,
        )]));
    }
    let body: Value = match serde_json::from_str(&req.body) {
        Ok(v) => v,
        Err(e) => return Reply::status(400).with_json(&errors(&[(e.to_string(), None)])),
    };
    let violations = spec.check("post", "/v3/mail/send", req, &body);
    let mut st = state.lock().unwrap();
    if !violations.is_empty() {
        st.violations.extend(violations.iter().cloned());
        let list: Vec<(String, Option<String>)> =
            violations.into_iter().map(|v| (v, None)).collect();
        return Reply::status(400).with_json(&errors(&list));
    }
    if let Some(fault) = st.faults.pop_front() {
        return fault;
    }
    let personalizations = body["personalizations"].as_array().unwrap();
    let mut refused = Vec::new();
    for (i, p) in personalizations.iter().enumerate() {
        for (j, to) in p["to"].as_array().unwrap().iter().enumerate() {
            if to["email"]
                .as_str()
                .unwrap_or("")
                .ends_with("@invalid.example")
            {
                refused.push((
                    "Does not contain a valid address.".to_owned(),
                    Some(format!("personalizations.{i}.to.{j}.email")),
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Reply::status(400).with_json(&errors(&refused));
    }
    let mut message = body.clone();
    message.as_object_mut().unwrap().remove("personalizations");
    for p in personalizations {
        let mut p = p.clone();
        p["message"] = message.clone();
        st.accepted.push(p);
    }
    st.next_id += 1;
    Reply::status(202)
        .with_header("X-Message-Id", &format!("fake-{}", st.next_id))
        .with_body("")
}
