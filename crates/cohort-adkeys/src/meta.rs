//! Meta's multi-key schema: each key's normalisation, then SHA-256 (except `EXTERN_ID`).
//!
//! | key | normalised |
//! | --- | --- |
//! | `EMAIL` | trimmed, lowercased |
//! | `PHONE` | digits only, with the country code, **no `+`** (national numbers take `COUNTRY`'s code) |
//! | `FN`, `LN`, `CT` | lowercased letters only (accented letters kept, as Meta's table allows UTF-8) |
//! | `ST` | lowercased letters only (`CA`, `ca` → `ca`) |
//! | `ZIP` | lowercased, no whitespace; US: the first 5 digits (`94043-1351` → `94043`) |
//! | `COUNTRY` | 2-letter ISO code, lowercased |
//! | `DOBY` | 4-digit year, 1900 to this year (a date `1985-03-04` gives its year) |
//! | `GEN` | `m` or `f` (`Female`, `F` → `f`) |
//! | `EXTERN_ID` | as is, not hashed |

use crate::hash::sha256_hex;
use crate::phone::international_digits;
use crate::{NormalizeError, normalize_email, not_hashed};

/// A key of Meta's multi-key schema that Cohort sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `EXTERN_ID`: the merchant's own id, sent as is.
    ExternId,
    /// `EMAIL`.
    Email,
    /// `PHONE`.
    Phone,
    /// `GEN`.
    Gen,
    /// `DOBY`.
    Doby,
    /// `LN`.
    Ln,
    /// `FN`.
    Fn,
    /// `CT`.
    Ct,
    /// `ST`.
    St,
    /// `ZIP`.
    Zip,
    /// `COUNTRY`.
    Country,
}

impl Key {
    /// Every key, in the order Cohort writes a schema.
    pub const ALL: [Key; 11] = [
        Key::ExternId,
        Key::Email,
        Key::Phone,
        Key::Gen,
        Key::Doby,
        Key::Ln,
        Key::Fn,
        Key::Ct,
        Key::St,
        Key::Zip,
        Key::Country,
    ];

    /// The key's name in the schema (`EMAIL`).
    pub fn name(self) -> &'static str {
        match self {
            Key::ExternId => "EXTERN_ID",
            Key::Email => "EMAIL",
            Key::Phone => "PHONE",
            Key::Gen => "GEN",
            Key::Doby => "DOBY",
            Key::Ln => "LN",
            Key::Fn => "FN",
            Key::Ct => "CT",
            Key::St => "ST",
            Key::Zip => "ZIP",
            Key::Country => "COUNTRY",
        }
    }

    /// The key named `name` (exactly, upper case).
    pub fn parse(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether its value is hashed (all but `EXTERN_ID`).
    pub fn is_hashed(self) -> bool {
        self != Key::ExternId
    }
}

/// The value as Meta wants it before hashing; `country` is the row's `COUNTRY`, for a
/// national phone number and a US ZIP. An empty value is `Ok("")`: unknown.
pub fn normalize(key: Key, raw: &str, country: Option<&str>) -> Result<String, NormalizeError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if key == Key::ExternId {
        return Ok(trimmed.to_owned());
    }
    not_hashed(trimmed)?;
    let invalid = |why| NormalizeError::Invalid {
        value: trimmed.to_owned(),
        why,
    };
    Ok(match key {
        Key::ExternId => unreachable!("returned above"),
        Key::Email => normalize_email(trimmed)?,
        Key::Phone => international_digits(trimmed, country)?,
        Key::Fn | Key::Ln | Key::Ct | Key::St => letters(trimmed),
        Key::Zip => {
            let zip: String = trimmed
                .chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect();
            let us = country.is_some_and(|c| c.trim().eq_ignore_ascii_case("us"));
            let zip_plus_4 = zip.len() == 10
                && zip.as_bytes()[5] == b'-'
                && zip
                    .bytes()
                    .enumerate()
                    .all(|(i, b)| i == 5 || b.is_ascii_digit());
            if us || zip_plus_4 {
                let five: String = zip.chars().take_while(|c| *c != '-').take(5).collect();
                if us && (five.len() != 5 || !five.bytes().all(|b| b.is_ascii_digit())) {
                    return Err(invalid("a US ZIP code starts with 5 digits"));
                }
                five
            } else {
                zip
            }
        }
        Key::Country => {
            let c = letters(trimmed);
            if c.len() != 2 || !c.is_ascii() {
                return Err(invalid(
                    "a country is its 2-letter ISO 3166-1 code (us, fr)",
                ));
            }
            c
        }
        Key::Doby => {
            let year: String = trimmed.chars().take(4).collect();
            let this_year = this_year();
            match year.parse::<i32>() {
                Ok(y) if year.len() == 4 && (1900..=this_year).contains(&y) => year,
                _ => return Err(invalid("a birth year is 4 digits from 1900 to this year")),
            }
        }
        Key::Gen => match trimmed.chars().next().map(|c| c.to_ascii_lowercase()) {
            Some(c @ ('m' | 'f')) => c.to_string(),
            _ => return Err(invalid("a gender is m or f")),
        },
    })
}

