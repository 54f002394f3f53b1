//! Sources that read a vendor's paged API: the plugin says how to ask for a page and how to read
//! one; [`Pager`] owns everything between that and the host's pages.
//!
//! A vendor's pages and the host's never line up: the vendor answers 250 orders, the host asks
//! for 5,000 or for 3. The pager keeps the vendor page it is reading and hands it over across
//! host pages, and its [`Cursor`] names the vendor page (its token) and how far into it the host
//! has got, so a run stopped anywhere resumes on exactly the next record: the conformance kit's
//! "a cursor resumes where it stopped" holds as long as the vendor answers the same token with the
//! same page.
//!
//! Incremental pulls use a watermark with a tie-break ([`Mark`]: a timestamp and an id). The
//! cursor keeps the newest mark handed over; the next pass asks the vendor for records at or
//! after that timestamp (inclusive, as `updated_since` APIs are) and drops those at or before the
//! mark, so records sharing the newest timestamp are neither skipped nor handed over twice.
//! Records without a timestamp cannot be placed and always pass.
//!
//! Some passes are not in time order: a full listing read by id, say. Its records are pushed
//! unmarked, and the page that starts it names the pass's start instead
//! ([`VendorPage::start_mark`]): the next pass reads from there, so a record changed while the
//! listing ran is read again rather than skipped. Pages may also name records gone at the
//! source ([`VendorPage::delete`]): the pager hands them over as the page's deletions.
//!
//! The pager checks for cancellation before every vendor request, reports progress after each,
//! and stops a vendor that answers the same "next" token forever.

use std::cmp::Ordering;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::http::Request;
use super::http::Response;
use super::{Host, PageEnd, PageWriter, PluginError};
use crate::wire::{Reject, Stream};
use cohort_core::record::natural_cmp;
use cohort_core::{Customer, Event, Order, Timestamp};

/// What a paged API source writes: how to ask for one vendor page, and how to read it.
pub trait Paged {
    /// Where a vendor page is: a cursor string, a page number, a `next` URL.
    type Token: Serialize + DeserializeOwned + Clone + PartialEq + fmt::Debug;

    /// The request for one page of `stream`: the first page when `token` is `None`. `since`,
    /// for an incremental pager, is the watermark to ask from (`updated_since=`); the pager
    /// drops what is at or before it anyway, so an API without such a filter still works.
    fn request(
        &mut self,
        stream: Stream,
        token: Option<&Self::Token>,
        since: Option<&Mark>,
    ) -> Result<Request, PluginError>;

    /// Reads one vendor page, the answer to the request for `token`: its records (or rejects),
    /// and the token of the next page, `None` on the last one.
    fn parse(
        &mut self,
        stream: Stream,
        token: Option<&Self::Token>,
        response: Response,
    ) -> Result<VendorPage<Self::Token>, PluginError>;
}

/// A canonical record of any stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A customer.
    Customer(Customer),
    /// An order.
    Order(Order),
    /// An engagement event.
    Event(Event),
}

impl Record {
    /// The record's place in time and its id: `updated_at` (else `created_at`) of a customer,
    /// `created_at` of an order, `occurred_at` of an event.
    pub fn mark(&self) -> Option<Mark> {
        match self {
            Record::Customer(c) => Some(Mark::new(c.updated_at.or(c.created_at)?, c.id.as_str())),
            Record::Order(o) => Some(Mark::new(o.created_at?, &o.id)),
            Record::Event(e) => Some(Mark::new(
                e.occurred_at,
                e.id.as_deref().unwrap_or(e.customer_id.as_str()),
            )),
        }
    }

    fn write(&self, page: &mut PageWriter) -> Result<(), PluginError> {
        match self {
            Record::Customer(c) => page.push(c),
            Record::Order(o) => page.push(o),
            Record::Event(e) => page.push(e),
        }
    }
}

impl From<Customer> for Record {
    fn from(c: Customer) -> Self {
        Record::Customer(c)
    }
}
impl From<Order> for Record {
    fn from(o: Order) -> Self {
        Record::Order(o)
    }
}
impl From<Event> for Record {
    fn from(e: Event) -> Self {
        Record::Event(e)
    }
}

