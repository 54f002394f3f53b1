//! Every built-in feature: its name in segments, its type and its meaning.
//!
//! This list is the single source of truth for the segment language's vocabulary: the builder
//! fills columns in this order, the checker suggests names from it, and `docs/features.md` is
//! generated from it (`cohort segment fields --markdown`).

use super::column::FieldType;

/// A built-in feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Name used in segments.
    pub name: &'static str,
    /// Type.
    pub ty: FieldType,
    /// Group in the docs.
    pub group: Group,
    /// Meaning, one sentence.
    pub doc: &'static str,
}

/// Where a feature comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Fields of the customer record.
    Customer,
    /// Aggregates of orders.
    Orders,
    /// Recency, frequency and monetary ranks.
    Rfm,
    /// Counts of engagement events.
    Engagement,
}

impl Group {
    /// Heading in the docs.
    pub fn title(self) -> &'static str {
        match self {
            Group::Customer => "Customer",
            Group::Orders => "Orders",
            Group::Rfm => "RFM",
            Group::Engagement => "Engagement",
        }
    }
}

const fn f(name: &'static str, ty: FieldType, group: Group, doc: &'static str) -> Feature {
    Feature {
        name,
        ty,
        group,
        doc,
    }
}

use FieldType as T;
use Group as G;

/// Engagement event kinds that get counters, as (kind's canonical name, plural used in feature
/// names).
pub const ENGAGEMENT_KINDS: [(&str, &str); 8] = [
    ("email_delivered", "emails_delivered"),
    ("email_open", "email_opens"),
    ("email_click", "email_clicks"),
    ("email_unsubscribe", "email_unsubscribes"),
    ("page_view", "page_views"),
    ("add_to_cart", "add_to_carts"),
    ("checkout_started", "checkouts_started"),
    ("cart_abandoned", "cart_abandonments"),
];

