//! Cohort's audience operations as SendGrid Marketing Campaigns contacts.
//!
//! A campaign's `fields` named like a contact's reserved fields (`first_name`, `last_name`,
//! `city`, …) go to the contact's top level; every other field is a custom field, which
//! SendGrid addresses by id (`w1`, `e2_T`), not by name. The names are resolved through the
//! account's field definitions, read once per instance: a field with no definition rejects the
//! record with a message naming it, since SendGrid would drop it silently.
//!
//! An empty value is left out rather than sent: in a contact upsert an omitted field keeps what
//! SendGrid has, while `""` would clear it.

use std::collections::BTreeMap;

use cohort_plugin_api::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// Reserved fields a contact takes at its top level (the strings of `ContactRequest` in the
/// spec; `alternate_emails`, a list, is not written by Cohort).
pub const RESERVED: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "address_line_1",
    "address_line_2",
    "city",
    "state_province_region",
    "postal_code",
    "country",
    "phone_number_id",
    "external_id",
    "anonymous_id",
];

/// A custom field's type at SendGrid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FieldType {
    /// Text.
    Text,
    /// A number: the value must be one.
    Number,
    /// A date: sent as rendered.
    Date,
}

/// One custom field definition (`GET /v3/marketing/field_definitions`).
#[derive(Debug, Clone, Deserialize)]
pub struct Definition {
    /// SendGrid's id, the key in a contact's `custom_fields`.
    pub id: String,
    /// The name the account gave it.
    pub name: String,
    /// Its type.
    pub field_type: FieldType,
}

/// The account's custom fields, by name.
#[derive(Debug, Clone, Default)]
pub struct Fields(BTreeMap<String, Definition>);

impl Fields {
    /// The fields of these definitions.
    pub fn new(definitions: impl IntoIterator<Item = Definition>) -> Fields {
        Fields(
            definitions
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
        )
    }

    /// The definition called `name`.
    pub fn get(&self, name: &str) -> Option<&Definition> {
        self.0.get(name)
    }
}

/// What one operation does to the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Change {
    /// Create or update the contact and add it to the list (`PUT /v3/marketing/contacts`).
    Upsert {
        /// The address, lower-cased (SendGrid lower-cases it too).
        email: String,
        /// The contact as `ContactRequest`.
        contact: Value,
    },
    /// Take the contact off the list; it stays a contact.
    Remove {
        /// The address, lower-cased.
        email: String,
    },
}

/// The address a payload carries, lower-cased.
fn email_of(payload: &Value) -> Option<String> {
    payload
        .get("email")
        .and_then(Value::as_str)
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
}

/// Whether an upsert carries custom fields (which need the definitions).
pub fn has_custom_fields(op: &Operation) -> bool {
    op.action == Action::Upsert
        && op
            .payload
            .as_object()
            .is_some_and(|o| o.keys().any(|k| !RESERVED.contains(&k.as_str())))
}

/// The change an operation makes, or why it cannot be made (the record is rejected).
pub fn change(op: &Operation, fields: &Fields) -> Result<Change, String> {
    match op.action {
        Action::Send => Err(
            "a send operation in a list mode: SendGrid sends messages only in mode `send`"
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
            if !email.contains('@') {
                return Err(format!("`{email}` is not an email address"));
            }
            let mut contact = Map::new();
            let mut custom = Map::new();
            for (name, value) in op.payload.as_object().into_iter().flatten() {
                if name == "email" || value.is_null() || value.as_str() == Some("") {
                    continue;
                }
                if RESERVED.contains(&name.as_str()) {
                    contact.insert(name.clone(), Value::String(text(value)));
                    continue;
                }
                let Some(def) = fields.get(name) else {
                    return Err(format!(
                        "the campaign's field `{name}` is not a custom field of this SendGrid \
                         account: create it (Marketing › Custom Fields) or rename it in the \
                         campaign's fields"
                    ));
                };
                custom.insert(def.id.clone(), typed(name, def.field_type, value)?);
            }
            contact.insert("email".to_owned(), Value::String(email.clone()));
            if !custom.is_empty() {
                contact.insert("custom_fields".to_owned(), Value::Object(custom));
            }
            Ok(Change::Upsert {
                email,
                contact: Value::Object(contact),
            })
        }
    }
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

/// A value as its field's type wants it: numbers for Number fields, text otherwise.
fn typed(name: &str, field_type: FieldType, value: &Value) -> Result<Value, String> {
    match field_type {
        FieldType::Text | FieldType::Date => Ok(Value::String(text(value))),
        FieldType::Number => {
            if value.is_number() {
                return Ok(value.clone());
            }
            let raw = text(value);
            let parsed = raw.trim();
            parsed
                .parse::<i64>()
                .map(Number::from)
                .ok()
                .or_else(|| parsed.parse::<f64>().ok().and_then(Number::from_f64))
                .map(Value::Number)
                .ok_or_else(|| {
                    format!(
                        "the field `{name}` is a Number at SendGrid, and `{raw}` is not a number"
                    )
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn fields() -> Fields {
        Fields::new([
            Definition {
                id: "e1_T".into(),
                name: "tier".into(),
                field_type: FieldType::Text,
            },
            Definition {
                id: "e2_N".into(),
                name: "orders".into(),
                field_type: FieldType::Number,
            },
        ])
    }

    #[test]
    fn reserved_fields_go_on_top_and_custom_ones_by_their_id() {
        let c = change(
            &op(
                Action::Upsert,
                json!({"email": " Ann@Example.com", "first_name": "Ann", "last_name": "",
                       "tier": "gold", "orders": "3"}),
            ),
            &fields(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c,
            Change::Upsert {
                email: "ann@example.com".into(),
                contact: json!({"email": "ann@example.com", "first_name": "Ann",
                                "custom_fields": {"e1_T": "gold", "e2_N": 3}}),
            }
        );
    }

    #[test]
    fn an_unknown_field_or_a_number_that_is_not_one_rejects_the_record_by_name() {
        let e = change(
            &op(Action::Upsert, json!({"email": "a@b.c", "shoe_size": "9"})),
            &fields(),
        )
        .unwrap_err();
        assert!(
            e.contains("`shoe_size`") && e.contains("Custom Fields"),
            "{e}"
        );
        let e = change(
            &op(Action::Upsert, json!({"email": "a@b.c", "orders": "many"})),
            &fields(),
        )
        .unwrap_err();
        assert!(e.contains("`orders` is a Number"), "{e}");
        let e = change(&op(Action::Remove, Value::Null), &fields()).unwrap_err();
        assert!(e.contains("`email`"), "{e}");
    }
}
