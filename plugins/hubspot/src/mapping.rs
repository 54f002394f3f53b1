//! HubSpot's CRM objects into Cohort's records: contacts into customers, closed-won deals into
//! orders. Pure functions over the JSON HubSpot answers, so every rule is tested here without a
//! server.
//!
//! HubSpot answers every property as text (or `null`), whatever its type: `"true"`, `"12.50"`,
//! `"2024-03-01T12:00:00.123Z"`. Dates and amounts are read exactly (amounts as decimals, never
//! through a float); the extra properties a config names are typed by what HubSpot's properties
//! API says they are.

use std::collections::BTreeMap;

use cohort_plugin_api::cohort_core::record::AttributeValue;
use cohort_plugin_api::prelude::*;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Contact properties mapped to customer fields (or read for consent), asked for on every
/// contact; a config's `properties` may not name them again.
pub const MAPPED: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "city",
    "state",
    "country",
    "zip",
    "lifecyclestage",
    "createdate",
    "lastmodifieddate",
    "hs_email_optout",
    "hs_object_id",
];

/// Deal properties read for orders.
pub const DEAL_PROPERTIES: &[&str] = &[
    "amount",
    "closedate",
    "deal_currency_code",
    "dealstage",
    "hs_is_closed_won",
    "hs_lastmodifieddate",
];

/// One CRM object as the v3 objects, search and list endpoints answer it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object {
    /// The record id (`hs_object_id`), digits.
    pub id: String,
    /// Property values, as text or `null`.
    #[serde(default)]
    pub properties: Map<String, Value>,
    /// When it was archived (the archived listing).
    #[serde(default)]
    pub archived_at: Option<String>,
}

impl Object {
    /// A property's value, trimmed; `None` when absent, `null` or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        match self.properties.get(name)? {
            Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()),
            _ => None,
        }
    }

    /// A property's value, numbers and booleans as HubSpot would write them.
    fn text(&self, name: &str) -> Option<String> {
        match self.properties.get(name)? {
            Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Whether a boolean property is `true`.
    pub fn is_true(&self, name: &str) -> bool {
        match self.properties.get(name) {
            Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
            Some(Value::Bool(b)) => *b,
            _ => false,
        }
    }

    /// A date-time property in milliseconds since the epoch.
    pub fn millis(&self, name: &str) -> Result<Option<i64>, String> {
        self.get(name)
            .map(|s| millis(s).map_err(|e| format!("{name}: {e}")))
            .transpose()
    }
}

/// HubSpot's date-times: ISO 8601 (`2024-03-01T12:00:00.123Z`), or milliseconds since the epoch.
pub fn millis(text: &str) -> Result<i64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("`{text}` is out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("`{text}` is not a date-time"))
}

/// An instant in milliseconds as Cohort's timestamp (seconds).
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_secs(ms.div_euclid(1000))
}

/// How an extra property's value is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HubSpot's `number`.
    Number,
    /// HubSpot's `bool`.
    Bool,
    /// Anything else, as HubSpot writes it.
    Text,
}

impl Kind {
    /// The kind of a HubSpot property type (`string`, `number`, `bool`, `enumeration`, `date`…).
    pub fn of(hubspot_type: &str) -> Kind {
        match hubspot_type {
            "number" => Kind::Number,
            "bool" => Kind::Bool,
            _ => Kind::Text,
        }
    }
}

/// What the config asks of contacts besides the standard fields.
#[derive(Debug, Clone, Default)]
pub struct Contacts {
    /// The boolean property recording consent.
    pub consent: Option<String>,
    /// The multi-select whose values are tags.
    pub tags: Option<String>,
    /// Extra properties and how to store them.
    pub extra: Vec<(String, Kind)>,
}