/// A watermark: a record's timestamp, ties broken by its id (ids of digits compare as numbers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// The record's `updated_at` (or what stands for it).
    pub at: Timestamp,
    /// The record's id.
    pub id: String,
}

impl Mark {
    /// A mark.
    pub fn new(at: Timestamp, id: &str) -> Mark {
        Mark {
            at,
            id: id.to_owned(),
        }
    }
}

impl Ord for Mark {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at
            .cmp(&other.at)
            .then_with(|| natural_cmp(&self.id, &other.id))
    }
}

impl PartialOrd for Mark {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Nearly every item is a record: boxing them to shrink the rare reject would cost an
// allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Item {
    Record(Record, Option<Mark>),
    Reject(Reject),
    Delete(String, Option<Mark>),
}

/// One vendor page, as [`Paged::parse`] reads it.
#[derive(Debug, Clone)]
pub struct VendorPage<T> {
    items: Vec<Item>,
    /// The next page's token; `None` on the last page.
    pub next: Option<T>,
    /// How many records the whole stream holds, when the vendor says (for progress).
    pub total: Option<u64>,
    /// The watermark of a pass that starts with this page, if it has none yet: see
    /// [`start_mark`](Self::start_mark).
    pub start: Option<Mark>,
}

impl<T> Default for VendorPage<T> {
    fn default() -> Self {
        VendorPage {
            items: Vec::new(),
            next: None,
            total: None,
            start: None,
        }
    }
}

impl<T> VendorPage<T> {
    /// An empty last page.
    pub fn new() -> VendorPage<T> {
        VendorPage::default()
    }

    /// Adds a record, placed in time by [`Record::mark`].
    pub fn push(&mut self, record: impl Into<Record>) {
        let record = record.into();
        let mark = record.mark();
        self.items.push(Item::Record(record, mark));
    }

    /// Adds a record placed by the vendor's own `updated_at` (an order's, say), or by nothing.
    pub fn push_marked(&mut self, record: impl Into<Record>, mark: Option<Mark>) {
        self.items.push(Item::Record(record.into(), mark));
    }

    /// Reports an item that could not be read: the host records it and the pull goes on.
    pub fn reject(&mut self, location: impl Into<String>, reason: impl Into<String>) {
        self.items.push(Item::Reject(Reject {
            location: location.into(),
            reason: reason.into(),
        }));
    }

    /// Reports that the record `id` is gone at the source (an archived contact): the pager
    /// hands it over as a deletion ([`PageWriter::delete`]). `mark` places the deletion in time
    /// like a record's, for the watermark; a deletion at or before the pass's `since` is
    /// dropped, as a record would be.
    pub fn delete(&mut self, id: impl Into<String>, mark: Option<Mark>) {
        self.items.push(Item::Delete(id.into(), mark));
    }

    /// For a pass whose records are not in time order (a full listing, pushed unmarked): the
    /// time the pass began, as the watermark the next pass reads from. The pager takes it from
    /// the first page of a pass that has no watermark yet, and keeps it when the pass resumes,
    /// so a record changed while the listing ran is read again by the next pass.
    pub fn start_mark(mut self, mark: Mark) -> VendorPage<T> {
        self.start = Some(mark);
        self
    }

    /// Sets the next page's token.
    pub fn next(mut self, token: Option<T>) -> VendorPage<T> {
        self.next = token;
        self
    }

    /// Items (records and rejects) on the page.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the page holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Where a paged stream resumes. Saved by the host as the source's cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor<T> {
    /// The vendor page being read; absent for the first page of a pass.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub token: Option<T>,
    /// Items of that vendor page already handed over (records and rejects alike).
    pub offset: usize,
    /// This pass reads records after this mark (an incremental pager's last watermark).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Mark>,
    /// The newest mark handed over so far: the next pass's `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<Mark>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> Cursor<T> {
    /// The start of a pass reading after `since`.
    pub fn start(since: Option<Mark>) -> Cursor<T> {
        Cursor {
            token: None,
            offset: 0,
            seen: since.clone(),
            since,
        }
    }
}

