//! Turning export text into typed values.
//!
//! Exports disagree on spellings (`yes`, `TRUE`, `1`; `$1,234.50`; `03/01/2024`), so each
//! parser accepts the common ones and names what it expected when it fails. Empty text is
//! "no value", never an error.

use chrono::NaiveDate;
use cohort_core::{Money, Timestamp};

/// A boolean: true/false, yes/no, y/n, t/f, 1/0, on/off, subscribed/unsubscribed.
pub fn boolean(text: &str) -> Result<Option<bool>, String> {
    let t = text.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "t" | "1" | "on" | "subscribed" | "opted_in" => Ok(Some(true)),
        "false" | "no" | "n" | "f" | "0" | "off" | "unsubscribed" | "not_subscribed"
        | "opted_out" => Ok(Some(false)),
        _ => Err(format!(
            "`{t}` is not a boolean (expected true/false, yes/no or 1/0)"
        )),
    }
}

/// An amount: `12.50`, `-3`, `$1,234.50`, `€99`. Thousands separators must be in threes.
pub fn money(text: &str) -> Result<Option<Money>, String> {
    let t = text.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(m) = Money::parse(t) {
        return Ok(Some(m));
    }
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let rest = rest.trim_start_matches(['$', '€', '£', '¥']).trim();
    let (whole, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let groups: Vec<&str> = whole.split(',').collect();
    let grouped = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    if groups.len() == 1 || grouped {
        let mut plain = String::with_capacity(rest.len() + 1);
        if negative {
            plain.push('-');
        }
        plain.push_str(&groups.concat());
        if !frac.is_empty() {
            plain.push('.');
            plain.push_str(frac);
        }
        if let Ok(m) = Money::parse(&plain) {
            return Ok(Some(m));
        }
    }
    Err(format!(
        "`{t}` is not an amount (expected e.g. 12.50 or $1,234.50)"
    ))
}

/// A whole number; `1985.0` is accepted as 1985.
pub fn integer(text: &str) -> Result<Option<i64>, String> {
    let t = text.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    let digits = t.strip_suffix(".0").unwrap_or(t);
    digits
        .parse::<i64>()
        .map(Some)
        .map_err(|_| format!("`{t}` is not a whole number"))
}

/// An instant (see [`Timestamp::parse`] for the accepted forms).
pub fn timestamp(text: &str) -> Result<Option<Timestamp>, String> {
    let t = text.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    Timestamp::parse(t).map(Some).map_err(|e| e.to_string())
}

/// A calendar date; a date-time keeps only its date.
pub fn date(text: &str) -> Result<Option<NaiveDate>, String> {
    let t = text.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    Timestamp::parse(t)
        .map(|ts| Some(ts.to_datetime().date_naive()))
        .map_err(|e| e.to_string())
}

/// Shopify-style tags: comma separated, trimmed, empty ones dropped.
pub fn tags(text: &str) -> Vec<String> {
    tag_iter(text).map(str::to_owned).collect()
}

/// The tags of [`tags`], borrowed.
pub fn tag_iter(text: &str) -> impl Iterator<Item = &str> + Clone {
    text.split(',').map(str::trim).filter(|t| !t.is_empty())
}

/// Optional text: trimmed, empty is none.
pub fn text(text: &str) -> Option<String> {
    text_ref(text).map(str::to_owned)
}

/// Optional text, borrowed: trimmed, empty is none.
pub fn text_ref(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_in_common_spellings() {
        for t in ["yes", "TRUE", "1", "y", "Subscribed"] {
            assert_eq!(boolean(t), Ok(Some(true)), "{t}");
        }
        for t in ["no", "false", "0", "N", "unsubscribed"] {
            assert_eq!(boolean(t), Ok(Some(false)), "{t}");
        }
        assert_eq!(boolean(" "), Ok(None));
        assert!(
            boolean("maybe")
                .expect_err("not a bool")
                .contains("`maybe`")
        );
    }

    #[test]
    fn amounts_with_symbols_and_separators() {
        let m = |s: &str| money(s).expect("amount").expect("some").to_string();
        assert_eq!(m("12.5"), "12.50");
        assert_eq!(m("$1,234.50"), "1234.50");
        assert_eq!(m("-€99"), "-99.00");
        assert_eq!(m("1,000,000"), "1000000.00");
        assert!(money("1,23.4").is_err(), "separators must group by three");
        assert!(
            money("12,50").is_err(),
            "decimal commas are refused rather than misread"
        );
        assert_eq!(money(""), Ok(None));
    }

    #[test]
    fn integers_dates_and_tags() {
        assert_eq!(integer("1985.0"), Ok(Some(1985)));
        assert!(integer("19x5").is_err());
        assert_eq!(
            date("1990-05-06 10:00:00").expect("date"),
            NaiveDate::from_ymd_opt(1990, 5, 6)
        );
        assert!(timestamp("31/31/2020").is_err());
        assert_eq!(tags(" vip, ,b2b,"), vec!["vip", "b2b"]);
    }
}
