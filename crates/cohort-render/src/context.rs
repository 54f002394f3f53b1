//! What a template sees: one customer, their features, and the campaign around them.
//!
//! The context is plain JSON, built once per customer and rendered by every template of the
//! campaign. Two representations are fixed here because helpers rely on them:
//! - money is a decimal string with at least two decimals (`"1234.50"`), exactly as
//!   [`Money`]'s `Display` writes it, so no float ever touches an amount;
//! - instants are RFC 3339 strings in UTC (`"2024-03-01T12:00:00Z"`), as [`Timestamp`]'s
//!   `Display` writes them; the `date` helper moves them into the workspace's time zone.
//!
//! Absent optional values are JSON `null`, not missing keys: strict mode only fails on names
//! the context never has, so a customer without a first name renders `""` (or the `default`),
//! while a typo in a template fails loudly.

use std::collections::{BTreeMap, BTreeSet};

use chrono_tz::Tz;
use cohort_core::features::catalog::FEATURES;
use cohort_core::record::AttributeValue;
use cohort_core::{Customer, Money, Timestamp};
use serde_json::{Map, Value, json};

/// The workspace a [`crate::Renderer`] renders for: its calendar and its money.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceInfo {
    /// Workspace id (`demo`).
    pub id: String,
    /// Display name (`Demo record shop`).
    pub name: String,
    /// Time zone dates are shown in.
    pub timezone: Tz,
    /// ISO 4217 code amounts are shown in unless a template names another.
    pub currency: String,
}

impl WorkspaceInfo {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "currency": self.currency,
            "timezone": self.timezone.name(),
        })
    }
}

/// One of the customer's most bought products, from order line items.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Product title as sold.
    pub title: String,
    /// Units bought across the customer's orders.
    pub quantity: u64,
    /// What those units cost the customer, in the workspace currency.
    pub revenue: Money,
}

/// The customer's latest open abandoned cart: a `cart_abandoned` event its source has not
/// withdrawn (a completed Shopify checkout withdraws its event).
///
/// The properties are kept as the source wrote them; [`Context::cart`] picks the ones a
/// reminder needs into fixed names, so a template reads `cart.url` whatever the source calls it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cart {
    /// When the cart was left.
    pub abandoned_at: Timestamp,
    /// The event's properties (Shopify: `recovery_url`, `total`, `currency`, `line_items`).
    pub properties: BTreeMap<String, Value>,
}

/// The names `cart` has, always present so a customer without a cart renders empty instead of
/// failing strict mode.
pub(crate) const CART_FIELDS: &[&str] = &[
    "abandoned_at",
    "url",
    "total",
    "currency",
    "line_items",
    "properties",
];

/// Fields of the customer record, in the order the docs list them.
pub(crate) const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "customer_id",
    "email",
    "email_domain",
    "phone",
    "first_name",
    "last_name",
    "country",
    "region",
    "city",
    "postal_code",
    "birth_date",
    "birth_year",
    "gender",
    "tags",
    "accepts_email_marketing",
    "accepts_sms_marketing",
    "created_at",
    "updated_at",
    "attributes",
];

/// Names the context adds around the customer.
pub(crate) const CAMPAIGN_FIELDS: &[&str] = &[
    "segment",
    "campaign",
    "workspace",
    "unsubscribe_url",
    "now",
    "top_products",
    "cart",
];

/// Sub-fields of the fixed objects, for `check_fields` (`segment.nmae` is a typo too).
pub(crate) fn subfields(object: &str) -> Option<&'static [&'static str]> {
    match object {
        "segment" => Some(&["name", "description"]),
        "campaign" => Some(&["name"]),
        "workspace" => Some(&["id", "name", "currency", "timezone"]),
        "cart" => Some(CART_FIELDS),
        _ => None,
    }
}

/// Every top-level name a template may use: customer fields, every cohort-core feature, and
/// `segment`, `campaign`, `workspace`, `unsubscribe_url`, `now`, `top_products`, `cart`.
pub fn known_fields() -> BTreeSet<&'static str> {
    CUSTOMER_FIELDS
        .iter()
        .copied()
        .chain(FEATURES.iter().map(|f| f.name))
        .chain(CAMPAIGN_FIELDS.iter().copied())
        .collect()
}

/// The data one customer's templates are rendered with.
///
/// Built with [`Context::new`] and the builder methods; each method replaces what an earlier
/// call set. `top_products` starts as an empty list and `cart` as an empty cart; `segment`, `campaign`,
/// `unsubscribe_url` and `workspace` are absent until set, so a template that uses one the
/// caller never provided fails in strict mode instead of printing nothing.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) data: handlebars::Context,
    pub(crate) customer_id: String,
    pub(crate) has_workspace: bool,
}