#[derive(Debug)]
struct Buffered<T> {
    stream: Stream,
    token: Option<T>,
    since: Option<Mark>,
    page: VendorPage<T>,
}

/// Turns a vendor's pages into the host's: see the module doc.
///
/// ```no_run
/// # use cohort_plugin_api::prelude::*;
/// # use cohort_plugin_api::sdk::paged::{Cursor, Pager, Paged};
/// # struct Api; struct MySource { api: Api, pager: Pager<String> }
/// # impl Paged for Api { type Token = String;
/// #   fn request(&mut self, _: Stream, _: Option<&String>, _: Option<&cohort_plugin_api::sdk::paged::Mark>) -> Result<cohort_plugin_api::sdk::http::Request, PluginError> { todo!() }
/// #   fn parse(&mut self, _: Stream, _: Option<&String>, _: cohort_plugin_api::sdk::http::Response) -> Result<cohort_plugin_api::sdk::paged::VendorPage<String>, PluginError> { todo!() } }
/// # impl MySource {
/// fn next_page(&mut self, stream: Stream, cursor: Option<Cursor<String>>, page: &mut PageWriter)
///     -> Result<PageEnd<Cursor<String>>, PluginError> {
///     self.pager.next_page(&mut self.api, stream, cursor, page)
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Pager<T> {
    host: Host,
    incremental: bool,
    buffer: Option<Buffered<T>>,
}

impl<T: Serialize + DeserializeOwned + Clone + PartialEq + fmt::Debug> Pager<T> {
    /// A pager that reads every stream from the start on each run.
    pub fn new(host: Host) -> Pager<T> {
        Pager {
            host,
            incremental: false,
            buffer: None,
        }
    }

    /// Keeps a watermark: a finished pass is followed by one that reads only records newer than
    /// the newest handed over (declare the manifest `incremental()` too).
    pub fn incremental(mut self) -> Pager<T> {
        self.incremental = true;
        self
    }

    /// Fills `page` from `cursor` on, fetching vendor pages through `source` as needed.
    pub fn next_page<P: Paged<Token = T>>(
        &mut self,
        source: &mut P,
        stream: Stream,
        cursor: Option<Cursor<T>>,
        page: &mut PageWriter,
    ) -> Result<PageEnd<Cursor<T>>, PluginError> {
        self.fill(stream, cursor, page, |token, since| {
            let response = source.request(stream, token, since)?.send()?;
            source.parse(stream, token, response)
        })
    }

