//! SendGrid's global unsubscribes, read back for Cohort's suppression list (ABI 1.3).
//!
//! `GET /v3/suppression/unsubscribes?start_time=…&limit=500&offset=…` lists the addresses that
//! unsubscribed from all of the account's mail (an unsubscribe link, a List-Unsubscribe click,
//! or added by hand), newest first, each with its Unix `created` time. The cursor is the newest
//! `created` seen: the next read starts there (inclusive, so an address unsubscribed in the
//! same second is not missed; reading one twice changes nothing).
//!
//! Group (ASM) unsubscribes are not read: they opt out of one kind of mail only, and Cohort's
//! suppression list stops all marketing.

use cohort_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Api, rate_limit_wait};

/// Rows per page (SendGrid's maximum).
const PAGE: usize = 500;
/// Pages read in one call at most; the rest waits for the next run's cursor.
const MAX_PAGES: usize = 200;

#[derive(Debug, Deserialize)]
struct Row {
    email: String,
    #[serde(default)]
    created: i64,
}

/// The global unsubscribes since `cursor` (`{"since": UNIX}`, or `null` for all; mid-way
/// through a long list, also the `offset` reached and the `newest` time seen).
pub fn read(api: &Api, cursor: &Value) -> Result<SuppressionsPage, PluginError> {
    let since = cursor.get("since").and_then(Value::as_i64);
    let start = cursor
        .get("offset")
        .and_then(Value::as_u64)
        .map_or(0, |o| usize::try_from(o).unwrap_or(0));
    let mut newest = cursor.get("newest").and_then(Value::as_i64).or(since);
    let mut suppressions = Vec::new();
    for page in 0..MAX_PAGES {
        let request = api
            .client()
            .get("/v3/suppression/unsubscribes")
            .query_opt("start_time", since)
            .query("limit", PAGE)
            .query("offset", start + page * PAGE)
            .allow(429);
        let response = request.send()?;
        if response.status() == 429 {
            return Err(PluginError::retry(
                format!(
                    "SendGrid is rate limiting this API key (429) while reading its unsubscribes: {}",
                    response.excerpt()
                ),
                Some(rate_limit_wait(&response)),
            ));
        }
        let rows: Vec<Row> = response.json()?;
        let full = rows.len() == PAGE;
        for row in rows {
            newest = Some(newest.map_or(row.created, |n| n.max(row.created)));
            suppressions.push(Suppression {
                email: row.email,
                reason: SuppressionReason::Unsubscribed,
                detail: Some("global unsubscribe".to_owned()),
            });
        }
        if !full {
            return Ok(SuppressionsPage {
                suppressions,
                next_cursor: newest.map_or(Value::Null, |n| json!({ "since": n })),
                done: true,
            });
        }
    }
    // More than one call should read: the host asks again from here.
    Ok(SuppressionsPage {
        suppressions,
        next_cursor: json!({ "since": since, "offset": start + MAX_PAGES * PAGE, "newest": newest }),
        done: false,
    })
}
