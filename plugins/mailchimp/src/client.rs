//! Mailchimp's Marketing API 3.0: one member at a time, or a `POST /batches` job polled until
//! it finishes.
//!
//! Status mapping is the SDK's (`sdk::http`), with one refinement: a 4xx about a member
//! (Mailchimp's `400 Invalid Resource`, `400 Member In Compliance State`, …) rejects that
//! record with Mailchimp's own title, detail and field errors, read from its problem document.
//! 401 and 403 name `/api_key`; 429 and 5xx retry (the host first honours `Retry-After`).
//!
//! Every change is idempotent at Mailchimp: a `PUT` by subscriber hash and a tag set active or
//! inactive leave the list the same however often they are applied. So a chunk retried after
//! a lost answer, or a batch job submitted again, never changes anything twice.

use std::time::{Duration, Instant};

use cohort_plugin_api::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::Validated;
use crate::mapping::{self, Change, Kind};

/// Client-side statuses that are about the record, not the request: the record is rejected
/// with Mailchimp's reason.
const RECORD_ERRORS: &[u16] = &[400, 404, 405, 409, 410, 413, 422];

/// The host's bucket for a Mailchimp account: a ceiling that never binds before the
/// connections do (see [`Api::new`]).
pub const REQUESTS_PER_SECOND: f64 = 1000.0;

/// The list, through the host.
#[derive(Debug)]
pub struct Api {
    client: Client,
    list: String,
    poll_interval: Duration,
    batch_timeout: Duration,
}

/// A batch job, as `POST /batches` and `GET /batches/{id}` answer it (`Batch` in the spec).
#[derive(Debug, Deserialize)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// `pending`, `preprocessing`, `started`, `finalizing`, `finished`.
    pub status: String,
    /// Operations that answered an error.
    #[serde(default)]
    pub errored_operations: u64,
    /// Operations in the job.
    #[serde(default)]
    pub total_operations: u64,
}

/// One operation of a `POST /batches` body (`BatchOperation` in the spec's terms: a request
/// Mailchimp runs for the job, its body a JSON string).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchOperation {
    /// `PUT`, `POST`.
    pub method: &'static str,
    /// The path under the API's base.
    pub path: String,
    /// `<index of the change>.<what>`: `member`, `tag`, `old`, `untag`.
    pub operation_id: String,
    /// The request's JSON body, as text.
    pub body: String,
}

/// Members per page of `GET /lists/{id}/members` (Mailchimp's maximum).
const MEMBERS_PAGE: usize = 1000;

/// A page of members, with only the fields asked for.
#[derive(Debug, Deserialize)]
struct MembersPage {
    #[serde(default)]
    members: Vec<ListedMember>,
    #[serde(default)]
    total_items: u64,
}

#[derive(Debug, Deserialize)]
struct ListedMember {
    email_address: String,
    #[serde(default)]
    last_changed: String,
}

impl Api {
    /// A client for the configured list. Mailchimp takes the key as the password of HTTP Basic
    /// (any user name).
    ///
    /// Mailchimp limits simultaneous connections, not requests per second: every request names
    /// `connections`, and the host lets that many of the account's requests out at once, from
    /// however many chunks (and campaigns) are in progress. The
    /// host's default bucket (10 a second) would bind long before ten connections are busy,
    /// so the client asks for one that does not: [`REQUESTS_PER_SECOND`], which ten
    /// connections reach only if Mailchimp answered in under 10 ms. A destination's own
    /// `rate_limit` still wins.
    pub fn new(host: Host, config: &Validated) -> Api {
        let client = Client::new(host, config.base_url.clone())
            .rate_limit(
                REQUESTS_PER_SECOND,
                u32::try_from(config.connections).unwrap_or(1),
            )
            .connections(config.connections)
            .basic("/api_key", "cohort", &config.api_key)
            .timeout(config.timeout)
            .client_errors(ClientErrors::RejectRecords);
        Api {
            client,
            list: config.list_id.clone(),
            poll_interval: config.poll_interval,
            batch_timeout: config.batch_timeout,
        }
    }

    fn member_path(&self, hash: &str) -> String {
        format!("/lists/{}/members/{hash}", self.list)
    }

    fn tags_path(&self, hash: &str) -> String {
        format!("/lists/{}/members/{hash}/tags", self.list)
    }