    /// [`next_page`](Self::next_page), with `fetch` reading the vendor page at a token.
    fn fill(
        &mut self,
        stream: Stream,
        cursor: Option<Cursor<T>>,
        page: &mut PageWriter,
        mut fetch: impl FnMut(Option<&T>, Option<&Mark>) -> Result<VendorPage<T>, PluginError>,
    ) -> Result<PageEnd<Cursor<T>>, PluginError> {
        let (host, incremental) = (self.host, self.incremental);
        let mut at = cursor.unwrap_or_else(|| Cursor::start(None));
        if !incremental {
            at.since = None;
            at.seen = None;
        }
        loop {
            let kept = self
                .buffer
                .as_ref()
                .is_some_and(|b| b.stream == stream && b.token == at.token && b.since == at.since);
            if !kept {
                self.buffer = None;
                host.check_cancelled()?;
                let fetched = fetch(at.token.as_ref(), at.since.as_ref())?;
                host.progress(fetched.items.len() as u64, fetched.total);
                if incremental && at.seen.is_none() {
                    at.seen.clone_from(&fetched.start);
                }
                self.buffer = Some(Buffered {
                    stream,
                    token: at.token.clone(),
                    since: at.since.clone(),
                    page: fetched,
                });
            }
            let Some(Buffered { page: vendor, .. }) = &self.buffer else {
                return Err(PluginError::failed("plugin bug: the vendor page vanished"));
            };
            if at.offset > vendor.items.len() {
                // The vendor's page shrank since the cursor was saved: what was there was read.
                host.warn(&format!(
                    "the {stream} page the saved cursor points into is shorter than before \
                     ({} items, the cursor is at {}); going on with the next page",
                    vendor.items.len(),
                    at.offset
                ));
                at.offset = vendor.items.len();
            }
            while at.offset < vendor.items.len() && !page.is_full() {
                match &vendor.items[at.offset] {
                    Item::Reject(r) => page.reject(r.location.clone(), r.reason.clone()),
                    Item::Record(record, mark) => {
                        if !is_old(mark, &at.since) {
                            record.write(page)?;
                            if incremental && mark.is_some() && *mark > at.seen {
                                at.seen.clone_from(mark);
                            }
                        }
                    }
                    Item::Delete(id, mark) => {
                        if !is_old(mark, &at.since) {
                            page.delete(id.clone())?;
                            if incremental && mark.is_some() && *mark > at.seen {
                                at.seen.clone_from(mark);
                            }
                        }
                    }
                }
                at.offset += 1;
            }
            if at.offset < vendor.items.len() {
                return Ok(PageEnd {
                    next_cursor: at,
                    done: false,
                });
            }
            let Some(next) = vendor.next.clone() else {
                // The pass is over: the next one reads after the newest mark seen.
                let since = at.seen.take();
                return Ok(PageEnd {
                    next_cursor: Cursor::start(since),
                    done: true,
                });
            };
            if at.token.as_ref() == Some(&next) {
                return Err(PluginError::failed(format!(
                    "the vendor's {stream} page {next:?} names itself as the next page; \
                     stopping instead of reading it forever"
                )));
            }
            at.token = Some(next);
            at.offset = 0;
            if page.is_full() {
                return Ok(PageEnd {
                    next_cursor: at,
                    done: false,
                });
            }
        }
    }
}

