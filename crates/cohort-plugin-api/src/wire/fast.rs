//! Reading pages of orders and events without the canonical types' per-field allocations.
//!
//! The canonical `Deserialize` of a timestamp goes through an owned `String`, and `EventKind`'s
//! untagged fallback variant makes serde buffer every kind. At ten million orders a run, that is
//! most of the boundary's cost. These readers parse into borrowed shadow structs and build the
//! canonical records from them, which is about twice as fast.
//!
//! They must never accept or produce anything the canonical reader would not: a shadow field
//! takes only the JSON type the canonical field takes in practice (text for timestamps and
//! amounts), and whenever a page does not fit (an amount written as a number, an unknown
//! timestamp format), the whole page is read again by the canonical `Deserialize`, which either
//! reads it or reports the canonical error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use cohort_core::record::LineItem;
use cohort_core::{CustomerId, Event, EventKind, Money, Order, Timestamp};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Page, Reject};

/// A JSON string, borrowed when it has no escapes. Absent means `None`; `null` is refused (the
/// canonical types refuse it for amounts, and read it as absent only for optional fields, which
/// use `Option<Text>`).
#[derive(Debug, Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
        }
        d.deserialize_str(V)
    }
}

fn timestamp(t: Option<Text<'_>>) -> Option<Option<Timestamp>> {
    match t.and_then(|t| t.0) {
        None => Some(None),
        Some(s) => Timestamp::parse(&s).ok().map(Some),
    }
}

fn money(t: Text<'_>) -> Option<Money> {
    match t.0 {
        None => Some(Money::ZERO),
        Some(s) => Money::parse(&s).ok(),
    }
}

#[derive(Deserialize)]
struct OrderIn<'a> {
    #[serde(default, borrow)]
    id: Text<'a>,
    #[serde(default, borrow)]
    customer_id: Text<'a>,
    #[serde(default, borrow)]
    created_at: Option<Text<'a>>,
    #[serde(default, borrow)]
    total: Text<'a>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    item_count: u32,
    #[serde(default)]
    line_items: Vec<LineItem>,
    #[serde(default, borrow)]
    cancelled_at: Option<Text<'a>>,
    #[serde(default, borrow)]
    refunded: Text<'a>,
}

impl OrderIn<'_> {
    fn build(self) -> Option<Order> {
        Some(Order {
            id: self.id.0.map(Cow::into_owned).unwrap_or_default(),
            customer_id: CustomerId::new(
                self.customer_id.0.map(Cow::into_owned).unwrap_or_default(),
            ),
            created_at: timestamp(self.created_at)?,
            total: money(self.total)?,
            currency: self.currency,
            item_count: self.item_count,
            line_items: self.line_items,
            cancelled_at: timestamp(self.cancelled_at)?,
            refunded: money(self.refunded)?,
        })
    }
}

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow)]
    customer_id: Text<'a>,
    #[serde(borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    occurred_at: Text<'a>,
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

/// The kind as the canonical `Deserialize` reads it: exact snake_case names, else `Other`.
/// Shared with the binary page reader, which must decode kinds the same way.
pub(crate) fn event_kind(s: &str) -> EventKind {
    EventKind::COUNTED
        .iter()
        .find(|k| k.as_str() == s)
        .cloned()
        .unwrap_or_else(|| EventKind::Other(s.to_owned()))
}

impl EventIn<'_> {
    fn build(self) -> Option<Event> {
        Some(Event {
            id: self.id,
            customer_id: CustomerId::new(self.customer_id.0?.into_owned()),
            kind: event_kind(&self.kind.0?),
            occurred_at: Timestamp::parse(&self.occurred_at.0?).ok()?,
            properties: self.properties,
        })
    }
}

#[derive(Deserialize)]
struct PageIn<R> {
    records: Vec<R>,
    #[serde(default)]
    rejects: Vec<Reject>,
    #[serde(default)]
    next_cursor: Value,
    done: bool,
    #[serde(default)]
    deleted: Vec<String>,
    #[serde(default)]
    pass: Option<String>,
}

fn read<'a, S: Deserialize<'a>, R: Serialize + for<'de> Deserialize<'de>>(
    bytes: &'a [u8],
    build: fn(S) -> Option<R>,
) -> Result<Page<R>, serde_json::Error> {
    if let Ok(page) = serde_json::from_slice::<PageIn<S>>(bytes) {
        let records: Option<Vec<R>> = page.records.into_iter().map(build).collect();
        if let Some(records) = records {
            return Ok(Page {
                records,
                rejects: page.rejects,
                next_cursor: page.next_cursor,
                done: page.done,
                deleted: page.deleted,
                pass: page.pass,
            });
        }
    }
    serde_json::from_slice(bytes)
}

/// Reads a page of orders.
pub fn orders(bytes: &[u8]) -> Result<Page<Order>, serde_json::Error> {
    match super::scan::orders(bytes) {
        Some(page) => Ok(page),
        None => read(bytes, OrderIn::build),
    }
}

