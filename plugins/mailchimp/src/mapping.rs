//! Cohort's operations as Mailchimp changes: the member (by subscriber hash) with its merge
//! fields, and the tag that marks the segment's members. And Mailchimp's problem documents as
//! the reason a record was rejected.

use cohort_plugin_api::prelude::*;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::Validated;

/// What one operation does at Mailchimp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The member's subscriber hash.
    pub hash: String,
    /// What happens to it.
    pub kind: Kind,
}

/// Add or update, or take the tag away.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Kind {
    /// `PUT /lists/{list_id}/members/{hash}` with this body, then the tag added; the tag is
    /// taken from `old_hash` when the member's address changed.
    Upsert {
        /// The member body (`AddListMembers2` in the spec).
        body: Value,
        /// The member the customer was before the address changed.
        old_hash: Option<String>,
    },
    /// The tag removed. The member stays: leaving a segment is not unsubscribing.
    Remove,
}

/// Mailchimp's subscriber hash: the hex MD5 of the lower-cased address.
///
/// Every member of a push is hashed, so the hex is written from a table rather than formatted
/// a byte at a time.
pub fn subscriber_hash(email: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::digest(email.trim().to_lowercase().as_bytes());
    let mut hex = String::with_capacity(32);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    hex
}

/// The address an operation's payload carries.
fn email_of(payload: &Value) -> Option<&str> {
    payload
        .get("email")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// The change an operation makes, or why it cannot be made (the record is rejected).
pub fn change(config: &Validated, op: &Operation) -> Result<Change, String> {
    match op.action {
        Action::Send => Err(
            "Mailchimp keeps audiences here; it does not send messages (use mode `upsert` or \
             `mirror`)"
                .to_owned(),
        ),
        Action::Remove => {
            let email = email_of(&op.payload).ok_or(
                "the removal names no `email`: the campaign's fields must include `email`",
            )?;
            Ok(Change {
                hash: subscriber_hash(email),
                kind: Kind::Remove,
            })
        }
        Action::Upsert => {
            let email = email_of(&op.payload).ok_or(
                "the payload has no `email`: add `email = \"{{email}}\"` to the campaign's fields",
            )?;
            if !email.contains('@') {
                return Err(format!("`{email}` is not an email address"));
            }
            let mut merge_fields = Map::new();
            if let Value::Object(fields) = &op.payload {
                for (name, value) in fields {
                    if name == "email" {
                        continue;
                    }
                    let tag = config.merge_tag(name)?;
                    let value = match value {
                        Value::String(_) | Value::Number(_) => value.clone(),
                        Value::Bool(b) => Value::String(b.to_string()),
                        Value::Null => Value::String(String::new()),
                        other => Value::String(other.to_string()),
                    };
                    merge_fields.insert(tag, value);
                }
            }
            let hash = subscriber_hash(email);
            let old_hash = email_of(&op.previous)
                .map(subscriber_hash)
                .filter(|old| *old != hash);
            let status = if config.double_opt_in {
                "pending"
            } else {
                "subscribed"
            };
            // `status_if_new`, never `status`: a member who unsubscribed at Mailchimp stays
            // unsubscribed, whatever Cohort thinks.
            let body = json!({
                "email_address": email,
                "status_if_new": status,
                "merge_fields": merge_fields,
            });
            Ok(Change {
                hash,
                kind: Kind::Upsert { body, old_hash },
            })
        }
    }
}

/// The body of `POST …/members/{hash}/tags` that turns `tag` on or off.
pub fn tags_body(tag: &str, active: bool) -> Value {
    json!({
        "tags": [{"name": tag, "status": if active { "active" } else { "inactive" }}],
        // Automations keyed on the tag still fire: a member joining the segment is news.
        "is_syncing": false,
    })
}

/// Mailchimp's error body (`application/problem+json`), with the field errors it adds.
#[derive(Debug, Default, Deserialize)]
struct Problem {
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
struct FieldError {
    #[serde(default)]
    field: String,
    #[serde(default)]
    message: String,
}

/// The reason a record was rejected, from Mailchimp's answer: `400 Invalid Resource: …`.
pub fn reason(status: u16, body: &str) -> String {
    let Ok(problem) = serde_json::from_str::<Problem>(body) else {
        let text: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
        return format!("{status}: {}", text.chars().take(300).collect::<String>());
    };
    let mut reason = format!("{status} {}: {}", problem.title, problem.detail);
    let fields: Vec<String> = problem
        .errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect();
    if !fields.is_empty() {
        reason.push_str(&format!(" ({})", fields.join("; ")));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Validated {
        serde_json::from_value::<Config>(json!({"api_key": "k-us6", "list_id": "L1"}))
            .unwrap_or_else(|e| panic!("{e}"))
            .validate()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn op(action: Action, payload: Value, previous: Value) -> Operation {
        Operation {
            key: "k".into(),
            action,
            customer_id: CustomerId::new("42"),
            customer: None,
            payload,
            previous,
            message: None,
        }
    }

    #[test]
    fn the_subscriber_hash_is_the_md5_of_the_lower_cased_address() {
        // Mailchimp's documented example: md5("urist.mcvankab@freddiesjokes.com").
        assert_eq!(
            subscriber_hash("Urist.McVankab@freddiesjokes.com"),
            "62eeb292278cc15f5817cb78f7790b08"
        );
    }

    #[test]
    fn an_upsert_puts_the_fields_as_merge_tags_and_only_subscribes_new_members() {
        let c = change(
            &config(),
            &op(
                Action::Upsert,
                json!({"email": "Ann@Example.com", "first_name": "Ann", "country": "DE"}),
                json!({"email": "ann@old.example"}),
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.hash, subscriber_hash("ann@example.com"));
        let Kind::Upsert { body, old_hash } = c.kind else {
            panic!("not an upsert")
        };
        assert_eq!(
            body,
            json!({"email_address": "Ann@Example.com", "status_if_new": "subscribed",
                   "merge_fields": {"FNAME": "Ann", "COUNTRY": "DE"}})
        );
        assert_eq!(old_hash, Some(subscriber_hash("ann@old.example")));
    }

    #[test]
    fn records_without_an_address_or_with_an_untaggable_field_are_rejected_by_name() {
        let c = config();
        let e = change(
            &c,
            &op(Action::Upsert, json!({"first_name": "A"}), Value::Null),
        );
        assert!(e.unwrap_err().contains("`email`"));
        let e = change(
            &c,
            &op(
                Action::Upsert,
                json!({"email": "a@b.c", "lifetime_value": "1"}),
                Value::Null,
            ),
        );
        assert!(e.unwrap_err().contains("lifetime_value"));
    }

    #[test]
    fn the_reason_is_mailchimps_title_detail_and_field_errors() {
        let body = r#"{"type":"https://mailchimp.com/developer/marketing/docs/errors/",
            "title":"Invalid Resource","status":400,"detail":"Your merge fields were invalid.",
            "instance":"1f2e","errors":[{"field":"FNAME","message":"Please enter a value"}]}"#;
        assert_eq!(
            reason(400, body),
            "400 Invalid Resource: Your merge fields were invalid. (FNAME: Please enter a value)"
        );
        assert_eq!(reason(400, "<html>bad</html>"), "400: <html>bad</html>");
    }
}