/// Whether an item at `mark` was handed over by an earlier pass (at or before its `since`).
fn is_old(mark: &Option<Mark>, since: &Option<Mark>) -> bool {
    matches!((mark, since), (Some(m), Some(s)) if m <= s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Page;

    #[test]
    fn marks_order_by_time_then_by_natural_id() {
        let t = Timestamp::from_secs(100);
        assert!(Mark::new(t, "9") < Mark::new(t, "10"));
        assert!(Mark::new(t, "10") < Mark::new(Timestamp::from_secs(101), "1"));
        assert_eq!(Mark::new(t, "a").cmp(&Mark::new(t, "a")), Ordering::Equal);
    }

    #[test]
    fn a_cursor_the_pager_did_not_write_does_not_read() {
        let foreign = serde_json::json!({"conformance": "x", "n": [1, 2, 3]});
        assert!(serde_json::from_value::<Cursor<String>>(foreign).is_err());
        let ours = Cursor::<String> {
            token: Some("abc".into()),
            offset: 2,
            since: None,
            seen: Some(Mark::new(Timestamp::from_secs(5), "7")),
        };
        let json = serde_json::to_value(&ours).unwrap();
        assert_eq!(
            serde_json::from_value::<Cursor<String>>(json).unwrap(),
            ours
        );
    }

    /// A fake API over a vector: pages of `per_page` records, tokens are page numbers, and
    /// `since` filters inclusively, as `updated_since` APIs do.
    struct Fake {
        records: Vec<Customer>,
        per_page: usize,
        fetches: usize,
    }

    impl Fake {
        fn new(records: Vec<Customer>, per_page: usize) -> Fake {
            Fake {
                records,
                per_page,
                fetches: 0,
            }
        }

        fn fetch(&mut self, token: Option<&u32>, since: Option<&Mark>) -> VendorPage<u32> {
            self.fetches += 1;
            let n = token.copied().unwrap_or(0) as usize;
            let matching: Vec<&Customer> = self
                .records
                .iter()
                .filter(|c| since.is_none_or(|s| c.updated_at.unwrap() >= s.at))
                .collect();
            let mut page = VendorPage::new();
            for c in matching.iter().skip(n * self.per_page).take(self.per_page) {
                page.push((*c).clone());
            }
            if (n + 1) * self.per_page < matching.len() {
                page.next = Some(n as u32 + 1);
            }
            page
        }
    }

    fn customer(id: u32, at: i64) -> Customer {
        let mut c = Customer::new(id.to_string());
        c.updated_at = Some(Timestamp::from_secs(at));
        c
    }

    /// One host page of at most `max` records from `cursor`: the ids, and where it ended.
    fn drive(
        fake: &mut Fake,
        pager: &mut Pager<u32>,
        cursor: Option<Cursor<u32>>,
        max: usize,
    ) -> (Vec<String>, PageEnd<Cursor<u32>>) {
        let mut page = PageWriter::new(Stream::Customers, max);
        let end = pager
            .fill(Stream::Customers, cursor, &mut page, |t, s| {
                Ok(fake.fetch(t, s))
            })
            .unwrap();
        let bytes = page.finish(&end).unwrap();
        let parsed: Page<Customer> = serde_json::from_slice(&bytes).unwrap();
        let ids = parsed.records.iter().map(|c| c.id.to_string()).collect();
        (ids, end)
    }

    #[test]
    fn host_pages_smaller_than_vendor_pages_resume_inside_a_vendor_page() {
        let mut fake = Fake::new(
            (1..=5).map(|i| customer(i, 100 + i64::from(i))).collect(),
            4,
        );
        let mut pager = Pager::new(Host::detached()).incremental();
        let (first, end) = drive(&mut fake, &mut pager, None, 3);
        assert_eq!(first, ["1", "2", "3"]);
        assert!(!end.done);
        assert_eq!((end.next_cursor.token, end.next_cursor.offset), (None, 3));
        let (more, end2) = drive(&mut fake, &mut pager, Some(end.next_cursor.clone()), 3);
        assert_eq!(
            more,
            ["4", "5"],
            "the rest of vendor page 0, then vendor page 1"
        );
        assert!(end2.done);
        assert_eq!(
            fake.fetches, 2,
            "the vendor page was kept between host pages"
        );
        // A fresh pager (a new run) resumes on record 4.
        let mut fresh = Pager::new(Host::detached()).incremental();
        let (rest, end3) = drive(&mut fake, &mut fresh, Some(end.next_cursor), 3);
        assert_eq!(rest, ["4", "5"]);
        assert_eq!(end3, end2);
        assert_eq!(
            end3.next_cursor.since,
            Some(Mark::new(Timestamp::from_secs(105), "5"))
        );
    }

    #[test]
    fn host_pages_larger_than_vendor_pages_gather_several() {
        let mut fake = Fake::new((1..=7).map(|i| customer(i, 100)).collect(), 2);
        let mut pager = Pager::new(Host::detached());
        let (ids, end) = drive(&mut fake, &mut pager, None, 5);
        assert_eq!(ids, ["1", "2", "3", "4", "5"]);
        assert_eq!(
            (end.next_cursor.token, end.next_cursor.offset),
            (Some(2), 1)
        );
        let (ids, end) = drive(&mut fake, &mut pager, Some(end.next_cursor), 5);
        assert_eq!(ids, ["6", "7"]);
        assert!(end.done);
    }

    #[test]
    fn a_watermark_skips_what_was_handed_over_but_not_what_shares_its_timestamp() {
        let mut fake = Fake::new(vec![customer(1, 100), customer(2, 200)], 10);
        let mut pager = Pager::new(Host::detached()).incremental();
        let (ids, end) = drive(&mut fake, &mut pager, None, 10);
        assert_eq!(ids, ["1", "2"]);
        assert!(end.done);
        // Since then, 3 arrived with 2's timestamp, and 4 later.
        fake.records.push(customer(3, 200));
        fake.records.push(customer(4, 300));
        let (ids, end) = drive(&mut fake, &mut pager, Some(end.next_cursor), 10);
        assert_eq!(
            ids,
            ["3", "4"],
            "2 is not handed over again, 3 is not skipped"
        );
        let (ids, _) = drive(&mut fake, &mut pager, Some(end.next_cursor), 10);
        assert!(ids.is_empty(), "{ids:?}");
    }

    #[test]
    fn a_pager_that_is_not_incremental_starts_over_after_a_finished_pass() {
        let mut fake = Fake::new(vec![customer(1, 100), customer(2, 200)], 10);
        let mut pager = Pager::new(Host::detached());
        let (_, end) = drive(&mut fake, &mut pager, None, 10);
        assert_eq!(end.next_cursor.since, None);
        let (ids, _) = drive(&mut fake, &mut pager, Some(end.next_cursor), 10);
        assert_eq!(ids, ["1", "2"]);
    }

    #[test]
    fn an_unordered_pass_reads_on_from_its_start_mark_even_when_resumed() {
        // A listing by id: records unmarked, the first page names when the pass began.
        let listing = |token: Option<&u32>, started: i64| {
            let n = token.copied().unwrap_or(0);
            let mut page =
                VendorPage::new().start_mark(Mark::new(Timestamp::from_secs(started), ""));
            for id in [n * 2 + 1, n * 2 + 2] {
                page.push_marked(customer(id, 500 + i64::from(id)), None);
            }
            page.next((n < 1).then_some(n + 1))
        };
        let mut pager = Pager::<u32>::new(Host::detached()).incremental();
        let mut page = PageWriter::new(Stream::Customers, 3);
        let end = pager
            .fill(Stream::Customers, None, &mut page, |t, _| {
                Ok(listing(t, 100))
            })
            .unwrap();
        assert!(!end.done);
        // Resumed by a new run, whose pages say the listing began later: the first start holds.
        let mut fresh = Pager::<u32>::new(Host::detached()).incremental();
        let mut page = PageWriter::new(Stream::Customers, 3);
        let end = fresh
            .fill(
                Stream::Customers,
                Some(end.next_cursor),
                &mut page,
                |t, _| Ok(listing(t, 900)),
            )
            .unwrap();
        assert!(end.done);
        assert_eq!(
            end.next_cursor.since,
            Some(Mark::new(Timestamp::from_secs(100), "")),
            "the newest record (504) does not move the mark of an unordered pass"
        );
    }

    #[test]
    fn deletions_reach_the_page_and_move_the_watermark_like_records() {
        let mut pager = Pager::<u32>::new(Host::detached()).incremental();
        let since = Mark::new(Timestamp::from_secs(100), "5");
        let mut page = PageWriter::new(Stream::Customers, 10);
        let end = pager
            .fill(
                Stream::Customers,
                Some(Cursor::start(Some(since))),
                &mut page,
                |_, _| {
                    let mut p = VendorPage::new();
                    p.delete("4", Some(Mark::new(Timestamp::from_secs(100), "4")));
                    p.push(customer(6, 100));
                    p.delete("7", Some(Mark::new(Timestamp::from_secs(300), "7")));
                    p.delete("8", None);
                    Ok(p)
                },
            )
            .unwrap();
        let bytes = page.finish(&end).unwrap();
        let parsed: Page<Customer> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(
            parsed.deleted,
            ["7", "8"],
            "4 was handed over by an earlier pass"
        );
        assert_eq!(
            end.next_cursor.since,
            Some(Mark::new(Timestamp::from_secs(300), "7"))
        );
    }

    #[test]
    fn a_vendor_that_names_the_same_page_next_is_stopped() {
        let mut pager = Pager::<u32>::new(Host::detached());
        let mut page = PageWriter::new(Stream::Customers, 10);
        let err = pager
            .fill(Stream::Customers, None, &mut page, |_, _| {
                Ok(VendorPage::new().next(Some(7)))
            })
            .unwrap_err();
        assert!(err.to_string().contains("names itself"), "{err}");
    }
}