/// What the row carries for `key`: the hash of the normalised value, `EXTERN_ID` as is, and
/// `""` for an unknown value.
pub fn row_value(key: Key, raw: &str, country: Option<&str>) -> Result<String, NormalizeError> {
    let normalized = normalize(key, raw, country)?;
    if normalized.is_empty() || !key.is_hashed() {
        Ok(normalized)
    } else {
        Ok(sha256_hex(&normalized))
    }
}

/// Lowercase letters only: no digits, punctuation or whitespace.
fn letters(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The current year (UTC), from the system clock.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 365.2425 days a year is exact enough for a bound.
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(key: Key, raw: &str) -> String {
        normalize(key, raw, None).unwrap()
    }

    #[test]
    fn the_published_vector_is_what_an_email_row_carries() {
        assert_eq!(
            row_value(Key::Email, "  Test@Example.com ", None).unwrap(),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
    }

    #[test]
    fn meta_phones_are_digits_with_the_country_code_and_no_plus() {
        assert_eq!(n(Key::Phone, "+1 (650) 253-1234"), "16502531234");
        assert_eq!(
            normalize(Key::Phone, "(650) 253-1234", Some("us")).unwrap(),
            "16502531234"
        );
        assert_eq!(
            normalize(Key::Phone, "06 12 34 56 78", Some("FR")).unwrap(),
            "33612345678"
        );
        assert_eq!(
            row_value(Key::Phone, "+1 650 253 1234", None).unwrap(),
            sha256_hex("16502531234")
        );
    }

    #[test]
    fn names_and_cities_keep_only_lowercase_letters_accents_included() {
        assert_eq!(n(Key::Fn, "  Mary-Ann "), "maryann");
        assert_eq!(n(Key::Ln, "O'Brien"), "obrien");
        assert_eq!(n(Key::Fn, "José"), "josé");
        assert_eq!(n(Key::Ct, "San Francisco"), "sanfrancisco");
        assert_eq!(n(Key::St, "CA"), "ca");
    }

    #[test]
    fn zip_codes_lose_whitespace_and_us_ones_keep_five_digits() {
        assert_eq!(n(Key::Zip, "94043-1351"), "94043");
        assert_eq!(
            normalize(Key::Zip, "940431351", Some("US")).unwrap(),
            "94043"
        );
        assert_eq!(n(Key::Zip, "SW1A 1AA"), "sw1a1aa");
        assert!(normalize(Key::Zip, "ABCDE", Some("us")).is_err());
    }

    #[test]
    fn country_gender_and_year_take_their_short_forms() {
        assert_eq!(n(Key::Country, " US "), "us");
        assert!(normalize(Key::Country, "Germany", None).is_err());
        assert_eq!(n(Key::Gen, "Female"), "f");
        assert_eq!(n(Key::Gen, "M"), "m");
        assert!(normalize(Key::Gen, "x", None).is_err());
        assert_eq!(n(Key::Doby, "1985-03-04"), "1985");
        assert!(normalize(Key::Doby, "1850", None).is_err());
    }

    #[test]
    fn empty_values_are_unknown_and_extern_ids_are_sent_as_they_are() {
        assert_eq!(row_value(Key::Email, "  ", None).unwrap(), "");
        assert_eq!(row_value(Key::ExternId, "C-42", None).unwrap(), "C-42");
        let id = sha256_hex("x");
        assert_eq!(row_value(Key::ExternId, &id, None).unwrap(), id);
    }

    #[test]
    fn a_value_that_is_already_a_hash_is_refused() {
        let hashed = sha256_hex("test@example.com");
        let err = row_value(Key::Email, &hashed, None).unwrap_err();
        assert_eq!(err, NormalizeError::AlreadyHashed { len: 64 });
        assert!(row_value(Key::Fn, &hashed.to_uppercase(), None).is_err());
    }
}
