//! Rendering a campaign: the audience fields of each member, each planned operation, and the
//! preview `cohort campaign preview` shows.
//!
//! A destination gets only what the campaign sends it (data minimisation): an audience
//! operation carries the campaign's `fields` and nothing else of the customer, a message only
//! what its templates render. A removal carries the payload the destination acknowledged last,
//! which is what it holds and must remove; it needs no template, so a customer deleted from
//! the store can still be removed.
#![allow(
    clippy::result_large_err,
    reason = "RenderError names template, position and customer; it is built once per failed record"
)]

use std::collections::HashMap;

use cohort_config::Campaign;
use cohort_core::delivery::{self, Acked, Eligibility, Planned, Status};
use cohort_core::{Customer, CustomerId};
use cohort_plugin_host::wire::{self, Message, Operation};
use cohort_render::{Context, RenderError, Renderer, feature_map};
use cohort_store::RecordError;
use serde_json::{Map, Value};

use super::Shared;
use super::plan::{CampaignPlan, members};
use crate::error::Result;
use crate::segments::Computed;
use crate::summary::CampaignSummary;

/// Renders every planned operation before any is pushed, so a template bug fails before
/// anything is sent rather than halfway through. Returns each renderable operation with the
/// index of its plan entry; the others are counted as failed and reported.
pub(crate) async fn render_all(
    shared: &Shared<'_>,
    campaign: &Campaign,
    planned: &CampaignPlan,
    summary: &mut CampaignSummary,
    errors: &mut Vec<RecordError>,
) -> Result<Vec<(usize, Operation)>> {
    let renderer = CampaignRenderer { shared, campaign };
    // What the destination holds now, for removals (what to remove) and for changes of a
    // member it holds (what was there before).
    let holding: Vec<&str> = planned
        .plan
        .ops
        .iter()
        .filter(|op| {
            op.action == delivery::Action::Remove
                || planned
                    .before(&op.customer)
                    .is_some_and(|a| a.status == Status::Member)
        })
        .map(|op| op.customer.as_str())
        .collect();
    let held = if holding.is_empty() || planned.mode == delivery::Mode::Send {
        HashMap::new()
    } else {
        shared
            .ws
            .destination_payloads(&campaign.name, &holding)
            .await?
    };
    let mut ready = Vec::with_capacity(planned.plan.ops.len());
    for (i, op) in planned.plan.ops.iter().enumerate() {
        let segment = planned.members.get(&op.customer).map(String::as_str);
        let previous = held.get(op.customer.as_str()).cloned();
        let rendered = match op.action {
            delivery::Action::Remove => Ok(Operation {
                key: op.key.clone(),
                action: wire::Action::Remove,
                customer_id: op.customer.clone(),
                customer: None,
                payload: previous.unwrap_or(Value::Null),
                previous: Value::Null,
                message: None,
            }),
            delivery::Action::Upsert => {
                let fields = match planned.fields.get(&op.customer) {
                    Some(f) => Ok(f.clone()),
                    None => renderer.fields(&op.customer, segment.unwrap_or("")),
                };
                fields.map(|payload| Operation {
                    key: op.key.clone(),
                    action: wire::Action::Upsert,
                    customer_id: op.customer.clone(),
                    customer: None,
                    previous: previous.filter(|p| *p != payload).unwrap_or(Value::Null),
                    payload,
                    message: None,
                })
            }
            delivery::Action::Send => renderer.send(op, segment),
        };
        match rendered {
            Ok(operation) => ready.push((i, operation)),
            Err(e) => {
                summary.failed += 1;
                errors.push(render_error(campaign, &op.customer, &e));
            }
        }
    }
    Ok(ready)
}

/// Renders a campaign's templates for one customer.
pub(crate) struct CampaignRenderer<'a> {
    pub(crate) shared: &'a Shared<'a>,
    pub(crate) campaign: &'a Campaign,
}

