//! SendGrid's Marketing Campaigns contacts API, for modes `upsert` and `mirror`: contacts
//! upserted into the list through an import job polled until it finishes, and leavers taken
//! off the list (never deleted).
//!
//! | step | SendGrid's endpoint | its limit |
//! | --- | --- | --- |
//! | custom field ids by name | `GET /v3/marketing/field_definitions` | once per instance |
//! | upsert and add to the list | `PUT /v3/marketing/contacts` (`list_ids`, `contacts`) | 30,000 contacts or 6 MB |
//! | the upsert's result | `GET /v3/marketing/contacts/imports/{id}`, then its `errors_url` | |
//! | the ids of leavers | `POST /v3/marketing/contacts/search/emails` | 100 addresses |
//! | off the list | `DELETE /v3/marketing/lists/{id}/contacts?contact_ids=…` | 100 ids (the spec sets none; the URL stays short) |
//!
//! Every step is idempotent at SendGrid (an upsert by address, a removal from a list), so a
//! chunk sent again after a lost answer changes nothing twice. An import job's id is kept in
//! the host's state under `job/<chunk key>` until it finishes: a push retried after a timeout
//! waits for the same job instead of submitting another.
//!
//! SendGrid limits each endpoint to a fixed number of requests per refresh period, and says on
//! every answer how many are left (`X-RateLimit-Remaining`) and when the period ends
//! (`X-RateLimit-Reset`, Unix seconds). It publishes no figure for these endpoints, so the
//! plugin paces by those headers rather than by a guess: after an answer that leaves nothing,
//! the next request to that endpoint waits for the reset (the host's bucket,
//! `requests_per_second`, only spreads what is left). A 429 all the same (another client used
//! the period) is a retry after `X-RateLimit-Reset` (or `Retry-After`).
//!
//! A 400 whose errors name a contact (`contacts[3].email`) rejects that contact with SendGrid's
//! message, and the others are sent again without it, once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cohort_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Api, Errors, rate_limit_wait};
use crate::contact::{Definition, Fields};

/// Contacts per `PUT /v3/marketing/contacts` (SendGrid's maximum).
pub const MAX_CONTACTS: usize = 30_000;
/// Bytes of contacts per upsert: SendGrid takes 6 MB; leave room for the envelope.
pub const MAX_BYTES: usize = 5 << 20;
/// Addresses per search, and ids per removal.
pub const LOOKUP_CHUNK: usize = 100;

/// The list of one account, through the host.
#[derive(Debug)]
pub struct Marketing {
    api: Api,
    /// The same host without credentials: an import's `errors_url` is a signed download link
    /// on another host, which must never see the API key.
    download: Client,
    poll_interval: Duration,
    job_timeout: Duration,
    /// Endpoint → the `X-RateLimit-Reset` (Unix seconds) before which it has nothing left.
    exhausted: Mutex<BTreeMap<&'static str, u64>>,
}

/// SendGrid refused a request: the status and its errors (message, field).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// Each error's message and the field it names.
    pub errors: Vec<(String, Option<String>)>,
}

impl Refusal {
    /// Every error on one line.
    pub fn reason(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|(m, f)| match f {
                Some(f) => format!("{m} ({f})"),
                None => m.clone(),
            })
            .collect();
        format!(
            "SendGrid refused it ({}): {}",
            self.status,
            parts.join("; ")
        )
    }
}

/// An import job (`ContactImport`).
#[derive(Debug, Deserialize)]
struct Job {
    #[serde(default)]
    status: String,
    #[serde(default)]
    results: JobResults,
}

#[derive(Debug, Default, Deserialize)]
struct JobResults {
    #[serde(default)]
    errored_count: f64,
    #[serde(default)]
    errors_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Definitions {
    #[serde(default)]
    custom_fields: Vec<Definition>,
}

impl Marketing {
    /// The marketing endpoints of `api`'s account.
    pub fn new(api: Api, config: &crate::config::Validated) -> Marketing {
        let host = *api.host();
        Marketing {
            download: Client::new(host, "")
                .secret(&config.api_key)
                .timeout(config.timeout),
            api,
            poll_interval: config.poll_interval,
            job_timeout: config.job_timeout,
            exhausted: Mutex::new(BTreeMap::new()),
        }
    }

