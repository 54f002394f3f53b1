//! `mailchimp`: a destination that keeps a Mailchimp audience (list) in step with a segment.
//!
//! Built on the SDK's connector toolkit like webhook: [`config`] checks the config (the data
//! centre comes from the key), [`mapping`] turns operations into members (by subscriber hash,
//! merge fields from the campaign's `fields`) and Mailchimp's problem documents into reasons,
//! [`client`] talks to the API, and the SDK's `Batcher` answers one outcome per operation.
//!
//! - `upsert` and `mirror`: members are added or updated and tagged with the campaign's
//!   `audience`; in mirror mode a leaver loses the tag (the member stays: leaving a segment is
//!   not unsubscribing).
//! - Consent: Cohort pushes only customers who may be emailed and removes the others; new
//!   members are added `subscribed` (or `pending`), existing ones keep their status, so an
//!   unsubscribe at Mailchimp is never undone.
//! - Small batches go member by member; above `batch_threshold`, through `POST /batches` jobs.
//!   Either way up to `connections` (default 10, Mailchimp's limit) requests are in flight at
//!   once on the account (a cap the host keeps for every campaign on the key, named by the
//!   SDK client), through the SDK's `Batcher::push_concurrent`; twice as
//!   many batch jobs are in progress, since a job waiting for its next poll holds none.
//! - The host keeps three pushes of 10,000 in flight at once (`concurrent_pushes`), each on an
//!   instance of its own: the host's cap is shared by them all, and no member's change depends
//!   on another's, so the next push fills the connections the last one's final jobs leave.
//! - Before a run pushes, the list's `unsubscribed` and `cleaned` members changed since the last
//!   read are reported to Cohort's suppression list (ABI 1.3, `suppressions`).
//!
//! It must not send email (Mailchimp's campaigns do) nor delete members.

pub mod client;
pub mod config;
pub mod mapping;

use cohort_plugin_api::prelude::*;
use serde_json::json;

use crate::client::Api;
use crate::config::{Config, Validated};

/// Batch jobs in progress per connection. Between two polls (`poll_interval`, 5 s by
/// default) a job holds no connection, so with one job per connection they would sit idle
/// most of the time; Mailchimp takes up to 500 pending jobs per account, far above this.
const JOBS_PER_CONNECTION: usize = 2;

/// Operations per push the host hands over when the destination's config sets no `batch_size`:
/// ten batch jobs of the default `batch_size` (1,000), one per connection, with
/// [`CONCURRENT_PUSHES`] of them out at once. At the host's default of 500, no push would reach
/// `batch_threshold`: 100,000 members would go one by one, two requests each.
const PREFERRED_PUSH: u32 = 10_000;

/// Pushes the host may have in flight at once, each on its own instance. With one, the
/// connections sit idle at every push's end: while its last jobs finish, while the host records
/// its outcomes and hands over the next batch, and while the first job's body is built. Two
/// more pushes fill those gaps (measured: 85% of the connections used with one push of 20,000
/// at a time, 93% with two, 94.6% with three of 10,000; docs/connectors/mailchimp.md). Safe
/// because the host keeps the account's cap on connections for every instance, and no
/// member's change depends on another's.
const CONCURRENT_PUSHES: u32 = 3;

/// The mailchimp destination.
#[derive(Debug)]
pub struct Mailchimp {
    api: Api,
    config: Validated,
    host: Host,
}

impl Plugin for Mailchimp {
    type Config = Config;