impl Context {
    /// A context for `customer`, rendered at the run's clock `now`.
    pub fn new(customer: &Customer, now: Timestamp) -> Context {
        let mut map = customer_json(customer);
        map.insert("now".into(), Value::String(now.to_string()));
        map.insert("top_products".into(), Value::Array(Vec::new()));
        map.insert("cart".into(), cart_json(None));
        Context {
            data: handlebars::Context::from(Value::Object(map)),
            customer_id: customer.id.as_str().to_owned(),
            has_workspace: false,
        }
    }

    /// The customer's features, by cohort-core feature name (see [`feature_map`]).
    ///
    /// Customer record fields keep their record values (tags as written, not lower-cased);
    /// the reserved names (`segment`, `now`, ...) cannot be overwritten by a feature.
    pub fn features(mut self, features: Map<String, Value>) -> Context {
        let map = self.map();
        for (name, value) in features {
            if CUSTOMER_FIELDS.contains(&name.as_str()) || CAMPAIGN_FIELDS.contains(&name.as_str())
            {
                continue;
            }
            map.insert(name, value);
        }
        self
    }

    /// The segment that put the customer in the campaign.
    pub fn segment(mut self, name: &str, description: Option<&str>) -> Context {
        self.map().insert(
            "segment".into(),
            json!({ "name": name, "description": description }),
        );
        self
    }

    /// The campaign being rendered.
    pub fn campaign(mut self, name: &str) -> Context {
        self.map()
            .insert("campaign".into(), json!({ "name": name }));
        self
    }

    /// The customer's unsubscribe link, already rendered.
    pub fn unsubscribe_url(mut self, url: String) -> Context {
        self.map()
            .insert("unsubscribe_url".into(), Value::String(url));
        self
    }

    /// The customer's products; kept sorted by quantity, then revenue (both descending), then
    /// title, so `top_products 3` is the three most bought.
    pub fn top_products(mut self, mut products: Vec<Product>) -> Context {
        products.sort_by(|a, b| {
            b.quantity
                .cmp(&a.quantity)
                .then(b.revenue.cmp(&a.revenue))
                .then_with(|| a.title.cmp(&b.title))
        });
        let list = products
            .into_iter()
            .map(|p| {
                json!({
                    "title": p.title,
                    "quantity": p.quantity,
                    "revenue": p.revenue.to_string(),
                })
            })
            .collect();
        self.map().insert("top_products".into(), Value::Array(list));
        self
    }

    /// The customer's open cart, or none: `cart.url`, `cart.total`... are then `null` and
    /// `cart.line_items` empty.
    pub fn cart(mut self, cart: Option<&Cart>) -> Context {
        self.map().insert("cart".into(), cart_json(cart));
        self
    }

    /// The workspace fields. [`crate::Renderer::render`] adds them when they are missing (at
    /// the cost of one copy of the context); setting them here avoids the copy.
    pub fn workspace(mut self, workspace: &WorkspaceInfo) -> Context {
        self.map().insert("workspace".into(), workspace.to_json());
        self.has_workspace = true;
        self
    }

    /// The customer this context is for (named in render errors).
    pub fn customer_id(&self) -> &str {
        &self.customer_id
    }

    /// The context as JSON, for previews and tests.
    pub fn as_json(&self) -> &Value {
        self.data.data()
    }

    fn map(&mut self) -> &mut Map<String, Value> {
        let data = self.data.data_mut();
        if !data.is_object() {
            // `new` always builds an object; this only keeps the types honest.
            *data = Value::Object(Map::new());
        }
        match data {
            Value::Object(map) => map,
            _ => unreachable!("an object was just ensured"),
        }
    }
}

/// A feature row from cohort-core as the JSON map [`Context::features`] takes: money as decimal
/// strings, instants as RFC 3339 UTC, tags as a list, absent values as `null`.
pub fn feature_map<'a>(
    row: impl IntoIterator<Item = (&'a str, cohort_core::features::Value)>,
) -> Map<String, Value> {
    use cohort_core::features::Value as F;
    row.into_iter()
        .map(|(name, value)| {
            let json = match value {
                F::Null => Value::Null,
                F::Int(v) => Value::from(v),
                F::Float(v) => serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number),
                F::Money(v) => Value::String(v.to_string()),
                F::Time(v) => Value::String(v.to_string()),
                F::Bool(v) => Value::Bool(v),
                F::Str(v) => Value::String(v),
                F::Tags(v) => Value::from(v),
            };
            (name.to_owned(), json)
        })
        .collect()
}