impl CampaignRenderer<'_> {
    fn error(&self, customer: &str, message: &str) -> RenderError {
        RenderError {
            template: self.campaign.name.clone(),
            origin: self.campaign.at.to_string(),
            line: None,
            column: None,
            customer_id: customer.to_owned(),
            message: message.to_owned(),
        }
    }

    fn context(
        &self,
        id: &CustomerId,
        segment: Option<&str>,
    ) -> Result<(Context, &Customer), RenderError> {
        let computed = self.shared.computed;
        let (row, customer) = computed
            .customer(id.as_str())
            .ok_or_else(|| self.error(id.as_str(), "the customer is no longer in the store"))?;
        let segment_name = segment
            .or(self.campaign.segments.first().map(String::as_str))
            .unwrap_or("");
        let description = self
            .shared
            .workspace
            .segment(segment_name)
            .and_then(|s| s.description.as_deref());
        let mut ctx = self
            .shared
            .renderer
            .context(customer, self.shared.now)
            .features(feature_map(computed.table.row_values(row)))
            .segment(segment_name, description)
            .campaign(&self.campaign.name)
            .top_products(computed.products.get(id).cloned().unwrap_or_default())
            .cart(computed.carts.get(id));
        if let Some(url) = &self.shared.workspace.unsubscribe_url {
            let url = self.shared.renderer.render(&url.name, &ctx)?;
            ctx = ctx.unsubscribe_url(url);
        }
        Ok((ctx, customer))
    }

    /// The audience fields for a customer.
    pub(crate) fn fields(&self, id: &CustomerId, segment: &str) -> Result<Value, RenderError> {
        let (ctx, _) = self.context(id, Some(segment))?;
        let mut out = Map::new();
        for (field, template) in &self.campaign.fields {
            out.insert(
                field.clone(),
                Value::String(self.shared.renderer.render(&template.name, &ctx)?),
            );
        }
        Ok(Value::Object(out))
    }

    /// The message operation for a planned send.
    fn send(&self, op: &Planned, segment: Option<&str>) -> Result<Operation, RenderError> {
        let (ctx, customer) = self.context(&op.customer, segment)?;
        Ok(Operation {
            key: op.key.clone(),
            action: wire::Action::Send,
            customer_id: op.customer.clone(),
            customer: None,
            payload: Value::Null,
            previous: Value::Null,
            message: Some(self.message(&ctx, customer)?),
        })
    }

    /// The operation a planned one would push, for a preview.
    fn operation(&self, op: &Planned, segment: Option<&str>) -> Result<Operation, RenderError> {
        match op.action {
            delivery::Action::Send => self.send(op, segment),
            action => Ok(Operation {
                key: op.key.clone(),
                action,
                customer_id: op.customer.clone(),
                customer: None,
                payload: self.fields(&op.customer, segment.unwrap_or(""))?,
                previous: Value::Null,
                message: None,
            }),
        }
    }

    fn message(&self, ctx: &Context, customer: &Customer) -> Result<Message, RenderError> {
        let renderer = self.shared.renderer;
        let Some(email) = &self.campaign.email else {
            return Err(self.error(ctx.customer_id(), "a send campaign needs [campaigns.email]"));
        };
        let subject = renderer.render(&email.subject.name, ctx)?;
        let html = email
            .html
            .as_ref()
            .map(|t| renderer.render(&t.name, ctx))
            .transpose()?;
        let text = match &email.text {
            Some(t) => Some(renderer.render(&t.name, ctx)?),
            None => html.as_deref().map(Renderer::html_to_text),
        };
        let mut headers = Vec::new();
        if let Some(reply_to) = &email.reply_to {
            headers.push(("Reply-To".to_owned(), reply_to.clone()));
        }
        if let Some(Value::String(url)) = ctx.as_json().get("unsubscribe_url") {
            headers.push(("List-Unsubscribe".to_owned(), format!("<{url}>")));
        }
        Ok(Message {
            from: Some(email.from.clone()),
            to: customer.email.iter().cloned().collect(),
            subject: Some(subject),
            text,
            html,
            headers,
        })
    }
}

pub(crate) fn render_error(campaign: &Campaign, id: &CustomerId, e: &RenderError) -> RecordError {
    RecordError {
        stage: "render".to_owned(),
        location: format!("campaign {} customer {}", campaign.name, id.as_str()),
        message: e.to_string(),
    }
}

pub(crate) fn push_error(campaign: &Campaign, op: &Planned, reason: &str) -> RecordError {
    RecordError {
        stage: "push".to_owned(),
        location: format!(
            "campaign {} customer {} key {}",
            campaign.name,
            op.customer.as_str(),
            op.key
        ),
        message: reason.to_owned(),
    }
}

/// What a campaign would push for one customer, rendered but not pushed.
#[derive(Debug)]
pub struct Preview {
    /// The first of the campaign's segments the customer is in.
    pub segment: Option<String>,
    /// Whether they may be contacted.
    pub eligibility: Eligibility,
    /// What would be pushed.
    pub operation: Operation,
}

/// Renders `campaign` for customer `id`, whether or not they are a member.
pub fn preview(
    shared: &Shared<'_>,
    campaign: &Campaign,
    id: &CustomerId,
) -> Result<Preview, RenderError> {
    let mode = campaign.mode;
    let segment = members(shared.computed, campaign).remove(id);
    let action = match mode {
        delivery::Mode::Send => delivery::Action::Send,
        delivery::Mode::Upsert | delivery::Mode::Mirror => delivery::Action::Upsert,
    };
    let op = Planned {
        customer: id.clone(),
        action,
        key: format!("{}/{}/preview", shared.workspace.id, campaign.name),
        reason: delivery::Reason::Entered,
        acked: Acked {
            status: Status::Member,
            payload_hash: String::new(),
            seq: 0,
            pending: None,
        },
    };
    let operation = CampaignRenderer { shared, campaign }.operation(&op, segment.as_deref())?;
    Ok(Preview {
        segment,
        eligibility: shared.eligibility(mode, id),
        operation,
    })
}

/// The members of `campaign`'s segments, in customer order.
pub fn member_ids(computed: &Computed, campaign: &Campaign) -> Vec<CustomerId> {
    members(computed, campaign).into_keys().collect()
}