impl Contacts {
    /// Every property to ask HubSpot for.
    pub fn properties(&self) -> Vec<String> {
        let mut all: Vec<String> = MAPPED.iter().map(|s| (*s).to_owned()).collect();
        let more = self.consent.iter().chain(&self.tags);
        for name in more.chain(self.extra.iter().map(|(n, _)| n)) {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        all
    }
}

/// A contact as a customer, and its `lastmodifieddate` in milliseconds.
pub fn customer(contact: &Object, rules: &Contacts) -> Result<(Customer, Option<i64>), String> {
    let created = contact.millis("createdate")?;
    let modified = contact.millis("lastmodifieddate")?;
    let own = |name: &str| contact.get(name).map(str::to_owned);
    let mut c = Customer::new(contact.id.clone());
    c.email = own("email");
    c.first_name = own("firstname");
    c.last_name = own("lastname");
    c.phone = own("phone");
    c.city = own("city");
    c.region = own("state");
    c.country = contact.get("country").map(|s| {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
            s.to_ascii_uppercase()
        } else {
            s.to_owned()
        }
    });
    c.postal_code = own("zip");
    c.created_at = created.map(timestamp);
    c.updated_at = modified.map(timestamp);
    // Consent is explicit or nothing, and an opt-out wins over any opt-in.
    c.accepts_email_marketing = rules.consent.as_deref().is_some_and(|p| contact.is_true(p))
        && !contact.is_true("hs_email_optout");
    if let Some(tags) = rules.tags.as_deref().and_then(|p| contact.get(p)) {
        for tag in tags.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            if !c.tags.iter().any(|t| t == tag) {
                c.tags.push(tag.to_owned());
            }
        }
    }
    let mut attributes = BTreeMap::new();
    if let Some(stage) = own("lifecyclestage") {
        attributes.insert("lifecyclestage".to_owned(), AttributeValue::Text(stage));
    }
    for (name, kind) in &rules.extra {
        let Some(text) = contact.text(name) else {
            continue;
        };
        let value = match kind {
            Kind::Number => match text.parse::<f64>() {
                Ok(n) if n.is_finite() => AttributeValue::Number(n),
                _ => return Err(format!("{name}: `{text}` is not a number")),
            },
            Kind::Bool => AttributeValue::Bool(text.eq_ignore_ascii_case("true")),
            Kind::Text => AttributeValue::Text(text),
        };
        attributes.insert(name.clone(), value);
    }
    c.attributes = attributes;
    Ok((c, modified))
}

/// What a deal is to Cohort.
#[derive(Debug, Clone, PartialEq)]
pub enum Deal {
    /// A closed-won deal: an order.
    Won(Order),
    /// Any other deal: not an order (one that was won before and is no longer is removed).
    NotWon,
}

/// Whether a deal is closed won: HubSpot's `hs_is_closed_won`, or, on accounts that do not
/// send it, the default pipeline's `closedwon` stage.
pub fn is_won(deal: &Object) -> bool {
    match deal.get("hs_is_closed_won") {
        Some(v) => v.eq_ignore_ascii_case("true"),
        None => deal.get("dealstage") == Some("closedwon"),
    }
}

