//! The canonical records every connector produces and every stage consumes.
//!
//! These types are the contract between sources, the store and the engine, and they cross the
//! plugin boundary as JSON, so their serde shape is part of the plugin ABI: fields may be added
//! (with defaults), never renamed or removed.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::time::Timestamp;

/// A customer's identifier in its source system (Shopify id, CRM id, CSV key).
///
/// Ordered "naturally": ids made only of digits compare as numbers (`9 < 10`, `00004 = 4` in
/// rank order but not in equality), and come before any other id, which compare as text. RFM
/// breaks ties by this order, so it must match what a person reading the ids expects.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(String);

impl CustomerId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        CustomerId(id.into())
    }

    /// The id as written by the source.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Compares two ids in the natural order described on [`CustomerId`].
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => {
            let (ta, tb) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            ta.len()
                .cmp(&tb.len())
                .then_with(|| ta.cmp(tb))
                .then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

impl Ord for CustomerId {
    fn cmp(&self, other: &Self) -> Ordering {
        natural_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for CustomerId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Borrow<str> for CustomerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerId({:?})", self.0)
    }
}

impl From<&str> for CustomerId {
    fn from(s: &str) -> Self {
        CustomerId(s.to_owned())
    }
}

/// A typed custom attribute (`attributes.NAME` in segments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// `true` / `false`.
    Bool(bool),
    /// Any number; attributes are not money, so a float is exact enough.
    Number(f64),
    /// Free text.
    Text(String),
}

/// A person who may be marketed to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Customer {
    /// Identifier in the source system; unique within a workspace and source.
    pub id: CustomerId,
    /// Email address, as given (matching is case-insensitive).
    pub email: Option<String>,
    /// Phone number, ideally E.164.
    pub phone: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// ISO 3166-1 alpha-2 country code (`US`).
    pub country: Option<String>,
    /// State, province or region.
    pub region: Option<String>,
    /// City.
    pub city: Option<String>,
    /// Postal or ZIP code, as text (leading zeros matter).
    pub postal_code: Option<String>,
    /// Full date of birth, when known.
    pub birth_date: Option<NaiveDate>,
    /// Year of birth, when only the year is known (ignored when `birth_date` is set).
    pub birth_year: Option<i32>,
    /// Gender as the source states it (`female`, `male`, `other`, …).
    pub gender: Option<String>,
    /// Free-form tags (Shopify style); matched case-insensitively.
    pub tags: Vec<String>,
    /// Explicit consent to marketing email. Absent means no: consent is never assumed.
    pub accepts_email_marketing: bool,
    /// Explicit consent to marketing SMS. Absent means no.
    pub accepts_sms_marketing: bool,
    /// When the customer was created in the source.
    pub created_at: Option<Timestamp>,
    /// When the source last changed the customer.
    pub updated_at: Option<Timestamp>,
    /// Typed custom attributes, by name.
    pub attributes: BTreeMap<String, AttributeValue>,
}

impl Customer {
    /// A customer with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        Customer {
            id: CustomerId::new(id),
            ..Customer::default()
        }
    }

    /// The part of the email after `@`, lower-cased (borrowed when it already is).
    pub fn email_domain(&self) -> Option<std::borrow::Cow<'_, str>> {
        let email = self.email.as_deref()?;
        let (_, domain) = email.rsplit_once('@')?;
        if domain.is_empty() {
            return None;
        }
        Some(if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            domain.to_ascii_lowercase().into()
        } else {
            domain.into()
        })
    }

    /// Year of birth, from the full date when there is one.
    pub fn year_of_birth(&self) -> Option<i32> {
        use chrono::Datelike;
        self.birth_date.map(|d| d.year()).or(self.birth_year)
    }
}

/// One line of an order, when the source has them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LineItem {
    /// Product identifier.
    pub product_id: Option<String>,
    /// Variant identifier (size, colour).
    pub variant_id: Option<String>,
    /// Product title as sold.
    pub title: Option<String>,
    /// Product category or type.
    pub category: Option<String>,
    /// Units bought.
    pub quantity: u32,
    /// Price of one unit.
    pub price: Money,
}

