//! Writing a page straight into the buffer that crosses the boundary.
//!
//! Records are serialized as they are pushed (in the compact form of
//! [`wire::compact`](crate::wire::compact)), so a page never exists twice as records: the
//! boundary costs one serialization on this side and one parse on the host's.
//!
//! The finished page starts with `next_cursor` and `done`, so a host that prefetches the next
//! page can learn where it starts without parsing the records (any field order is valid JSON,
//! and hosts accept any; this one is just cheaper to read).

use serde::Serialize;

use super::PluginError;
use crate::wire::{Reject, Stream, StreamRecord};

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
    max_records: usize,
    count: usize,
    rejects: Vec<Reject>,
}

impl PageWriter {
    /// An empty page for `stream` holding at most `max_records`.
    pub fn new(stream: Stream, max_records: usize) -> PageWriter {
        let mut buf = Vec::with_capacity(64 + max_records.min(100_000) * 100);
        buf.push(b'[');
        PageWriter {
            buf,
            stream,
            max_records: max_records.max(1),
            count: 0,
            rejects: Vec::new(),
        }
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
        if R::STREAM != self.stream {
            return Err(PluginError::failed(format!(
                "plugin bug: pushed a record of stream `{}` into a page of `{}`",
                R::STREAM,
                self.stream
            )));
        }
        if self.is_full() {
            return Err(PluginError::failed(format!(
                "plugin bug: pushed more than the {} records a page may hold",
                self.max_records
            )));
        }
        if self.count > 0 {
            self.buf.push(b',');
        }
        record.write_json(&mut self.buf);
        self.count += 1;
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

    /// Closes the JSON and returns the page's bytes.
    pub fn finish<C: Serialize>(self, end: &PageEnd<C>) -> Result<Vec<u8>, PluginError> {
        let mut out = Vec::with_capacity(self.buf.len() + 256);
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
        out.push(b'}');
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