/// A deal as an order of `contact` (its first associated contact).
pub fn deal(deal: &Object, contact: Option<&str>) -> Result<Deal, String> {
    if !is_won(deal) {
        return Ok(Deal::NotWon);
    }
    let Some(contact) = contact else {
        return Err(
            "closed won, but associated with no contact: no customer to count it for".into(),
        );
    };
    let amount = deal.get("amount").ok_or("closed won without an `amount`")?;
    let total = Money::parse(amount).map_err(|e| format!("amount: {e}"))?;
    let closed = deal
        .millis("closedate")?
        .ok_or("closed won without a `closedate`")?;
    Ok(Deal::Won(Order {
        id: deal.id.clone(),
        customer_id: CustomerId::new(contact),
        created_at: Some(timestamp(closed)),
        total,
        currency: deal.get("deal_currency_code").map(str::to_ascii_uppercase),
        ..Order::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Object {
        serde_json::from_value(v).unwrap()
    }

    fn rules() -> Contacts {
        Contacts {
            consent: Some("marketing_opt_in".into()),
            tags: Some("interests".into()),
            extra: vec![
                ("company".into(), Kind::Text),
                ("score".into(), Kind::Number),
                ("vip".into(), Kind::Bool),
            ],
        }
    }

    #[test]
    fn a_contact_maps_every_field_tag_and_typed_attribute() {
        let c = object(json!({"id": "51", "properties": {
            "email": " ann@example.com ", "firstname": "Ann", "lastname": "Lee", "phone": "+4930123",
            "city": "Berlin", "state": "BE", "country": "de", "zip": "01067",
            "lifecyclestage": "customer", "createdate": "2024-03-01T12:00:00.500Z",
            "lastmodifieddate": "2024-03-02T08:00:00.123Z", "marketing_opt_in": "true",
            "interests": "running;;yoga; running", "company": "Acme", "score": "12.5", "vip": "true",
            "hs_email_optout": "false"}}));
        let (customer, modified) = customer(&c, &rules()).unwrap();
        assert_eq!(customer.email.as_deref(), Some("ann@example.com"));
        assert_eq!(customer.country.as_deref(), Some("DE"));
        assert_eq!(customer.postal_code.as_deref(), Some("01067"));
        assert_eq!(customer.tags, ["running", "yoga"]);
        assert!(customer.accepts_email_marketing);
        assert_eq!(modified, Some(1_709_366_400_123));
        assert_eq!(
            customer.updated_at,
            Some(Timestamp::from_secs(1_709_366_400))
        );
        assert_eq!(
            customer.attributes["lifecyclestage"],
            AttributeValue::Text("customer".into())
        );
        assert_eq!(customer.attributes["score"], AttributeValue::Number(12.5));
        assert_eq!(customer.attributes["vip"], AttributeValue::Bool(true));
        assert_eq!(
            customer.attributes["company"],
            AttributeValue::Text("Acme".into())
        );
    }

    #[test]
    fn consent_needs_the_property_and_an_opt_out_always_withdraws_it() {
        let with = |props: Value, rules: &Contacts| {
            customer(&object(json!({"id": "1", "properties": props})), rules)
                .unwrap()
                .0
                .accepts_email_marketing
        };
        let none = Contacts::default();
        assert!(!with(json!({"marketing_opt_in": "true"}), &none));
        assert!(with(json!({"marketing_opt_in": "true"}), &rules()));
        assert!(!with(json!({"marketing_opt_in": "false"}), &rules()));
        assert!(!with(json!({}), &rules()));
        assert!(!with(
            json!({"marketing_opt_in": "true", "hs_email_optout": "true"}),
            &rules()
        ));
    }

    #[test]
    fn an_unreadable_value_names_the_property() {
        let bad = object(json!({"id": "1", "properties": {"lastmodifieddate": "yesterday"}}));
        let err = customer(&bad, &rules()).unwrap_err();
        assert!(err.starts_with("lastmodifieddate: "), "{err}");
        let bad = object(json!({"id": "1", "properties": {"score": "a lot"}}));
        assert_eq!(
            customer(&bad, &rules()).unwrap_err(),
            "score: `a lot` is not a number"
        );
    }

    #[test]
    fn a_closed_won_deal_is_an_order_with_an_exact_amount() {
        let won = object(json!({"id": "9", "properties": {
            "hs_is_closed_won": "true", "amount": "1234.5678", "closedate": "2024-05-01T10:00:00Z",
            "deal_currency_code": "eur"}}));
        let Deal::Won(order) = deal(&won, Some("51")).unwrap() else {
            panic!("not an order");
        };
        assert_eq!(order.total, Money::from_raw(12_345_678));
        assert_eq!(order.customer_id.as_str(), "51");
        assert_eq!(order.currency.as_deref(), Some("EUR"));
        assert_eq!(order.created_at, Some(Timestamp::from_secs(1_714_557_600)));
        let open = object(
            json!({"id": "9", "properties": {"hs_is_closed_won": "false", "dealstage": "closedwon"}}),
        );
        assert_eq!(deal(&open, Some("51")).unwrap(), Deal::NotWon);
        let legacy = object(
            json!({"id": "9", "properties": {"dealstage": "closedwon", "amount": "1", "closedate": "1714557600000"}}),
        );
        assert!(matches!(deal(&legacy, Some("5")).unwrap(), Deal::Won(_)));
        assert!(deal(&legacy, None).unwrap_err().contains("no contact"));
        let fractional = object(json!({"id": "9", "properties": {
            "hs_is_closed_won": "true", "amount": "0.123456", "closedate": "2024-05-01T10:00:00Z"}}));
        assert!(
            deal(&fractional, Some("5"))
                .unwrap_err()
                .starts_with("amount: ")
        );
    }
}
