//! Cohort's operations as Klaviyo profiles (JSON:API resource objects), and Klaviyo's JSON:API
//! error documents as the reason a record was rejected.

use cohort_plugin_api::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Campaign fields that are profile attributes; every other field is a custom property.
pub const ATTRIBUTES: &[&str] = &[
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
];

/// What one operation does at Klaviyo.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Change {
    /// Create or update the profile (`attributes` of a `profile` resource), then add it to
    /// the list.
    Upsert {
        /// The address, lower-cased: how profiles are matched.
        email: String,
        /// The profile's `attributes`.
        attributes: Value,
    },
    /// Take the profile with this address off the list (it stays a profile, and its consent
    /// is unchanged).
    Remove {
        /// The address, lower-cased.
        email: String,
    },
}

fn email_of(payload: &Value) -> Option<String> {
    payload
        .get("email")
        .and_then(Value::as_str)
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

/// The change an operation makes, or why it cannot be made (the record is rejected).
pub fn change(op: &Operation) -> Result<Change, String> {
    match op.action {
        Action::Send => Err(
            "Klaviyo keeps lists here; it does not send messages (use mode `upsert` or `mirror`)"
                .to_owned(),
        ),
        Action::Remove => Ok(Change::Remove {
            email: email_of(&op.payload).ok_or(
                "the removal names no `email`: the campaign's fields must include `email`",
            )?,
        }),
        Action::Upsert => {
            let email = email_of(&op.payload).ok_or(
                "the payload has no `email`: add `email = \"{{email}}\"` to the campaign's fields",
            )?;
            let mut attributes = Map::new();
            let mut properties = Map::new();
            if let Value::Object(fields) = &op.payload {
                for (name, value) in fields {
                    if name == "email" {
                        continue;
                    }
                    // An empty rendering means "nothing known": leave Klaviyo's value alone
                    // rather than clearing it (`null` clears a field there).
                    if value.is_null() || value.as_str().is_some_and(str::is_empty) {
                        continue;
                    }
                    if ATTRIBUTES.contains(&name.as_str()) {
                        let text = value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_owned);
                        attributes.insert(name.clone(), Value::String(text));
                    } else {
                        properties.insert(name.clone(), value.clone());
                    }
                }
            }
            attributes.insert("email".to_owned(), Value::String(email.clone()));
            if !properties.is_empty() {
                attributes.insert("properties".to_owned(), Value::Object(properties));
            }
            Ok(Change::Upsert {
                email,
                attributes: Value::Object(attributes),
            })
        }
    }
}

/// The `POST /api/profile-import` body for a profile.
pub fn profile_import(attributes: &Value) -> Value {
    json!({"data": {"type": "profile", "attributes": attributes}})
}

/// A JSON:API error document.
#[derive(Debug, Default, Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<ErrorObject>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    source: Option<Value>,
}

/// `title: detail (at /pointer)`, from an error object with those fields.
pub fn describe(title: &str, detail: &str, source: Option<&Value>) -> String {
    let mut text = match (title.is_empty(), detail.is_empty()) {
        (false, false) => format!("{title} {detail}"),
        (false, true) => title.to_owned(),
        _ => detail.to_owned(),
    };
    if let Some(at) = source
        .and_then(|s| s.get("pointer").or_else(|| s.get("parameter")))
        .and_then(Value::as_str)
    {
        text.push_str(&format!(" (at {at})"));
    }
    text
}

/// The reason a record was rejected, from Klaviyo's answer: `400 Invalid input. …`.
pub fn reason(status: u16, body: &str) -> String {
    match serde_json::from_str::<Errors>(body) {
        Ok(doc) if !doc.errors.is_empty() => {
            let parts: Vec<String> = doc
                .errors
                .iter()
                .map(|e| describe(&e.title, &e.detail, e.source.as_ref()))
                .collect();
            format!("{status} {}", parts.join("; "))
        }
        _ => {
            let text: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{status}: {}", text.chars().take(300).collect::<String>())
        }
    }
}

/// Cohort's reason for one of Klaviyo's suppression reasons.
pub fn suppression_reason(klaviyo: &str) -> SuppressionReason {
    match klaviyo {
        "HARD_BOUNCE" | "INVALID_EMAIL" => SuppressionReason::Bounced,
        "SPAM_COMPLAINT" => SuppressionReason::Complained,
        // `UNSUBSCRIBE`, `USER_SUPPRESSED` (staff), and any reason added later: not contacted.
        _ => SuppressionReason::Unsubscribed,
    }
}

/// Klaviyo's filter for profiles by address: `any(email,["a@x","b@y"])`.
pub fn email_filter(emails: &[&str]) -> String {
    let quoted: Vec<String> = emails
        .iter()
        .map(|e| serde_json::to_string(e).unwrap_or_default())
        .collect();
    format!("any(email,[{}])", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(action: Action, payload: Value) -> Operation {
        Operation {
            key: "k".into(),
            action,
            customer_id: CustomerId::new("42"),
            customer: None,
            payload,
            previous: Value::Null,
            message: None,
        }
    }

    #[test]
    fn attributes_are_attributes_and_other_fields_custom_properties() {
        let c = change(&op(
            Action::Upsert,
            json!({"email": " Ann@Example.com", "first_name": "Ann", "tier": "gold",
                   "total_spent": 120.5, "city": ""}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c,
            Change::Upsert {
                email: "ann@example.com".into(),
                attributes: json!({"email": "ann@example.com", "first_name": "Ann",
                                   "properties": {"tier": "gold", "total_spent": 120.5}}),
            }
        );
    }

    #[test]
    fn records_without_an_address_are_rejected_by_name() {
        let e = change(&op(Action::Upsert, json!({"first_name": "A"}))).unwrap_err();
        assert!(e.contains("`email`"), "{e}");
        let e = change(&op(Action::Remove, Value::Null)).unwrap_err();
        assert!(e.contains("`email`"), "{e}");
    }

    #[test]
    fn the_reason_is_klaviyos_title_detail_and_pointer() {
        let body = r#"{"errors":[{"id":"e1","status":400,"code":"invalid","title":"Invalid input.",
            "detail":"Invalid email address","source":{"pointer":"/data/attributes/email"}}]}"#;
        assert_eq!(
            reason(400, body),
            "400 Invalid input. Invalid email address (at /data/attributes/email)"
        );
        assert_eq!(
            email_filter(&["a@x.com", "b\"@y.com"]),
            r#"any(email,["a@x.com","b\"@y.com"])"#
        );
    }
}
