//! Writing a page straight into the buffer that crosses the boundary.
//!
//! Records are serialized as they are pushed, in the format the host asked for: the compact
//! JSON of [`wire::compact`](crate::wire::compact), or the [`binary`](crate::wire::binary) page
//! format (ABI 1.1), so a page never exists twice as records: the boundary costs one
//! serialization on this side and one parse on the host's. Binary pages are written in place
//! (the header is filled in at the end), and the buffers the host hands back through `free_buf`
//! are kept for the next pages instead of being allocated again.
//!
//! A finished JSON page starts with `next_cursor` and `done`, so a host that prefetches the
//! next page can learn where it starts without parsing the records (any field order is valid
//! JSON, and hosts accept any; this one is just cheaper to read). A binary page says where its
//! cursor is in its header.

use std::sync::Mutex;

use serde::Serialize;

use super::PluginError;
use crate::wire::binary::{self, CustomerRef, Extras, OrderRef};
use crate::wire::{PageFormat, Reject, Stream, StreamRecord, compact};

/// Buffers handed back by the host, kept for the next pages.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Buffers kept at most (the host holds one page, prefetches another).
const POOL_SIZE: usize = 4;
/// Buffers smaller than this (error messages, manifests) or larger are not worth keeping.
const POOL_MIN: usize = 64 << 10;
const POOL_MAX: usize = 256 << 20;

