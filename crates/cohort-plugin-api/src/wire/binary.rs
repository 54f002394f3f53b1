//! The binary page format, version 1 (ABI 1.1): pages of records without JSON.
//!
//! JSON stays the default and the language-neutral form of every message. A source may also
//! answer `next_page` in this format, but only when the host asked for it
//! ([`PageRequest::format`](super::PageRequest) is [`PageFormat::Binary`](super::PageFormat))
//! and only a host that read `"binary"` in the manifest's `capabilities.page_formats` asks. A
//! plugin that knows nothing of it never receives the request field (and would ignore it), so
//! JSON-only plugins, the C example among them, keep working with every host.
//!
//! Encoding and decoding a page of orders this way costs a small fraction of JSON: fixed-width
//! numbers, length-prefixed UTF-8 strings, and one bit per optional field. `docs/plugins.md`
//! ("Binary pages") specifies it for writers in other languages; in short (all integers
//! little-endian):
//!
//! ```text
//! page    = magic "\0CPG" | version u8 = 1 | stream u8 | flags u8 (bit 0: done) | 0 u8
//!           | record_count u32 | records_len u32 | records (records_len bytes)
//!           | cursor_len u32 | cursor JSON | rejects_len u32 | rejects JSON array (or empty)
//!           [| extras_len u32 | extras JSON object: `deleted`, `pass`]  (flags bit 1, ABI 1.2)
//! string  = length (LEB128, at most 5 bytes) | UTF-8 bytes
//! customer= bits u32 | id string | the fields whose bit is set, in bit order
//! order   = bits u16 | id string | customer_id string | the fields whose bit is set, in bit order
//! event   = bits u8  | the fields whose bit is set, in bit order
//! ```
//!
//! A page leads with a NUL byte, which never starts JSON, so a host can always tell the two
//! apart. Everything is checked on reading: lengths against the page's end, UTF-8, unknown
//! bits, the stream, the record count; a page that does not read exactly is refused whole with
//! the byte offset of the first problem, never half-read.

use std::fmt;

use cohort_core::record::{AttributeValue, LineItem};
use cohort_core::{Customer, CustomerId, Event, Money, Order, Timestamp};
use serde::Serialize;
use serde_json::Value;

use super::fast::event_kind;
use super::{Page, Reject, Stream};

/// The first four bytes of every binary page. The NUL never starts a JSON text.
pub const MAGIC: [u8; 4] = *b"\0CPG";
/// The version of the format this crate writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the first record.
pub const HEADER_LEN: usize = 16;

/// `flags` bit: the stream is done for now.
pub const FLAG_DONE: u8 = 1;
/// `flags` bit (ABI 1.2): an extras section follows the rejects, a JSON object with the page's
/// `deleted` ids and its `pass`. Written only to hosts of 1.2 and later.
pub const FLAG_EXTRAS: u8 = 2;

/// Why a binary page could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryError {
    /// Byte offset in the page where the problem was found.
    pub at: usize,
    /// What was wrong.
    pub what: String,
}

impl fmt::Display for BinaryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "binary page, byte {}: {}", self.at, self.what)
    }
}

impl std::error::Error for BinaryError {}

/// Whether `bytes` is a binary page (rather than JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// The code of a stream in a page's header.
pub fn stream_code(stream: Stream) -> u8 {
    match stream {
        Stream::Customers => 0,
        Stream::Orders => 1,
        Stream::Events => 2,
    }
}

