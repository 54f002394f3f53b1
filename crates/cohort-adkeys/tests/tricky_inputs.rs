//! The table of tricky inputs the issue asks for: spaces, case, accents, phone formats with and
//! without a country code, US ZIP+4, each normalised for both vendors and hashed. Expected
//! digests are SHA-256 of the expected normal form, computed here independently of the crate.
#![allow(clippy::unwrap_used)]

use cohort_adkeys::{google, meta, sha256_hex};
use meta::Key;

/// (key, raw value, country, Meta's normal form, Google's normal form).
const TABLE: &[(&str, &str, Option<&str>, &str, &str)] = &[
    (
        "email",
        "test@example.com",
        None,
        "test@example.com",
        "test@example.com",
    ),
    (
        "email",
        "  TEST@Example.COM\t",
        None,
        "test@example.com",
        "test@example.com",
    ),
    (
        "email",
        "Zoë.Ünal@Exämple.de",
        None,
        "zoë.ünal@exämple.de",
        "zoë.ünal@exämple.de",
    ),
    (
        "phone",
        "+1 (650) 253-1234",
        None,
        "16502531234",
        "+16502531234",
    ),
    (
        "phone",
        "+1.650.253.1234",
        Some("FR"),
        "16502531234",
        "+16502531234",
    ),
    (
        "phone",
        "0044 20 7946 0958",
        None,
        "442079460958",
        "+442079460958",
    ),
    (
        "phone",
        "(650) 253-1234",
        Some("US"),
        "16502531234",
        "+16502531234",
    ),
    (
        "phone",
        "06 12 34 56 78",
        Some("FR"),
        "33612345678",
        "+33612345678",
    ),
    (
        "phone",
        "1 650 253 1234",
        None,
        "16502531234",
        "+16502531234",
    ),
    (
        "first_name",
        "  Anne-Marie ",
        None,
        "annemarie",
        "annemarie",
    ),
    ("first_name", "José Luis", None, "joséluis", "josé luis"),
    ("last_name", "O'Brien", None, "obrien", "obrien"),
    (
        "last_name",
        "  VAN   DER  Berg ",
        None,
        "vanderberg",
        "van der berg",
    ),
];

#[test]
fn each_tricky_input_hashes_to_the_digest_of_its_normal_form_for_each_vendor() {
    for (field, raw, country, meta_form, google_form) in TABLE {
        let (meta_key, google_hash) = match *field {
            "email" => (Key::Email, google::email(raw).unwrap().unwrap()),
            "phone" => (Key::Phone, google::phone(raw, *country).unwrap().unwrap()),
            "first_name" => (Key::Fn, google::hashed_name(raw).unwrap().unwrap()),
            _ => (Key::Ln, google::hashed_name(raw).unwrap().unwrap()),
        };
        let meta_hash = meta::row_value(meta_key, raw, *country).unwrap();
        assert_eq!(meta_hash, sha256_hex(meta_form), "Meta {field} {raw:?}");
        assert_eq!(
            google_hash,
            sha256_hex(google_form),
            "Google {field} {raw:?}"
        );
    }
}

#[test]
fn us_zip_plus_4_is_five_digits_at_meta_and_kept_whole_at_google() {
    assert_eq!(
        meta::row_value(Key::Zip, "94043-1351", Some("US")).unwrap(),
        sha256_hex("94043")
    );
    assert_eq!(
        meta::row_value(Key::Zip, " 94043 ", Some("US")).unwrap(),
        sha256_hex("94043")
    );
    assert_eq!(
        google::postal_code("94043-1351", Some("US"))
            .unwrap()
            .as_deref(),
        Some("94043-1351")
    );
}

#[test]
fn a_national_number_without_a_country_is_refused_by_both() {
    assert!(meta::row_value(Key::Phone, "06 12 34 56 78", None).is_err());
    assert!(google::phone("06 12 34 56 78", None).is_err());
}