/// A purchase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Order {
    /// Identifier in the source system.
    pub id: String,
    /// The buyer.
    pub customer_id: CustomerId,
    /// When the order was placed.
    pub created_at: Option<Timestamp>,
    /// Amount charged, taxes and shipping included. Negative for a refund recorded as a row of
    /// its own (see [`Order::is_refund`]).
    pub total: Money,
    /// ISO 4217 code of `total`; absent means the workspace's currency.
    pub currency: Option<String>,
    /// Number of items; from the line items when the source gives none.
    pub item_count: u32,
    /// Lines of the order, when the source has them.
    pub line_items: Vec<LineItem>,
    /// Set when the order was cancelled: a cancelled order counts for nothing.
    pub cancelled_at: Option<Timestamp>,
    /// Amount refunded so far; spend counts `total - refunded`.
    pub refunded: Money,
}

impl Order {
    /// Whether this is a refund given as a record of its own, as some exports list them: its
    /// total is negative, the amount given back. It lowers the buyer's spend and is not an
    /// order (orders count, items, first and last order dates leave it out). Sources make
    /// sure only refunds have negative totals (the CSV reader wants them marked).
    pub fn is_refund(&self) -> bool {
        self.total < Money::ZERO
    }

    /// What this order contributes to the buyer's aggregates, or `None` when it counts for
    /// nothing (cancelled, or without a date to place it in time).
    pub fn facts(&self) -> Option<OrderFacts> {
        if self.cancelled_at.is_some() {
            return None;
        }
        let items = if self.item_count == 0 {
            self.line_items.iter().map(|l| l.quantity).sum()
        } else {
            self.item_count
        };
        Some(OrderFacts {
            created_at: self.created_at?,
            net_total: self.total.checked_sub(self.refunded).unwrap_or(Money::ZERO),
            item_count: items,
            refund: self.is_refund(),
        })
    }
}

/// The few facts of an order that customer aggregates need.
///
/// Loaders that stream millions of orders build these directly instead of whole [`Order`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFacts {
    /// When the order was placed.
    pub created_at: Timestamp,
    /// Amount spent net of refunds.
    pub net_total: Money,
    /// Number of items.
    pub item_count: u32,
    /// A refund recorded on its own ([`Order::is_refund`]): only `net_total` (negative) counts.
    pub refund: bool,
}

/// What happened in an engagement event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A marketing email reached the inbox.
    EmailDelivered,
    /// A marketing email was opened.
    EmailOpen,
    /// A link in a marketing email was clicked.
    EmailClick,
    /// The customer unsubscribed from email.
    EmailUnsubscribe,
    /// A page of the shop was viewed.
    PageView,
    /// A product was added to the cart.
    AddToCart,
    /// Checkout was started.
    CheckoutStarted,
    /// A cart was left without buying.
    CartAbandoned,
    /// Any other kind the source reports; kept, but no feature counts it.
    #[serde(untagged)]
    Other(String),
}

impl EventKind {
    /// Every kind that engagement features count, in a fixed order.
    pub const COUNTED: [EventKind; 8] = [
        EventKind::EmailDelivered,
        EventKind::EmailOpen,
        EventKind::EmailClick,
        EventKind::EmailUnsubscribe,
        EventKind::PageView,
        EventKind::AddToCart,
        EventKind::CheckoutStarted,
        EventKind::CartAbandoned,
    ];