    /// Waits until `endpoint`'s period has room, when an earlier answer said it had none.
    fn pace(&self, endpoint: &'static str) -> Result<(), PluginError> {
        let reset = self
            .exhausted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(endpoint);
        let Some(reset) = reset else { return Ok(()) };
        let host = *self.api.host();
        let at = UNIX_EPOCH + Duration::from_secs(reset);
        while let Ok(left) = at.duration_since(SystemTime::now()) {
            host.check_cancelled()?;
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        Ok(())
    }

    /// Notes an answer that left nothing of `endpoint`'s period.
    fn count(&self, endpoint: &'static str, response: &Response) {
        let number = |name: &str| {
            response
                .header(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(0), Some(reset)) =
            (number("x-ratelimit-remaining"), number("x-ratelimit-reset"))
        {
            self.exhausted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(endpoint, reset);
        }
    }

    /// Sends a request to `endpoint` (its method and path template, the key SendGrid counts
    /// by) once its period has room; a 400, 404 or 413 comes back as a [`Refusal`], a 429 as a
    /// retry after SendGrid's reset.
    fn call(
        &self,
        endpoint: &'static str,
        request: Request,
    ) -> Result<Result<Response, Refusal>, HttpError> {
        self.pace(endpoint)?;
        let response = request.allow(400).allow(404).allow(413).allow(429).send()?;
        self.count(endpoint, &response);
        match response.status() {
            429 => Err(PluginError::retry(
                format!(
                    "SendGrid is rate limiting this API key (429): {}",
                    response.excerpt()
                ),
                Some(rate_limit_wait(&response)),
            )
            .into()),
            status @ (400 | 404 | 413) => {
                let doc: Errors = serde_json::from_str(response.text()).unwrap_or_default();
                let mut errors: Vec<(String, Option<String>)> = doc
                    .errors
                    .into_iter()
                    .map(|e| {
                        (
                            e.message.unwrap_or_else(|| "no message".to_owned()),
                            e.field.filter(|f| !f.is_empty() && f != "null"),
                        )
                    })
                    .collect();
                if errors.is_empty() {
                    errors.push((response.excerpt(), None));
                }
                Ok(Err(Refusal { status, errors }))
            }
            _ => Ok(Ok(response)),
        }
    }

    /// The account's custom fields.
    pub fn field_definitions(&self) -> Result<Fields, PluginError> {
        let request = self.api.client().get("/v3/marketing/field_definitions");
        match self.call("GET /v3/marketing/field_definitions", request)? {
            Ok(response) => Ok(Fields::new(response.json::<Definitions>()?.custom_fields)),
            Err(refusal) => Err(PluginError::failed(format!(
                "reading the account's custom fields: {}",
                refusal.reason()
            ))),
        }
    }

    /// Upserts `contacts` (`(operation key, address, contact)`) into `list`: one import job,
    /// resumed when an earlier push of this chunk submitted it. One outcome per contact.
    pub fn upsert(
        &self,
        chunk_key: &str,
        list: &str,
        contacts: &[(&str, &str, &Value)],
    ) -> Result<Vec<Outcome>, HttpError> {
        let host = *self.api.host();
        let state_key = format!("job/{chunk_key}");
        let mut outcomes = Vec::new();
        // A host before ABI 1.2 keeps no state: the job is then submitted again on a retry,
        // which is harmless (an upsert by address).
        let saved = host.state_get(&state_key).ok().flatten();
        let resumed = saved
            .as_ref()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        let mut sent: Vec<usize> = (0..contacts.len()).collect();
        let id = match resumed {
            Some(id) => {
                // Contacts refused before the job was submitted keep their reason.
                let refused = saved.as_ref().and_then(|v| v["refused"].as_object());
                sent.retain(|&i| {
                    let reason = refused.and_then(|r| r.get(contacts[i].0)?.as_str());
                    if let Some(reason) = reason {
                        outcomes.push(rejected(contacts[i].0, reason.to_owned()));
                    }
                    reason.is_none()
                });
                id
            }
            None => {
                let mut job = None;
                for attempt in 0..2 {
                    let body = json!({
                        "list_ids": [list],
                        "contacts": sent.iter().map(|&i| contacts[i].2).collect::<Vec<_>>(),
                    });
                    let request = self
                        .api
                        .client()
                        .put("/v3/marketing/contacts")
                        .json(&body)?;
                    match self.call("PUT /v3/marketing/contacts", request)? {
                        Ok(response) => {
                            let id = response.json::<Value>()?["job_id"]
                                .as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| {
                                    PluginError::failed(
                                        "SendGrid accepted the contacts but gave no `job_id`",
                                    )
                                })?;
                            job = Some(id);
                            break;
                        }
                        Err(refusal) => {
                            let named = by_contact(&refusal);
                            let whole = named.is_empty()
                                || named.keys().any(|&p| p >= sent.len())
                                || attempt == 1;
                            for (&p, reason) in &named {
                                if let Some(&i) = sent.get(p) {
                                    outcomes.push(rejected(contacts[i].0, reason.clone()));
                                }
                            }
                            let rest: Vec<usize> = sent
                                .iter()
                                .enumerate()
                                .filter(|(p, _)| !named.contains_key(p))
                                .map(|(_, &i)| i)
                                .collect();
                            if whole {
                                for i in rest {
                                    outcomes.push(rejected(contacts[i].0, refusal.reason()));
                                }
                                return Ok(outcomes);
                            }
                            sent = rest;
                            if sent.is_empty() {
                                return Ok(outcomes);
                            }
                        }
                    }
                }
                let Some(id) = job else {
                    return Ok(outcomes);
                };
                let refused: serde_json::Map<String, Value> = outcomes
                    .iter()
                    .filter_map(|o| match &o.status {
                        OutcomeStatus::Rejected { reason } => {
                            Some((o.key.clone(), Value::String(reason.clone())))
                        }
                        _ => None,
                    })
                    .collect();
                let _ = host.state_put(&state_key, Some(&json!({"id": id, "refused": refused})));
                host.info(&format!(
                    "SendGrid import job {id} submitted: {} contacts",
                    sent.len()
                ));
                id
            }
        };
        let job = self.wait(&id)?;
        let reasons = if job.results.errored_count > 0.0 || job.status == "failed" {
            self.import_errors(&id, &job)?
        } else {
            BTreeMap::new()
        };
        let _ = host.state_put(&state_key, None);
        for i in sent {
            let (key, email, _) = contacts[i];
            outcomes.push(match reasons.get(email) {
                Some(reason) => rejected(key, reason.clone()),
                None if job.status == "failed" => rejected(
                    key,
                    format!("SendGrid's import job {id} failed without naming this contact"),
                ),
                None => Outcome {
                    key: key.to_owned(),
                    status: OutcomeStatus::Ok,
                },
            });
        }
        Ok(outcomes)
    }

    /// Polls an import job until it is `completed`, `errored` or `failed`. Past `job_timeout`
    /// its contacts are retried later, waiting for the same job (its id stays in the state).
    fn wait(&self, id: &str) -> Result<Job, HttpError> {
        let host = *self.api.host();
        let started = Instant::now();
        loop {
            let request = self
                .api
                .client()
                .get(&format!("/v3/marketing/contacts/imports/{id}"));
            let job: Job = match self.call("GET /v3/marketing/contacts/imports/{id}", request)? {
                Ok(response) => response.json()?,
                Err(refusal) => {
                    return Err(PluginError::failed(format!(
                        "reading SendGrid's import job {id}: {}",
                        refusal.reason()
                    ))
                    .into());
                }
            };
            if matches!(job.status.as_str(), "completed" | "errored" | "failed") {
                return Ok(job);
            }
            if started.elapsed() >= self.job_timeout {
                return Err(PluginError::retry(
                    format!(
                        "SendGrid's import job {id} is still {} after {} s",
                        job.status,
                        self.job_timeout.as_secs()
                    ),
                    Some(self.poll_interval.max(Duration::from_secs(1))),
                )
                .into());
            }
            let until = Instant::now() + self.poll_interval;
            while Instant::now() < until {
                host.check_cancelled()?;
                std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
            }
        }
    }

    /// A finished job's errors, by address: its `errors_url` file (CSV, a row per contact, with
    /// the address and SendGrid's reason), fetched without credentials.
    fn import_errors(&self, id: &str, job: &Job) -> Result<BTreeMap<String, String>, HttpError> {
        let Some(url) = job.results.errors_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(BTreeMap::new());
        };
        let response = self
            .download
            .get(url)
            .client_errors(ClientErrors::Fatal)
            .send()?;
        Ok(parse_errors(response.text())
            .into_iter()
            .map(|(email, reason)| {
                (
                    email,
                    format!("SendGrid's import job {id} refused it: {reason}"),
                )
            })
            .collect())
    }

