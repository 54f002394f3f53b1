//! Shopify's GraphQL objects into Cohort's records: customers, orders, and abandoned checkouts
//! as `cart_abandoned` events. Pure functions over the JSON Shopify answers, the same for a page
//! of a connection and for a line of a bulk operation's JSONL (where line items come as lines of
//! their own and are handed in separately), so both paths store the same records.
//!
//! Amounts are Shopify's `Decimal` strings in shop money, read exactly (never through a float).
//! Ids are the number at the end of the GID (`gid://shopify/Customer/207119551` is
//! `207119551`), which is what Shopify's REST API and exports show.

use std::collections::BTreeMap;

use cohort_plugin_api::cohort_core::record::{AttributeValue, LineItem};
use cohort_plugin_api::prelude::*;
use serde_json::{Value, json};

/// The number in a GID, or the GID itself when it has none.
pub fn gid_number(gid: &str) -> &str {
    let tail = gid.rsplit('/').next().unwrap_or(gid);
    // A GID may carry parameters: `gid://shopify/Checkout/123?key=abc`.
    tail.split('?').next().unwrap_or(tail)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = v;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().map(str::trim).filter(|s| !s.is_empty())
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    str_at(v, path).map(str::to_owned)
}

fn time(v: &Value, field: &str) -> Result<Option<Timestamp>, String> {
    str_at(v, &[field])
        .map(|t| Timestamp::parse(t).map_err(|e| format!("{field}: `{t}`: {e}")))
        .transpose()
}

fn money(v: &Value, path: &[&str]) -> Result<Option<Money>, String> {
    let at = path.join(".");
    let mut node = v;
    for key in path {
        match node.get(key) {
            Some(n) => node = n,
            None => return Ok(None),
        }
    }
    match node {
        Value::Null => Ok(None),
        Value::String(s) => Money::parse(s.trim())
            .map(Some)
            .map_err(|e| format!("{at}: `{s}` is not a decimal amount: {e}")),
        // Shopify sends `Decimal` as a string; a number would have lost digits on the way.
        other => Err(format!("{at}: `{other}` is not a decimal string")),
    }
}

fn id_of(v: &Value) -> Result<String, String> {
    str_at(v, &["id"])
        .map(|g| gid_number(g).to_owned())
        .ok_or_else(|| "id: missing".to_owned())
}

/// The watermark of a node: its `updatedAt` and numeric id.
pub fn mark(v: &Value) -> Result<Option<Mark>, String> {
    let id = id_of(v)?;
    Ok(time(v, "updatedAt")?.map(|at| Mark::new(at, &id)))
}

