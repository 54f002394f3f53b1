//! A bound on quoted fields, enforced on the bytes before the CSV parser sees them.
//!
//! RFC 4180 lets a quoted field span lines, so one unbalanced quote makes the parser take every
//! following row, up to the end of the file, as part of one field: rows vanish into another
//! customer's first name, and the `csv` crate buffers all of it. [`Guard`] sits between the
//! file and the parser and follows the quote states of `csv-core`'s default dialect (comma,
//! double quote, `""` as an escaped quote, `\r`, `\n` or `\r\n` ending a record): a quote opens
//! a quoted field only as the first byte of a field, and inside one only a quote not followed
//! by another closes it. When a quoted field grows past the bound, or is still open at the end
//! of the file, the read fails with a [`Runaway`] inside the `io::Error`; the reader turns that
//! into one bad row and seeks on to the next line.
//!
//! It must stay cheap on the common path: it only looks for quote bytes (`memchr`), and reads
//! are handed over as they come. It must not hand over bytes past the point where it fails, so
//! that the parser returns every complete record before the bad one.

use std::io::{self, Read, Seek, SeekFrom};

/// The default bound on one field, in bytes (64 KiB).
pub const DEFAULT_MAX_FIELD_BYTES: u64 = 64 * 1024;

/// Why the guard stopped reading: a quoted field without a usable end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Runaway {
    /// The field grew past the bound.
    #[error("a quoted field opened at byte {open} runs past {max} bytes")]
    TooLong {
        /// Offset of the opening quote.
        open: u64,
        /// The bound.
        max: u64,
    },
    /// The file ended inside the field.
    #[error("a quoted field opened at byte {open} is still open at the end of the file")]
    OpenAtEnd {
        /// Offset of the opening quote.
        open: u64,
    },
}

impl Runaway {
    /// Offset of the quote that opened the field.
    pub(crate) fn open(self) -> u64 {
        match self {
            Runaway::TooLong { open, .. } | Runaway::OpenAtEnd { open } => open,
        }
    }

