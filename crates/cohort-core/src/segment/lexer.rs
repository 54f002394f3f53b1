//! Splits an expression into tokens with byte spans.
//!
//! Literals are fully decoded here (dates validated, relative units resolved, numbers kept as
//! exact decimals), so a bad date or unit is reported at the literal itself with a precise
//! message, and the parser only deals in shapes. Keywords stay identifiers: they are matched
//! case-insensitively by the parser where they can occur, which keeps the set of reserved words
//! small.

use std::ops::Range;

use chrono::{Datelike, NaiveDate};

use super::ast::{CmpOp, Decimal, RelativeDate, RelativeUnit};
use super::diagnostic::Diagnostic;
use crate::time::Timestamp;

/// Most digits a number literal may have; keeps exact comparisons inside `i128`.
const MAX_NUMBER_DIGITS: usize = 30;
/// Largest count in a relative date; `-100000y` is already far past any real data.
const MAX_RELATIVE: i64 = 100_000;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A field name or keyword, dotted parts included.
    Ident(String),
    /// A quoted string, unescaped.
    Str(String),
    Number(Decimal),
    Date(NaiveDate),
    DateTime(Timestamp),
    Relative(RelativeDate),
    LParen,
    RParen,
    Comma,
    Op(CmpOp),
    Eof,
}

/// A token and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Range<usize>,
}

/// Tokens of `src`, ending with [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut lexer = Lexer {
        src,
        b: src.as_bytes(),
        pos: 0,
    };
    let mut out = Vec::new();
    loop {
        lexer.skip_whitespace();
        let start = lexer.pos;
        if start == src.len() {
            out.push(Token {
                tok: Tok::Eof,
                span: start..start,
            });
            return Ok(out);
        }
        let tok = lexer.token()?;
        out.push(Token {
            tok,
            span: start..lexer.pos,
        });
    }
}

struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    pos: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl Lexer<'_> {
    fn peek_at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_whitespace(&mut self) {
        while let Some(c) = self.peek_char() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn digits_from(&self, mut i: usize) -> usize {
        while self.peek_at(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        i
    }

    fn token(&mut self) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        let next = self.peek_at(start + 1);
        let simple = |me: &mut Self, len: usize, tok: Tok| {
            me.pos += len;
            Ok(tok)
        };
        match self.b[start] {
            b'(' => simple(self, 1, Tok::LParen),
            b')' => simple(self, 1, Tok::RParen),
            b',' => simple(self, 1, Tok::Comma),
            b'=' if next == Some(b'=') => {
                Err(Diagnostic::new("`==` is not an operator", start..start + 2)
                    .with_help("compare with a single `=`"))
            }
            b'=' => simple(self, 1, Tok::Op(CmpOp::Eq)),
            b'!' if next == Some(b'=') => simple(self, 2, Tok::Op(CmpOp::Ne)),
            b'!' => Err(Diagnostic::new("unexpected `!`", start..start + 1)
                .with_help("write `!=` for \"not equal\", or `not` to negate a condition")),
            b'<' if next == Some(b'=') => simple(self, 2, Tok::Op(CmpOp::Le)),
            b'<' if next == Some(b'>') => simple(self, 2, Tok::Op(CmpOp::Ne)),
            b'<' => simple(self, 1, Tok::Op(CmpOp::Lt)),
            b'>' if next == Some(b'=') => simple(self, 2, Tok::Op(CmpOp::Ge)),
            b'>' => simple(self, 1, Tok::Op(CmpOp::Gt)),
            q @ (b'\'' | b'"') => self.string(q),
            b'0'..=b'9' => self.number_or_date(),
            b'-' | b'+' if next.is_some_and(|b| b.is_ascii_digit()) => self.number_or_date(),
            c @ (b'-' | b'+') => Err(Diagnostic::new(
                format!("unexpected `{}`", char::from(c)),
                start..start + 1,
            )
            .with_help("write signed numbers and relative dates without a space: -3, -90d")),
            b if is_ident_start(b) => Ok(self.ident()),
            _ => {
                let c = self.peek_char().unwrap_or('?');
                Err(Diagnostic::new(
                    format!("unexpected character `{c}`"),
                    start..start + c.len_utf8(),
                ))
            }
        }
    }

    fn ident(&mut self) -> Tok {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            while self.peek_at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            // A dot continues the name only when another part follows (`attributes.tier`).
            if self.peek_at(i) == Some(b'.') && self.peek_at(i + 1).is_some_and(is_ident_start) {
                i += 2;
                continue;
            }
            break;
        }
        self.pos = i;
        Tok::Ident(self.src[start..i].to_owned())
    }

    fn string(&mut self, quote: u8) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        let mut value = String::new();
        let mut i = start + 1;
        loop {
            let Some(rel) = self.src[i..].find(char::from(quote)) else {
                let q = char::from(quote);
                return Err(
                    Diagnostic::new("unterminated string", start..self.src.len()).with_help(
                        format!("close the string with {q}; write {q}{q} for a {q} inside it"),
                    ),
                );
            };
            value.push_str(&self.src[i..i + rel]);
            i += rel + 1;
            // A doubled quote stands for one quote character.
            if self.peek_at(i) == Some(quote) {
                value.push(char::from(quote));
                i += 1;
                continue;
            }
            self.pos = i;
            return Ok(Tok::Str(value));
        }
    }

    fn number_or_date(&mut self) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        let signed = matches!(self.b[start], b'-' | b'+');
        let digits_start = start + usize::from(signed);
        let digits_end = self.digits_from(digits_start);

        if !signed
            && digits_end - digits_start == 4
            && self.peek_at(digits_end) == Some(b'-')
            && self
                .peek_at(digits_end + 1)
                .is_some_and(|b| b.is_ascii_digit())
        {
            return self.date();
        }

        let mut end = digits_end;
        let mut frac = "";
        if self.peek_at(end) == Some(b'.') {
            let frac_end = self.digits_from(end + 1);
            if frac_end == end + 1 {
                return Err(Diagnostic::new(
                    "expected digits after the decimal point",
                    start..end + 1,
                )
                .with_help("write decimals like 49.99 or 0.5"));
            }
            frac = &self.src[end + 1..frac_end];
            end = frac_end;
        }

        if self.peek_at(end).is_some_and(is_ident_char) {
            return self.relative(start, digits_end, end, !frac.is_empty());
        }

        let whole = &self.src[digits_start..digits_end];
        let all_digits = format!("{whole}{frac}");
        let significant = all_digits.trim_start_matches('0');
        if significant.len() > MAX_NUMBER_DIGITS || frac.len() > MAX_NUMBER_DIGITS {
            return Err(Diagnostic::new("number has too many digits", start..end)
                .with_help(format!("numbers may have at most {MAX_NUMBER_DIGITS} significant digits and {MAX_NUMBER_DIGITS} decimals")));
        }
        let magnitude: i128 = if significant.is_empty() {
            0
        } else {
            significant
                .parse()
                .map_err(|_| Diagnostic::new("not a number", start..end))?
        };
        let mantissa = if self.b[start] == b'-' {
            -magnitude
        } else {
            magnitude
        };
        let scale = u32::try_from(frac.len()).unwrap_or(u32::MAX);
        self.pos = end;
        Ok(Tok::Number(Decimal { mantissa, scale }))
    }

    /// `-90d`: `start` is the sign, the digits run to `digits_end`, the unit starts at `end`.
    fn relative(
        &mut self,
        start: usize,
        digits_end: usize,
        end: usize,
        has_fraction: bool,
    ) -> Result<Tok, Diagnostic> {
        let mut word_end = end;
        while self.peek_at(word_end).is_some_and(is_ident_char) {
            word_end += 1;
        }
        let text = &self.src[start..word_end];
        let unit_text = &self.src[end..word_end];
        let unit = match unit_text {
            "d" => RelativeUnit::Days,
            "w" => RelativeUnit::Weeks,
            "m" => RelativeUnit::Months,
            "y" => RelativeUnit::Years,
            _ if !matches!(self.b[start], b'-' | b'+') => {
                return Err(Diagnostic::new(
                    format!("unexpected `{unit_text}` after `{}`", &self.src[start..end]),
                    end..word_end,
                )
                .with_help("leave a space between a number and what follows it"));
            }
            _ => {
                return Err(Diagnostic::new(
                    format!("unknown unit `{unit_text}` in relative date `{text}`"),
                    end..word_end,
                )
                .with_help(
                    "relative dates use d (days), w (weeks), m (months) or y (years), e.g. -90d",
                ));
            }
        };
        let signed = matches!(self.b[start], b'-' | b'+');
        if !signed {
            return Err(Diagnostic::new(
                format!("relative date `{text}` needs a sign"),
                start..word_end,
            )
            .with_help(format!(
                "write -{text} for the past or +{text} for the future"
            )));
        }
        if has_fraction {
            return Err(Diagnostic::new(
                format!("relative date `{text}` must be a whole number of units"),
                start..word_end,
            ));
        }
        let count: i64 = self.src[start + 1..digits_end]
            .parse()
            .ok()
            .filter(|n| *n <= MAX_RELATIVE)
            .ok_or_else(|| {
                Diagnostic::new(
                    format!("relative date `{text}` is too far away"),
                    start..word_end,
                )
                .with_help(format!("use at most {MAX_RELATIVE} units"))
            })?;
        let amount = if self.b[start] == b'-' { -count } else { count };
        self.pos = word_end;
        Ok(Tok::Relative(RelativeDate { amount, unit }))
    }

    /// `YYYY-MM-DD`, optionally followed by `THH:MM[:SS]` and `Z` or `±HH:MM`.
    fn date(&mut self) -> Result<Tok, Diagnostic> {
        let start = self.pos;
        let mut end = start;
        while self
            .peek_at(end)
            .is_some_and(|b| b.is_ascii_digit() || b == b'-')
        {
            end += 1;
        }
        let text = &self.src[start..end];
        let shape_ok = text.len() == 10 && text.as_bytes()[7] == b'-';
        let field = |r: Range<usize>| text.get(r).and_then(|s| s.parse::<u32>().ok());
        let (Some(y), Some(m), Some(d), true) = (field(0..4), field(5..7), field(8..10), shape_ok)
        else {
            return Err(
                Diagnostic::new(format!("`{text}` is not a date"), start..end)
                    .with_help("write dates as YYYY-MM-DD, e.g. 2024-01-31"),
            );
        };
        let year = i32::try_from(y).unwrap_or(0);
        if !(1..=12).contains(&m) {
            return Err(
                Diagnostic::new(format!("`{text}` is not a date"), start..end)
                    .with_help(format!("there is no month {m}; months run from 01 to 12")),
            );
        }
        let Some(date) = NaiveDate::from_ymd_opt(year, m, d) else {
            let days = days_in_month(year, m);
            let month = MONTHS[m as usize - 1];
            return Err(
                Diagnostic::new(format!("`{text}` is not a date"), start..end)
                    .with_help(format!("{month} {year} has {days} days")),
            );
        };
        self.pos = end;

        if self.peek_at(end) == Some(b'T')
            && self.peek_at(end + 1).is_some_and(|b| b.is_ascii_digit())
        {
            let secs = self.time_of_day(start)?;
            let midnight = Timestamp::from_date(date).secs();
            self.check_end(start)?;
            return Ok(Tok::DateTime(Timestamp::from_secs(midnight + secs)));
        }
        self.check_end(start)?;
        Ok(Tok::Date(date))
    }

    /// Parses `THH:MM[:SS][Z|±HH:MM]` at `self.pos`; returns seconds from UTC midnight.
    fn time_of_day(&mut self, literal_start: usize) -> Result<i64, Diagnostic> {
        let t = self.pos;
        let mut end = t + 1;
        while self
            .peek_at(end)
            .is_some_and(|b| b.is_ascii_digit() || b == b':')
        {
            end += 1;
        }
        let text = &self.src[t + 1..end];
        let parts: Vec<&str> = text.split(':').collect();
        let valid_shape = matches!(parts.len(), 2 | 3) && parts.iter().all(|p| p.len() == 2);
        let nums: Vec<i64> = parts.iter().filter_map(|p| p.parse().ok()).collect();
        let bad = || {
            Diagnostic::new(format!("`{text}` is not a time of day"), literal_start..end)
                .with_help("write date-times as 2024-01-31T14:30:00, optionally with Z or an offset like +02:00")
        };
        if !valid_shape || nums.len() != parts.len() {
            return Err(bad());
        }
        let (h, m, s) = (nums[0], nums[1], nums.get(2).copied().unwrap_or(0));
        if h > 23 || m > 59 || s > 59 {
            return Err(bad());
        }
        let mut secs = h * 3600 + m * 60 + s;
        self.pos = end;
        match self.peek_at(end) {
            Some(b'Z') => self.pos += 1,
            Some(sign @ (b'+' | b'-')) => {
                let off = self.src.get(end + 1..end + 6).unwrap_or("");
                let ob = off.as_bytes();
                let parsed = (off.len() == 5 && ob[2] == b':')
                    .then(|| {
                        Some((
                            off[0..2].parse::<i64>().ok()?,
                            off[3..5].parse::<i64>().ok()?,
                        ))
                    })
                    .flatten()
                    .filter(|(oh, om)| *oh <= 23 && *om <= 59);
                let Some((oh, om)) = parsed else {
                    return Err(Diagnostic::new(
                        "bad time zone offset",
                        end..(end + 6).min(self.src.len()),
                    )
                    .with_help("write the offset as +HH:MM or -HH:MM, or Z for UTC"));
                };
                let offset = oh * 3600 + om * 60;
                // Local time minus the offset is UTC.
                secs -= if sign == b'+' { offset } else { -offset };
                self.pos = end + 6;
            }
            _ => {}
        }
        Ok(secs)
    }

    fn check_end(&self, literal_start: usize) -> Result<(), Diagnostic> {
        match self.peek_char() {
            Some(c) if c.is_alphanumeric() || c == '_' || c == ':' || c == '.' => {
                Err(Diagnostic::new(
                    format!(
                        "unexpected `{c}` after `{}`",
                        &self.src[literal_start..self.pos]
                    ),
                    self.pos..self.pos + c.len_utf8(),
                )
                .with_help("write dates as 2024-01-31 and date-times as 2024-01-31T14:30:00"))
            }
            _ => Ok(()),
        }
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    match (first, next) {
        (Some(a), Some(b)) => u32::try_from((b - a).num_days()).unwrap_or(31),
        _ => first.map_or(31, |d| d.day()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src)
            .expect("lexes")
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn err(src: &str) -> Diagnostic {
        lex(src).expect_err("should not lex")
    }

    fn num(mantissa: i128, scale: u32) -> Tok {
        Tok::Number(Decimal { mantissa, scale })
    }

    #[test]
    fn lexes_operators_and_punctuation() {
        use CmpOp::*;
        assert_eq!(
            toks("= != <> < <= > >= ( ) ,"),
            vec![
                Tok::Op(Eq),
                Tok::Op(Ne),
                Tok::Op(Ne),
                Tok::Op(Lt),
                Tok::Op(Le),
                Tok::Op(Gt),
                Tok::Op(Ge),
                Tok::LParen,
                Tok::RParen,
                Tok::Comma,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn lexes_numbers_exactly() {
        assert_eq!(
            toks("500 49.99 -3 +2 0.0"),
            vec![
                num(500, 0),
                num(4999, 2),
                num(-3, 0),
                num(2, 0),
                num(0, 1),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("x>=-3"),
            vec![
                Tok::Ident("x".into()),
                Tok::Op(CmpOp::Ge),
                num(-3, 0),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn lexes_dotted_identifiers() {
        assert_eq!(
            toks("attributes.tier"),
            vec![Tok::Ident("attributes.tier".into()), Tok::Eof]
        );
    }

    #[test]
    fn lexes_strings_with_doubled_quotes() {
        assert_eq!(
            toks("'O''Brien' \"say \"\"hi\"\"\""),
            vec![
                Tok::Str("O'Brien".into()),
                Tok::Str("say \"hi\"".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn lexes_dates_and_date_times() {
        let d = NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
        assert_eq!(toks("2024-01-01"), vec![Tok::Date(d), Tok::Eof]);
        let ts = |s| Tok::DateTime(Timestamp::parse(s).expect("timestamp"));
        assert_eq!(
            toks("2024-01-01T10:00:00"),
            vec![ts("2024-01-01T10:00:00Z"), Tok::Eof]
        );
        assert_eq!(
            toks("2024-01-01T10:00Z"),
            vec![ts("2024-01-01T10:00:00Z"), Tok::Eof]
        );
        assert_eq!(
            toks("2024-01-01T10:00:00+02:00"),
            vec![ts("2024-01-01T08:00:00Z"), Tok::Eof]
        );
        assert_eq!(
            toks("2024-01-01T10:00:00-05:30"),
            vec![ts("2024-01-01T15:30:00Z"), Tok::Eof]
        );
    }

    #[test]
    fn lexes_relative_dates() {
        let rel = |amount, unit| Tok::Relative(RelativeDate { amount, unit });
        assert_eq!(
            toks("-90d -12w -6m -1y +7d"),
            vec![
                rel(-90, RelativeUnit::Days),
                rel(-12, RelativeUnit::Weeks),
                rel(-6, RelativeUnit::Months),
                rel(-1, RelativeUnit::Years),
                rel(7, RelativeUnit::Days),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn rejects_impossible_dates_with_the_month_length() {
        let e = err("x = 2024-02-30");
        assert_eq!(e.message, "`2024-02-30` is not a date");
        assert_eq!(e.span, 4..14);
        assert_eq!(e.help.as_deref(), Some("February 2024 has 29 days"));
        assert_eq!(
            err("2023-13-01").help.as_deref(),
            Some("there is no month 13; months run from 01 to 12")
        );
        assert_eq!(err("2024-1-01").message, "`2024-1-01` is not a date");
        assert_eq!(
            err("2024-01-01T25:00").message,
            "`25:00` is not a time of day"
        );
    }

    #[test]
    fn rejects_bad_relative_units() {
        let e = err("last_order_at > -90x");
        assert_eq!(e.message, "unknown unit `x` in relative date `-90x`");
        assert_eq!(e.span, 19..20);
        assert_eq!(
            err("-3days").message,
            "unknown unit `days` in relative date `-3days`"
        );
        assert_eq!(err("90d").message, "relative date `90d` needs a sign");
        assert_eq!(err("500abc").message, "unexpected `abc` after `500`");
        assert_eq!(
            err("-1.5d").message,
            "relative date `-1.5d` must be a whole number of units"
        );
        assert_eq!(
            err("-999999d").message,
            "relative date `-999999d` is too far away"
        );
    }

    #[test]
    fn rejects_unterminated_strings_from_the_quote_on() {
        let e = err("country = 'US");
        assert_eq!(e.message, "unterminated string");
        assert_eq!(e.span, 10..13);
    }

    #[test]
    fn rejects_stray_characters() {
        assert_eq!(err("a == 1").message, "`==` is not an operator");
        assert_eq!(err("a ! b").message, "unexpected `!`");
        assert_eq!(err("a = 1 ; b").message, "unexpected character `;`");
        assert_eq!(
            err("a = 5.").message,
            "expected digits after the decimal point"
        );
        assert_eq!(err("a = - 5").message, "unexpected `-`");
        assert_eq!(
            err("1234567890123456789012345678901").message,
            "number has too many digits"
        );
    }
}