    fn manifest() -> Manifest {
        // The conformance kit pushes conformance-1@ and conformance-2@example.com.
        let mut example = Example::config(json!({
            "api_key": "0123456789abcdef-us6",
            "list_id": "a1b2c3d4e5",
            "base_url": "{base_url}/3.0",
        }));
        for hash in [
            "71a59637218a5a53d48c9a213245711f",
            "7f0a2e7b289233bc7fe2ff134028a5fe",
        ] {
            example = example
                .exchange(
                    Exchange::new("PUT", format!("/3.0/lists/a1b2c3d4e5/members/{hash}"))
                        .json(&json!({"id": hash, "status": "subscribed"})),
                )
                .exchange(
                    Exchange::post(format!("/3.0/lists/a1b2c3d4e5/members/{hash}/tags"))
                        .status(204),
                );
        }
        Manifest::destination("mailchimp", env!("CARGO_PKG_VERSION"))
            .description(
                "Mailchimp: keeps an audience in step with a segment (members, merge fields, \
                 a tag per campaign audience)",
            )
            .modes([DestinationMode::Upsert, DestinationMode::Mirror])
            .batch_size(PREFERRED_PUSH)
            .concurrent_pushes(CONCURRENT_PUSHES)
            .suppressions()
            .config_schema_of::<Config>()
            .example(
                example.exchange(Exchange::get("/3.0/lists/a1b2c3d4e5/members").json(&json!({
                    "members": [{"email_address": "gone@example.com",
                                 "last_changed": "2026-12-01T10:00:00+00:00"}],
                    "total_items": 1
                }))),
            )
    }

    fn open(config: Config, host: Host) -> Result<Self, PluginError> {
        let config = config.validate()?;
        Ok(Mailchimp {
            api: Api::new(host, &config),
            config,
            host,
        })
    }
}

impl Destination for Mailchimp {
    fn push(&mut self, batch: Batch) -> Result<PushResult, PluginError> {
        let Mailchimp { api, config, host } = self;
        // The tag that marks the segment's members: the campaign's audience (its name when it
        // names none).
        let tag = batch
            .audience
            .as_deref()
            .or(batch.campaign.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let prepare = |op: &Operation| {
            let change = mapping::change(config, op)?;
            if tag.is_none() && op.action == Action::Remove {
                return Err("the campaign names no audience, so there is no tag to remove".into());
            }
            Ok(change)
        };
        // Every change is idempotent and none depends on another (see `client`), so chunks
        // go side by side; the client holds their requests to the connections Mailchimp
        // allows.
        let batcher = Batcher::new(*host);
        if batch.operations.len() <= config.batch_threshold {
            // Member by member: one request for the member, one for its tag, back to back, so
            // a chunk per connection keeps them busy.
            return batcher
                .concurrency(config.connections)
                .max_records(1)
                .push_concurrent(&batch.operations, prepare, |chunk| {
                    api.apply(&chunk.items[0], tag)
                });
        }
        // A job spends most of its life waiting for its next poll, holding no connection:
        // more jobs than connections are in progress, and a connection one leaves is taken by
        // another.
        batcher
            .concurrency(config.connections * JOBS_PER_CONNECTION)
            .max_records(config.batch_size)
            .max_bytes(8 << 20)
            .push_concurrent(&batch.operations, prepare, |chunk| {
                let keys: Vec<&str> = chunk.operations.iter().map(|o| o.key.as_str()).collect();
                let changes: Vec<_> = chunk.items.iter().collect();
                api.apply_batch(&chunk.key, &keys, &changes, tag)
            })
    }

    fn suppressions(&mut self, cursor: serde_json::Value) -> Result<SuppressionsPage, PluginError> {
        self.read_suppressions(&cursor)
    }
}

impl Mailchimp {
    /// The list's members whose status is `unsubscribed` or `cleaned`, changed since the
    /// cursor (`{"since": ISO 8601}`); the new cursor is the latest `last_changed` seen.
    fn read_suppressions(
        &self,
        cursor: &serde_json::Value,
    ) -> Result<SuppressionsPage, PluginError> {
        let since = cursor.get("since").and_then(serde_json::Value::as_str);
        let mut newest = since.map(str::to_owned);
        let mut suppressions = Vec::new();
        for (status, reason) in [
            ("unsubscribed", SuppressionReason::Unsubscribed),
            ("cleaned", SuppressionReason::Bounced),
        ] {
            for (email, changed) in self.api.members_with_status(status, since)? {
                if newest.as_deref().is_none_or(|n| changed.as_str() > n) {
                    newest = Some(changed);
                }
                suppressions.push(Suppression {
                    email,
                    reason,
                    detail: Some(status.to_owned()),
                });
            }
        }
        Ok(SuppressionsPage {
            suppressions,
            next_cursor: newest.map_or(serde_json::Value::Null, |n| json!({ "since": n })),
            done: true,
        })
    }
}

cohort_plugin_api::export_plugin!(destination: Mailchimp);
