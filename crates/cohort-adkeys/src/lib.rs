//! Customer identifiers as the ad platforms match them: normalised by each vendor's rules, then
//! SHA-256-hashed to lowercase hex. The one place Cohort does this, so the Meta and Google
//! destinations (and their benchmarks) hash the same customer the same way.
//!
//! - [`hash`]: SHA-256 to hex, and the test for a value that is already a hash (a campaign
//!   that maps a pre-hashed column would otherwise hash it twice and match no one).
//! - [`meta`]: Meta's multi-key schema (`EMAIL`, `PHONE`, `FN`, …): phone digits with the
//!   country code and **no `+`**.
//! - [`google`]: the Data Manager API's `UserIdentifier`: phone in E.164 **with `+`**, names
//!   keeping their inner spaces, region and postal code sent plain.
//!
//! It must not do I/O or know about plugins: pure functions, tested against the vendors'
//! published vector and a table of tricky inputs (see the tests and
//! `shared/specs/ad-platform-normalization.md`).
#![warn(missing_docs)]

pub mod google;
pub mod hash;
pub mod meta;
mod phone;

pub use hash::{looks_like_hash, sha256_hex};

/// Why a value cannot be sent: the caller names the field and the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The value already looks like a SHA-256 (or MD5) hash: Cohort hashes raw values itself.
    #[error(
        "looks like a hash already ({len} hex digits); map the raw value, Cohort normalises and hashes it"
    )]
    AlreadyHashed {
        /// How many hex digits it has.
        len: usize,
    },
    /// Not an email address (`name@domain.tld`).
    #[error("`{0}` is not an email address")]
    Email(String),
    /// A phone number the rules cannot put in international form.
    #[error("phone `{value}`: {why}")]
    Phone {
        /// The value as given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A value outside what the key accepts (a gender that is not m or f, a year out of range).
    #[error("`{value}`: {why}")]
    Invalid {
        /// The value as given.
        value: String,
        /// What the key accepts.
        why: &'static str,
    },
}

/// Email, both vendors: trimmed and lowercased. The value must have one `@` with text on both
/// sides, a dot in the domain and no inner whitespace (vendors reject the row otherwise, after
/// the upload; refusing it here names the record).
pub fn normalize_email(raw: &str) -> Result<String, NormalizeError> {
    let email = raw.trim().to_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if valid {
        Ok(email)
    } else {
        Err(NormalizeError::Email(raw.trim().to_owned()))
    }
}

/// Refuses a raw value that is already a hash.
pub(crate) fn not_hashed(raw: &str) -> Result<(), NormalizeError> {
    let t = raw.trim();
    if looks_like_hash(t) {
        Err(NormalizeError::AlreadyHashed { len: t.len() })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Test@Example.COM \t").unwrap(),
            "test@example.com"
        );
        assert_eq!(
            normalize_email("ÉLODIE@exemple.fr").unwrap(),
            "élodie@exemple.fr"
        );
    }

    #[test]
    fn things_that_are_not_emails_are_refused_by_name() {
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "a b@example.com",
            "a@b",
            "a@@b.com",
        ] {
            let err = normalize_email(bad).unwrap_err();
            assert!(matches!(err, NormalizeError::Email(_)), "{bad}: {err}");
        }
    }
}