    /// Sends `request`; a 4xx about the record comes back as `Err(Rejected)` with Mailchimp's
    /// reason, a 404 as `Ok(None)` when `missing_ok` (nothing there to change).
    fn send(&self, mut request: Request, missing_ok: bool) -> Result<Option<Response>, HttpError> {
        for status in RECORD_ERRORS {
            request = request.allow(*status);
        }
        let response = request.send()?;
        match response.status() {
            404 if missing_ok => Ok(None),
            s if RECORD_ERRORS.contains(&s) => Err(HttpError::Rejected {
                status: s,
                reason: mapping::reason(s, response.text()),
            }),
            _ => Ok(Some(response)),
        }
    }

    /// Applies one change now: the member, then its tag.
    pub fn apply(&self, change: &Change, tag: Option<&str>) -> Result<Acks, HttpError> {
        match &change.kind {
            Kind::Upsert { body, old_hash } => {
                self.send(
                    self.client
                        .put(&self.member_path(&change.hash))
                        .json(body)?,
                    false,
                )?;
                if let Some(tag) = tag {
                    let request = self
                        .client
                        .post(&self.tags_path(&change.hash))
                        .retry(true)
                        .json(&mapping::tags_body(tag, true))?;
                    self.send(request, false)?;
                    if let Some(old) = old_hash {
                        let request = self
                            .client
                            .post(&self.tags_path(old))
                            .retry(true)
                            .json(&mapping::tags_body(tag, false))?;
                        self.send(request, true)?;
                    }
                }
            }
            Kind::Remove => {
                if let Some(tag) = tag {
                    let request = self
                        .client
                        .post(&self.tags_path(&change.hash))
                        .retry(true)
                        .json(&mapping::tags_body(tag, false))?;
                    self.send(request, true)?;
                }
            }
        }
        Ok(Acks::All)
    }

    /// The addresses whose member status is `status` (`unsubscribed`, `cleaned`) and changed
    /// after `since` (ISO 8601; `None`: ever), with each one's `last_changed`, every page.
    pub fn members_with_status(
        &self,
        status: &str,
        since: Option<&str>,
    ) -> Result<Vec<(String, String)>, HttpError> {
        let mut found = Vec::new();
        let mut offset = 0;
        loop {
            let page: MembersPage = self
                .client
                .get(&format!("/lists/{}/members", self.list))
                .query("status", status)
                .query_opt("since_last_changed", since)
                .query(
                    "fields",
                    "members.email_address,members.last_changed,total_items",
                )
                .query("count", MEMBERS_PAGE)
                .query("offset", offset)
                .client_errors(ClientErrors::Fatal)
                .send()?
                .json()?;
            let got = page.members.len();
            found.extend(
                page.members
                    .into_iter()
                    .map(|m| (m.email_address, m.last_changed)),
            );
            offset += got;
            if got == 0 || offset as u64 >= page.total_items {
                return Ok(found);
            }
        }
    }

    /// The operations of a `POST /batches` body for `changes`; each `operation_id` starts with
    /// the change's index.
    ///
    /// Typed rather than built as JSON values: a job's body is a thousand members, and
    /// building it is on the path between a connection's last poll and its next submission.
    pub fn batch_operations(&self, changes: &[&Change], tag: Option<&str>) -> Vec<BatchOperation> {
        // The same two tag bodies for every member.
        let tag_bodies = tag.map(|tag| {
            (
                mapping::tags_body(tag, true).to_string(),
                mapping::tags_body(tag, false).to_string(),
            )
        });
        let tag_op = |i: usize, hash: &str, active: bool, what: &str| {
            tag_bodies.as_ref().map(|(on, off)| BatchOperation {
                method: "POST",
                path: self.tags_path(hash),
                operation_id: format!("{i}.{what}"),
                body: if active { on.clone() } else { off.clone() },
            })
        };
        let mut ops = Vec::with_capacity(changes.len() * 2);
        for (i, change) in changes.iter().enumerate() {
            match &change.kind {
                Kind::Upsert { body, old_hash } => {
                    ops.push(BatchOperation {
                        method: "PUT",
                        path: self.member_path(&change.hash),
                        operation_id: format!("{i}.member"),
                        body: body.to_string(),
                    });
                    ops.extend(tag_op(i, &change.hash, true, "tag"));
                    if let Some(old) = old_hash {
                        ops.extend(tag_op(i, old, false, "old"));
                    }
                }
                Kind::Remove => ops.extend(tag_op(i, &change.hash, false, "untag")),
            }
        }
        ops
    }