fn stream_of(code: u8) -> Option<Stream> {
    Some(match code {
        0 => Stream::Customers,
        1 => Stream::Orders,
        2 => Stream::Events,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Starts a page of `stream` in `buf` (cleared first): the header, with the counts left at
/// zero until [`finish`].
pub(crate) fn begin(buf: &mut Vec<u8>, stream: Stream) {
    buf.clear();
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&[VERSION, stream_code(stream), 0, 0]);
    buf.extend_from_slice(&[0; 8]);
}

/// Completes a page begun with [`begin`] and holding `count` records: fills in the header and
/// appends the cursor and the rejects.
pub(crate) fn finish<C: Serialize>(
    buf: &mut Vec<u8>,
    count: usize,
    done: bool,
    cursor: &C,
    rejects: &[Reject],
    extras: Option<&Extras>,
) -> Result<(), String> {
    let records_len = buf.len() - HEADER_LEN;
    let too_big = || "the page is larger than 4 GiB; ask for fewer records".to_owned();
    let count = u32::try_from(count).map_err(|_| too_big())?;
    let records_len = u32::try_from(records_len).map_err(|_| too_big())?;
    buf[6] = if done { FLAG_DONE } else { 0 } | if extras.is_some() { FLAG_EXTRAS } else { 0 };
    buf[8..12].copy_from_slice(&count.to_le_bytes());
    buf[12..16].copy_from_slice(&records_len.to_le_bytes());
    json_section(buf, cursor).map_err(|e| format!("encoding the cursor: {e}"))?;
    if rejects.is_empty() {
        buf.extend_from_slice(&0u32.to_le_bytes());
    } else {
        json_section(buf, &rejects).map_err(|e| format!("encoding rejects: {e}"))?;
    }
    if let Some(extras) = extras {
        json_section(buf, extras).map_err(|e| format!("encoding deletions: {e}"))?;
    }
    Ok(())
}

/// What a page says besides its records (ABI 1.2): records gone at the source, and the full
/// pass it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Extras {
    /// Ids of records of the page's stream that are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// The full pass the page belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
}

impl Extras {
    /// Whether there is nothing to say.
    pub fn is_empty(&self) -> bool {
        self.deleted.is_empty() && self.pass.is_none()
    }
}

/// Appends `value` as JSON prefixed by its length (u32).
fn json_section<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> Result<(), String> {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *buf, value).map_err(|e| e.to_string())?;
    let len = u32::try_from(buf.len() - at - 4).map_err(|_| "larger than 4 GiB".to_owned())?;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

#[inline]
fn put_len(buf: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

#[inline]
fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

#[inline]
fn put_i64(buf: &mut Vec<u8>, v: i64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

fn put_json<T: Serialize + ?Sized>(buf: &mut Vec<u8>, v: &T) {
    // Nested, rare fields (line items, attributes, properties) in their canonical JSON shape.
    let mut tmp = Vec::new();
    let _ = serde_json::to_writer(&mut tmp, v);
    put_len(buf, tmp.len());
    buf.extend_from_slice(&tmp);
}

/// Strings longer than this are refused by writers: lengths take at most 5 LEB128 bytes.
const MAX_LEN: usize = u32::MAX as usize;

mod customer_bits {
    pub(super) const EMAIL: u32 = 1;
    pub(super) const PHONE: u32 = 1 << 1;
    pub(super) const FIRST_NAME: u32 = 1 << 2;
    pub(super) const LAST_NAME: u32 = 1 << 3;
    pub(super) const COUNTRY: u32 = 1 << 4;
    pub(super) const REGION: u32 = 1 << 5;
    pub(super) const CITY: u32 = 1 << 6;
    pub(super) const POSTAL_CODE: u32 = 1 << 7;
    pub(super) const BIRTH_DATE: u32 = 1 << 8;
    pub(super) const BIRTH_YEAR: u32 = 1 << 9;
    pub(super) const GENDER: u32 = 1 << 10;
    pub(super) const TAGS: u32 = 1 << 11;
    pub(super) const ACCEPTS_EMAIL: u32 = 1 << 12;
    pub(super) const ACCEPTS_SMS: u32 = 1 << 13;
    pub(super) const CREATED_AT: u32 = 1 << 14;
    pub(super) const UPDATED_AT: u32 = 1 << 15;
    pub(super) const ATTRIBUTES: u32 = 1 << 16;
    pub(super) const ALL: u32 = (1 << 17) - 1;
}

mod order_bits {
    pub(super) const CREATED_AT: u16 = 1;
    pub(super) const CURRENCY: u16 = 1 << 1;
    pub(super) const ITEM_COUNT: u16 = 1 << 2;
    pub(super) const LINE_ITEMS: u16 = 1 << 3;
    pub(super) const CANCELLED_AT: u16 = 1 << 4;
    pub(super) const REFUNDED: u16 = 1 << 5;
    pub(super) const ALL: u16 = (1 << 6) - 1;
}

mod event_bits {
    pub(super) const ID: u8 = 1;
    pub(super) const PROPERTIES: u8 = 1 << 1;
    pub(super) const ALL: u8 = (1 << 2) - 1;
}

/// Days from 0001-01-01 (day 1) of a date, as chrono counts them.
fn days_from_ce(d: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce()
}

/// The fields of a customer as borrowed text, for writers that never build a [`Customer`].
///
/// [`write_customer`] takes one; `Customer` converts with [`CustomerRef::from`]. Every field
/// means what the same field of [`Customer`] means.
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)]
pub struct CustomerRef<'a, T = &'a [String]> {
    pub id: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub country: Option<&'a str>,
    pub region: Option<&'a str>,
    pub city: Option<&'a str>,
    pub postal_code: Option<&'a str>,
    pub birth_date: Option<chrono::NaiveDate>,
    pub birth_year: Option<i32>,
    pub gender: Option<&'a str>,
    /// Tags, in order; an iterator of `&str` so that a writer can split them from a field.
    pub tags: T,
    pub accepts_email_marketing: bool,
    pub accepts_sms_marketing: bool,
    pub created_at: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
    pub attributes: Option<&'a std::collections::BTreeMap<String, AttributeValue>>,
}

impl<'a> From<&'a Customer> for CustomerRef<'a> {
    fn from(c: &'a Customer) -> Self {
        CustomerRef {
            id: c.id.as_str(),
            email: c.email.as_deref(),
            phone: c.phone.as_deref(),
            first_name: c.first_name.as_deref(),
            last_name: c.last_name.as_deref(),
            country: c.country.as_deref(),
            region: c.region.as_deref(),
            city: c.city.as_deref(),
            postal_code: c.postal_code.as_deref(),
            birth_date: c.birth_date,
            birth_year: c.birth_year,
            gender: c.gender.as_deref(),
            tags: &c.tags,
            accepts_email_marketing: c.accepts_email_marketing,
            accepts_sms_marketing: c.accepts_sms_marketing,
            created_at: c.created_at,
            updated_at: c.updated_at,
            attributes: (!c.attributes.is_empty()).then_some(&c.attributes),
        }
    }
}

