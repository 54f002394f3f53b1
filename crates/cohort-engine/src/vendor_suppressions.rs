//! Reading the destinations' own unsubscribes back into Cohort's suppression list, before a
//! run pushes anything (ABI 1.3, `suppressions`).
//!
//! A person who unsubscribes at Mailchimp, Klaviyo or SendGrid did so for the shop, not for one
//! tool: once a destination reports the address, no campaign of the workspace contacts it
//! again, and mirror campaigns take it off their audiences. So every destination of the job
//! whose manifest declares `capabilities.suppressions` is asked, from the cursor it answered
//! last time, before the campaigns plan.
//!
//! Order of writes: the addresses are stored first, the cursor after, so a crash in between
//! reads the same addresses again (storing one twice changes nothing). A dry run reads and
//! reports, and stores neither. A destination that cannot be read fails the run: pushing
//! without knowing who unsubscribed could email them.

use std::collections::{BTreeMap, HashSet};

use cohort_config::{Campaign, Workspace};
use cohort_plugin_host::wire::SuppressionReason as Reason;
use cohort_plugin_host::{AsyncInstance, HostServices, RateLimit, RetryPolicy, retry};
use cohort_store::{RecordError, SuppressionReason, WorkspaceStore};
use serde_json::Value;

use crate::campaigns::Pushing;
use crate::error::{Context as _, Result};
use crate::instance::CALL_TIMEOUT;
use crate::plugins::prepare;
use crate::state::PluginState;
use crate::summary::VendorSuppressions;

/// The key, in scope `suppressions:DESTINATION`, of the cursor the destination answered last.
const CURSOR: &str = "cursor";
/// Pages read from one destination in one run, at most (a plugin that never says `done`).
const MAX_PAGES: usize = 10_000;

/// What was read: the count per destination, and every address (lower-cased), so that a dry
/// run can count them as suppressed without storing them.
pub(crate) struct Read {
    pub(crate) summaries: Vec<VendorSuppressions>,
    pub(crate) emails: HashSet<String>,
}

/// Asks each destination of `campaigns` that reports suppressions for those since its cursor,
/// and (unless `dry_run`) stores them and the new cursor.
pub(crate) async fn read_back(
    ws: &WorkspaceStore,
    workspace: &Workspace,
    campaigns: &[&Campaign],
    pushing: &Pushing<'_>,
    dry_run: bool,
    errors: &mut Vec<RecordError>,
) -> Result<Read> {
    let mut read = Read {
        summaries: Vec::new(),
        emails: HashSet::new(),
    };
    let mut asked = HashSet::new();
    let known = ws.suppressed_emails().await?;
    for campaign in campaigns {
        let Some(destination) = workspace.destination(&campaign.destination) else {
            continue;
        };
        if !asked.insert(destination.name.as_str()) {
            continue;
        }
        let Ok(plugin) = pushing.plugins.get(&destination.plugin) else {
            continue;
        };
        if !plugin.manifest().capabilities.suppressions {
            continue;
        }
        let what = || {
            format!(
                "reading unsubscribes from destination `{}`",
                destination.name
            )
        };
        let prepared = prepare(plugin, &destination.config)?;
        let services = HostServices {
            secrets: prepared.secrets.clone(),
            ..pushing.services.clone()
        }
        .with_http(pushing.http.clone())
        .with_rate_limit(destination.rate_limit.as_ref().map(|r| RateLimit {
            per_second: r.per_second,
            burst: r.burst,
        }))
        .with_state(std::sync::Arc::new(PluginState::new(
            ws,
            format!("destination:{}", destination.name),
        )));
        let cancel = services.cancel.clone();
        let instance = AsyncInstance::open(plugin, &prepared.value, services, CALL_TIMEOUT)
            .await
            .with_context(what)?;
        let scope = format!("suppressions:{}", destination.name);
        let mut cursor = ws.state_get(&scope, CURSOR).await?.unwrap_or(Value::Null);
        let policy = RetryPolicy::default();
        // Address → reason: the last word on an address wins.
        let mut found: BTreeMap<String, Reason> = BTreeMap::new();
        for _ in 0..MAX_PAGES {
            let page = retry(&policy, &cancel, |_| {
                let (instance, cursor) = (instance.clone(), cursor.clone());
                async move { instance.suppressions(cursor).await }
            })
            .await
            .with_context(what)?;
            for (i, s) in page.suppressions.into_iter().enumerate() {
                let email = s.email.trim().to_lowercase();
                if email.is_empty() || !email.contains('@') || email.contains(char::is_whitespace) {
                    errors.push(RecordError {
                        stage: "suppressions".to_owned(),
                        location: format!("destination {} suppression {}", destination.name, i + 1),
                        message: format!("`{}` is not an email address; skipped", s.email),
                    });
                    continue;
                }
                found.insert(email, s.reason);
            }
            cursor = page.next_cursor;
            if page.done {
                break;
            }
        }
        let source = format!("destination:{}", destination.name);
        let new = found.keys().filter(|e| !known.contains(*e)).count() as u64;
        if !dry_run {
            for (email, reason) in &found {
                ws.suppress(email, stored(*reason), &source).await?;
            }
            ws.state_put(&scope, CURSOR, Some(&cursor)).await?;
        }
        read.summaries.push(VendorSuppressions {
            destination: destination.name.clone(),
            read: found.len() as u64,
            new,
        });
        read.emails.extend(found.into_keys());
    }
    Ok(read)
}

/// The store's reason for a vendor's.
fn stored(reason: Reason) -> SuppressionReason {
    match reason {
        Reason::Unsubscribed => SuppressionReason::Unsubscribed,
        Reason::Bounced => SuppressionReason::Bounced,
        Reason::Complained => SuppressionReason::Complained,
    }
}
