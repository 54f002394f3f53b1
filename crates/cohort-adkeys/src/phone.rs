//! A phone number in international form, as digits: country calling code then the national
//! number, without `+` (Meta writes it so; Google adds the `+`).
//!
//! A number written with `+` or `00` carries its country code. A national number (`0650…`,
//! `(650) 253-1234`) gets the calling code of the customer's country, when known, after its
//! trunk zeros are dropped; without a country it is refused, since guessing would hash a number
//! that matches no one (or someone else).

use crate::NormalizeError;

/// Calling codes of the countries Cohort's merchants sell to most; others need the number
/// written with `+`.
const CALLING_CODES: &[(&str, &str)] = &[
    ("US", "1"),
    ("CA", "1"),
    ("GB", "44"),
    ("IE", "353"),
    ("FR", "33"),
    ("DE", "49"),
    ("AT", "43"),
    ("CH", "41"),
    ("BE", "32"),
    ("NL", "31"),
    ("LU", "352"),
    ("ES", "34"),
    ("PT", "351"),
    ("IT", "39"),
    ("DK", "45"),
    ("SE", "46"),
    ("NO", "47"),
    ("FI", "358"),
    ("PL", "48"),
    ("CZ", "420"),
    ("GR", "30"),
    ("AU", "61"),
    ("NZ", "64"),
    ("JP", "81"),
    ("KR", "82"),
    ("SG", "65"),
    ("IN", "91"),
    ("BR", "55"),
    ("MX", "52"),
    ("AR", "54"),
    ("ZA", "27"),
];

/// The calling code of an ISO 3166-1 alpha-2 country, when Cohort knows it.
pub(crate) fn calling_code(country: &str) -> Option<&'static str> {
    CALLING_CODES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(country.trim()))
        .map(|(_, code)| *code)
}

/// `raw` as international digits (no `+`), using `country` for a national number.
pub(crate) fn international_digits(
    raw: &str,
    country: Option<&str>,
) -> Result<String, NormalizeError> {
    let bad = |why| NormalizeError::Phone {
        value: raw.trim().to_owned(),
        why,
    };
    let trimmed = raw.trim();
    if trimmed.chars().any(char::is_alphabetic) {
        return Err(bad("letters in a phone number"));
    }
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let international = if trimmed.starts_with('+') {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else {
        let code = country.and_then(calling_code);
        let national = digits.trim_start_matches('0');
        match code {
            // NANP numbers are often written with their leading 1.
            Some("1") if national.len() == 11 && national.starts_with('1') => national.to_owned(),
            Some(code) => format!("{code}{national}"),
            None if country.is_none() && national.len() == 11 && national.starts_with('1') => {
                national.to_owned()
            }
            None => {
                return Err(bad(
                    "no country code: write it with + (or give the customer's country)",
                ));
            }
        }
    };
    let international = international.trim_start_matches('0').to_owned();
    // E.164: at most 15 digits; fewer than 8 is no full number anywhere.
    if !(8..=15).contains(&international.len()) {
        return Err(bad("not 8 to 15 digits with the country code"));
    }
    Ok(international)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_with_a_country_code_keep_it_whatever_the_punctuation() {
        for raw in [
            "+1 650 253 1234",
            "+1 (650) 253-1234",
            "001-650-253-1234",
            " +16502531234 ",
            "+1.650.253.1234",
        ] {
            assert_eq!(
                international_digits(raw, None).unwrap(),
                "16502531234",
                "{raw}"
            );
        }
        assert_eq!(
            international_digits("+44 20 7946 0958", Some("FR")).unwrap(),
            "442079460958",
            "the + wins over the customer's country"
        );
    }

    #[test]
    fn national_numbers_take_the_customers_calling_code_without_the_trunk_zero() {
        assert_eq!(
            international_digits("06 12 34 56 78", Some("fr")).unwrap(),
            "33612345678"
        );
        assert_eq!(
            international_digits("(650) 253-1234", Some("US")).unwrap(),
            "16502531234"
        );
        assert_eq!(
            international_digits("1-650-253-1234", Some("US")).unwrap(),
            "16502531234"
        );
        assert_eq!(
            international_digits("020 7946 0958", Some("GB")).unwrap(),
            "442079460958"
        );
    }

    #[test]
    fn a_national_number_without_a_country_is_refused_rather_than_guessed() {
        let err = international_digits("06 12 34 56 78", None).unwrap_err();
        assert!(err.to_string().contains("no country code"), "{err}");
        assert!(international_digits("call me", Some("US")).is_err());
        assert!(international_digits("+1 555", None).is_err());
    }
}