/// Appends one customer record.
pub fn write_customer<'a, T, S>(buf: &mut Vec<u8>, c: &CustomerRef<'a, T>)
where
    T: IntoIterator<Item = S> + Clone,
    S: AsRef<str>,
{
    use customer_bits as b;
    buf.reserve(64 + c.id.len());
    // The field bits go first; they are known once the fields are written.
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let mut bits = 0u32;
    put_str(buf, c.id);
    for (s, bit) in [
        (c.email, b::EMAIL),
        (c.phone, b::PHONE),
        (c.first_name, b::FIRST_NAME),
        (c.last_name, b::LAST_NAME),
        (c.country, b::COUNTRY),
        (c.region, b::REGION),
        (c.city, b::CITY),
        (c.postal_code, b::POSTAL_CODE),
    ] {
        if let Some(s) = s {
            bits |= bit;
            put_str(buf, s);
        }
    }
    if let Some(d) = c.birth_date {
        bits |= b::BIRTH_DATE;
        buf.extend_from_slice(&days_from_ce(d).to_le_bytes());
    }
    if let Some(y) = c.birth_year {
        bits |= b::BIRTH_YEAR;
        buf.extend_from_slice(&y.to_le_bytes());
    }
    if let Some(g) = c.gender {
        bits |= b::GENDER;
        put_str(buf, g);
    }
    // The count goes first; it is patched in once the tags are written (and the whole field
    // dropped when there were none).
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let mut n = 0u32;
    for t in c.tags.clone() {
        put_str(buf, t.as_ref());
        n += 1;
    }
    if n == 0 {
        buf.truncate(at);
    } else {
        bits |= b::TAGS;
        buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
    if c.accepts_email_marketing {
        bits |= b::ACCEPTS_EMAIL;
    }
    if c.accepts_sms_marketing {
        bits |= b::ACCEPTS_SMS;
    }
    if let Some(t) = c.created_at {
        bits |= b::CREATED_AT;
        put_i64(buf, t.secs());
    }
    if let Some(t) = c.updated_at {
        bits |= b::UPDATED_AT;
        put_i64(buf, t.secs());
    }
    if let Some(a) = c.attributes.filter(|a| !a.is_empty()) {
        bits |= b::ATTRIBUTES;
        put_json(buf, a);
    }
    buf[start..start + 4].copy_from_slice(&bits.to_le_bytes());
}

/// The fields of an order as borrowed text, for writers that never build an [`Order`].
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct OrderRef<'a> {
    pub id: &'a str,
    pub customer_id: &'a str,
    pub created_at: Option<Timestamp>,
    pub total: Money,
    pub currency: Option<&'a str>,
    pub item_count: u32,
    pub line_items: &'a [LineItem],
    pub cancelled_at: Option<Timestamp>,
    pub refunded: Money,
}

impl<'a> From<&'a Order> for OrderRef<'a> {
    fn from(o: &'a Order) -> Self {
        OrderRef {
            id: &o.id,
            customer_id: o.customer_id.as_str(),
            created_at: o.created_at,
            total: o.total,
            currency: o.currency.as_deref(),
            item_count: o.item_count,
            line_items: &o.line_items,
            cancelled_at: o.cancelled_at,
            refunded: o.refunded,
        }
    }
}

/// Appends one order record.
#[inline]
pub fn write_order(buf: &mut Vec<u8>, o: &OrderRef<'_>) {
    use order_bits as b;
    let mut bits = 0u16;
    if o.created_at.is_some() {
        bits |= b::CREATED_AT;
    }
    if o.currency.is_some() {
        bits |= b::CURRENCY;
    }
    if o.item_count != 0 {
        bits |= b::ITEM_COUNT;
    }
    if !o.line_items.is_empty() {
        bits |= b::LINE_ITEMS;
    }
    if o.cancelled_at.is_some() {
        bits |= b::CANCELLED_AT;
    }
    if o.refunded != Money::ZERO {
        bits |= b::REFUNDED;
    }
    buf.extend_from_slice(&bits.to_le_bytes());
    put_str(buf, o.id);
    put_str(buf, o.customer_id);
    if let Some(t) = o.created_at {
        put_i64(buf, t.secs());
    }
    put_i64(buf, o.total.raw());
    if let Some(c) = o.currency {
        put_str(buf, c);
    }
    if o.item_count != 0 {
        buf.extend_from_slice(&o.item_count.to_le_bytes());
    }
    if !o.line_items.is_empty() {
        put_json(buf, o.line_items);
    }
    if let Some(t) = o.cancelled_at {
        put_i64(buf, t.secs());
    }
    if o.refunded != Money::ZERO {
        put_i64(buf, o.refunded.raw());
    }
}

