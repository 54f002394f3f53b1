//! Stages 3 to 5 for one campaign: plan, render, push.
//!
//! - [`plan`]: who should be at the destination now (the campaign's segments, each member's
//!   rendered audience fields and their hash), what the destination acknowledged, and the
//!   core's [`delivery::plan`](cohort_core::delivery::plan) of what to push.
//! - [`render`]: every planned operation rendered before any is pushed, so a template bug
//!   fails before anything is sent rather than halfway through.
//! - [`push`]: batches pushed with each operation's intent recorded first and its outcome
//!   after, so a crash in between is harmless (see `cohort_core::delivery`); several at once
//!   to a destination that takes them, in the orders [`pipeline`] keeps.
//!
//! Policy (who may be contacted, what an outcome does to the state, keys, hashes) is the core's;
//! this module gathers the facts, carries the plan out and records it.

mod pipeline;
mod plan;
mod push;
mod render;

use std::collections::HashSet;

use cohort_config::{Campaign, Workspace};
use cohort_core::CustomerId;
use cohort_core::Timestamp;
use cohort_core::delivery::{self, Eligibility, Mode};
use cohort_plugin_host::{HostServices, HttpService};
use cohort_render::Renderer;
use cohort_store::{RecordError, WorkspaceStore};

pub use self::render::{Preview, member_ids, preview};

use crate::error::{Context as _, Result};
use crate::failpoint::Failpoint;
use crate::observer::Observer;
use crate::plugins::Plugins;
use crate::segments::Computed;
use crate::summary::CampaignSummary;

/// What every campaign of a run shares.
#[derive(Debug)]
pub struct Shared<'a> {
    /// The workspace's store.
    pub ws: &'a WorkspaceStore,
    /// The workspace's config.
    pub workspace: &'a Workspace,
    /// Customers, features and memberships as computed this run.
    pub computed: &'a Computed,
    /// The workspace's templates.
    pub renderer: &'a Renderer,
    /// Lower-cased suppressed addresses.
    pub suppressed: &'a HashSet<String>,
    /// The run's clock.
    pub now: Timestamp,
    /// Whether to stop before pushing.
    pub dry_run: bool,
    /// Whether to replace each audience wholesale (`cohort run --resync`).
    pub resync: bool,
    /// The run, naming replace sessions.
    pub run_id: i64,
    /// The failpoint armed for crash tests.
    pub failpoint: &'a Failpoint,
}

impl Shared<'_> {
    /// Whether customer `id` may be contacted by a campaign in `mode` (the core decides; this
    /// gathers the facts).
    pub fn eligibility(&self, mode: Mode, id: &CustomerId) -> Eligibility {
        match self.computed.customer(id.as_str()) {
            None => Eligibility::Unknown,
            Some((_, customer)) => {
                delivery::eligibility(mode, &delivery::Contact::of(customer), |email| {
                    self.suppressed.contains(email)
                })
            }
        }
    }
}

/// How a run reaches destinations.
pub(crate) struct Pushing<'a> {
    pub(crate) plugins: &'a Plugins,
    pub(crate) http: &'a HttpService,
    pub(crate) services: HostServices,
    pub(crate) observer: &'a dyn Observer,
}

/// Plans, renders and pushes one campaign.
pub(crate) async fn run_campaign(
    shared: &Shared<'_>,
    pushing: &Pushing<'_>,
    campaign: &Campaign,
    errors: &mut Vec<RecordError>,
) -> Result<CampaignSummary> {
    let destination = shared
        .workspace
        .destination(&campaign.destination)
        .with_context(|| {
            format!(
                "campaign `{}`: no destination `{}`",
                campaign.name, campaign.destination
            )
        })?;
    let mut summary = CampaignSummary {
        name: campaign.name.clone(),
        destination: destination.name.clone(),
        mode: campaign.mode.as_str().to_owned(),
        ..CampaignSummary::default()
    };
    let planned = plan::plan(shared, campaign, errors).await?;
    planned.count(&mut summary);
    let ready = render::render_all(shared, campaign, &planned, &mut summary, errors).await?;
    if shared.dry_run {
        return Ok(summary);
    }
    planned.commit_local(shared).await?;
    let late = pushing
        .plugins
        .get(&destination.plugin)
        .is_ok_and(|p| p.manifest().capabilities.late_outcomes);
    if ready.is_empty() && !late {
        return Ok(summary);
    }
    push::push_all(
        shared,
        pushing,
        destination,
        campaign,
        &planned,
        ready,
        &mut summary,
        errors,
    )
    .await?;
    Ok(summary)
}