    /// Reads a kind, accepting the usual spellings (`Email Open`, `email-opened`, `opened`).
    pub fn parse(text: &str) -> EventKind {
        let norm: String = text
            .trim()
            .chars()
            .map(|c| {
                if c == ' ' || c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        match norm.as_str() {
            "email_delivered" | "delivered" | "email_received" | "received_email" => {
                EventKind::EmailDelivered
            }
            "email_open" | "email_opened" | "opened" | "opened_email" => EventKind::EmailOpen,
            "email_click" | "email_clicked" | "clicked" | "clicked_email" => EventKind::EmailClick,
            "email_unsubscribe" | "unsubscribed" | "email_unsubscribed" => {
                EventKind::EmailUnsubscribe
            }
            "page_view" | "viewed_page" | "pageview" => EventKind::PageView,
            "add_to_cart" | "added_to_cart" => EventKind::AddToCart,
            "checkout_started" | "started_checkout" => EventKind::CheckoutStarted,
            "cart_abandoned" | "abandoned_cart" | "abandoned_checkout" => EventKind::CartAbandoned,
            _ => EventKind::Other(norm),
        }
    }

    /// The canonical snake_case name.
    pub fn as_str(&self) -> &str {
        match self {
            EventKind::EmailDelivered => "email_delivered",
            EventKind::EmailOpen => "email_open",
            EventKind::EmailClick => "email_click",
            EventKind::EmailUnsubscribe => "email_unsubscribe",
            EventKind::PageView => "page_view",
            EventKind::AddToCart => "add_to_cart",
            EventKind::CheckoutStarted => "checkout_started",
            EventKind::CartAbandoned => "cart_abandoned",
            EventKind::Other(s) => s,
        }
    }
}

/// An engagement event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Identifier in the source, when it has one (used to store each event once).
    #[serde(default)]
    pub id: Option<String>,
    /// Who engaged.
    pub customer_id: CustomerId,
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// Anything else the source says about it (campaign, URL, product).
    #[serde(default)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

/// A kind of canonical record, and the stream of them a source produces: the one definition
/// the wire, the store, the CSV reader and the config share (`customers`, `orders`, `events`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// [`Customer`] records.
    Customers,
    /// [`Order`] records.
    Orders,
    /// [`Event`] records.
    Events,
}

impl Stream {
    /// Every stream, in the order a run pulls them (customers before what refers to them).
    pub const ALL: [Stream; 3] = [Stream::Customers, Stream::Orders, Stream::Events];

    /// The stream's name, as in JSON, configs and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Customers => "customers",
            Stream::Orders => "orders",
            Stream::Events => "events",
        }
    }
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text no store can hold faithfully: PostgreSQL refuses a NUL byte in text, SQLite keeps it
/// and C-string consumers cut at it. A record carrying one is rejected where it enters Cohort,
/// the same way whatever the backend, instead of failing a whole batch in one of them.
pub trait NulFree {
    /// The name of the first field holding a NUL byte, if any.
    fn nul_field(&self) -> Option<String>;
}

fn nul_in(name: &str, value: Option<&str>) -> Option<String> {
    value.filter(|v| v.contains('\0')).map(|_| name.to_owned())
}

fn nul_in_json(name: &str, value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => nul_in(name, Some(s)),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in_json(&format!("{name}[{i}]"), v)),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let inner = format!("{name}.{k}");
            nul_in(&inner, Some(k)).or_else(|| nul_in_json(&inner, v))
        }),
        _ => None,
    }
}

impl NulFree for Customer {
    fn nul_field(&self) -> Option<String> {
        let texts = [
            ("id", Some(self.id.as_str())),
            ("email", self.email.as_deref()),
            ("phone", self.phone.as_deref()),
            ("first_name", self.first_name.as_deref()),
            ("last_name", self.last_name.as_deref()),
            ("country", self.country.as_deref()),
            ("region", self.region.as_deref()),
            ("city", self.city.as_deref()),
            ("postal_code", self.postal_code.as_deref()),
            ("gender", self.gender.as_deref()),
        ];
        texts
            .iter()
            .find_map(|(name, v)| nul_in(name, *v))
            .or_else(|| self.tags.iter().find_map(|t| nul_in("tags", Some(t))))
            .or_else(|| {
                self.attributes.iter().find_map(|(k, v)| {
                    let name = format!("attributes.{k}");
                    nul_in(&name, Some(k)).or_else(|| match v {
                        AttributeValue::Text(t) => nul_in(&name, Some(t)),
                        _ => None,
                    })
                })
            })
    }
}

impl NulFree for Order {
    fn nul_field(&self) -> Option<String> {
        nul_in("id", Some(&self.id))
            .or_else(|| nul_in("customer_id", Some(self.customer_id.as_str())))
            .or_else(|| nul_in("currency", self.currency.as_deref()))
            .or_else(|| {
                self.line_items.iter().enumerate().find_map(|(i, l)| {
                    [
                        ("product_id", l.product_id.as_deref()),
                        ("variant_id", l.variant_id.as_deref()),
                        ("title", l.title.as_deref()),
                        ("category", l.category.as_deref()),
                    ]
                    .iter()
                    .find_map(|(name, v)| nul_in(&format!("line_items[{i}].{name}"), *v))
                })
            })
    }
}