    /// The ids of the contacts with these addresses that are on `list` (at most
    /// [`LOOKUP_CHUNK`] addresses); an address with no contact, or not on the list, is absent.
    pub fn on_list(&self, list: &str, emails: &[&str]) -> Result<Vec<String>, HttpError> {
        let request = self
            .api
            .client()
            .post("/v3/marketing/contacts/search/emails")
            .retry(true)
            .json(&json!({ "emails": emails }))?;
        let response = match self.call("POST /v3/marketing/contacts/search/emails", request)? {
            Ok(r) => r,
            // None of the addresses is a contact.
            Err(Refusal { status: 404, .. }) => return Ok(Vec::new()),
            Err(refusal) => {
                return Err(HttpError::Rejected {
                    status: refusal.status,
                    reason: refusal.reason(),
                });
            }
        };
        let found: Value = response.json()?;
        let mut ids = BTreeSet::new();
        for entry in found["result"]
            .as_object()
            .into_iter()
            .flat_map(|o| o.values())
        {
            let contact = &entry["contact"];
            let listed = contact["list_ids"]
                .as_array()
                .is_some_and(|l| l.iter().any(|id| id.as_str() == Some(list)));
            if let (true, Some(id)) = (listed, contact["id"].as_str()) {
                ids.insert(id.to_owned());
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Takes contacts off `list` (at most [`LOOKUP_CHUNK`] ids); they stay contacts.
    pub fn remove(&self, list: &str, ids: &[String]) -> Result<(), HttpError> {
        let request = self
            .api
            .client()
            .delete(&format!("/v3/marketing/lists/{list}/contacts"))
            .query("contact_ids", ids.join(","));
        match self.call("DELETE /v3/marketing/lists/{id}/contacts", request)? {
            Ok(_) => Ok(()),
            Err(refusal) => Err(HttpError::Rejected {
                status: refusal.status,
                reason: refusal.reason(),
            }),
        }
    }
}

fn rejected(key: &str, reason: String) -> Outcome {
    Outcome {
        key: key.to_owned(),
        status: OutcomeStatus::Rejected { reason },
    }
}

/// The errors of a refusal that name a contact (`contacts[3].email`, `contacts.3.email`), by
/// the contact's place in the request.
fn by_contact(refusal: &Refusal) -> BTreeMap<usize, String> {
    let mut named = BTreeMap::new();
    for (message, field) in &refusal.errors {
        let index = field.as_deref().and_then(|f| {
            let rest = f.strip_prefix("contacts")?;
            let digits: String = rest
                .trim_start_matches(['[', '.'])
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<usize>().ok()
        });
        if let Some(i) = index {
            named.entry(i).or_insert_with(|| {
                format!(
                    "SendGrid refused it ({}): {message} ({})",
                    refusal.status,
                    field.as_deref().unwrap_or_default()
                )
            });
        }
    }
    named
}

/// An errors file: a header row naming an address column (`email`) and a reason column
/// (`error`, `errors`, `reason` or `message`), then a row per contact.
pub fn parse_errors(text: &str) -> BTreeMap<String, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let Ok(headers) = reader.headers().cloned() else {
        return BTreeMap::new();
    };
    let column = |wanted: &[&str]| {
        headers
            .iter()
            .position(|h| wanted.contains(&h.trim().to_ascii_lowercase().as_str()))
    };
    let (Some(email), Some(reason)) = (
        column(&["email", "email_address", "contact_email"]),
        column(&["error", "errors", "reason", "message", "error_message"]),
    ) else {
        return BTreeMap::new();
    };
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|row| {
            let address = row.get(email)?.trim().to_lowercase();
            let why = row.get(reason)?.trim().to_owned();
            (!address.is_empty()).then_some((address, why))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_name_a_contact_are_found_by_its_place() {
        let refusal = Refusal {
            status: 400,
            errors: vec![
                ("email is invalid".into(), Some("contacts[2].email".into())),
                ("too long".into(), Some("contacts.0.first_name".into())),
                ("something else".into(), Some("list_ids".into())),
            ],
        };
        let named = by_contact(&refusal);
        assert_eq!(named.keys().copied().collect::<Vec<_>>(), [0, 2]);
        assert!(named[&2].contains("email is invalid (contacts[2].email)"));
    }

    #[test]
    fn the_errors_file_gives_each_address_its_reason() {
        let text = "email,first_name,errors\n\
                    Bad@Example.com,Ann,\"invalid email, rejected\"\n\
                    ,Bo,no address\n";
        let reasons = parse_errors(text);
        assert_eq!(reasons.len(), 1);
        assert_eq!(reasons["bad@example.com"], "invalid email, rejected");
        assert!(parse_errors("nothing,here\n1,2\n").is_empty());
    }
}
