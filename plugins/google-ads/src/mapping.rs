//! A campaign's rendered `fields` into a Data Manager `AudienceMember` (the REST/JSON mapping
//! of `audience.proto` and `user_data.proto`), normalised and hashed by `cohort-adkeys`.
//!
//! Fields: `email` (hashed), `phone` (E.164 with `+`, hashed), and the address, sent only
//! when all four of `given_name`, `family_name` (hashed), `region_code` and `postal_code`
//! (plain) are known. Other fields are not sent: the caller warns about them.

use cohort_adkeys::google;
use serde::Serialize;
use serde_json::Value;

/// The fields a campaign may map.
pub const FIELDS: [&str; 6] = [
    "email",
    "phone",
    "given_name",
    "family_name",
    "region_code",
    "postal_code",
];

/// One `UserIdentifier`: exactly one of its oneof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Identifier {
    /// `emailAddress`: SHA-256 hex of the normalised email.
    EmailAddress(String),
    /// `phoneNumber`: SHA-256 hex of the E.164 number.
    PhoneNumber(String),
    /// `address`.
    Address(Address),
}

/// `AddressInfo`: names hashed, region and postal code plain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// SHA-256 hex of the normalised given name.
    pub given_name: String,
    /// SHA-256 hex of the normalised family name.
    pub family_name: String,
    /// `US`.
    pub region_code: String,
    /// `94043`.
    pub postal_code: String,
}

/// `UserData`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    /// At most 10; Cohort sends at most 3.
    pub user_identifiers: Vec<Identifier>,
}

/// `Consent`, as Cohort sends it: granted, since only consenting customers are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    /// `CONSENT_GRANTED`.
    pub ad_user_data: &'static str,
    /// `CONSENT_GRANTED`.
    pub ad_personalization: &'static str,
}

/// Consent granted for both purposes.
pub const GRANTED: Consent = Consent {
    ad_user_data: "CONSENT_GRANTED",
    ad_personalization: "CONSENT_GRANTED",
};

/// `AudienceMember` with `user_data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The identifiers.
    pub user_data: UserData,
    /// Set on ingestion, never on removal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
}

impl Member {
    /// Whether `hash` (an email or phone hash a test or an error quotes) is one of its
    /// identifiers.
    pub fn holds(&self, hash: &str) -> bool {
        self.user_data.user_identifiers.iter().any(|i| match i {
            Identifier::EmailAddress(h) | Identifier::PhoneNumber(h) => h == hash,
            Identifier::Address(a) => a.given_name == hash || a.family_name == hash,
        })
    }
}

/// The member for a payload (without consent); `Ok(None)` for no payload. `unknown` is told
/// each field that is not one of [`FIELDS`].
pub fn member(payload: &Value, mut unknown: impl FnMut(&str)) -> Result<Option<Member>, String> {
    let fields = match payload {
        Value::Null => return Ok(None),
        Value::Object(fields) => fields,
        other => {
            return Err(format!(
                "the campaign's fields rendered {other}, not a table"
            ));
        }
    };
    let get = |name: &str| -> String {
        match fields.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    for name in fields.keys() {
        if !FIELDS.contains(&name.as_str()) {
            unknown(name);
        }
    }
    fn at(field: &'static str) -> impl Fn(cohort_adkeys::NormalizeError) -> String {
        move |e| format!("field {field}: {e}")
    }
    let region = google::region_code(&get("region_code")).map_err(at("region_code"))?;
    let mut ids = Vec::with_capacity(3);
    if let Some(h) = google::email(&get("email")).map_err(at("email"))? {
        ids.push(Identifier::EmailAddress(h));
    }
    if let Some(h) = google::phone(&get("phone"), region.as_deref()).map_err(at("phone"))? {
        ids.push(Identifier::PhoneNumber(h));
    }
    let given = google::hashed_name(&get("given_name")).map_err(at("given_name"))?;
    let family = google::hashed_name(&get("family_name")).map_err(at("family_name"))?;
    let postal =
        google::postal_code(&get("postal_code"), region.as_deref()).map_err(at("postal_code"))?;
    // Google matches an address only on all four parts; a partial one is left out.
    if let (Some(given_name), Some(family_name), Some(region_code), Some(postal_code)) =
        (given, family, region, postal)
    {
        ids.push(Identifier::Address(Address {
            given_name,
            family_name,
            region_code,
            postal_code,
        }));
    }
    if ids.is_empty() {
        return Err(
            "no identifier to match on: email, phone and a full address (given_name, \
             family_name, region_code, postal_code) are all missing"
                .to_owned(),
        );
    }
    Ok(Some(Member {
        user_data: UserData {
            user_identifiers: ids,
        },
        consent: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_adkeys::sha256_hex;
    use serde_json::json;

    #[test]
    fn a_member_is_the_proto_json_with_hashes_and_a_plain_region_and_postal_code() {
        let m = member(
            &json!({"email": "Ann@Example.com", "phone": "(650) 253-1234", "given_name": "Ann",
                     "family_name": "O'Neil", "region_code": "us", "postal_code": "94043",
                     "offer": "x"}),
            |_| {},
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"userData": {"userIdentifiers": [
                {"emailAddress": sha256_hex("ann@example.com")},
                {"phoneNumber": sha256_hex("+16502531234")},
                {"address": {"givenName": sha256_hex("ann"), "familyName": sha256_hex("oneil"),
                             "regionCode": "US", "postalCode": "94043"}}
            ]}})
        );
    }

    #[test]
    fn a_partial_address_is_left_out_and_no_identifier_at_all_is_an_error() {
        let m = member(
            &json!({"email": "a@b.co", "given_name": "Ann", "region_code": "US"}),
            |_| {},
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.user_data.user_identifiers.len(), 1);
        let err = member(&json!({"given_name": "Ann"}), |_| {}).unwrap_err();
        assert!(err.contains("no identifier"), "{err}");
        let err = member(&json!({"email": "nope"}), |_| {}).unwrap_err();
        assert!(err.starts_with("field email:"), "{err}");
    }
}