/// A buffer for a page, from the pool when one is there.
fn buffer(capacity: usize) -> Vec<u8> {
    let pooled = POOL.lock().ok().and_then(|mut pool| pool.pop());
    match pooled {
        Some(mut buf) => {
            buf.clear();
            buf.reserve(capacity);
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Takes back a buffer the host is done with (called by `free_buf`).
pub(crate) fn recycle(buf: Vec<u8>) {
    if (POOL_MIN..=POOL_MAX).contains(&buf.capacity())
        && let Ok(mut pool) = POOL.lock()
        && pool.len() < POOL_SIZE
    {
        pool.push(buf);
    }
}

/// `Err(Unsupported)` when the host that loaded this plugin predates ABI 1.2.
fn needs_1_2(what: &str) -> Result<(), PluginError> {
    if super::ffi::host_minor() < 2 {
        return Err(PluginError::Unsupported(format!(
            "{what} need a Cohort host of plugin ABI 1.2 or later; upgrade cohort"
        )));
    }
    Ok(())
}

/// The end of a page: where the next one starts, and whether the stream is exhausted.
#[derive(Debug, Clone, PartialEq)]
pub struct PageEnd<C> {
    /// Where to resume. When `done`, this is the cursor the host saves for the next run.
    pub next_cursor: C,
    /// Whether the stream has nothing more for now.
    pub done: bool,
}

/// A page being written: push records (and rejects) into it.
#[derive(Debug)]
pub struct PageWriter {
    buf: Vec<u8>,
    stream: Stream,
    format: PageFormat,
    max_records: usize,
    count: usize,
    rejects: Vec<Reject>,
    extras: Extras,
}

impl PageWriter {
    /// An empty JSON page for `stream` holding at most `max_records`.
    pub fn new(stream: Stream, max_records: usize) -> PageWriter {
        PageWriter::with_format(stream, max_records, PageFormat::Json)
    }

    /// An empty page for `stream` holding at most `max_records`, in `format`.
    pub fn with_format(stream: Stream, max_records: usize, format: PageFormat) -> PageWriter {
        let mut buf = buffer(64 + max_records.min(100_000) * 64);
        match format {
            PageFormat::Json => buf.push(b'['),
            PageFormat::Binary => binary::begin(&mut buf, stream),
        }
        PageWriter {
            buf,
            stream,
            format,
            max_records: max_records.max(1),
            count: 0,
            rejects: Vec::new(),
            extras: Extras::default(),
        }
    }

    /// The format the page is written in.
    pub fn format(&self) -> PageFormat {
        self.format
    }

    /// The stream this page is for.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// Most records this page may hold.
    pub fn max_records(&self) -> usize {
        self.max_records
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no record was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether the page holds `max_records` records: stop and return the cursor.
    pub fn is_full(&self) -> bool {
        self.count >= self.max_records
    }

    /// Room left in this page.
    pub fn remaining(&self) -> usize {
        self.max_records - self.count
    }

    /// Adds a record. Fails if the page is full or the record belongs to another stream.
    pub fn push<R: StreamRecord>(&mut self, record: &R) -> Result<(), PluginError> {
        self.room_for(R::STREAM)?;
        match self.format {
            PageFormat::Json => record.write_json(&mut self.buf),
            PageFormat::Binary => record.write_binary(&mut self.buf),
        }
        self.count += 1;
        Ok(())
    }

    /// Adds an order given as borrowed fields, for a source that can produce them without
    /// building an [`Order`](crate::Order) (the page is the same as with [`push`](Self::push)).
    pub fn push_order(&mut self, order: &OrderRef<'_>) -> Result<(), PluginError> {
        self.room_for(Stream::Orders)?;
        match self.format {
            PageFormat::Json => compact::order_ref(&mut self.buf, order),
            PageFormat::Binary => binary::write_order(&mut self.buf, order),
        }
        self.count += 1;
        Ok(())
    }

    /// Adds a customer given as borrowed fields (see [`push_order`](Self::push_order)).
    pub fn push_customer<'a, T, S>(
        &mut self,
        customer: &CustomerRef<'a, T>,
    ) -> Result<(), PluginError>
    where
        T: IntoIterator<Item = S> + Clone,
        S: AsRef<str>,
    {
        self.room_for(Stream::Customers)?;
        match self.format {
            PageFormat::Json => compact::customer_ref(&mut self.buf, customer),
            PageFormat::Binary => binary::write_customer(&mut self.buf, customer),
        }
        self.count += 1;
        Ok(())
    }

    /// Checks that a record of `stream` fits, and writes the separator before it.
    #[inline]
    fn room_for(&mut self, stream: Stream) -> Result<(), PluginError> {
        if stream != self.stream {
            return Err(PluginError::failed(format!(
                "plugin bug: pushed a record of stream `{stream}` into a page of `{}`",
                self.stream
            )));
        }
        if self.is_full() {
            return Err(PluginError::failed(format!(
                "plugin bug: pushed more than the {} records a page may hold",
                self.max_records
            )));
        }
        if self.count > 0 && self.format == PageFormat::Json {
            self.buf.push(b',');
        }
        Ok(())
    }

    /// Reports a record that was found but could not be read, and is skipped.
    pub fn reject(&mut self, location: impl Into<String>, reason: impl Into<String>) {
        self.rejects.push(Reject {
            location: location.into(),
            reason: reason.into(),
        });
    }

    /// Rejects reported so far.
    pub fn rejects(&self) -> &[Reject] {
        &self.rejects
    }

    /// Reports that the record `id` of this page's stream is gone at the source (an archived
    /// contact, a completed checkout's abandonment): the host marks it deleted, so it leaves
    /// every segment and mirror audiences drop it. A record sent again later comes back.
    ///
    /// Hosts before ABI 1.2 cannot take deletions: [`PluginError::Unsupported`].
    pub fn delete(&mut self, id: impl Into<String>) -> Result<(), PluginError> {
        needs_1_2("deletions")?;
        self.extras.deleted.push(id.into());
        Ok(())
    }

    /// Marks this page as part of a full pass named `name`: the plugin is reading the whole
    /// stream from its start, and every page of the pass carries the same name (keep it in the
    /// cursor, so a pass resumed after a crash keeps it). When the pass's last page (`done`)
    /// reaches the host, every record of the stream that the pass did not send is marked
    /// deleted.
    ///
    /// Hosts before ABI 1.2 cannot take passes: [`PluginError::Unsupported`].
    pub fn full_pass(&mut self, name: impl Into<String>) -> Result<(), PluginError> {
        needs_1_2("full passes")?;
        self.extras.pass = Some(name.into());
        Ok(())
    }

    /// Completes the page and returns its bytes.
    pub fn finish<C: Serialize>(mut self, end: &PageEnd<C>) -> Result<Vec<u8>, PluginError> {
        if self.format == PageFormat::Binary {
            let extras = (!self.extras.is_empty()).then_some(&self.extras);
            binary::finish(
                &mut self.buf,
                self.count,
                end.done,
                &end.next_cursor,
                &self.rejects,
                extras,
            )
            .map_err(PluginError::failed)?;
            return Ok(self.buf);
        }
        let mut out = buffer(self.buf.len() + 256);
        out.extend_from_slice(b"{\"next_cursor\":");
        serde_json::to_writer(&mut out, &end.next_cursor)
            .map_err(|e| PluginError::failed(format!("encoding the cursor: {e}")))?;
        out.extend_from_slice(if end.done {
            b",\"done\":true"
        } else {
            b",\"done\":false"
        });
        out.extend_from_slice(b",\"records\":");
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(b"],\"rejects\":");
        serde_json::to_writer(&mut out, &self.rejects)
            .map_err(|e| PluginError::failed(format!("encoding rejects: {e}")))?;
        if !self.extras.deleted.is_empty() {
            out.extend_from_slice(b",\"deleted\":");
            serde_json::to_writer(&mut out, &self.extras.deleted)
                .map_err(|e| PluginError::failed(format!("encoding deletions: {e}")))?;
        }
        if let Some(pass) = &self.extras.pass {
            out.extend_from_slice(b",\"pass\":");
            serde_json::to_writer(&mut out, pass)
                .map_err(|e| PluginError::failed(format!("encoding the pass: {e}")))?;
        }
        out.push(b'}');
        recycle(self.buf);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Page;
    use cohort_core::{Customer, Order};

    #[test]
    fn a_finished_page_is_valid_page_json() {
        let mut page = PageWriter::new(Stream::Customers, 2);
        page.push(&Customer::new("1")).unwrap();
        page.push(&Customer::new("2")).unwrap();
        page.reject("c.csv:4:2", "bad email");
        assert!(page.is_full());
        let bytes = page
            .finish(&PageEnd {
                next_cursor: 3u32,
                done: false,
            })
            .unwrap();
        let parsed: Page<Customer> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.rejects[0].location, "c.csv:4:2");
        assert_eq!(parsed.next_cursor, serde_json::json!(3));
        assert!(!parsed.done);
    }

    #[test]
    fn pushing_into_the_wrong_stream_or_past_the_limit_is_an_error() {
        let mut page = PageWriter::new(Stream::Customers, 1);
        assert!(page.push(&Order::default()).is_err());
        page.push(&Customer::new("1")).unwrap();
        assert!(page.push(&Customer::new("2")).is_err());
    }
}
