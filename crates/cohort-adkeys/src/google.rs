//! Google Customer Match through the Data Manager API (`UserIdentifier`, `AddressInfo` in
//! `google/ads/datamanager/v1/user_data.proto`).
//!
//! | field | normalised | sent |
//! | --- | --- | --- |
//! | `email_address` | trimmed, lowercased | SHA-256 hex |
//! | `phone_number` | E.164: `+`, country code, number (`+16502531234`) | SHA-256 hex |
//! | `address.given_name`, `address.family_name` | lowercased, no punctuation, no leading, trailing or repeated whitespace | SHA-256 hex |
//! | `address.region_code` | 2-letter ISO 3166-1 code, upper case | plain |
//! | `address.postal_code` | trimmed, inner whitespace kept once (`SW1A 1AA`); US 5 or 5+4 digits | plain |

use crate::hash::sha256_hex;
use crate::phone::international_digits;
use crate::{NormalizeError, normalize_email, not_hashed};

/// A hashed email (`email_address`), or `None` for an empty value.
pub fn email(raw: &str) -> Result<Option<String>, NormalizeError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    not_hashed(raw)?;
    Ok(Some(sha256_hex(&normalize_email(raw)?)))
}

/// The E.164 form of a phone number (`+16502531234`); `region` is the customer's
/// `region_code`, for a national number.
pub fn e164(raw: &str, region: Option<&str>) -> Result<String, NormalizeError> {
    not_hashed(raw)?;
    Ok(format!("+{}", international_digits(raw, region)?))
}

/// A hashed phone number (`phone_number`), or `None` for an empty value.
pub fn phone(raw: &str, region: Option<&str>) -> Result<Option<String>, NormalizeError> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(sha256_hex(&e164(raw, region)?)))
}

/// A given or family name before hashing: lowercase, punctuation dropped, whitespace
/// collapsed to single spaces and trimmed (`"  Mary-Ann  O'Neil "` → `"maryann oneil"`).
pub fn name(raw: &str) -> String {
    let kept: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A hashed name, or `None` for an empty one.
pub fn hashed_name(raw: &str) -> Result<Option<String>, NormalizeError> {
    not_hashed(raw)?;
    let n = name(raw);
    Ok((!n.is_empty()).then(|| sha256_hex(&n)))
}

/// A region code: two ASCII letters, upper case; `None` for an empty value.
pub fn region_code(raw: &str) -> Result<Option<String>, NormalizeError> {
    let t = raw.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t.len() != 2 || !t.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(NormalizeError::Invalid {
            value: t.to_owned(),
            why: "a region code is the 2-letter ISO 3166-1 code (US, FR)",
        });
    }
    Ok(Some(t.to_ascii_uppercase()))
}

/// A postal code, sent plain: trimmed, inner whitespace collapsed; in the US, 5 digits or
/// ZIP+4 (`94043-1351`), as Google's formatting guide allows.
pub fn postal_code(raw: &str, region: Option<&str>) -> Result<Option<String>, NormalizeError> {
    let t = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        return Ok(None);
    }
    if region.is_some_and(|r| r.eq_ignore_ascii_case("us")) {
        let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let ok = match t.split_once('-') {
            Some((five, four)) => digits(five, 5) && digits(four, 4),
            None => digits(&t, 5),
        };
        if !ok {
            return Err(NormalizeError::Invalid {
                value: t,
                why: "a US postal code is 5 digits or ZIP+4 (94043-1351)",
            });
        }
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_vector_is_the_hashed_email() {
        assert_eq!(
            email(" TEST@example.com").unwrap().unwrap(),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
    }

    #[test]
    fn google_phones_are_e164_with_the_plus_and_so_hash_unlike_metas() {
        assert_eq!(e164("+1 800 555 0101", None).unwrap(), "+18005550101");
        assert_eq!(e164("(650) 253-1234", Some("US")).unwrap(), "+16502531234");
        assert_eq!(e164("06 12 34 56 78", Some("FR")).unwrap(), "+33612345678");
        let google = phone("+1 650 253 1234", None).unwrap().unwrap();
        assert_eq!(google, sha256_hex("+16502531234"));
        let meta =
            crate::meta::row_value(crate::meta::Key::Phone, "+1 650 253 1234", None).unwrap();
        assert_ne!(
            google, meta,
            "the same number hashes differently on the two platforms"
        );
    }

    #[test]
    fn names_keep_inner_spaces_and_accents_but_lose_punctuation() {
        assert_eq!(name("  Mary-Ann   O'Neil "), "maryann oneil");
        assert_eq!(name("ZOË"), "zoë");
        assert_eq!(hashed_name("").unwrap(), None);
    }

    #[test]
    fn region_and_postal_code_are_plain_and_us_zip_plus_4_is_allowed() {
        assert_eq!(region_code(" us").unwrap().as_deref(), Some("US"));
        assert!(region_code("USA").is_err());
        assert_eq!(
            postal_code("94043-1351", Some("US")).unwrap().as_deref(),
            Some("94043-1351")
        );
        assert_eq!(
            postal_code(" SW1A   1AA ", Some("GB")).unwrap().as_deref(),
            Some("SW1A 1AA")
        );
        assert!(postal_code("9404", Some("US")).is_err());
    }

    #[test]
    fn hashed_inputs_are_refused() {
        let h = sha256_hex("ann@example.com");
        assert!(matches!(
            email(&h),
            Err(NormalizeError::AlreadyHashed { len: 64 })
        ));
        assert!(phone(&h, None).is_err());
        assert!(hashed_name(&h).is_err());
    }
}