/// A customer node.
pub fn customer(v: &Value) -> Result<Customer, String> {
    let mut c = Customer::new(id_of(v)?);
    c.email = text(v, &["email"]);
    c.phone = text(v, &["phone"]);
    c.first_name = text(v, &["firstName"]);
    c.last_name = text(v, &["lastName"]);
    c.country = text(v, &["defaultAddress", "countryCodeV2"]);
    c.region = text(v, &["defaultAddress", "provinceCode"]);
    c.city = text(v, &["defaultAddress", "city"]);
    c.postal_code = text(v, &["defaultAddress", "zip"]);
    c.tags = match v.get("tags") {
        Some(Value::Array(tags)) => tags
            .iter()
            .filter_map(Value::as_str)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        // The REST shape, kept for payloads copied from it.
        Some(Value::String(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    // Consent is law: only an explicit SUBSCRIBED counts; PENDING (double opt-in not
    // confirmed), NOT_SUBSCRIBED, UNSUBSCRIBED, REDACTED, INVALID and absent are all "no".
    c.accepts_email_marketing =
        str_at(v, &["emailMarketingConsent", "marketingState"]) == Some("SUBSCRIBED");
    c.accepts_sms_marketing =
        str_at(v, &["smsMarketingConsent", "marketingState"]) == Some("SUBSCRIBED");
    c.created_at = time(v, "createdAt")?;
    c.updated_at = time(v, "updatedAt")?;
    if let Some(spent) = money(v, &["amountSpent", "amount"])? {
        c.attributes.insert(
            "amount_spent".into(),
            AttributeValue::Number(spent.to_f64()),
        );
    }
    match v.get("numberOfOrders") {
        // `UnsignedInt64` is a string in Shopify's JSON.
        Some(Value::String(n)) => {
            let n: u64 = n
                .trim()
                .parse()
                .map_err(|_| format!("numberOfOrders: `{n}` is not a count"))?;
            c.attributes
                .insert("number_of_orders".into(), AttributeValue::Number(n as f64));
        }
        Some(Value::Number(n)) => {
            c.attributes.insert(
                "number_of_orders".into(),
                AttributeValue::Number(n.as_f64().unwrap_or(0.0)),
            );
        }
        _ => {}
    }
    Ok(c)
}

/// A line item node (of an order or an abandoned checkout), in shop money.
pub fn line_item(v: &Value) -> Result<LineItem, String> {
    let quantity = v
        .get("quantity")
        .and_then(Value::as_u64)
        .ok_or_else(|| "lineItems.quantity: missing".to_owned())?;
    Ok(LineItem {
        product_id: str_at(v, &["product", "id"]).map(|g| gid_number(g).to_owned()),
        variant_id: str_at(v, &["variant", "id"]).map(|g| gid_number(g).to_owned()),
        title: text(v, &["title"]),
        category: text(v, &["product", "productType"]),
        quantity: u32::try_from(quantity)
            .map_err(|_| format!("lineItems.quantity: {quantity} is too large"))?,
        price: money(v, &["originalUnitPriceSet", "shopMoney", "amount"])?.unwrap_or(Money::ZERO),
    })
}

/// What an order node is.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderRead {
    /// An order of a customer.
    Order(Order),
    /// An order without a customer (a guest checkout, a POS sale, a deleted customer):
    /// counted and skipped.
    NoCustomer,
}

/// The reason given for an order skipped because it has no customer.
pub const NO_CUSTOMER: &str = "the order has no customer (a guest checkout, a POS sale or a \
                               deleted customer); skipped: Cohort's orders belong to a customer";

/// An order node; `items` are its line items (from `lineItems.nodes`, or a bulk file's child
/// lines).
pub fn order(v: &Value, items: &[Value]) -> Result<OrderRead, String> {
    let id = id_of(v)?;
    let Some(customer) = str_at(v, &["customer", "id"]) else {
        return Ok(OrderRead::NoCustomer);
    };
    let total = money(v, &["totalPriceSet", "shopMoney", "amount"])?
        .ok_or_else(|| "totalPriceSet.shopMoney.amount: missing".to_owned())?;
    let line_items = items.iter().map(line_item).collect::<Result<Vec<_>, _>>()?;
    Ok(OrderRead::Order(Order {
        id,
        customer_id: CustomerId::new(gid_number(customer)),
        // When the order was placed: `processedAt` (an imported order's original date), else
        // when it was created in Shopify.
        created_at: time(v, "processedAt")?.or(time(v, "createdAt")?),
        total,
        currency: text(v, &["totalPriceSet", "shopMoney", "currencyCode"])
            .or_else(|| text(v, &["currencyCode"])),
        item_count: line_items.iter().map(|l| l.quantity).sum(),
        line_items,
        cancelled_at: time(v, "cancelledAt")?,
        refunded: money(v, &["totalRefundedSet", "shopMoney", "amount"])?.unwrap_or(Money::ZERO),
    }))
}

/// What an abandoned checkout node is.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckoutRead {
    /// Abandoned by a customer: a `cart_abandoned` event.
    Abandoned(Event),
    /// Completed after all: its event, if one was stored, is withdrawn.
    Completed(String),
    /// No customer to give it to: skipped.
    NoCustomer,
}

/// An abandoned checkout node; `items` are its line items.
pub fn checkout(v: &Value, items: &[Value]) -> Result<CheckoutRead, String> {
    let id = id_of(v)?;
    if str_at(v, &["completedAt"]).is_some() {
        return Ok(CheckoutRead::Completed(id));
    }
    let Some(customer) = str_at(v, &["customer", "id"]) else {
        return Ok(CheckoutRead::NoCustomer);
    };
    let created = time(v, "createdAt")?.ok_or_else(|| "createdAt: missing".to_owned())?;
    let total = money(v, &["totalPriceSet", "shopMoney", "amount"])?;
    let lines = items
        .iter()
        .map(|item| {
            let l = line_item(item)?;
            Ok(json!({
                "product_id": l.product_id,
                "variant_id": l.variant_id,
                "title": l.title,
                "quantity": l.quantity,
                "price": l.price.to_string(),
            }))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut properties = BTreeMap::new();
    properties.insert("checkout_id".to_owned(), json!(id));
    if let Some(url) = text(v, &["abandonedCheckoutUrl"]) {
        properties.insert("recovery_url".to_owned(), json!(url));
    }
    if let Some(total) = total {
        properties.insert("total".to_owned(), json!(total.to_string()));
    }
    if let Some(currency) = text(v, &["totalPriceSet", "shopMoney", "currencyCode"]) {
        properties.insert("currency".to_owned(), json!(currency));
    }
    properties.insert("line_items".to_owned(), Value::Array(lines));
    Ok(CheckoutRead::Abandoned(Event {
        id: Some(event_id(&id)),
        customer_id: CustomerId::new(gid_number(customer)),
        kind: EventKind::CartAbandoned,
        occurred_at: created,
        properties,
    }))
}

/// The event id of a checkout: one event per checkout, withdrawn by the same id.
pub fn event_id(checkout: &str) -> String {
    format!("checkout-{checkout}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer_node() -> Value {
        json!({
            "id": "gid://shopify/Customer/207119551",
            "email": "bob.norman@mail.example.com", "phone": "+16136120707",
            "firstName": "Bob", "lastName": "Norman", "tags": ["VIP", " wholesale "],
            "createdAt": "2024-01-02T10:00:00Z", "updatedAt": "2024-03-04T11:12:13Z",
            "emailMarketingConsent": {"marketingState": "SUBSCRIBED"},
            "smsMarketingConsent": {"marketingState": "PENDING"},
            "defaultAddress": {"countryCodeV2": "CA", "provinceCode": "ON", "city": "Ottawa", "zip": "K2P 1L4"},
            "amountSpent": {"amount": "1234.56", "currencyCode": "CAD"},
            "numberOfOrders": "7"
        })
    }

    #[test]
    fn a_customer_takes_the_number_of_its_gid_and_only_subscribed_consents() {
        let c = customer(&customer_node()).unwrap();
        assert_eq!(c.id.to_string(), "207119551");
        assert_eq!(c.tags, ["VIP", "wholesale"]);
        assert!(c.accepts_email_marketing);
        assert!(!c.accepts_sms_marketing, "PENDING is not consent");
        assert_eq!(c.country.as_deref(), Some("CA"));
        assert_eq!(c.region.as_deref(), Some("ON"));
        assert_eq!(c.postal_code.as_deref(), Some("K2P 1L4"));
        assert_eq!(
            c.attributes["number_of_orders"],
            AttributeValue::Number(7.0)
        );
        assert_eq!(
            c.attributes["amount_spent"],
            AttributeValue::Number(1234.56)
        );
        let mut bare = customer_node();
        bare["emailMarketingConsent"] = Value::Null;
        bare["defaultAddress"] = Value::Null;
        let c = customer(&bare).unwrap();
        assert!(!c.accepts_email_marketing, "absent consent is no consent");
        assert_eq!(c.city, None);
    }

    fn order_node() -> Value {
        json!({
            "id": "gid://shopify/Order/450789469", "processedAt": "2024-02-01T09:00:00Z",
            "createdAt": "2024-02-02T09:00:00Z", "updatedAt": "2024-02-03T09:00:00Z",
            "currencyCode": "EUR", "cancelledAt": null,
            "customer": {"id": "gid://shopify/Customer/207119551"},
            "totalPriceSet": {"shopMoney": {"amount": "598.94", "currencyCode": "EUR"}},
            "totalRefundedSet": {"shopMoney": {"amount": "199.65", "currencyCode": "EUR"}},
        })
    }

    fn item(product: u64, qty: u64, price: &str) -> Value {
        json!({"title": "IPod Nano", "quantity": qty,
               "product": {"id": format!("gid://shopify/Product/{product}"), "productType": "Cult Products"},
               "variant": {"id": "gid://shopify/ProductVariant/49148385"},
               "originalUnitPriceSet": {"shopMoney": {"amount": price}}})
    }

    #[test]
    fn an_order_keeps_exact_shop_money_refunds_and_line_items() {
        let OrderRead::Order(o) = order(
            &order_node(),
            &[item(632910392, 1, "199.00"), item(1, 2, "0.10")],
        )
        .unwrap() else {
            panic!("skipped");
        };
        assert_eq!(o.id, "450789469");
        assert_eq!(o.customer_id.to_string(), "207119551");
        assert_eq!(o.total.to_string(), "598.94");
        assert_eq!(o.refunded.to_string(), "199.65");
        assert_eq!(o.currency.as_deref(), Some("EUR"));
        assert_eq!(o.created_at.unwrap().to_string(), "2024-02-01T09:00:00Z");
        assert_eq!(o.item_count, 3);
        assert_eq!(o.line_items[0].product_id.as_deref(), Some("632910392"));
        assert_eq!(o.line_items[0].category.as_deref(), Some("Cult Products"));
        assert_eq!(o.line_items[1].price.to_string(), "0.10");
    }

    #[test]
    fn an_order_without_a_customer_is_skipped_and_a_float_amount_is_refused() {
        let mut guest = order_node();
        guest["customer"] = Value::Null;
        assert_eq!(order(&guest, &[]).unwrap(), OrderRead::NoCustomer);
        let mut float = order_node();
        float["totalPriceSet"]["shopMoney"]["amount"] = json!(598.94);
        let err = order(&float, &[]).unwrap_err();
        assert!(err.contains("totalPriceSet.shopMoney.amount"), "{err}");
    }

    #[test]
    fn an_abandoned_checkout_is_an_event_with_its_recovery_url_and_a_completed_one_withdraws_it() {
        let node = json!({
            "id": "gid://shopify/AbandonedCheckout/900", "createdAt": "2024-05-01T08:00:00Z",
            "updatedAt": "2024-05-01T09:00:00Z", "completedAt": null,
            "abandonedCheckoutUrl": "https://acme.example/cart/recover/abc",
            "customer": {"id": "gid://shopify/Customer/42"},
            "totalPriceSet": {"shopMoney": {"amount": "59.90", "currencyCode": "EUR"}},
        });
        let CheckoutRead::Abandoned(e) = checkout(&node, &[item(7, 1, "59.90")]).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(e.id.as_deref(), Some("checkout-900"));
        assert_eq!(e.kind, EventKind::CartAbandoned);
        assert_eq!(e.customer_id.to_string(), "42");
        assert_eq!(
            e.properties["recovery_url"],
            "https://acme.example/cart/recover/abc"
        );
        assert_eq!(e.properties["total"], "59.90");
        assert_eq!(e.properties["line_items"][0]["product_id"], "7");
        let mut done = node;
        done["completedAt"] = json!("2024-05-02T08:00:00Z");
        assert_eq!(
            checkout(&done, &[]).unwrap(),
            CheckoutRead::Completed("900".into())
        );
    }
}
