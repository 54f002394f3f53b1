//! Exact money.
//!
//! Amounts are fixed-point decimals with four fractional digits held in an `i64`. Four digits
//! cover every ISO 4217 minor unit (at most three) with room for exact averages, and integer
//! addition is associative, so `total_spent > 500` never depends on the order in which orders
//! were summed. `f64` never touches a money value.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Number of fractional decimal digits kept by [`Money`].
pub const SCALE_DIGITS: u32 = 4;
/// `10^SCALE_DIGITS`: the number of units in one whole currency unit.
pub const SCALE: i64 = 10_000;

/// An exact amount of money, in ten-thousandths of a currency unit.
///
/// The currency lives beside the amount (on the order, or the workspace): mixing currencies is
/// refused where records enter the core, never guessed at here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

/// Why a text is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not a decimal number.
    #[error("`{0}` is not a decimal amount")]
    Invalid(String),
    /// More fractional digits than [`SCALE_DIGITS`] that are not zeros.
    #[error("`{0}` has more than {SCALE_DIGITS} decimal places")]
    TooPrecise(String),
    /// The amount does not fit.
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(0);

    /// An amount from its raw count of ten-thousandths.
    pub const fn from_raw(units: i64) -> Self {
        Money(units)
    }

    /// The raw count of ten-thousandths.
    pub const fn raw(self) -> i64 {
        self.0
    }

    /// A whole number of currency units.
    pub const fn from_whole(units: i64) -> Self {
        Money(units * SCALE)
    }

    /// Adds, reporting overflow instead of wrapping.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    /// Subtracts, reporting overflow instead of wrapping.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }

    /// This amount divided by `n`, rounded half away from zero to the last kept digit.
    ///
    /// Used for averages: the result is exact to four places, whatever the summation order.
    pub fn div_round(self, n: i64) -> Option<Money> {
        if n == 0 {
            return None;
        }
        let (num, den) = (i128::from(self.0), i128::from(n));
        let q = num / den;
        let r = num % den;
        let q = if 2 * r.abs() >= den.abs() {
            q + num.signum() * den.signum()
        } else {
            q
        };
        i64::try_from(q).ok().map(Money)
    }

    /// The amount as a float, for display and statistics only.
    pub fn to_f64(self) -> f64 {
        self.0 as f64 / SCALE as f64
    }

    /// Parses a decimal such as `12`, `-3.5`, `1,234.56` is refused, `+0.0100` is accepted.
    ///
    /// Parsing is byte-level because it runs once per order on the hot path of a load.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let invalid = || MoneyError::Invalid(text.to_owned());
        let s = text.trim_ascii();
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            Some(_) => (false, s),
            None => return Err(invalid()),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, f),
            None => (digits, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let mut units: i64 = 0;
        for b in whole.bytes() {
            if !b.is_ascii_digit() {
                return Err(invalid());
            }
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(i64::from(b - b'0')))
                .ok_or_else(|| MoneyError::Overflow(text.to_owned()))?;
        }
        let mut scaled = units
            .checked_mul(SCALE)
            .ok_or_else(|| MoneyError::Overflow(text.to_owned()))?;
        let mut place = SCALE / 10;
        for b in frac.bytes() {
            if !b.is_ascii_digit() {
                return Err(invalid());
            }
            let d = i64::from(b - b'0');
            if place == 0 {
                if d != 0 {
                    return Err(MoneyError::TooPrecise(text.to_owned()));
                }
                continue;
            }
            scaled += d * place;
            place /= 10;
        }
        Ok(Money(if negative { -scaled } else { scaled }))
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl fmt::Display for Money {
    /// At least two decimals, more only when they are not zero: `500.00`, `33.3333`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / SCALE as u64;
        let mut frac = abs % SCALE as u64;
        let mut digits = SCALE_DIGITS;
        while digits > 2 && frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{sign}{whole}.{frac:0width$}", width = digits as usize)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

impl Serialize for Money {
    /// Serialised as a decimal string, so no JSON reader turns it into a float.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Accepts a decimal string or a JSON number (read through its textual form).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal amount such as \"12.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                v.checked_mul(SCALE)
                    .map(Money)
                    .ok_or_else(|| E::custom("amount too large"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                i64::try_from(v)
                    .ok()
                    .and_then(|v| v.checked_mul(SCALE))
                    .map(Money)
                    .ok_or_else(|| E::custom("amount too large"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                // JSON numbers with a fraction arrive as f64; their shortest round-trip text is
                // the decimal the sender wrote.
                Money::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_decimals_exactly() {
        assert_eq!(Money::parse("12").unwrap().raw(), 120_000);
        assert_eq!(Money::parse("-3.5").unwrap().raw(), -35_000);
        assert_eq!(Money::parse("0.0001").unwrap().raw(), 1);
        assert_eq!(Money::parse(".5").unwrap().raw(), 5_000);
        assert_eq!(Money::parse("1.230000").unwrap().raw(), 12_300);
        assert_eq!(Money::parse("500").unwrap().to_string(), "500.00");
        assert_eq!(Money::from_raw(333_333).to_string(), "33.3333");
        assert_eq!(Money::from_raw(-5).to_string(), "-0.0005");
    }

    #[test]
    fn rejects_what_is_not_an_amount() {
        for bad in ["", "-", "1,000", "12a", "1.2.3", "."] {
            assert!(Money::parse(bad).is_err(), "{bad} should fail");
        }
        assert!(matches!(
            Money::parse("1.00001"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(
            Money::parse("99999999999999999999"),
            Err(MoneyError::Overflow(_))
        ));
    }

    #[test]
    fn sums_do_not_depend_on_order() {
        let parts = ["0.10", "0.20", "0.30"].map(|p| Money::parse(p).ok());
        let forward: Money = parts.iter().flatten().copied().sum();
        let backward: Money = parts.iter().rev().flatten().copied().sum();
        assert_eq!(forward, backward);
        assert_eq!(forward, Money::parse("0.6").unwrap());
    }

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(
            Money::from_whole(100).div_round(3).unwrap().to_string(),
            "33.3333"
        );
        assert_eq!(Money::from_raw(5).div_round(2).unwrap().raw(), 3);
        assert_eq!(Money::from_raw(-5).div_round(2).unwrap().raw(), -3);
        assert_eq!(Money::from_whole(1).div_round(0), None);
    }

    #[test]
    fn serde_round_trips_as_a_string() {
        let m = Money::parse("19.99").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"19.99\"");
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        assert_eq!(serde_json::from_str::<Money>("19.99").unwrap(), m);
        assert_eq!(
            serde_json::from_str::<Money>("20").unwrap(),
            Money::from_whole(20)
        );
    }
}
