//! A rendered message as SendGrid's Mail Send wants it: one personalization per customer (its
//! address, subject, unsubscribe headers, and the operation's key in `custom_args`), and the
//! parts every personalization of a request shares (sender, reply-to, content) at the top.
//!
//! Customers whose rendered body is the same go out in one request; a body that differs per
//! customer (a first name in the HTML) makes a request of one.

use cohort_plugin_api::wire::{Message, Operation};
use serde::Serialize;
use serde_json::{Map, Value, json};
use xxhash_rust::xxh3::xxh3_64;

/// The custom arg that carries the operation's key: SendGrid's event webhook sends it back
/// with every delivery, open, bounce and unsubscribe of the message.
pub const KEY_ARG: &str = "cohort_key";

/// Headers SendGrid will not let a request set, and the ones the plugin writes itself.
const NOT_PASSED: &[&str] = &[
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "content-type",
    "content-transfer-encoding",
    "to",
    "from",
    "subject",
    "reply-to",
    "cc",
    "bcc",
    "list-unsubscribe",
    "list-unsubscribe-post",
];

/// One operation in SendGrid's terms.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The personalization: `to`, `subject`, `headers`, `custom_args`.
    pub personalization: Value,
    /// What the request's top level holds: `from`, `reply_to`, `content`.
    pub shared: Value,
    /// A hash of `shared`: items with the same one can share a request.
    #[serde(skip)]
    pub group: u64,
}

/// An address as SendGrid's `{"email", "name"}`: `Ann <ann@example.com>` or a bare address.
pub fn address(text: &str) -> Result<Value, String> {
    let text = text.trim();
    let (name, email) = match (text.rfind('<'), text.ends_with('>')) {
        (Some(lt), true) => (
            text[..lt].trim().trim_matches('"').trim(),
            text[lt + 1..text.len() - 1].trim(),
        ),
        _ => ("", text),
    };
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
    });
    if !valid {
        return Err(format!("`{text}` is not an email address"));
    }
    let mut out = json!({ "email": email });
    if !name.is_empty() {
        out["name"] = json!(name);
    }
    Ok(out)
}

/// The item of a `send` operation, or why it cannot be sent.
pub fn item(op: &Operation, unsubscribe_mailto: Option<&str>) -> Result<Item, String> {
    let message = op
        .message
        .as_ref()
        .ok_or("a send operation needs a rendered message")?;
    let to = match message.to.as_slice() {
        [one] => address(one).map_err(|e| format!("to: {e}"))?,
        [] => return Err("the customer has no email address".to_owned()),
        many => {
            return Err(format!(
                "one recipient per message, and this one has {}",
                many.len()
            ));
        }
    };
    let subject = message
        .subject
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or("the message has no subject")?;
    let mut headers = Map::new();
    let mut reply_to = None;
    let mut unsubscribe = Vec::new();
    for (name, value) in &message.headers {
        let lower = name.to_ascii_lowercase();
        let value = value.replace(['\r', '\n'], " ");
        if lower == "reply-to" {
            reply_to = Some(address(&value).map_err(|e| format!("Reply-To: {e}"))?);
        } else if lower == "list-unsubscribe" {
            unsubscribe.extend(
                value
                    .split(',')
                    .map(|u| u.trim().trim_start_matches('<').trim_end_matches('>'))
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
            );
        } else if NOT_PASSED.contains(&lower.as_str()) {
            return Err(format!(
                "the header `{name}` cannot be set on a SendGrid message"
            ));
        } else {
            headers.insert(name.clone(), Value::String(value));
        }
    }
    if let Some(mailto) = unsubscribe_mailto {
        unsubscribe.push(format!("mailto:{mailto}?subject=unsubscribe"));
    }
    if !unsubscribe.is_empty() {
        let list: Vec<String> = unsubscribe.iter().map(|u| format!("<{u}>")).collect();
        headers.insert("List-Unsubscribe".to_owned(), json!(list.join(", ")));
        if unsubscribe.iter().any(|u| u.starts_with("https://")) {
            headers.insert(
                "List-Unsubscribe-Post".to_owned(),
                json!("List-Unsubscribe=One-Click"),
            );
        }
    }
    let mut personalization = json!({
        "to": [to],
        "subject": subject,
        "custom_args": { KEY_ARG: op.key },
    });
    if !headers.is_empty() {
        personalization["headers"] = Value::Object(headers);
    }
    let from = address(
        message
            .from
            .as_deref()
            .ok_or("the message has no sender (the campaign's `from`)")?,
    )
    .map_err(|e| format!("from: {e}"))?;
    let mut shared = json!({ "from": from, "content": content(message)? });
    if let Some(reply_to) = reply_to {
        shared["reply_to"] = reply_to;
    }
    let group = xxh3_64(shared.to_string().as_bytes());
    Ok(Item {
        personalization,
        shared,
        group,
    })
}

/// SendGrid wants `text/plain` before `text/html`, and at least one.
fn content(message: &Message) -> Result<Value, String> {
    let mut parts = Vec::new();
    if let Some(text) = message.text.as_deref().filter(|t| !t.is_empty()) {
        parts.push(json!({"type": "text/plain", "value": text}));
    }
    if let Some(html) = message.html.as_deref().filter(|h| !h.is_empty()) {
        parts.push(json!({"type": "text/html", "value": html}));
    }
    if parts.is_empty() {
        return Err("the message has no body (neither text nor html)".to_owned());
    }
    Ok(Value::Array(parts))
}

/// The body of one request: the shared parts, then every personalization.
pub fn body(items: &[&Item], categories: &[String], sandbox: bool) -> Value {
    let mut body = items.first().map(|i| i.shared.clone()).unwrap_or_default();
    body["personalizations"] = items.iter().map(|i| i.personalization.clone()).collect();
    if !categories.is_empty() {
        body["categories"] = json!(categories);
    }
    if sandbox {
        body["mail_settings"] = json!({"sandbox_mode": {"enable": true}});
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_their_display_name() {
        assert_eq!(
            address("\"Records Shop\" <hi@shop.example>").unwrap(),
            json!({"email": "hi@shop.example", "name": "Records Shop"})
        );
        assert_eq!(
            address("ann@example.com").unwrap(),
            json!({"email": "ann@example.com"})
        );
        assert!(address("not an address").is_err());
        assert!(address("ann@localhost").is_err());
    }
}