/// Appends one event record.
pub fn write_event(buf: &mut Vec<u8>, e: &Event) {
    use event_bits as b;
    let mut bits = 0u8;
    if e.id.is_some() {
        bits |= b::ID;
    }
    if !e.properties.is_empty() {
        bits |= b::PROPERTIES;
    }
    buf.push(bits);
    if let Some(id) = &e.id {
        put_str(buf, id);
    }
    put_str(buf, e.customer_id.as_str());
    put_str(buf, e.kind.as_str());
    put_i64(buf, e.occurred_at.secs());
    if !e.properties.is_empty() {
        put_json(buf, &e.properties);
    }
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Reads the fields of records, checking every length against the end of the page.
#[derive(Debug)]
pub struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn err<T>(&self, what: impl Into<String>) -> Result<T, BinaryError> {
        Err(BinaryError {
            at: self.i,
            what: what.into(),
        })
    }

    #[cold]
    #[inline(never)]
    fn short(&self, n: usize) -> BinaryError {
        BinaryError {
            at: self.i,
            what: format!(
                "{n} bytes announced, {} left before the end of the records",
                self.b.len().saturating_sub(self.i)
            ),
        }
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], BinaryError> {
        match self.b.get(self.i..self.i.saturating_add(n)) {
            Some(s) => {
                self.i += n;
                Ok(s)
            }
            None => Err(self.short(n)),
        }
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BinaryError> {
        let s = self.take(N)?;
        let mut a = [0; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, BinaryError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16, BinaryError> {
        self.array().map(u16::from_le_bytes)
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, BinaryError> {
        self.array().map(u32::from_le_bytes)
    }

    #[inline(always)]
    fn i32(&mut self) -> Result<i32, BinaryError> {
        self.array().map(i32::from_le_bytes)
    }

    #[inline(always)]
    fn i64(&mut self) -> Result<i64, BinaryError> {
        self.array().map(i64::from_le_bytes)
    }

    #[inline(always)]
    fn len(&mut self) -> Result<usize, BinaryError> {
        // Nearly every string is shorter than 128 bytes: one byte.
        match self.b.get(self.i) {
            Some(&byte) if byte < 0x80 => {
                self.i += 1;
                Ok(usize::from(byte))
            }
            _ => self.long_len(),
        }
    }

    fn long_len(&mut self) -> Result<usize, BinaryError> {
        let mut n: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.u8()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return match usize::try_from(n) {
                    Ok(n) if n <= MAX_LEN => Ok(n),
                    _ => self.err("a length larger than 4 GiB"),
                };
            }
        }
        self.err("a length of more than 5 bytes")
    }

    #[inline(always)]
    fn str(&mut self) -> Result<&'a str, BinaryError> {
        let n = self.len()?;
        let at = self.i;
        let bytes = self.take(n)?;
        if bytes.is_ascii() {
            // SAFETY: ASCII is UTF-8. (Most ids, emails and codes are ASCII; checking that is
            // cheaper than the general validation below.)
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|e| BinaryError {
            at: at + e.valid_up_to(),
            what: "a string that is not UTF-8".to_owned(),
        })
    }

    #[inline(always)]
    fn string(&mut self) -> Result<String, BinaryError> {
        self.str().map(str::to_owned)
    }

    #[inline(always)]
    fn opt_string(&mut self, present: bool) -> Result<Option<String>, BinaryError> {
        if present {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    #[inline(always)]
    fn timestamp(&mut self) -> Result<Timestamp, BinaryError> {
        self.i64().map(Timestamp::from_secs)
    }

    #[inline(always)]
    fn money(&mut self) -> Result<Money, BinaryError> {
        self.i64().map(Money::from_raw)
    }

    fn json<T: serde::de::DeserializeOwned>(&mut self, what: &str) -> Result<T, BinaryError> {
        let n = self.len()?;
        let at = self.i;
        let bytes = self.take(n)?;
        serde_json::from_slice(bytes).map_err(|e| BinaryError {
            at,
            what: format!("{what}: {e}"),
        })
    }

    fn bits<T: Copy + Into<u32>>(&self, bits: T, all: T, record: &str) -> Result<(), BinaryError> {
        let unknown = bits.into() & !all.into();
        if unknown != 0 {
            // A later format version would be a different `page_formats` name, never new bits.
            return self.err(format!("unknown {record} field bits {unknown:#x}"));
        }
        Ok(())
    }

    /// Reads one customer.
    pub fn customer(&mut self) -> Result<Customer, BinaryError> {
        use customer_bits as b;
        let bits = self.u32()?;
        self.bits(bits, b::ALL, "customer")?;
        let has = |bit: u32| bits & bit != 0;
        let opt = |r: &mut Self, bit: u32| -> Result<Option<String>, BinaryError> {
            if has(bit) {
                r.string().map(Some)
            } else {
                Ok(None)
            }
        };
        let id = CustomerId::new(self.string()?);
        let email = opt(self, b::EMAIL)?;
        let phone = opt(self, b::PHONE)?;
        let first_name = opt(self, b::FIRST_NAME)?;
        let last_name = opt(self, b::LAST_NAME)?;
        let country = opt(self, b::COUNTRY)?;
        let region = opt(self, b::REGION)?;
        let city = opt(self, b::CITY)?;
        let postal_code = opt(self, b::POSTAL_CODE)?;
        let birth_date = if has(b::BIRTH_DATE) {
            let days = self.i32()?;
            match chrono::NaiveDate::from_num_days_from_ce_opt(days) {
                Some(d) => Some(d),
                None => {
                    return self.err(format!(
                        "birth date {days} days from year 1 is out of range"
                    ));
                }
            }
        } else {
            None
        };
        let birth_year = if has(b::BIRTH_YEAR) {
            Some(self.i32()?)
        } else {
            None
        };
        let gender = self.opt_string(has(b::GENDER))?;
        let tags = if has(b::TAGS) {
            let n = self.u32()? as usize;
            // Each tag takes at least one byte: a count beyond what is left is a lie.
            if n > self.b.len() - self.i {
                return self.err(format!("{n} tags announced"));
            }
            let mut tags = Vec::with_capacity(n);
            for _ in 0..n {
                tags.push(self.string()?);
            }
            tags
        } else {
            Vec::new()
        };
        let created_at = if has(b::CREATED_AT) {
            Some(self.timestamp()?)
        } else {
            None
        };
        let updated_at = if has(b::UPDATED_AT) {
            Some(self.timestamp()?)
        } else {
            None
        };
        let attributes = if has(b::ATTRIBUTES) {
            self.json("attributes")?
        } else {
            Default::default()
        };
        Ok(Customer {
            id,
            email,
            phone,
            first_name,
            last_name,
            country,
            region,
            city,
            postal_code,
            birth_date,
            birth_year,
            gender,
            tags,
            accepts_email_marketing: has(b::ACCEPTS_EMAIL),
            accepts_sms_marketing: has(b::ACCEPTS_SMS),
            created_at,
            updated_at,
            attributes,
        })
    }

    /// Reads one order.
    #[inline]
    pub fn order(&mut self) -> Result<Order, BinaryError> {
        use order_bits as b;
        let bits = self.u16()?;
        self.bits(bits, b::ALL, "order")?;
        let has = |bit: u16| bits & bit != 0;
        let id = self.string()?;
        let customer_id = CustomerId::new(self.string()?);
        let created_at = if has(b::CREATED_AT) {
            Some(self.timestamp()?)
        } else {
            None
        };
        let total = self.money()?;
        let currency = if has(b::CURRENCY) {
            Some(self.string()?)
        } else {
            None
        };
        let item_count = if has(b::ITEM_COUNT) { self.u32()? } else { 0 };
        let line_items = if has(b::LINE_ITEMS) {
            self.json("line_items")?
        } else {
            Vec::new()
        };
        let cancelled_at = if has(b::CANCELLED_AT) {
            Some(self.timestamp()?)
        } else {
            None
        };
        let refunded = if has(b::REFUNDED) {
            self.money()?
        } else {
            Money::ZERO
        };
        Ok(Order {
            id,
            customer_id,
            created_at,
            total,
            currency,
            item_count,
            line_items,
            cancelled_at,
            refunded,
        })
    }

    /// Reads one event.
    pub fn event(&mut self) -> Result<Event, BinaryError> {
        use event_bits as b;
        let bits = self.u8()?;
        self.bits(bits, b::ALL, "event")?;
        let id = if bits & b::ID != 0 {
            Some(self.string()?)
        } else {
            None
        };
        let customer_id = CustomerId::new(self.string()?);
        let kind = event_kind(self.str()?);
        let occurred_at = self.timestamp()?;
        let properties = if bits & b::PROPERTIES != 0 {
            self.json("properties")?
        } else {
            Default::default()
        };
        Ok(Event {
            id,
            customer_id,
            kind,
            occurred_at,
            properties,
        })
    }
}

/// The parts of a page, found from its header, before any record is read.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The stream the page says it holds.
    pub stream: Stream,
    /// Whether the stream is done for now.
    pub done: bool,
    /// How many records the page holds.
    pub count: usize,
    records: &'a [u8],
    records_at: usize,
    cursor: &'a [u8],
    cursor_at: usize,
    rejects: &'a [u8],
    rejects_at: usize,
    extras: &'a [u8],
    extras_at: usize,
}

/// Splits a page into its parts, checking the header and the sections' lengths.
pub fn parts(page: &[u8]) -> Result<Parts<'_>, BinaryError> {
    let err = |at: usize, what: String| Err(BinaryError { at, what });
    if !is_binary(page) {
        return err(
            0,
            "does not start with the binary page magic \\0CPG".to_owned(),
        );
    }
    if page.len() < HEADER_LEN {
        return err(
            page.len(),
            format!("a {}-byte page is shorter than its header", page.len()),
        );
    }
    if page[4] != VERSION {
        return err(
            4,
            format!(
                "format version {} (this host reads version {VERSION})",
                page[4]
            ),
        );
    }
    let Some(stream) = stream_of(page[5]) else {
        return err(5, format!("unknown stream code {}", page[5]));
    };
    if page[6] & !(FLAG_DONE | FLAG_EXTRAS) != 0 || page[7] != 0 {
        return err(6, format!("unknown flags {:#x} {:#x}", page[6], page[7]));
    }
    let word = |at: usize| {
        u32::from_le_bytes([page[at], page[at + 1], page[at + 2], page[at + 3]]) as usize
    };
    let count = word(8);
    let records_len = word(12);
    let mut r = Reader {
        b: page,
        i: HEADER_LEN,
    };
    let records_at = r.i;
    let records = r.take(records_len)?;
    fn section<'a>(r: &mut Reader<'a>, name: &str) -> Result<(usize, &'a [u8]), BinaryError> {
        let at = r.i;
        let n = r.u32().map_err(|e| BinaryError {
            what: format!("the {name} section is missing ({})", e.what),
            ..e
        })? as usize;
        r.take(n).map(|s| (at + 4, s))
    }
    let (cursor_at, cursor) = section(&mut r, "cursor")?;
    let (rejects_at, rejects) = section(&mut r, "rejects")?;
    let (extras_at, extras) = if page[6] & FLAG_EXTRAS != 0 {
        section(&mut r, "extras")?
    } else {
        (r.i, &[][..])
    };
    if r.i != page.len() {
        return err(
            r.i,
            format!("{} bytes after the last section", page.len() - r.i),
        );
    }
    Ok(Parts {
        stream,
        done: page[6] & FLAG_DONE != 0,
        count,
        records,
        records_at,
        cursor,
        cursor_at,
        rejects,
        rejects_at,
        extras,
        extras_at,
    })
}

