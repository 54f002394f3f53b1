//! Pure formatting behind the helpers: money, dates, plurals, case.
//!
//! Kept apart from handlebars so each rule is tested on plain values.

use std::fmt::Write as _;

use chrono::TimeZone;
use chrono::format::{Item, StrftimeItems};
use chrono_tz::Tz;
use cohort_core::{Money, Timestamp};

/// How a currency is written: its symbol (before the amount) and its minor digits.
///
/// English-locale symbols; the dollar currencies other than USD carry a prefix so an
/// Australian reader is never told an amount in US dollars is theirs.
fn currency_style(code: &str) -> (Option<&'static str>, u32) {
    match code {
        "USD" => (Some("$"), 2),
        "EUR" => (Some("€"), 2),
        "GBP" => (Some("£"), 2),
        "JPY" => (Some("¥"), 0),
        "CAD" => (Some("CA$"), 2),
        "AUD" => (Some("A$"), 2),
        "NZD" => (Some("NZ$"), 2),
        "INR" => (Some("₹"), 2),
        // ISO 4217 currencies without minor units, shown after the amount like any other code.
        "KRW" | "VND" | "CLP" | "ISK" | "UGX" | "PYG" | "XAF" | "XOF" => (None, 0),
        // ... and those with three.
        "KWD" | "BHD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => (None, 3),
        _ => (None, 2),
    }
}

/// True for a plausible ISO 4217 code: three ASCII upper-case letters.
pub(crate) fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// `1234.5` in `USD` is `$1,234.50`; in `JPY` `¥1,235`; in `CHF` `1,234.50 CHF`.
///
/// Rounds half away from zero to the currency's minor digits.
pub(crate) fn format_money(amount: Money, currency: &str) -> String {
    let (symbol, digits) = currency_style(currency);
    let drop = 10_i128.pow(cohort_core::money::SCALE_DIGITS - digits);
    let raw = i128::from(amount.raw());
    let rounded = (raw.abs() + drop / 2) / drop;
    let unit = 10_i128.pow(digits);
    let (whole, frac) = (rounded / unit, rounded % unit);
    let mut out = String::new();
    if raw < 0 && rounded != 0 {
        out.push('-');
    }
    if let Some(symbol) = symbol {
        out.push_str(symbol);
    }
    out.push_str(&group_thousands(&whole.to_string()));
    if digits > 0 {
        let _ = write!(out, ".{frac:0width$}", width = digits as usize);
    }
    if symbol.is_none() {
        out.push(' ');
        out.push_str(currency);
    }
    out
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The default `date` format: `March 1, 2024`.
pub(crate) const DEFAULT_DATE_FORMAT: &str = "%B %-d, %Y";

/// Why a date cannot be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DateError {
    /// The format has a `%` directive chrono does not know.
    BadFormat(String),
}

/// `at` in `tz`, formatted with a strftime `format`.
///
/// The format is checked before use: chrono panics when a bad directive is displayed, and a
/// template typo must be an error, not a crash.
pub(crate) fn format_date(at: Timestamp, tz: Tz, format: &str) -> Result<String, DateError> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(DateError::BadFormat(format.to_owned()));
    }
    let local = tz.from_utc_datetime(&at.to_datetime().naive_utc());
    let mut out = String::new();
    write!(out, "{}", local.format_with_items(items.into_iter()))
        .map_err(|_| DateError::BadFormat(format.to_owned()))?;
    Ok(out)
}