/// Reads a page of events.
pub fn events(bytes: &[u8]) -> Result<Page<Event>, serde_json::Error> {
    read(bytes, EventIn::build)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both<R: PartialEq + fmt::Debug + for<'de> Deserialize<'de>>(
        page: &Value,
        fast: fn(&[u8]) -> Result<Page<R>, serde_json::Error>,
    ) {
        let bytes = serde_json::to_vec(page).unwrap();
        let canonical: Result<Page<R>, _> = serde_json::from_slice(&bytes);
        match (fast(&bytes), canonical) {
            (Ok(a), Ok(b)) => assert_eq!(a.records, b.records, "{page}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("fast and canonical readers disagree on {page}: {a:?} vs {b:?}"),
        }
    }

    #[test]
    fn the_fast_order_reader_agrees_with_the_canonical_one() {
        for record in [
            json!({"id": "1", "customer_id": "7", "created_at": "2024-01-01T00:00:00Z", "total": "12.50", "item_count": 2}),
            json!({"id": "esc\"aped\\", "customer_id": "7", "created_at": "2024-01-01 10:00:00", "total": "1"}),
            json!({"customer_id": "7"}),
            json!({"id": "1", "total": 12.5}),
            json!({"id": "1", "total": null}),
            json!({"id": "1", "created_at": null, "cancelled_at": "2024-02-02T00:00:00+02:00", "refunded": "3.0001"}),
            json!({"id": "1", "created_at": "yesterday"}),
            json!({"id": "1", "line_items": [{"title": "Mug", "quantity": 2, "price": "3.50"}], "currency": "EUR"}),
            json!({"id": "1", "unknown_field": {"x": 1}}),
            json!({"id": 5}),
            json!({"id": "1", "item_count": 2.5}),
            json!({"id": "1", "item_count": -1}),
            json!({"id": "1", "line_items": []}),
            json!({"id": "1", "line_items": [], "id ": "2"}),
            json!({"id": "Zoë ☕", "customer_id": "a\"b\\c"}),
        ] {
            both::<Order>(&json!({"records": [record], "done": true}), orders);
            both::<Order>(
                &json!({"next_cursor": {"a": [1]}, "done": false, "records": [record, record], "rejects": [{"location": "x:1", "reason": "r"}]}),
                orders,
            );
        }
    }

    #[test]
    fn the_scanner_reads_pages_as_the_sdk_writes_them() {
        use crate::sdk::{PageEnd, PageWriter};
        let mut page = PageWriter::new(crate::wire::Stream::Orders, 10);
        for i in 0..3 {
            let o = Order {
                id: i.to_string(),
                customer_id: CustomerId::new("13621"),
                created_at: Some(Timestamp::from_secs(1_516_101_101)),
                total: Money::parse("115.65").unwrap(),
                item_count: 2,
                ..Order::default()
            };
            page.push(&o).unwrap();
        }
        page.reject("f.csv:3:1", "bad");
        let bytes = page
            .finish(&PageEnd {
                next_cursor: json!({"files": [{"path": "x", "byte": 10}]}),
                done: false,
            })
            .unwrap();
        let scanned = crate::wire::scan::orders(&bytes);
        assert!(scanned.is_some(), "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(scanned.unwrap().rejects.len(), 1);
        let empty = PageWriter::new(crate::wire::Stream::Orders, 10)
            .finish(&PageEnd {
                next_cursor: json!(null),
                done: true,
            })
            .unwrap();
        assert!(crate::wire::scan::orders(&empty).is_some_and(|p| p.done && p.records.is_empty()));
    }

    #[test]
    fn repeated_fields_are_refused_as_the_canonical_reader_refuses_them() {
        let bytes = br#"{"records":[{"id":"1","id":"2"}],"done":true}"#;
        assert!(orders(bytes).is_err());
        let bytes = br#"{"records":[],"done":true,"done":false}"#;
        assert!(orders(bytes).is_err());
    }

    #[test]
    fn the_scanner_reads_pretty_and_compact_pages_like_the_canonical_reader() {
        let records: Vec<Order> = (0..50)
            .map(|i| Order {
                id: format!("o{i}"),
                customer_id: CustomerId::new(format!("{}", i % 7)),
                created_at: (i % 3 != 0).then(|| Timestamp::from_secs(1_700_000_000 + i * 3_601)),
                total: Money::from_raw(i * 12_345 - 40_000),
                currency: (i % 5 == 0).then(|| "EUR".to_owned()),
                item_count: (i % 4) as u32,
                line_items: Vec::new(),
                cancelled_at: (i % 11 == 0).then(|| Timestamp::from_secs(1_700_500_000)),
                refunded: Money::from_raw(i % 2 * 500),
            })
            .collect();
        let page = Page {
            records: records.clone(),
            rejects: vec![],
            next_cursor: json!({"n": 50}),
            done: true,
            deleted: vec![],
            pass: None,
        };
        for bytes in [
            serde_json::to_vec(&page).unwrap(),
            serde_json::to_vec_pretty(&page).unwrap(),
        ] {
            let scanned =
                crate::wire::scan::orders(&bytes).expect("the scanner reads serde's own output");
            assert_eq!(scanned.records, records);
            assert_eq!(scanned.next_cursor, json!({"n": 50}));
        }
        let mut compact = b"{\"next_cursor\":1,\"done\":false,\"records\":[".to_vec();
        for (i, o) in records.iter().enumerate() {
            if i > 0 {
                compact.push(b',');
            }
            crate::wire::compact::order(&mut compact, o);
        }
        compact.extend_from_slice(b"],\"rejects\":[]}");
        assert_eq!(
            crate::wire::scan::orders(&compact)
                .expect("and the compact writer's")
                .records,
            records
        );
    }

    #[test]
    fn the_fast_event_reader_agrees_with_the_canonical_one() {
        for record in [
            json!({"customer_id": "7", "kind": "email_open", "occurred_at": "2024-01-01T00:00:00Z"}),
            json!({"id": "e1", "customer_id": "7", "kind": "Email Open", "occurred_at": "2024-01-01", "properties": {"url": "/x"}}),
            json!({"customer_id": "7", "kind": "wishlist_add", "occurred_at": "2024-01-01T00:00:00Z"}),
            json!({"customer_id": "7", "occurred_at": "2024-01-01T00:00:00Z"}),
            json!({"customer_id": "7", "kind": "page_view", "occurred_at": 5}),
        ] {
            both::<Event>(&json!({"records": [record], "done": true}), events);
        }
    }
}