impl Parts<'_> {
    /// The cursor the page ends at.
    pub fn cursor(&self) -> Result<Value, BinaryError> {
        if self.cursor.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(self.cursor).map_err(|e| BinaryError {
            at: self.cursor_at,
            what: format!("next_cursor is not JSON: {e}"),
        })
    }

    /// What the page says besides its records (ABI 1.2): deleted ids and its full pass.
    pub fn extras(&self) -> Result<Extras, BinaryError> {
        if self.extras.is_empty() {
            return Ok(Extras::default());
        }
        serde_json::from_slice(self.extras).map_err(|e| BinaryError {
            at: self.extras_at,
            what: format!("extras: {e}"),
        })
    }

    fn rejects(&self) -> Result<Vec<Reject>, BinaryError> {
        if self.rejects.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_slice(self.rejects).map_err(|e| BinaryError {
            at: self.rejects_at,
            what: format!("rejects: {e}"),
        })
    }
}

/// Reads a whole page of `stream`, each record with `read`.
pub fn read_page<R>(
    page: &[u8],
    stream: Stream,
    read: impl Fn(&mut Reader<'_>) -> Result<R, BinaryError>,
) -> Result<Page<R>, BinaryError> {
    let parts = parts(page)?;
    if parts.stream != stream {
        return Err(BinaryError {
            at: 5,
            what: format!(
                "a page of {} in answer to a request for {stream}",
                parts.stream
            ),
        });
    }
    // Every record takes at least two bytes: a count beyond that is a lie, not a reason to
    // reserve gigabytes.
    if parts.count > parts.records.len() / 2 {
        return Err(BinaryError {
            at: 8,
            what: format!(
                "{} records announced in {} bytes of records",
                parts.count,
                parts.records.len()
            ),
        });
    }
    let mut r = Reader {
        b: parts.records,
        i: 0,
    };
    let mut records = Vec::with_capacity(parts.count);
    for n in 0..parts.count {
        match read(&mut r) {
            Ok(record) => records.push(record),
            Err(e) => {
                return Err(BinaryError {
                    at: parts.records_at + e.at,
                    what: format!("record {n}: {}", e.what),
                });
            }
        }
    }
    if r.i != parts.records.len() {
        return Err(BinaryError {
            at: parts.records_at + r.i,
            what: format!(
                "{} bytes left after the {} records announced",
                parts.records.len() - r.i,
                parts.count
            ),
        });
    }
    let extras = parts.extras()?;
    Ok(Page {
        records,
        rejects: parts.rejects()?,
        next_cursor: parts.cursor()?,
        done: parts.done,
        deleted: extras.deleted,
        pass: extras.pass,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cohort_core::EventKind;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::sdk::{PageEnd, PageWriter};
    use crate::wire::{PageFormat, StreamRecord};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9@._-]{0,12}",
            any::<String>(),
            Just("Zoë ☕ \"q\" \\ \n\t\u{1}".to_owned()),
        ]
    }

    fn timestamp() -> impl Strategy<Value = Timestamp> {
        // Within what the JSON form writes (years 0 to 9999), so both formats can be compared.
        (-62_167_219_200i64..253_402_300_799).prop_map(Timestamp::from_secs)
    }

    fn date() -> impl Strategy<Value = chrono::NaiveDate> {
        (1i32..3_652_059).prop_map(|d| chrono::NaiveDate::from_num_days_from_ce_opt(d).unwrap())
    }

    fn attribute() -> impl Strategy<Value = AttributeValue> {
        prop_oneof![
            any::<bool>().prop_map(AttributeValue::Bool),
            // Numbers that JSON writes and reads back exactly.
            (-1_000_000i64..1_000_000).prop_map(|n| AttributeValue::Number(n as f64 / 8.0)),
            text().prop_map(AttributeValue::Text),
        ]
    }

    prop_compose! {
        fn customer()(
            id in text(),
            strings in proptest::collection::vec(proptest::option::of(text()), 9),
            birth_date in proptest::option::of(date()),
            birth_year in proptest::option::of(any::<i32>()),
            tags in proptest::collection::vec(text(), 0..4),
            consent in any::<(bool, bool)>(),
            created_at in proptest::option::of(timestamp()),
            updated_at in proptest::option::of(timestamp()),
            attributes in proptest::collection::btree_map(text(), attribute(), 0..3),
        ) -> Customer {
            let mut s = strings.into_iter();
            let mut next = || s.next().flatten();
            Customer {
                id: CustomerId::new(id),
                email: next(),
                phone: next(),
                first_name: next(),
                last_name: next(),
                country: next(),
                region: next(),
                city: next(),
                postal_code: next(),
                birth_date,
                birth_year,
                gender: next(),
                tags,
                accepts_email_marketing: consent.0,
                accepts_sms_marketing: consent.1,
                created_at,
                updated_at,
                attributes,
            }
        }
    }

    fn money() -> impl Strategy<Value = Money> {
        prop_oneof![
            Just(Money::ZERO),
            (-10_000_000_000i64..10_000_000_000).prop_map(Money::from_raw),
        ]
    }

    prop_compose! {
        fn order()(
            id in text(),
            customer_id in text(),
            created_at in proptest::option::of(timestamp()),
            total in money(),
            currency in proptest::option::of("[A-Z]{3}"),
            item_count in prop_oneof![Just(0u32), any::<u32>()],
            line_items in proptest::collection::vec(
                (proptest::option::of(text()), 0u32..100, money()).prop_map(|(title, quantity, price)| {
                    LineItem { title, quantity, price, ..LineItem::default() }
                }),
                0..2,
            ),
            cancelled_at in proptest::option::of(timestamp()),
            refunded in money(),
        ) -> Order {
            Order {
                id,
                customer_id: CustomerId::new(customer_id),
                created_at,
                total,
                currency,
                item_count,
                line_items,
                cancelled_at,
                refunded,
            }
        }
    }

    prop_compose! {
        fn event()(
            id in proptest::option::of(text()),
            customer_id in text(),
            kind in prop_oneof![
                Just(EventKind::EmailOpen),
                Just(EventKind::CartAbandoned),
                "[a-z]{1,8}".prop_map(|k| EventKind::Other(format!("x_{k}"))),
            ],
            occurred_at in timestamp(),
            properties in proptest::collection::btree_map(
                "[a-z]{1,6}",
                prop_oneof![Just(json!(null)), any::<i32>().prop_map(|n| json!(n)), text().prop_map(|s| json!(s))],
                0..3,
            ),
        ) -> Event {
            Event { id, customer_id: CustomerId::new(customer_id), kind, occurred_at, properties }
        }
    }

    /// Writes `records` as a page in `format` through the SDK's writer.
    fn page_of<R: StreamRecord>(records: &[R], format: PageFormat, done: bool) -> Vec<u8> {
        let mut page = PageWriter::with_format(R::STREAM, records.len().max(1), format);
        for r in records {
            page.push(r).unwrap();
        }
        page.reject("f.csv:3:1", "bad \"row\"");
        page.finish(&PageEnd {
            next_cursor: json!({"files": [{"path": "x", "byte": records.len()}]}),
            done,
        })
        .unwrap()
    }

    fn round_trip<R: StreamRecord + PartialEq + fmt::Debug + Clone>(records: &[R], done: bool) {
        let bytes = page_of(records, PageFormat::Binary, done);
        assert!(is_binary(&bytes));
        let page = crate::wire::read_page::<R>(&bytes).unwrap();
        assert_eq!(page.records, records);
        assert_eq!(page.done, done);
        assert_eq!(
            page.next_cursor,
            json!({"files": [{"path": "x", "byte": records.len()}]})
        );
        assert_eq!(page.rejects.len(), 1);
        assert_eq!(page.rejects[0].reason, "bad \"row\"");
        // And the JSON page of the same records reads back the same.
        let json = page_of(records, PageFormat::Json, done);
        assert!(!is_binary(&json));
        assert_eq!(crate::wire::read_page::<R>(&json).unwrap().records, records);
    }

    proptest! {
        #[test]
        fn customers_round_trip(records in proptest::collection::vec(customer(), 0..6), done in any::<bool>()) {
            round_trip(&records, done);
        }

        #[test]
        fn orders_round_trip(records in proptest::collection::vec(order(), 0..6), done in any::<bool>()) {
            round_trip(&records, done);
        }

        #[test]
        fn events_round_trip(records in proptest::collection::vec(event(), 0..6), done in any::<bool>()) {
            round_trip(&records, done);
        }

        #[test]
        fn borrowed_customers_write_what_owned_ones_write(c in customer()) {
            let mut owned = Vec::new();
            c.write_binary(&mut owned);
            let joined = c.tags.join(",");
            let mut borrowed = Vec::new();
            // Tags as a writer splitting a field would give them (when they split back equal).
            let split: Vec<&str> = joined.split(',').collect();
            if split.len() == c.tags.len() {
                let r = CustomerRef::from(&c).with_tags(split.iter().copied());
                write_customer(&mut borrowed, &r);
                prop_assert_eq!(owned, borrowed);
            }
        }

        #[test]
        fn no_garbled_page_panics_or_reads(records in proptest::collection::vec(order(), 1..4), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let bytes = page_of(&records, PageFormat::Binary, true);
            // Every truncation is refused.
            let at = cut.index(bytes.len());
            prop_assert!(crate::wire::read_page::<Order>(&bytes[..at]).is_err());
            // A flipped byte is refused or reads as some page, never panics.
            let mut garbled = bytes;
            let i = flip.0.index(garbled.len());
            garbled[i] ^= flip.1.max(1);
            let _ = crate::wire::read_page::<Order>(&garbled);
        }
    }

    impl<'a> CustomerRef<'a> {
        fn with_tags<T>(self, tags: T) -> CustomerRef<'a, T> {
            CustomerRef {
                id: self.id,
                email: self.email,
                phone: self.phone,
                first_name: self.first_name,
                last_name: self.last_name,
                country: self.country,
                region: self.region,
                city: self.city,
                postal_code: self.postal_code,
                birth_date: self.birth_date,
                birth_year: self.birth_year,
                gender: self.gender,
                tags,
                accepts_email_marketing: self.accepts_email_marketing,
                accepts_sms_marketing: self.accepts_sms_marketing,
                created_at: self.created_at,
                updated_at: self.updated_at,
                attributes: self.attributes,
            }
        }
    }

    fn error_of(bytes: &[u8]) -> String {
        crate::wire::read_page::<Order>(bytes)
            .unwrap_err()
            .to_string()
    }

    fn sample() -> Vec<u8> {
        let o = Order {
            id: "1".into(),
            customer_id: "7".into(),
            total: Money::from_whole(3),
            ..Order::default()
        };
        page_of(&[o.clone(), o], PageFormat::Binary, false)
    }

    #[test]
    fn a_page_of_another_stream_is_refused_naming_both() {
        let customers = page_of(&[Customer::new("1")], PageFormat::Binary, true);
        let e = error_of(&customers);
        assert!(
            e.contains("a page of customers in answer to a request for orders"),
            "{e}"
        );
    }

    #[test]
    fn garbled_headers_and_records_say_what_and_where() {
        let good = sample();
        assert!(crate::wire::read_page::<Order>(&good).is_ok());

        let mut bad = good.clone();
        bad[4] = 9;
        assert!(
            error_of(&bad).contains("format version 9 (this host reads version 1)"),
            "{}",
            error_of(&bad)
        );

        let mut bad = good.clone();
        bad[8] = 3; // three records announced, two written
        let e = error_of(&bad);
        assert!(e.contains("record 2"), "{e}");

        let mut bad = good.clone();
        bad[8] = 1; // one announced: bytes are left over
        assert!(
            error_of(&bad).contains("bytes left after the 1 records announced"),
            "{}",
            error_of(&bad)
        );

        let mut bad = good.clone();
        bad[HEADER_LEN] = 0x80; // an unknown order field bit
        assert!(
            error_of(&bad).contains("unknown order field bits 0x80"),
            "{}",
            error_of(&bad)
        );

        let mut bad = good.clone();
        bad[HEADER_LEN + 3] = 0xff; // the id's single byte is not UTF-8
        let e = error_of(&bad);
        assert!(
            e.contains("not UTF-8") && e.contains(&format!("byte {}", HEADER_LEN + 3)),
            "{e}"
        );

        let mut bad = good.clone();
        bad.push(0);
        assert!(
            error_of(&bad).contains("1 bytes after the last section"),
            "{}",
            error_of(&bad)
        );

        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            error_of(&bad).contains("records announced in"),
            "{}",
            error_of(&bad)
        );

        let e = error_of(&good[..10]);
        assert!(e.contains("shorter than its header"), "{e}");
    }

    #[test]
    fn the_tail_is_read_from_the_header_without_the_records() {
        let page = sample();
        let parts = parts(&page).unwrap();
        assert_eq!(
            (parts.stream, parts.done, parts.count),
            (Stream::Orders, false, 2)
        );
        assert_eq!(
            parts.cursor().unwrap(),
            json!({"files": [{"path": "x", "byte": 2}]})
        );
    }

    #[test]
    fn an_empty_page_reads() {
        let bytes = page_of::<Event>(&[], PageFormat::Binary, true);
        let page = crate::wire::read_page::<Event>(&bytes).unwrap();
        assert!(page.records.is_empty() && page.done);
        let _ = BTreeMap::<String, String>::new();
    }
}