/// Every built-in feature, in table order. Custom attributes follow as `attributes.NAME`.
pub const FEATURES: &[Feature] = &[
    f(
        "customer_id",
        T::String,
        G::Customer,
        "The customer's id in its source.",
    ),
    f("email", T::String, G::Customer, "Email address."),
    f(
        "email_domain",
        T::String,
        G::Customer,
        "Lower-cased part of the email after `@`.",
    ),
    f("phone", T::String, G::Customer, "Phone number."),
    f("first_name", T::String, G::Customer, "Given name."),
    f("last_name", T::String, G::Customer, "Family name."),
    f(
        "country",
        T::String,
        G::Customer,
        "ISO 3166-1 alpha-2 country code.",
    ),
    f(
        "region",
        T::String,
        G::Customer,
        "State, province or region.",
    ),
    f("city", T::String, G::Customer, "City."),
    f("postal_code", T::String, G::Customer, "Postal or ZIP code."),
    f(
        "gender",
        T::String,
        G::Customer,
        "Gender as the source states it.",
    ),
    f("birth_year", T::Int, G::Customer, "Year of birth."),
    f(
        "age",
        T::Int,
        G::Customer,
        "Age in whole years on the run's date (from the year alone when that is all there is).",
    ),
    f(
        "tags",
        T::Tags,
        G::Customer,
        "Tags, matched case-insensitively with `contains`.",
    ),
    f(
        "accepts_email_marketing",
        T::Bool,
        G::Customer,
        "Explicit consent to marketing email; absent means false.",
    ),
    f(
        "accepts_sms_marketing",
        T::Bool,
        G::Customer,
        "Explicit consent to marketing SMS; absent means false.",
    ),
    f(
        "created_at",
        T::Time,
        G::Customer,
        "When the customer was created in the source.",
    ),
    f(
        "updated_at",
        T::Time,
        G::Customer,
        "When the source last changed the customer.",
    ),
    f(
        "orders_count",
        T::Int,
        G::Orders,
        "Orders placed up to the run's clock, cancelled ones and refunds excluded; 0 without orders.",
    ),
    f(
        "total_spent",
        T::Money,
        G::Orders,
        "Exact sum of those orders' totals net of refunds (amounts refunded on an order, and refunds given as rows of their own); 0 without orders.",
    ),
    f(
        "avg_order_value",
        T::Money,
        G::Orders,
        "total_spent / orders_count, rounded half away from zero to 4 decimals; null without orders.",
    ),
    f(
        "total_items",
        T::Int,
        G::Orders,
        "Items bought across those orders.",
    ),
    f(
        "first_order_at",
        T::Time,
        G::Orders,
        "When the first order was placed; null without orders.",
    ),
    f(
        "last_order_at",
        T::Time,
        G::Orders,
        "When the latest order was placed; null without orders.",
    ),
    f(
        "days_since_first_order",
        T::Int,
        G::Orders,
        "Whole calendar days from the first order's date to the run's date.",
    ),
    f(
        "days_since_last_order",
        T::Int,
        G::Orders,
        "Whole calendar days from the latest order's date to the run's date.",
    ),
    f(
        "r_score",
        T::Int,
        G::Rfm,
        "Recency quintile 1–5 (5 = bought most recently) among customers with orders.",
    ),
    f(
        "f_score",
        T::Int,
        G::Rfm,
        "Frequency quintile 1–5 (5 = most orders) among customers with orders.",
    ),
    f(
        "m_score",
        T::Int,
        G::Rfm,
        "Monetary quintile 1–5 (5 = spent most) among customers with orders.",
    ),
    f(
        "rfm_group",
        T::String,
        G::Rfm,
        "Named group from r_score and f_score: champions, loyal, active, new, promising, needs_attention, almost_lost, at_risk, previously_loyal, dormant.",
    ),
    f(
        "emails_delivered_30d",
        T::Int,
        G::Engagement,
        "Marketing emails delivered in the last 30 days.",
    ),
    f(
        "emails_delivered_90d",
        T::Int,
        G::Engagement,
        "Marketing emails delivered in the last 90 days.",
    ),
    f(
        "last_email_delivered_at",
        T::Time,
        G::Engagement,
        "Latest email delivery.",
    ),
    f(
        "email_opens_30d",
        T::Int,
        G::Engagement,
        "Email opens in the last 30 days.",
    ),
    f(
        "email_opens_90d",
        T::Int,
        G::Engagement,
        "Email opens in the last 90 days.",
    ),
    f(
        "last_email_open_at",
        T::Time,
        G::Engagement,
        "Latest email open.",
    ),
    f(
        "email_clicks_30d",
        T::Int,
        G::Engagement,
        "Email clicks in the last 30 days.",
    ),
    f(
        "email_clicks_90d",
        T::Int,
        G::Engagement,
        "Email clicks in the last 90 days.",
    ),
    f(
        "last_email_click_at",
        T::Time,
        G::Engagement,
        "Latest email click.",
    ),
    f(
        "email_unsubscribes_30d",
        T::Int,
        G::Engagement,
        "Unsubscribe events in the last 30 days.",
    ),
    f(
        "email_unsubscribes_90d",
        T::Int,
        G::Engagement,
        "Unsubscribe events in the last 90 days.",
    ),
    f(
        "last_email_unsubscribe_at",
        T::Time,
        G::Engagement,
        "Latest unsubscribe event.",
    ),
    f(
        "page_views_30d",
        T::Int,
        G::Engagement,
        "Page views in the last 30 days.",
    ),
    f(
        "page_views_90d",
        T::Int,
        G::Engagement,
        "Page views in the last 90 days.",
    ),
    f(
        "last_page_view_at",
        T::Time,
        G::Engagement,
        "Latest page view.",
    ),
    f(
        "add_to_carts_30d",
        T::Int,
        G::Engagement,
        "Add-to-cart events in the last 30 days.",
    ),
    f(
        "add_to_carts_90d",
        T::Int,
        G::Engagement,
        "Add-to-cart events in the last 90 days.",
    ),
    f(
        "last_add_to_cart_at",
        T::Time,
        G::Engagement,
        "Latest add-to-cart.",
    ),
    f(
        "checkouts_started_30d",
        T::Int,
        G::Engagement,
        "Checkouts started in the last 30 days.",
    ),
    f(
        "checkouts_started_90d",
        T::Int,
        G::Engagement,
        "Checkouts started in the last 90 days.",
    ),
    f(
        "last_checkout_started_at",
        T::Time,
        G::Engagement,
        "Latest checkout started.",
    ),
    f(
        "cart_abandonments_30d",
        T::Int,
        G::Engagement,
        "Abandoned carts in the last 30 days.",
    ),
    f(
        "cart_abandonments_90d",
        T::Int,
        G::Engagement,
        "Abandoned carts in the last 90 days.",
    ),
    f(
        "last_cart_abandoned_at",
        T::Time,
        G::Engagement,
        "Latest abandoned cart.",
    ),
    f(
        "email_open_rate_90d",
        T::Float,
        G::Engagement,
        "email_opens_90d / emails_delivered_90d; null when nothing was delivered.",
    ),
    f(
        "email_click_rate_90d",
        T::Float,
        G::Engagement,
        "email_clicks_90d / emails_delivered_90d; null when nothing was delivered.",
    ),
    f(
        "last_engaged_at",
        T::Time,
        G::Engagement,
        "Latest open, click, page view, add-to-cart or checkout.",
    ),
    f(
        "days_since_last_engaged",
        T::Int,
        G::Engagement,
        "Whole calendar days from last_engaged_at's date to the run's date.",
    ),
];

/// Every built-in feature as a field segments can use (custom attributes are only known once
/// data is read).
pub fn catalogue_fields() -> Vec<super::FieldInfo> {
    FEATURES
        .iter()
        .map(|f| super::FieldInfo {
            name: f.name.to_owned(),
            ty: f.ty,
            doc: f.doc.to_owned(),
        })
        .collect()
}

/// The feature called `name`.
pub fn feature(name: &str) -> Option<&'static Feature> {
    FEATURES.iter().find(|f| f.name == name)
}

/// The docs page listing every feature, in Markdown.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Features\n\nEvery customer gets these features, computed as of the run's clock. \
         Segments refer to them by name. Custom attributes are available as `attributes.NAME`.\n\
         This page is generated from `crates/cohort-core/src/features/catalog.rs` \
         (`cohort segment fields --markdown`).\n",
    );
    let mut group = None;
    for feat in FEATURES {
        if group != Some(feat.group) {
            group = Some(feat.group);
            out.push_str(&format!(
                "\n## {}\n\n| name | type | meaning |\n|---|---|---|\n",
                feat.group.title()
            ));
        }
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            feat.name, feat.ty, feat.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_snake_case() {
        let mut names: Vec<&str> = FEATURES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "duplicate feature name");
        for n in names {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{n}"
            );
        }
    }

    #[test]
    fn every_engagement_kind_has_its_counters() {
        for (singular, plural) in ENGAGEMENT_KINDS {
            for name in [
                format!("{plural}_30d"),
                format!("{plural}_90d"),
                format!("last_{singular}_at"),
            ] {
                assert!(feature(&name).is_some(), "missing {name}");
            }
        }
    }
}
