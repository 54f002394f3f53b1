//! A hand-written reader for pages of orders: the hot path of every large pull.
//!
//! It understands exactly the shapes writers produce in practice (string ids, amounts as
//! decimal strings, timestamps as strings or null, any whitespace, any key order) and gives up,
//! returning `None`, on anything else: an escaped string, a number where text was expected,
//! line items, a key it does not know. The caller then reads the page with the canonical
//! `Deserialize`, so this reader can only make pages faster, never read them differently.

use cohort_core::{CustomerId, Money, Order, Timestamp};
use serde_json::Value;

use super::{Page, Reject};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string without escapes, borrowed.
    #[inline]
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        std::str::from_utf8(&rest[..len]).ok()
    }

    #[inline]
    fn null(&mut self) -> Option<()> {
        self.ws();
        self.b[self.i..].starts_with(b"null").then(|| self.i += 4)
    }

    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            self.null()?;
            Some(None)
        } else {
            self.str().map(Some)
        }
    }

    fn uint(&mut self) -> Option<u32> {
        self.ws();
        let start = self.i;
        let mut n: u32 = 0;
        while let Some(c @ b'0'..=b'9') = self.b.get(self.i) {
            n = n.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
            self.i += 1;
        }
        // A fraction or exponent is left to the canonical reader.
        (self.i > start && !matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))).then_some(n)
    }

    fn bool(&mut self) -> Option<bool> {
        self.ws();
        if self.b[self.i..].starts_with(b"true") {
            self.i += 4;
            Some(true)
        } else if self.b[self.i..].starts_with(b"false") {
            self.i += 5;
            Some(false)
        } else {
            None
        }
    }

    /// Any JSON value, through serde_json, starting here.
    fn value<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        self.ws();
        let mut values = serde_json::Deserializer::from_slice(&self.b[self.i..]).into_iter::<T>();
        let v = values.next()?.ok()?;
        self.i += values.byte_offset();
        Some(v)
    }

    fn order(&mut self) -> Option<Order> {
        self.eat(b'{')?;
        let mut o = Order::default();
        // serde refuses a repeated field; so must this reader (it hands such pages over).
        let mut seen = 0u16;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(o);
        }
        loop {
            let key = self.str()?;
            self.eat(b':')?;
            let bit = match key {
                "id" => 1,
                "customer_id" => 2,
                "created_at" => 4,
                "cancelled_at" => 8,
                "total" => 16,
                "refunded" => 32,
                "currency" => 64,
                "item_count" => 128,
                "line_items" => 256,
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match key {
                "id" => o.id = self.str()?.to_owned(),
                "customer_id" => o.customer_id = CustomerId::new(self.str()?),
                "created_at" => {
                    o.created_at = self.opt_str()?.map(Timestamp::parse).transpose().ok()?;
                }
                "cancelled_at" => {
                    o.cancelled_at = self.opt_str()?.map(Timestamp::parse).transpose().ok()?;
                }
                "total" => o.total = Money::parse(self.str()?).ok()?,
                "refunded" => o.refunded = Money::parse(self.str()?).ok()?,
                "currency" => o.currency = self.opt_str()?.map(str::to_owned),
                "item_count" => o.item_count = self.uint()?,
                "line_items" => {
                    // Empty is common (serde's output); anything else goes to the canonical reader.
                    self.eat(b'[')?;
                    self.eat(b']')?;
                }
                _ => return None,
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(o);
                }
                _ => return None,
            }
        }
    }

    fn orders(&mut self) -> Option<Vec<Order>> {
        self.eat(b'[')?;
        let mut out = Vec::new();
        if self.peek()? == b']' {
            self.i += 1;
            return Some(out);
        }
        loop {
            out.push(self.order()?);
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(out);
                }
                _ => return None,
            }
        }
    }
}

/// Reads a page of orders, or `None` when the page is not in the shapes this reader knows.
pub(crate) fn orders(bytes: &[u8]) -> Option<Page<Order>> {
    let mut s = Scanner { b: bytes, i: 0 };
    s.eat(b'{')?;
    let (mut records, mut rejects, mut cursor, mut done) =
        (None, Vec::<Reject>::new(), Value::Null, None);
    let mut seen = 0u8;
    loop {
        let key = s.str()?;
        s.eat(b':')?;
        let bit = match key {
            "records" => 1,
            "rejects" => 2,
            "next_cursor" => 4,
            "done" => 8,
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match key {
            "records" => records = Some(s.orders()?),
            "rejects" => rejects = s.value()?,
            "next_cursor" => cursor = s.value()?,
            _ => done = Some(s.bool()?),
        }
        match s.peek()? {
            b',' => s.i += 1,
            b'}' => {
                s.i += 1;
                break;
            }
            _ => return None,
        }
    }
    s.ws();
    if s.i != bytes.len() {
        return None;
    }
    Some(Page {
        records: records?,
        rejects,
        next_cursor: cursor,
        done: done?,
        deleted: Vec::new(),
        pass: None,
    })
}