impl NulFree for Event {
    fn nul_field(&self) -> Option<String> {
        nul_in("id", self.id.as_deref())
            .or_else(|| nul_in("customer_id", Some(self.customer_id.as_str())))
            .or_else(|| match &self.kind {
                EventKind::Other(k) => nul_in("kind", Some(k)),
                _ => None,
            })
            .or_else(|| {
                self.properties.iter().find_map(|(k, v)| {
                    let name = format!("properties.{k}");
                    nul_in(&name, Some(k)).or_else(|| nul_in_json(&name, v))
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_naturally() {
        let mut ids: Vec<CustomerId> = ["10", "9", "abc", "00004", "100", "Abc"]
            .into_iter()
            .map(CustomerId::from)
            .collect();
        ids.sort();
        let got: Vec<&str> = ids.iter().map(CustomerId::as_str).collect();
        assert_eq!(got, ["00004", "9", "10", "100", "Abc", "abc"]);
    }

    #[test]
    fn cancelled_and_refunded_orders_count_as_expected() {
        let mut order = Order {
            id: "1".into(),
            customer_id: "c".into(),
            created_at: Some(Timestamp::from_secs(0)),
            total: Money::from_whole(100),
            refunded: Money::from_whole(30),
            ..Order::default()
        };
        assert_eq!(order.facts().unwrap().net_total, Money::from_whole(70));
        assert!(!order.facts().unwrap().refund);
        order.cancelled_at = Some(Timestamp::from_secs(5));
        assert_eq!(order.facts(), None);
        let refund = Order {
            total: Money::from_whole(-25),
            ..order
        };
        assert_eq!(
            refund.facts(),
            None,
            "a cancelled refund counts for nothing"
        );
        let refund = Order {
            cancelled_at: None,
            ..refund
        };
        let facts = refund.facts().unwrap();
        assert!(refund.is_refund() && facts.refund);
        assert_eq!(
            facts.net_total,
            Money::from_whole(-55),
            "the amount, net of `refunded`"
        );
    }

    #[test]
    fn event_kinds_read_common_spellings_and_round_trip() {
        assert_eq!(EventKind::parse("Opened Email"), EventKind::EmailOpen);
        assert_eq!(EventKind::parse("abandoned-cart"), EventKind::CartAbandoned);
        assert_eq!(
            EventKind::parse("wishlist_add"),
            EventKind::Other("wishlist_add".into())
        );
        let json = serde_json::to_string(&EventKind::EmailClick).unwrap();
        assert_eq!(json, "\"email_click\"");
        let other: EventKind = serde_json::from_str("\"wishlist_add\"").unwrap();
        assert_eq!(other, EventKind::Other("wishlist_add".into()));
    }

    #[test]
    fn customer_json_defaults_consent_to_no() {
        let c: Customer = serde_json::from_str(r#"{"id":"7","email":"A@Example.COM"}"#).unwrap();
        assert!(!c.accepts_email_marketing);
        assert_eq!(c.email_domain().as_deref(), Some("example.com"));
    }

    #[test]
    fn a_nul_byte_is_found_and_named_in_any_text_field() {
        let mut c = Customer::new("1");
        assert_eq!(c.nul_field(), None);
        c.email = Some("a\0@x.com".to_owned());
        assert_eq!(c.nul_field().as_deref(), Some("email"));
        let mut c = Customer::new("2");
        c.attributes
            .insert("note".to_owned(), AttributeValue::Text("x\0".to_owned()));
        assert_eq!(c.nul_field().as_deref(), Some("attributes.note"));
        let mut e = Event {
            id: None,
            customer_id: CustomerId::new("1"),
            kind: EventKind::PageView,
            occurred_at: Timestamp::parse("2024-01-01").unwrap(),
            properties: Default::default(),
        };
        e.properties
            .insert("url".to_owned(), serde_json::json!(["ok", "b\0d"]));
        assert_eq!(e.nul_field().as_deref(), Some("properties.url[1]"));
        let o = Order {
            id: "7\0".to_owned(),
            ..Order::default()
        };
        assert_eq!(o.nul_field().as_deref(), Some("id"));
    }
}
