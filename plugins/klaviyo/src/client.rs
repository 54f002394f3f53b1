//! Klaviyo's JSON:API: profiles upserted one by one or through bulk import jobs, and the
//! list's membership through its relationships endpoint.
//!
//! Every request carries `Authorization: Klaviyo-API-Key …`, the `revision` header and JSON:API
//! content types. Klaviyo limits each endpoint separately, per account, with a burst (per
//! second) and a steady rate (per minute), both over sliding windows, and says on every answer
//! where the steady one stands: `RateLimit-Remaining` requests are left, and the oldest leaves
//! the window in `RateLimit-Reset` seconds. So each family of endpoints paces itself in two
//! parts:
//! - the burst, by its own rate-limit bucket at the host: the burst rate, evenly spaced (a
//!   sliding second holds no more than the burst);
//! - the steady rate, by Klaviyo's own count: after an answer that leaves nothing, the family's
//!   next request waits `RateLimit-Reset`. A bucket cannot do this part: one paced at the
//!   steady rate with the burst on top lets 160 through in the first minute where Klaviyo
//!   allows 150, and one paced under it leaves the burst unused. The headers also count what
//!   other clients of the account sent.
//!
//! A 429 (another client used the window) is retried by the host after `Retry-After`.
//!
//! A 4xx about a record (`400 Invalid input.`, a `409` duplicate) rejects that record with
//! Klaviyo's title, detail and pointer; 401 and 403 name `/api_key`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cohort_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Validated;
use crate::mapping;

/// Client-side statuses that are about the record: rejected with Klaviyo's reason.
const RECORD_ERRORS: &[u16] = &[400, 404, 409, 422];
/// JSON:API's media type.
const JSON_API: &str = "application/vnd.api+json";
/// Profiles per list relationships call (Klaviyo's maximum).
pub const LIST_CHUNK: usize = 1000;
/// Addresses per `any(email,[…])` filter (a page holds at most 100).
pub const LOOKUP_CHUNK: usize = 100;

/// Klaviyo's published burst per endpoint family, requests per second. The steady limits
/// (750, 750, 150 and 150 a minute) are not written here: Klaviyo's headers count them.
const PROFILE_IMPORT: u32 = 75;
const PROFILES_READ: u32 = 75;
const LISTS: u32 = 10;
const BULK_JOBS: u32 = 10;

/// One family of endpoints: its client (and with it, its bucket at the host), and when its
/// steady window has room again.
#[derive(Debug)]
struct Family {
    client: Client,
    /// Set by an answer that left nothing of the steady window: no request before then.
    not_before: Mutex<Option<Instant>>,
}

/// The account, through the host.
#[derive(Debug)]
pub struct Api {
    import: Family,
    read: Family,
    lists: Family,
    jobs: Family,
    list_id: String,
    poll_interval: Duration,
    job_timeout: Duration,
}

/// A JSON:API document with one resource.
#[derive(Debug, Deserialize)]
struct One {
    data: Resource,
}

#[derive(Debug, Deserialize)]
struct Resource {
    id: String,
    #[serde(default)]
    attributes: Value,
}

/// A page of resources with its `links.next`.
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<Resource>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Debug, Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