/// English plural of a noun for the common regular cases: `order` → `orders`, `box` →
/// `boxes`, `category` → `categories`. Irregular words take an explicit plural.
pub(crate) fn plural_of(word: &str) -> String {
    let lower = word.to_lowercase();
    let ends_with_consonant_y = lower.ends_with('y')
        && !lower
            .chars()
            .rev()
            .nth(1)
            .is_some_and(|c| "aeiou".contains(c));
    if ends_with_consonant_y && word.len() > 1 {
        format!("{}ies", &word[..word.len() - 1])
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

/// Upper-cases the first character, leaves the rest alone: `ann marie` → `Ann marie`.
pub(crate) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Each word (split on whitespace and `-`) upper-cased first and lower-cased after:
/// `ANN-MARIE o'neil` → `Ann-Marie O'neil`.
pub(crate) fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = c.is_whitespace() || c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn money_uses_symbols_grouping_and_minor_digits() {
        assert_eq!(format_money(m("1234.5"), "USD"), "$1,234.50");
        assert_eq!(format_money(m("1234.5"), "EUR"), "€1,234.50");
        assert_eq!(format_money(m("1234.5"), "GBP"), "£1,234.50");
        assert_eq!(format_money(m("1234.5"), "JPY"), "¥1,235");
        assert_eq!(format_money(m("1234.5"), "CAD"), "CA$1,234.50");
        assert_eq!(format_money(m("1234.5"), "AUD"), "A$1,234.50");
        assert_eq!(format_money(m("1234.5"), "XYZ"), "1,234.50 XYZ");
        assert_eq!(format_money(m("1.2345"), "KWD"), "1.235 KWD");
        assert_eq!(format_money(m("0"), "USD"), "$0.00");
        assert_eq!(format_money(m("999"), "USD"), "$999.00");
        assert_eq!(format_money(m("1000000"), "USD"), "$1,000,000.00");
    }

    #[test]
    fn money_rounds_half_away_from_zero_and_keeps_the_sign() {
        assert_eq!(format_money(m("0.005"), "USD"), "$0.01");
        assert_eq!(format_money(m("0.0049"), "USD"), "$0.00");
        assert_eq!(format_money(m("-12.345"), "USD"), "-$12.35");
        assert_eq!(format_money(m("-0.001"), "USD"), "$0.00");
        assert_eq!(
            format_money(Money::from_raw(i64::MIN), "EUR"),
            "-€922,337,203,685,477.58"
        );
    }

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert!(is_currency_code("EUR"));
        assert!(!is_currency_code("eur"));
        assert!(!is_currency_code("EURO"));
        assert!(!is_currency_code("€"));
    }

    #[test]
    fn dates_are_shown_in_the_zone() {
        let at = Timestamp::parse("2024-03-01T03:00:00Z").unwrap();
        assert_eq!(
            format_date(at, Tz::UTC, DEFAULT_DATE_FORMAT).unwrap(),
            "March 1, 2024"
        );
        // Three in the morning UTC is still February 29th in New York.
        assert_eq!(
            format_date(at, chrono_tz::America::New_York, "%Y-%m-%d %H:%M %Z").unwrap(),
            "2024-02-29 22:00 EST"
        );
    }

    #[test]
    fn a_bad_date_format_is_an_error_not_a_panic() {
        let at = Timestamp::from_secs(0);
        assert_eq!(
            format_date(at, Tz::UTC, "%Q"),
            Err(DateError::BadFormat("%Q".into()))
        );
        assert!(format_date(at, Tz::UTC, "100%").is_err());
    }

    #[test]
    fn plurals_follow_regular_english_rules() {
        assert_eq!(plural_of("order"), "orders");
        assert_eq!(plural_of("box"), "boxes");
        assert_eq!(plural_of("match"), "matches");
        assert_eq!(plural_of("category"), "categories");
        assert_eq!(plural_of("day"), "days");
        assert_eq!(plural_of("y"), "ys");
    }

    #[test]
    fn case_changes() {
        assert_eq!(capitalize("ann marie"), "Ann marie");
        assert_eq!(capitalize("élodie"), "Élodie");
        assert_eq!(capitalize(""), "");
        assert_eq!(title_case("ANN-MARIE o'neil"), "Ann-Marie O'neil");
        assert_eq!(title_case("  two  spaces"), "  Two  Spaces");
    }
}