/// `cart` as templates see it. The recovery link is `recovery_url` (Shopify) or `url`; a total
/// that is not a decimal amount is `null` rather than text the `money` helper would refuse.
fn cart_json(cart: Option<&Cart>) -> Value {
    let Some(cart) = cart else {
        return json!({
            "abandoned_at": null, "url": null, "total": null, "currency": null,
            "line_items": [], "properties": {},
        });
    };
    let p = &cart.properties;
    let text = |key: &str| p.get(key).filter(|v| v.is_string()).cloned();
    let total = p.get("total").and_then(|v| match v {
        Value::String(s) => Money::parse(s).ok(),
        Value::Number(n) => Money::parse(&n.to_string()).ok(),
        _ => None,
    });
    let line_items = p
        .get("line_items")
        .filter(|v| v.is_array())
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()));
    json!({
        "abandoned_at": cart.abandoned_at.to_string(),
        "url": text("recovery_url").or_else(|| text("url")),
        "total": total.map(|t| t.to_string()),
        "currency": text("currency"),
        "line_items": line_items,
        "properties": p,
    })
}

fn customer_json(c: &Customer) -> Map<String, Value> {
    let text = |v: &Option<String>| v.as_ref().map_or(Value::Null, |s| Value::String(s.clone()));
    let time = |v: Option<Timestamp>| v.map_or(Value::Null, |t| Value::String(t.to_string()));
    let attributes: Map<String, Value> = c
        .attributes
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AttributeValue::Bool(b) => Value::Bool(*b),
                AttributeValue::Number(n) => {
                    serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                }
                AttributeValue::Text(t) => Value::String(t.clone()),
            };
            (k.clone(), v)
        })
        .collect();
    let mut m = Map::new();
    m.insert("id".into(), Value::String(c.id.as_str().to_owned()));
    m.insert(
        "customer_id".into(),
        Value::String(c.id.as_str().to_owned()),
    );
    m.insert("email".into(), text(&c.email));
    m.insert(
        "email_domain".into(),
        c.email_domain()
            .map_or(Value::Null, |d| Value::String(d.into_owned())),
    );
    m.insert("phone".into(), text(&c.phone));
    m.insert("first_name".into(), text(&c.first_name));
    m.insert("last_name".into(), text(&c.last_name));
    m.insert("country".into(), text(&c.country));
    m.insert("region".into(), text(&c.region));
    m.insert("city".into(), text(&c.city));
    m.insert("postal_code".into(), text(&c.postal_code));
    m.insert(
        "birth_date".into(),
        c.birth_date.map_or(Value::Null, |d| {
            Value::String(d.format("%Y-%m-%d").to_string())
        }),
    );
    m.insert(
        "birth_year".into(),
        c.year_of_birth().map_or(Value::Null, Value::from),
    );
    m.insert("gender".into(), text(&c.gender));
    m.insert("tags".into(), Value::from(c.tags.clone()));
    m.insert(
        "accepts_email_marketing".into(),
        Value::Bool(c.accepts_email_marketing),
    );
    m.insert(
        "accepts_sms_marketing".into(),
        Value::Bool(c.accepts_sms_marketing),
    );
    m.insert("created_at".into(), time(c.created_at));
    m.insert("updated_at".into(), time(c.updated_at));
    m.insert("attributes".into(), Value::Object(attributes));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> Customer {
        let mut c = Customer::new("42");
        c.email = Some("Ann@Example.COM".into());
        c.first_name = Some("Ann".into());
        c.tags = vec!["VIP".into()];
        c.created_at = Some(Timestamp::from_secs(0));
        c.attributes
            .insert("shoe_size".into(), AttributeValue::Number(38.0));
        c
    }

    #[test]
    fn customer_fields_are_present_and_absent_values_are_null() {
        let ctx = Context::new(&customer(), Timestamp::from_secs(86_400));
        let data = ctx.as_json();
        assert_eq!(data["id"], "42");
        assert_eq!(data["customer_id"], "42");
        assert_eq!(data["email_domain"], "example.com");
        assert_eq!(data["last_name"], Value::Null);
        assert_eq!(data["tags"], json!(["VIP"]));
        assert_eq!(data["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(data["now"], "1970-01-02T00:00:00Z");
        assert_eq!(data["attributes"]["shoe_size"], json!(38.0));
        assert_eq!(data["top_products"], json!([]));
        assert!(data.get("segment").is_none());
        for field in CUSTOMER_FIELDS {
            assert!(data.get(*field).is_some(), "{field} missing");
        }
    }

    #[test]
    fn features_do_not_override_the_record_or_reserved_names() {
        let mut features = Map::new();
        features.insert("tags".into(), json!(["vip"]));
        features.insert("now".into(), json!("never"));
        features.insert("total_spent".into(), json!("12.50"));
        let ctx = Context::new(&customer(), Timestamp::from_secs(0)).features(features);
        let data = ctx.as_json();
        assert_eq!(data["tags"], json!(["VIP"]));
        assert_eq!(data["now"], "1970-01-01T00:00:00Z");
        assert_eq!(data["total_spent"], "12.50");
    }

    #[test]
    fn top_products_sort_by_quantity_then_revenue() {
        let p = |title: &str, quantity, revenue: &str| Product {
            title: title.into(),
            quantity,
            revenue: Money::parse(revenue).unwrap(),
        };
        let ctx = Context::new(&customer(), Timestamp::from_secs(0)).top_products(vec![
            p("cheap", 2, "10"),
            p("single", 1, "99"),
            p("dear", 2, "30"),
        ]);
        let titles: Vec<&str> = ctx.as_json()["top_products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["dear", "cheap", "single"]);
        assert_eq!(ctx.as_json()["top_products"][0]["revenue"], "30.00");
    }

    #[test]
    fn a_cart_shows_its_recovery_link_total_and_items_under_fixed_names() {
        let properties: BTreeMap<String, Value> = serde_json::from_value(json!({
            "checkout_id": "900",
            "recovery_url": "https://shop.example/cart/recover/abc",
            "total": "59.9",
            "currency": "EUR",
            "line_items": [{"title": "Blue Train", "quantity": 2, "price": "29.95"}],
        }))
        .unwrap();
        let cart = Cart {
            abandoned_at: Timestamp::from_secs(60),
            properties,
        };
        let ctx = Context::new(&customer(), Timestamp::from_secs(0)).cart(Some(&cart));
        let data = &ctx.as_json()["cart"];
        assert_eq!(data["url"], "https://shop.example/cart/recover/abc");
        assert_eq!(data["total"], "59.90");
        assert_eq!(data["currency"], "EUR");
        assert_eq!(data["abandoned_at"], "1970-01-01T00:01:00Z");
        assert_eq!(data["line_items"][0]["title"], "Blue Train");
        assert_eq!(data["properties"]["checkout_id"], "900");
        for field in CART_FIELDS {
            assert!(data.get(*field).is_some(), "cart.{field} missing");
        }
    }

    #[test]
    fn without_a_cart_every_cart_field_is_null_or_empty() {
        let ctx = Context::new(&customer(), Timestamp::from_secs(0));
        let data = &ctx.as_json()["cart"];
        assert_eq!(data["url"], Value::Null);
        assert_eq!(data["line_items"], json!([]));
        for field in CART_FIELDS {
            assert!(data.get(*field).is_some(), "cart.{field} missing");
        }
        let odd = Cart {
            abandoned_at: Timestamp::from_secs(0),
            properties: serde_json::from_value(
                json!({"url": "https://x.example/c", "total": "lots", "line_items": "none"}),
            )
            .unwrap(),
        };
        let data = Context::new(&customer(), Timestamp::from_secs(0)).cart(Some(&odd));
        let data = &data.as_json()["cart"];
        assert_eq!(data["url"], "https://x.example/c");
        assert_eq!(data["total"], Value::Null);
        assert_eq!(data["line_items"], json!([]));
    }

    #[test]
    fn feature_rows_become_json_with_money_as_strings() {
        use cohort_core::features::Value as F;
        let map = feature_map([
            ("total_spent", F::Money(Money::parse("1234.5").unwrap())),
            ("last_order_at", F::Time(Timestamp::from_secs(0))),
            ("avg_order_value", F::Null),
            ("orders_count", F::Int(3)),
        ]);
        assert_eq!(map["total_spent"], "1234.50");
        assert_eq!(map["last_order_at"], "1970-01-01T00:00:00Z");
        assert_eq!(map["avg_order_value"], Value::Null);
        assert_eq!(map["orders_count"], 3);
    }

    #[test]
    fn known_fields_cover_record_features_and_campaign() {
        let known = known_fields();
        for name in [
            "first_name",
            "total_spent",
            "rfm_group",
            "segment",
            "now",
            "id",
            "cart",
        ] {
            assert!(known.contains(name), "{name}");
        }
        assert!(!known.contains("money"));
    }
}