/// A fingerprint of the key, to name its rate-limit buckets without showing it (FNV-1a).
fn fingerprint(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Api {
    /// Clients for the configured account and list, one per endpoint family.
    pub fn new(host: Host, config: &Validated) -> Api {
        let account = fingerprint(&config.api_key);
        let client = |family: &str, burst: u32| Family {
            client: Client::new(host, config.base_url.clone())
                .secret_header(
                    "/api_key",
                    "Authorization",
                    &format!("Klaviyo-API-Key {}", config.api_key),
                )
                .header("revision", &config.revision)
                .header("Accept", JSON_API)
                .timeout(config.timeout)
                .client_errors(ClientErrors::RejectRecords)
                .account(format!("{account}/{family}"))
                // The burst only: the steady rate is Klaviyo's count (see the module doc).
                // Klaviyo counts the burst over any second, so the bucket holds one token:
                // a bucket that let `burst` through at once and refilled at `burst` a second
                // would send twice the burst in the first second.
                .rate_limit(f64::from(burst), 1),
            not_before: Mutex::new(None),
        };
        Api {
            import: client("profile-import", PROFILE_IMPORT),
            read: client("profiles", PROFILES_READ),
            lists: client("lists", LISTS),
            jobs: client("bulk-jobs", BULK_JOBS),
            list_id: config.list_id.clone(),
            poll_interval: config.poll_interval,
            job_timeout: config.job_timeout,
        }
    }

    /// Creates or updates one profile (`POST /api/profile-import`); its id.
    pub fn upsert_profile(&self, attributes: &Value) -> Result<String, HttpError> {
        let body = mapping::profile_import(attributes).to_string();
        // Safe to repeat: an upsert by address.
        let request = self
            .import
            .client
            .post("/api/profile-import")
            .retry(true)
            .body(JSON_API, body);
        let one: One = self.import.send(request)?.json()?;
        Ok(one.data.id)
    }

    /// `POST` (add) or `DELETE` (remove) `/api/lists/{id}/relationships/profiles`, at most
    /// [`LIST_CHUNK`] ids.
    pub fn list_members(&self, add: bool, ids: &[&str]) -> Result<(), HttpError> {
        let path = format!("/api/lists/{}/relationships/profiles", self.list_id);
        let data: Vec<Value> = ids
            .iter()
            .map(|id| json!({"type": "profile", "id": id}))
            .collect();
        let body = json!({ "data": data }).to_string();
        let request = if add {
            self.lists.client.post(&path).retry(true)
        } else {
            self.lists.client.delete(&path)
        };
        self.lists.send(request.body(JSON_API, body))?;
        Ok(())
    }

    /// The ids of the profiles with these addresses (lower-cased), at most [`LOOKUP_CHUNK`];
    /// an address without a profile is absent.
    pub fn find(&self, emails: &[&str]) -> Result<BTreeMap<String, String>, HttpError> {
        let mut found = BTreeMap::new();
        let mut request = Some(
            self.read
                .client
                .get("/api/profiles")
                .query("filter", mapping::email_filter(emails))
                .query("fields[profile]", "email")
                .query("page[size]", LOOKUP_CHUNK),
        );
        while let Some(r) = request.take() {
            let page: Page = self
                .read
                .send(r.client_errors(ClientErrors::Fatal))?
                .json()?;
            for p in page.data {
                if let Some(email) = p.attributes.get("email").and_then(Value::as_str) {
                    found.insert(email.to_lowercase(), p.id);
                }
            }
            request = page
                .links
                .and_then(|l| l.next)
                .map(|next| self.read.client.get(&next));
        }
        Ok(found)
    }

    /// Profiles whose email marketing was suppressed at or after `since` (ISO 8601): each one's
    /// address, Klaviyo's reason (`UNSUBSCRIBE`, `HARD_BOUNCE`, …) and its timestamp.
    pub fn suppressed_since(
        &self,
        since: &str,
    ) -> Result<Vec<(String, String, String)>, HttpError> {
        let mut found = Vec::new();
        let mut request = Some(
            self.read
                .client
                .get("/api/profiles")
                .query(
                    "filter",
                    format!("greater-or-equal(subscriptions.email.marketing.suppression.timestamp,{since})"),
                )
                .query("additional-fields[profile]", "subscriptions")
                .query(
                    "fields[profile]",
                    "email,subscriptions.email.marketing.suppression",
                )
                .query("page[size]", LOOKUP_CHUNK),
        );
        while let Some(r) = request.take() {
            let page: Page = self
                .read
                .send(r.client_errors(ClientErrors::Fatal))?
                .json()?;
            for p in page.data {
                let Some(email) = p.attributes.get("email").and_then(Value::as_str) else {
                    continue;
                };
                let marketing = &p.attributes["subscriptions"]["email"]["marketing"];
                for s in marketing["suppression"].as_array().into_iter().flatten() {
                    found.push((
                        email.to_lowercase(),
                        s["reason"].as_str().unwrap_or_default().to_owned(),
                        s["timestamp"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
            request = page
                .links
                .and_then(|l| l.next)
                .map(|next| self.read.client.get(&next));
        }
        Ok(found)
    }

    /// Upserts `profiles` (`(key, attributes)`) through one bulk import job that also adds
    /// them to the list, resumed when an earlier push submitted it (its id is kept in the
    /// host's state under `job/<chunk key>`). Profiles the job reports as import errors are
    /// rejected with Klaviyo's reason; the others are acknowledged.
    pub fn bulk_import(
        &self,
        chunk_key: &str,
        profiles: &[(&str, &Value)],
    ) -> Result<Vec<Outcome>, HttpError> {
        let host = *self.jobs.client.host();
        let state_key = format!("job/{chunk_key}");
        let resumed = host
            .state_get(&state_key)
            .ok()
            .flatten()
            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
        let id = match resumed {
            Some(id) => id,
            None => {
                let data: Vec<Value> = profiles
                    .iter()
                    .map(|(_, a)| json!({"type": "profile", "attributes": a}))
                    .collect();
                let body = json!({"data": {
                    "type": "profile-bulk-import-job",
                    "attributes": {"profiles": {"data": data}},
                    "relationships": {"lists": {"data": [{"type": "list", "id": self.list_id}]}},
                }});
                // Safe to repeat: a job of upserts by address.
                let request = self
                    .jobs
                    .client
                    .post("/api/profile-bulk-import-jobs")
                    .retry(true)
                    .client_errors(ClientErrors::Fatal)
                    .body(JSON_API, body.to_string());
                let job: One = self.jobs.send(request)?.json()?;
                let _ = host.state_put(&state_key, Some(&json!({"id": job.data.id})));
                host.info(&format!(
                    "Klaviyo bulk import job {} submitted: {} profiles",
                    job.data.id,
                    profiles.len()
                ));
                job.data.id
            }
        };
        let failed = self.wait(&id)?;
        let mut reasons: BTreeMap<String, String> = BTreeMap::new();
        if failed > 0 {
            reasons = self.import_errors(&id)?;
        }
        let _ = host.state_put(&state_key, None);
        Ok(profiles
            .iter()
            .map(|(key, attributes)| {
                let email = attributes["email"].as_str().unwrap_or_default();
                Outcome {
                    key: (*key).to_owned(),
                    status: match reasons.get(email) {
                        Some(reason) => OutcomeStatus::Rejected {
                            reason: reason.clone(),
                        },
                        None => OutcomeStatus::Ok,
                    },
                }
            })
            .collect())
    }

    /// Polls a job until it is `complete`; its `failed_count`. A cancelled job, or one still
    /// running at `job_timeout`, retries its profiles (a cancelled one is forgotten first).
    fn wait(&self, id: &str) -> Result<u64, HttpError> {
        let host = *self.jobs.client.host();
        let started = Instant::now();
        loop {
            let request = self
                .jobs
                .client
                .get(&format!("/api/profile-bulk-import-jobs/{id}"))
                .client_errors(ClientErrors::Fatal);
            let job: One = self.jobs.send(request)?.json()?;
            let status = job.data.attributes["status"].as_str().unwrap_or_default();
            match status {
                "complete" => return Ok(job.data.attributes["failed_count"].as_u64().unwrap_or(0)),
                "cancelled" => {
                    return Err(PluginError::retry(
                        format!("Klaviyo cancelled bulk import job {id}"),
                        None,
                    )
                    .into());
                }
                _ => {}
            }
            if started.elapsed() >= self.job_timeout {
                return Err(PluginError::retry(
                    format!(
                        "Klaviyo bulk import job {id} is still {status} after {} s",
                        self.job_timeout.as_secs()
                    ),
                    Some(self.poll_interval.max(Duration::from_secs(1))),
                )
                .into());
            }
            pause(&host, self.poll_interval)?;
        }
    }

    /// A job's import errors, by the address of the profile they are about.
    fn import_errors(&self, id: &str) -> Result<BTreeMap<String, String>, HttpError> {
        let mut reasons = BTreeMap::new();
        let mut request = Some(
            self.jobs
                .client
                .get(&format!("/api/profile-bulk-import-jobs/{id}/import-errors"))
                .query("page[size]", 100),
        );
        while let Some(r) = request.take() {
            let page: Page = self
                .jobs
                .send(r.client_errors(ClientErrors::Fatal))?
                .json()?;
            for e in page.data {
                let a = &e.attributes;
                let email = a["original_payload"]["email"]
                    .as_str()
                    .or_else(|| a["original_payload"]["attributes"]["email"].as_str())
                    .map(str::to_lowercase)
                    .unwrap_or_default();
                let reason = mapping::describe(
                    a["title"].as_str().unwrap_or_default(),
                    a["detail"].as_str().unwrap_or_default(),
                    a.get("source"),
                );
                reasons.insert(email, format!("import error: {reason}"));
            }
            request = page
                .links
                .and_then(|l| l.next)
                .map(|next| self.jobs.client.get(&next));
        }
        Ok(reasons)
    }
}

impl Family {
    /// Sends a request once the steady window has room; a 4xx about the record is
    /// `Err(Rejected)` with Klaviyo's reason. An answer that leaves nothing of the window holds
    /// the family's next request for `RateLimit-Reset` (not this call: the next request may
    /// be a while coming, or never).
    fn send(&self, mut request: Request) -> Result<Response, HttpError> {
        let host = *self.client.host();
        let not_before = self
            .not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(at) = not_before {
            pause(&host, at.saturating_duration_since(Instant::now()))?;
        }
        for status in RECORD_ERRORS {
            request = request.allow(*status);
        }
        let response = request.send()?;
        let number = |name: &str| {
            response
                .header(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        if let (Some(0), Some(reset)) = (number("ratelimit-remaining"), number("ratelimit-reset")) {
            *self.not_before.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + Duration::from_secs(reset.min(60)));
        }
        let status = response.status();
        if RECORD_ERRORS.contains(&status) {
            return Err(HttpError::Rejected {
                status,
                reason: mapping::reason(status, response.text()),
            });
        }
        Ok(response)
    }
}

/// Sleeps `how_long`, ending early with an error when the host cancels.
fn pause(host: &Host, how_long: Duration) -> Result<(), PluginError> {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        host.check_cancelled()?;
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    Ok(())
}