    /// Applies `changes` through one batch job, resumed when this chunk's job was submitted
    /// by an earlier push (its id is kept in the host's state under `batch/<chunk key>`).
    ///
    /// A job that finishes without errors acknowledges every change. Mailchimp reports each
    /// operation's own result only in a gzipped archive, which the host's HTTP service (text
    /// bodies) cannot carry: when a job had errors, its changes are applied again one by one,
    /// which is harmless (every change is idempotent) and gives each rejected record
    /// Mailchimp's own reason.
    pub fn apply_batch(
        &self,
        chunk_key: &str,
        keys: &[&str],
        changes: &[&Change],
        tag: Option<&str>,
    ) -> Result<Acks, HttpError> {
        let host = *self.client.host();
        let state_key = format!("batch/{chunk_key}");
        // A host before ABI 1.2 keeps no state: the job is then submitted again on a retry.
        let resumed = host
            .state_get(&state_key)
            .ok()
            .flatten()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        let id = match resumed {
            Some(id) => id,
            None => {
                #[derive(Serialize)]
                struct Body {
                    operations: Vec<BatchOperation>,
                }
                let body = Body {
                    operations: self.batch_operations(changes, tag),
                };
                // Safe to repeat: the job's operations are idempotent.
                let request = self.client.post("/batches").retry(true).json(&body)?;
                let job: Job = request.client_errors(ClientErrors::Fatal).send()?.json()?;
                let _ = host.state_put(&state_key, Some(&json!({"id": job.id})));
                host.info(&format!(
                    "Mailchimp batch {} submitted: {} members",
                    job.id,
                    changes.len()
                ));
                job.id
            }
        };
        let job = self.wait(&id)?;
        let _ = host.state_put(&state_key, None);
        if job.errored_operations == 0 {
            return Ok(Acks::All);
        }
        host.warn(&format!(
            "Mailchimp batch {} finished with {} of {} operations in error; applying its \
             members one by one for their reasons",
            job.id, job.errored_operations, job.total_operations
        ));
        let mut outcomes = Vec::with_capacity(changes.len());
        let mut waiting: Option<(String, Option<u64>)> = None;
        for (key, change) in keys.iter().zip(changes) {
            let status = match &waiting {
                Some((reason, after)) => OutcomeStatus::Retry {
                    reason: reason.clone(),
                    retry_after_ms: *after,
                },
                None => match self.apply(change, tag) {
                    Ok(_) => OutcomeStatus::Ok,
                    Err(HttpError::Rejected { reason, .. }) => OutcomeStatus::Rejected { reason },
                    Err(HttpError::Plugin(PluginError::Retry {
                        message,
                        retry_after,
                    })) => {
                        let after = retry_after.map(|d| d.as_millis() as u64);
                        waiting = Some((message.clone(), after));
                        OutcomeStatus::Retry {
                            reason: message,
                            retry_after_ms: after,
                        }
                    }
                    Err(other) => return Err(other),
                },
            };
            outcomes.push(Outcome {
                key: (*key).to_owned(),
                status,
            });
        }
        Ok(Acks::Each(outcomes))
    }

    /// Polls a job until it is `finished`; past `batch_timeout`, its operations are retried
    /// later (the job's id stays in the state, so the retry waits for the same job).
    fn wait(&self, id: &str) -> Result<Job, HttpError> {
        let host = *self.client.host();
        let started = Instant::now();
        loop {
            let job: Job = self
                .client
                .get(&format!("/batches/{id}"))
                .client_errors(ClientErrors::Fatal)
                .send()?
                .json()?;
            if job.status == "finished" {
                return Ok(job);
            }
            if started.elapsed() >= self.batch_timeout {
                return Err(PluginError::retry(
                    format!(
                        "Mailchimp batch {id} is still {} after {} s",
                        job.status,
                        self.batch_timeout.as_secs()
                    ),
                    Some(self.poll_interval.max(Duration::from_secs(1))),
                )
                .into());
            }
            let until = Instant::now() + self.poll_interval;
            while Instant::now() < until {
                host.check_cancelled()?;
                std::thread::sleep(Duration::from_millis(50).min(self.poll_interval));
            }
        }
    }
}