    /// The runaway inside an error from the `csv` crate, if that is what stopped it.
    pub(crate) fn of(error: &csv::Error) -> Option<Runaway> {
        match error.kind() {
            csv::ErrorKind::Io(e) => e.get_ref()?.downcast_ref::<Runaway>().copied(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Outside quotes.
    Unquoted,
    /// Inside a quoted field whose quote is at `open`.
    Quoted { open: u64 },
    /// Inside a quoted field whose quote is at `open`, just after a quote at `at`: the next
    /// byte decides whether it was an escaped quote (`""`) or the end of the field.
    QuoteSeen { open: u64, at: u64 },
}

/// Reads `R`, failing once a quoted field passes `max` bytes or the input ends inside one.
///
/// Seeking resets the state to the start of a record: seek only to row boundaries.
#[derive(Debug)]
pub(crate) struct Guard<R> {
    inner: R,
    /// Offset of the next byte `inner` returns.
    offset: u64,
    state: State,
    /// Whether the byte before `offset` ended a field or a record (or there is none).
    at_field_start: bool,
    max: u64,
    /// The failure to report on the next read, after the bytes before it were handed over.
    pending: Option<Runaway>,
}

impl<R> Guard<R> {
    pub(crate) fn new(inner: R, max: u64) -> Guard<R> {
        Guard {
            inner,
            offset: 0,
            state: State::Unquoted,
            at_field_start: true,
            max,
            pending: None,
        }
    }

    pub(crate) fn set_max(&mut self, max: u64) {
        self.max = max;
    }

    pub(crate) fn max(&self) -> u64 {
        self.max
    }

    /// Follows the quote states over `chunk`, which starts at `self.offset`. Returns how many
    /// of its bytes may be handed over: all of them, unless a quoted field passes the bound.
    ///
    /// Only quote bytes change the state, so it visits those alone (one `memchr` pass): a
    /// quote outside quotes opens a field when the byte before it ended a field or a record;
    /// inside, a quote is an escape when the next byte is a quote too, else the field's end.
    fn scan(&mut self, chunk: &[u8]) -> usize {
        let base = self.offset;
        let field_start = |at: usize, at_field_start: bool| match at.checked_sub(1) {
            Some(before) => matches!(chunk[before], b',' | b'\r' | b'\n'),
            None => at_field_start,
        };
        for at in memchr::memchr_iter(b'"', chunk) {
            let pos = base + at as u64;
            self.state = match self.state {
                State::Unquoted if field_start(at, self.at_field_start) => {
                    State::Quoted { open: pos }
                }
                State::Unquoted => State::Unquoted,
                State::Quoted { open } => {
                    let limit = open + 1 + self.max;
                    if pos > limit {
                        return self.runaway(open, limit, base, chunk.len());
                    }
                    State::QuoteSeen { open, at: pos }
                }
                // `""` inside quotes: a quote, and the field goes on.
                State::QuoteSeen { open, at: seen } if pos == seen + 1 => State::Quoted { open },
                // The field ended at the quote seen; this one is outside quotes.
                State::QuoteSeen { .. } if field_start(at, false) => State::Quoted { open: pos },
                State::QuoteSeen { .. } => State::Unquoted,
            };
        }
        let end = base + chunk.len() as u64;
        match self.state {
            State::Quoted { open } if end > open + 1 + self.max => {
                return self.runaway(open, open + 1 + self.max, base, chunk.len());
            }
            // The quote seen is not the chunk's last byte, and no quote follows it: it closed.
            State::QuoteSeen { at, .. } if at + 1 < end => self.state = State::Unquoted,
            _ => {}
        }
        if let Some(&last) = chunk.last() {
            self.at_field_start = matches!(last, b',' | b'\r' | b'\n');
        }
        chunk.len()
    }

    /// Stops at `limit`, the first byte past the bound of the field opened at `open`: the
    /// bytes before it are handed over, the next read fails.
    fn runaway(&mut self, open: u64, limit: u64, base: u64, len: usize) -> usize {
        self.pending = Some(Runaway::TooLong {
            open,
            max: self.max,
        });
        usize::try_from(limit.saturating_sub(base)).unwrap_or(len)
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(runaway) = self.pending {
            return Err(io::Error::other(runaway));
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            if let State::Quoted { open } = self.state {
                let runaway = Runaway::OpenAtEnd { open };
                self.pending = Some(runaway);
                return Err(io::Error::other(runaway));
            }
            return Ok(0);
        }
        let keep = self.scan(&buf[..n]);
        self.offset += keep as u64;
        if keep == 0
            && let Some(runaway) = self.pending
        {
            return Err(io::Error::other(runaway));
        }
        Ok(keep)
    }
}

impl<R: Seek> Seek for Guard<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.offset = at;
        self.state = State::Unquoted;
        self.at_field_start = true;
        self.pending = None;
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads all of `text` through a guard in chunks of `chunk` bytes: what was handed over
    /// and how it ended.
    fn read(text: &str, max: u64, chunk: usize) -> (String, Option<Runaway>) {
        let mut g = Guard::new(io::Cursor::new(text.as_bytes().to_vec()), max);
        let mut out = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            match g.read(&mut buf) {
                Ok(0) => return (String::from_utf8(out).unwrap_or_default(), None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => {
                    let r = e
                        .get_ref()
                        .and_then(|e| e.downcast_ref::<Runaway>())
                        .copied();
                    return (String::from_utf8(out).unwrap_or_default(), r);
                }
            }
        }
    }

    #[test]
    fn balanced_quotes_pass_whatever_the_chunk_size() {
        let text = "id,note\n1,\"a \"\"b\"\" c\"\n2,\"two\nlines\"\n3,x\"y\n4,\"\"\n5,\"q\"x\"\n";
        for chunk in 1..=text.len() {
            assert_eq!(read(text, 64, chunk), (text.to_owned(), None), "{chunk}");
        }
    }

    #[test]
    fn a_quote_open_at_the_end_fails_naming_its_offset() {
        let text = "id,name\n1,\"Ann,true\n2,b\n";
        for chunk in 1..=text.len() {
            let (got, r) = read(text, 64, chunk);
            assert_eq!(got, text, "every byte is handed over first");
            assert_eq!(r, Some(Runaway::OpenAtEnd { open: 10 }), "{chunk}");
        }
        // A quote inside an unquoted field is text, as in csv-core.
        assert_eq!(read("a,b\"c\n", 64, 3).1, None);
    }

    #[test]
    fn a_field_past_the_bound_stops_the_read_right_after_the_bound() {
        let text = format!("id,name\n1,\"{}\n", "x".repeat(100));
        for chunk in [1, 7, 64, 4096] {
            let (got, r) = read(&text, 10, chunk);
            assert_eq!(r, Some(Runaway::TooLong { open: 10, max: 10 }), "{chunk}");
            assert_eq!(got.len(), 10 + 1 + 10, "up to the bound, not past it");
        }
        let exactly = format!("1,\"{}\"\n", "x".repeat(10));
        assert_eq!(
            read(&exactly, 10, 3).1,
            None,
            "a field of exactly max bytes"
        );
        // An escaped quote straddling the bound, at every chunk boundary.
        let straddle = format!("1,\"{}\"\"{}\n", "x".repeat(10), "y".repeat(40));
        for chunk in 1..=straddle.len() {
            let (got, r) = read(&straddle, 10, chunk);
            assert_eq!(r, Some(Runaway::TooLong { open: 2, max: 10 }), "{chunk}");
            assert!(got.len() <= 15, "{chunk}: {}", got.len());
        }
    }
}
