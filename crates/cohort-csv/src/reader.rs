//! Streaming records out of one CSV file.
//!
//! Rows are read one at a time into a reused buffer; a file is never loaded whole. A row that
//! cannot be read becomes a [`BadRow`] naming file, line, column and reason, and reading goes
//! on: one typo in row 40,000 must not cost the other 39,999.
//!
//! That holds for a misplaced quote too, which would otherwise make one field of every row
//! after it. The bytes pass through a guard that bounds quoted fields (see `guard`), and a row
//! that spans lines is checked (the rare, slow path): a canonical field never holds a line
//! break, and no field holds lines that read as whole rows. A row failing either is reported
//! at the line its quote opened on, and reading resumes at the line after the row's first, so
//! the rows it took in are read as rows.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cohort_core::record::{AttributeValue, OrderFacts};
use cohort_core::{Customer, CustomerId, Event, EventKind, Money, Order, Timestamp};

use crate::coerce;
use crate::guard::{DEFAULT_MAX_FIELD_BYTES, Guard, Runaway};
use crate::mapping::{Field, Kind, Overrides, ResolveError, Resolved, customer, event, order};

/// Why a file cannot be read at all.
///
/// Each variant's message already ends with what went wrong underneath (`customers.csv: no
/// column for required field …`), so the inner error is not also exposed as
/// [`std::error::Error::source`]: a printer that walks the chain would say it twice.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// The file cannot be opened or read.
    #[error("{path}: {error}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The header line does not fit the kind of record.
    #[error("{path}: {error}", path = path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is missing.
        error: ResolveError,
    },
    /// The file has no header line at all: it is empty.
    #[error("{path}: the file is empty; expected a header line naming the columns", path = path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The CSV itself is broken beyond one row.
    #[error("{path}: {error}", path = path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        error: csv::Error,
    },
}

/// A row that was reported and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// The file.
    pub path: PathBuf,
    /// 1-based line where the row starts.
    pub line: u64,
    /// 1-based column, when one field is at fault.
    pub column: Option<usize>,
    /// The header of that column.
    pub header: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for BadRow {
    /// `orders.csv:12:4: total_price: `abc` is not an amount …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)?;
        if let Some(col) = self.column {
            write!(f, ":{col}")?;
        }
        if let Some(header) = &self.header {
            write!(f, ": {header}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What reading a row can go wrong with.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// This row is bad; the next can be read.
    #[error("{0}")]
    Bad(BadRow),
    /// The file cannot be read further.
    #[error(transparent)]
    Fatal(CsvError),
}

/// A place in a file to resume reading from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Byte offset of the next row.
    pub byte: u64,
    /// Its 1-based line.
    pub line: u64,
}

/// Where a row found again in the file starts, and where reading goes on after it.
#[derive(Debug, Clone, Copy)]
struct Located {
    /// Its first byte (past blank lines).
    start: Position,
    /// The start of the line after its first line.
    resume: Position,
    /// The line of the quote asked about.
    quote_line: u64,
}

/// One order's aggregate facts, borrowed from the reader's buffer (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLine<'a> {
    /// The line the row starts on.
    pub line: u64,
    /// The order's id, or empty.
    pub id: &'a str,
    /// The buyer.
    pub customer_id: &'a str,
    /// The currency column, when present and filled.
    pub currency: Option<&'a str>,
    /// What the order counts for; `None` when cancelled.
    pub facts: Option<OrderFacts>,
}

/// One order, borrowed from the reader's buffer: exactly what [`CsvReader::next_order`] builds
/// an [`Order`] from (same checks, same values), for writers that never need the owned record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow<'a> {
    /// The line the row starts on.
    pub line: u64,
    /// The order's id (`line-N` when the column is empty).
    pub id: std::borrow::Cow<'a, str>,
    /// Whether the file gave the id, rather than it being made from the line.
    pub has_id: bool,
    /// The buyer.
    pub customer_id: &'a str,
    /// When the order was placed.
    pub created_at: Timestamp,
    /// Amount charged; negative for a refund (a row whose `kind` is `refund`).
    pub total: Money,
    /// The currency column, when present and filled.
    pub currency: Option<&'a str>,
    /// Number of items (0 when not given).
    pub item_count: u32,
    /// When the order was cancelled.
    pub cancelled_at: Option<Timestamp>,
    /// Amount refunded.
    pub refunded: Money,
}

impl OrderRow<'_> {
    /// The owned record.
    pub fn to_order(&self) -> Order {
        Order {
            id: self.id.clone().into_owned(),
            customer_id: CustomerId::new(self.customer_id),
            created_at: Some(self.created_at),
            total: self.total,
            currency: self.currency.map(str::to_owned),
            item_count: self.item_count,
            line_items: Vec::new(),
            cancelled_at: self.cancelled_at,
            refunded: self.refunded,
        }
    }
}

/// One customer, borrowed from the reader's buffer: exactly what [`CsvReader::next_customer`]
/// builds a [`Customer`] from (same checks, same values).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow<'a> {
    /// The line the row starts on.
    pub line: u64,
    /// Identifier.
    pub id: &'a str,
    /// Email address.
    pub email: Option<&'a str>,
    /// Phone number.
    pub phone: Option<&'a str>,
    /// Given name.
    pub first_name: Option<&'a str>,
    /// Family name.
    pub last_name: Option<&'a str>,
    /// Country.
    pub country: Option<&'a str>,
    /// Region.
    pub region: Option<&'a str>,
    /// City.
    pub city: Option<&'a str>,
    /// Postal code.
    pub postal_code: Option<&'a str>,
    /// Date of birth.
    pub birth_date: Option<chrono::NaiveDate>,
    /// Year of birth.
    pub birth_year: Option<i32>,
    /// Gender.
    pub gender: Option<&'a str>,
    /// The raw tags field; [`CustomerRow::tags`] splits it.
    pub tags_field: &'a str,
    /// Consent to marketing email.
    pub accepts_email_marketing: bool,
    /// Consent to marketing SMS.
    pub accepts_sms_marketing: bool,
    /// When the customer was created.
    pub created_at: Option<Timestamp>,
    /// When the customer was last changed.
    pub updated_at: Option<Timestamp>,
    /// Custom attributes (empty, so unallocated, when the file maps none).
    pub attributes: std::collections::BTreeMap<String, AttributeValue>,
}

impl<'a> CustomerRow<'a> {
    /// The tags, as [`coerce::tags`] splits them.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> + Clone + use<'a> {
        coerce::tag_iter(self.tags_field)
    }

    /// The owned record.
    pub fn into_customer(self) -> Customer {
        let own = |s: Option<&str>| s.map(str::to_owned);
        Customer {
            id: CustomerId::new(self.id),
            email: own(self.email),
            phone: own(self.phone),
            first_name: own(self.first_name),
            last_name: own(self.last_name),
            country: own(self.country),
            region: own(self.region),
            city: own(self.city),
            postal_code: own(self.postal_code),
            birth_date: self.birth_date,
            birth_year: self.birth_year,
            gender: own(self.gender),
            tags: self.tags().map(str::to_owned).collect(),
            accepts_email_marketing: self.accepts_email_marketing,
            accepts_sms_marketing: self.accepts_sms_marketing,
            created_at: self.created_at,
            updated_at: self.updated_at,
            attributes: self.attributes,
        }
    }
}

/// Reads one kind of record from one CSV file.
#[derive(Debug)]
pub struct CsvReader {
    path: PathBuf,
    inner: csv::Reader<Guard<File>>,
    resolved: Resolved,
    record: csv::StringRecord,
    line: u64,
    /// Where the row just read was read from (after the row before it).
    row_from: Option<Position>,
    /// Rows starting at or after this byte belong to the next chunk.
    end: u64,
    /// Where reading stopped for good: the first row not read (past `end`), or the end.
    stopped_at: Option<Position>,
    /// Whether each column holds a canonical field, which may not span lines.
    mapped: Vec<bool>,
}

impl CsvReader {
    /// Opens `path` and resolves its header line as `kind`.
    pub fn open(path: &Path, kind: Kind, overrides: &Overrides) -> Result<CsvReader, CsvError> {
        let file = File::open(path).map_err(|error| CsvError::Io {
            path: path.to_owned(),
            error,
        })?;
        let mut inner = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(Guard::new(file, DEFAULT_MAX_FIELD_BYTES));
        let headers: Vec<String> = inner
            .headers()
            .map_err(|error| CsvError::Csv {
                path: path.to_owned(),
                error,
            })?
            .iter()
            .map(str::to_owned)
            .collect();
        if headers.is_empty() {
            // Zero bytes, or blank lines only: "no column `id`; columns found: ." would send
            // the reader looking for a typo that is not there.
            return Err(CsvError::Empty {
                path: path.to_owned(),
            });
        }
        let resolved =
            Resolved::new(kind, &headers, overrides).map_err(|error| CsvError::Header {
                path: path.to_owned(),
                error,
            })?;
        let mut mapped = vec![false; headers.len()];
        for col in resolved.fields.iter().flatten() {
            mapped[*col] = true;
        }
        Ok(CsvReader {
            path: path.to_owned(),
            inner,
            resolved,
            record: csv::StringRecord::new(),
            line: 1,
            row_from: None,
            end: u64::MAX,
            stopped_at: None,
            mapped,
        })
    }

    /// Opens `path` and continues after `position` (from [`CsvReader::position`]).
    pub fn open_at(
        path: &Path,
        kind: Kind,
        overrides: &Overrides,
        position: Position,
    ) -> Result<CsvReader, CsvError> {
        let mut reader = CsvReader::open(path, kind, overrides)?;
        if position.byte > 0 {
            reader.seek(position).map_err(|error| CsvError::Csv {
                path: path.to_owned(),
                error,
            })?;
        }
        Ok(reader)
    }

    /// Opens chunk `index` of `count` roughly equal chunks of `path`, for reading a large file
    /// on several threads. Chunks split at row boundaries (a newline outside quotes, found
    /// by scanning the quote parity of the bytes before the split), so together they read
    /// every row exactly once, with true line numbers.
    ///
    /// The split is a guess that a quote left open can mislead (the reader skips such a
    /// row and resumes at the next line, which parity cannot know): [`read_in_chunks`]
    /// checks each chunk's start against where the previous one stopped
    /// ([`CsvReader::stopped_at`]) and reads it again from there when they differ.
    pub fn open_chunk(
        path: &Path,
        kind: Kind,
        overrides: &Overrides,
        index: u64,
        count: u64,
    ) -> Result<CsvReader, CsvError> {
        let mut reader = CsvReader::open(path, kind, overrides)?;
        let io = |error| CsvError::Io {
            path: path.to_owned(),
            error,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        let count = count.max(1);
        if index + 1 < count {
            reader.end = len * (index + 1) / count;
        }
        if index > 0 {
            let start = row_boundary_at_or_after(path, len * index / count).map_err(io)?;
            reader.seek(start).map_err(|error| CsvError::Csv {
                path: path.to_owned(),
                error,
            })?;
        }
        Ok(reader)
    }

    /// Stops before the first row that starts at or after byte `end` (for re-reading a chunk
    /// of [`CsvReader::open_chunk`] from where the previous one stopped).
    pub fn until(mut self, end: u64) -> CsvReader {
        self.end = end;
        self
    }

    /// The bound on one field, in bytes ([`DEFAULT_MAX_FIELD_BYTES`] unless set): a row with a
    /// longer field is bad, and a quoted field still open past it is taken to be a quote left
    /// open by mistake.
    ///
    /// Set it before reading any row: it re-reads from the current row, whose bytes the
    /// parser may already hold, checked against the old bound.
    pub fn max_field_bytes(mut self, max: u64) -> Result<CsvReader, CsvError> {
        self.inner.get_mut().set_max(max.max(1));
        let here = self.position();
        self.seek(here).map_err(|error| CsvError::Csv {
            path: self.path.clone(),
            error,
        })?;
        Ok(self)
    }

    fn seek(&mut self, to: Position) -> Result<(), csv::Error> {
        let mut pos = csv::Position::new();
        pos.set_byte(to.byte).set_line(to.line);
        // `seek_raw`, not `seek`: after a failed read, `seek` to the offset the parser
        // happens to be at would not clear its end-of-input state.
        self.inner.seek_raw(SeekFrom::Start(to.byte), pos)
    }

    /// Where the next row starts.
    pub fn position(&self) -> Position {
        let p = self.inner.position();
        Position {
            byte: p.byte(),
            line: p.line(),
        }
    }

    /// Where reading stopped, once a `next_*` call returned `None`: the start of the first
    /// row not read (the next chunk's first row), or the end of the file.
    pub fn stopped_at(&self) -> Option<Position> {
        self.stopped_at
    }

    /// Where the last row read (good or bad) was read from: reading again from there reads
    /// it again.
    pub fn last_row_from(&self) -> Option<Position> {
        self.row_from
    }

    /// The file's columns as resolved.
    pub fn resolved(&self) -> &Resolved {
        &self.resolved
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the row just read (or failed) started reading from: after the previous row.
    fn record_from(&self) -> Position {
        self.record.position().map_or_else(
            || self.position(),
            |p| Position {
                byte: p.byte(),
                line: p.line(),
            },
        )
    }

    /// Reads the next row into the buffer; `None` at the end.
    fn advance(&mut self) -> Option<Result<(), RowError>> {
        match self.inner.read_record(&mut self.record) {
            Ok(true) => {
                let from = self.record_from();
                if from.byte >= self.end {
                    self.stopped_at = Some(from);
                    return None;
                }
                self.line = from.line;
                self.row_from = Some(from);
                // One comparison on the common path; rows over several lines, or with a long
                // field, are rare and get the expensive checks.
                let max = self.inner.get_ref().max();
                if (self.inner.position().line() > from.line + 1
                    || self.record.as_slice().len() as u64 > max)
                    && let Err(e) = self.check_long_row(from, max)
                {
                    return Some(Err(e));
                }
                Some(Ok(()))
            }
            Ok(false) => {
                self.stopped_at = Some(self.position());
                None
            }
            Err(e) => {
                if let Some(runaway) = Runaway::of(&e) {
                    let from = self.record_from();
                    if from.byte >= self.end {
                        self.stopped_at = Some(from);
                        return None;
                    }
                    return Some(Err(self.skip_runaway(from, runaway)));
                }
                let line = e.position().map_or(self.line + 1, csv::Position::line);
                self.line = line;
                match e.kind() {
                    csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. } => {
                        Some(Err(self.bad(None, format!("unreadable row: {e}"))))
                    }
                    _ => Some(Err(RowError::Fatal(CsvError::Csv {
                        path: self.path.clone(),
                        error: e,
                    }))),
                }
            }
        }
    }

    /// Reports the row whose quoted field ran away, and moves on to the line after the one
    /// that row starts on: the rows the field swallowed are read again.
    fn skip_runaway(&mut self, from: Position, runaway: Runaway) -> RowError {
        let found = match self.locate(from, runaway.open()) {
            Ok(found) => found,
            Err(e) => return self.fatal_io(e),
        };
        self.line = found.start.line;
        self.row_from = Some(from);
        let (quote, resume) = (found.quote_line, found.resume.line);
        let reason = match runaway {
            Runaway::TooLong { max, .. } => format!(
                "the quote opened at line {quote} is not closed within {max} bytes \
                 (max_field_bytes); row skipped, reading resumes at line {resume}"
            ),
            Runaway::OpenAtEnd { .. } => format!(
                "the quote opened at line {quote} is never closed; row skipped, reading \
                 resumes at line {resume}"
            ),
        };
        self.skip_to(found.resume, None, reason)
    }

    /// Checks a row that spans lines or has a long field. A canonical field (id, email, name,
    /// amount…) never spans lines, and a field of another column may, but not over lines that
    /// read as whole rows of this file: either way a quote closed in the wrong place has
    /// taken in the rows after it, which are read again from the line after the row's first.
    fn check_long_row(&mut self, from: Position, max: u64) -> Result<(), RowError> {
        let broken = |f: &str| f.contains(['\n', '\r']);
        let mapped = self
            .record
            .iter()
            .enumerate()
            .find(|(col, f)| self.mapped.get(*col) == Some(&true) && broken(f))
            .map(|(col, _)| col);
        let spans = mapped.is_some() || self.record.iter().any(broken);
        if !spans {
            if let Some((col, f)) = self
                .record
                .iter()
                .enumerate()
                .find(|(_, f)| f.len() as u64 > max)
            {
                let reason = format!("{} bytes, over max_field_bytes ({max})", f.len());
                return Err(self.bad(Some(col), reason));
            }
            return Ok(());
        }
        let end = self.position();
        let found = self.locate(from, 0).map_err(|e| self.fatal_io(e))?;
        self.line = found.start.line;
        // The line a field starts on: the row's first, plus the line breaks before it.
        let field_line = |record: &csv::StringRecord, col: usize| {
            found.start.line
                + record
                    .iter()
                    .take(col)
                    .map(|f| f.bytes().filter(|&b| b == b'\n').count() as u64)
                    .sum::<u64>()
        };
        let resume = found.resume.line;
        if let Some(col) = mapped {
            let quote = field_line(&self.record, col);
            let reason = format!(
                "line break inside the field: the quote opened at line {quote} is closed in the \
                 wrong place or not at all; row skipped, reading resumes at line {resume}"
            );
            return Err(self.skip_to(found.resume, Some(col), reason));
        }
        let whole = self
            .whole_row_inside(found.start.byte, end.byte)
            .map_err(|e| self.fatal_io(e))?;
        if let Some(offset) = whole {
            let line = found.start.line + offset;
            let col = self.record.iter().position(broken);
            let quote = col.map_or(found.start.line, |c| field_line(&self.record, c));
            let reason = format!(
                "the quoted field opened at line {quote} takes in line {line}, which reads as a \
                 whole row; row skipped, reading resumes at line {resume}"
            );
            return Err(self.skip_to(found.resume, col, reason));
        }
        if let Some((col, f)) = self
            .record
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() as u64 > max)
        {
            let reason = format!("{} bytes, over max_field_bytes ({max})", f.len());
            return Err(self.bad(Some(col), reason));
        }
        Ok(())
    }

    /// The first line after the first of the row in bytes `start..end` that reads as the
    /// start of a whole row of this file (as many fields as the header, canonical fields on
    /// one line each, read by the same parser), as an offset from the row's first line. Those
    /// are the rows a misplaced quote takes in; a note written over several lines is not.
    fn whole_row_inside(&self, start: u64, end: u64) -> std::io::Result<Option<u64>> {
        let mut raw = Vec::new();
        self.reread(start)?
            .take(end.saturating_sub(start))
            .read_to_end(&mut raw)?;
        let width = self.resolved.headers.len();
        let max = self.inner.get_ref().max();
        let mut record = csv::ByteRecord::new();
        for (offset, newline) in memchr::memchr_iter(b'\n', &raw).enumerate() {
            let next = newline + 1;
            if next >= raw.len() || matches!(raw[next], b'\n' | b'\r') {
                continue;
            }
            let mut parser = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(Guard::new(self.reread(start + next as u64)?, max));
            let whole = matches!(parser.read_byte_record(&mut record), Ok(true))
                && record.len() == width
                && !record.iter().enumerate().any(|(col, f)| {
                    self.mapped.get(col) == Some(&true)
                        && f.iter().any(|b| matches!(b, b'\n' | b'\r'))
                });
            if whole {
                return Ok(Some(offset as u64 + 1));
            }
        }
        Ok(None)
    }

    /// Where the row read from `from` starts (past blank lines), where the line after its
    /// first starts, and the line of byte `quote` (when it is in the row).
    fn locate(&self, from: Position, quote: u64) -> std::io::Result<Located> {
        let mut input = std::io::BufReader::with_capacity(64 * 1024, self.reread(from.byte)?);
        let (mut at, mut line) = (from.byte, from.line);
        let mut start: Option<Position> = None;
        let mut resume: Option<Position> = None;
        let mut quote_line = from.line;
        loop {
            let buf = input.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let n = buf.len();
            for &b in buf {
                if at == quote {
                    quote_line = line;
                }
                if start.is_none() && b != b'\n' && b != b'\r' {
                    start = Some(Position { byte: at, line });
                }
                at += 1;
                if b == b'\n' {
                    line += 1;
                    if start.is_some() && resume.is_none() {
                        resume = Some(Position { byte: at, line });
                    }
                }
                if resume.is_some() && at > quote {
                    break;
                }
            }
            input.consume(n);
            if resume.is_some() && at > quote {
                break;
            }
        }
        let start = start.unwrap_or(Position { byte: at, line });
        Ok(Located {
            start,
            resume: resume.unwrap_or(Position { byte: at, line }),
            quote_line: quote_line.max(start.line),
        })
    }

    /// The file again, from byte `at`: a handle of its own, so the parser's stays where it is.
    fn reread(&self, at: u64) -> std::io::Result<File> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(at))?;
        Ok(file)
    }

    /// A report on the row being skipped (naming `column`, when given), after moving the
    /// parser to `resume`.
    fn skip_to(&mut self, resume: Position, column: Option<usize>, reason: String) -> RowError {
        if let Err(error) = self.seek(resume) {
            return RowError::Fatal(CsvError::Csv {
                path: self.path.clone(),
                error,
            });
        }
        self.bad(column, reason)
    }

    fn fatal_io(&self, error: std::io::Error) -> RowError {
        RowError::Fatal(CsvError::Io {
            path: self.path.clone(),
            error,
        })
    }

    /// The line where the row just read starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// A report on the row that started at `line`, blaming `field`: for problems found
    /// after reading moved on (an order of an unknown customer, found with its batch).
    pub fn bad_row_at(&self, line: u64, field: Option<&str>, reason: impl Into<String>) -> BadRow {
        BadRow {
            line,
            ..self.bad_row(field, reason)
        }
    }

    /// A report on the row just read, blaming `field` (when the file has it), for problems
    /// found after reading (an order of an unknown customer).
    pub fn bad_row(&self, field: Option<&str>, reason: impl Into<String>) -> BadRow {
        let column = field.and_then(|f| self.resolved.column(f));
        match self.bad(column, reason.into()) {
            RowError::Bad(b) => b,
            RowError::Fatal(_) => unreachable!("bad() only builds Bad"),
        }
    }

    fn bad(&self, column: Option<usize>, reason: String) -> RowError {
        RowError::Bad(BadRow {
            path: self.path.clone(),
            line: self.line,
            column: column.map(|c| c + 1),
            header: column.and_then(|c| self.resolved.headers.get(c).cloned()),
            reason,
        })
    }

    /// The raw text of `field` in the current row ("" when the file has no such column).
    fn raw(&self, field: Field) -> (Option<usize>, &str) {
        let col = self.resolved.fields[field.index];
        (col, col.and_then(|c| self.record.get(c)).unwrap_or(""))
    }

    fn get<T>(
        &self,
        field: Field,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, RowError> {
        let (col, text) = self.raw(field);
        parse(text).map_err(|reason| self.bad(col, reason))
    }

    fn check_width(&self) -> Result<(), RowError> {
        let want = self.resolved.headers.len();
        if self.record.len() != want {
            return Err(self.bad(
                None,
                format!("expected {want} fields, found {}", self.record.len()),
            ));
        }
        Ok(())
    }

    fn required_text(&self, field: Field) -> Result<&str, RowError> {
        let (col, text) = self.raw(field);
        let text = text.trim_ascii();
        if text.is_empty() {
            return Err(self.bad(col, format!("missing {}", field.name)));
        }
        Ok(text)
    }

    /// The next customer.
    pub fn next_customer(&mut self) -> Option<Result<Customer, RowError>> {
        self.next_customer_row()
            .map(|row| row.map(CustomerRow::into_customer))
    }

    /// The next customer, borrowed from the reader's buffer (see [`CustomerRow`]).
    pub fn next_customer_row(&mut self) -> Option<Result<CustomerRow<'_>, RowError>> {
        if let Err(e) = self.advance()? {
            return Some(Err(e));
        }
        Some(self.customer_row())
    }

    fn customer_row(&self) -> Result<CustomerRow<'_>, RowError> {
        self.check_width()?;
        let text = |f: Field| coerce::text_ref(self.raw(f).1);
        let mut c = CustomerRow {
            line: self.line,
            id: self.required_text(customer::ID)?,
            email: text(customer::EMAIL),
            phone: text(customer::PHONE),
            first_name: text(customer::FIRST_NAME),
            last_name: text(customer::LAST_NAME),
            country: text(customer::COUNTRY),
            region: text(customer::REGION),
            city: text(customer::CITY),
            postal_code: text(customer::POSTAL_CODE),
            birth_date: self.get(customer::BIRTH_DATE, coerce::date)?,
            birth_year: self
                .get(customer::BIRTH_YEAR, coerce::integer)?
                .map(|y| {
                    i32::try_from(y).map_err(|_| {
                        self.bad(
                            self.raw(customer::BIRTH_YEAR).0,
                            format!("`{y}` is not a year"),
                        )
                    })
                })
                .transpose()?,
            gender: text(customer::GENDER),
            tags_field: self.raw(customer::TAGS).1,
            accepts_email_marketing: self
                .get(customer::ACCEPTS_EMAIL_MARKETING, coerce::boolean)?
                .unwrap_or(false),
            accepts_sms_marketing: self
                .get(customer::ACCEPTS_SMS_MARKETING, coerce::boolean)?
                .unwrap_or(false),
            created_at: self.get(customer::CREATED_AT, coerce::timestamp)?,
            updated_at: self.get(customer::UPDATED_AT, coerce::timestamp)?,
            attributes: Default::default(),
        };
        for (name, col) in &self.resolved.attributes {
            let raw = self.record.get(*col).unwrap_or("").trim();
            if raw.is_empty() {
                continue;
            }
            let value = match coerce::boolean(raw) {
                Ok(Some(b)) if !raw.chars().all(|c| c.is_ascii_digit()) => AttributeValue::Bool(b),
                _ => match raw.parse::<f64>() {
                    Ok(n) if n.is_finite() => AttributeValue::Number(n),
                    _ => AttributeValue::Text(raw.to_owned()),
                },
            };
            c.attributes.insert(name.clone(), value);
        }
        Ok(c)
    }

    /// The next order, in full.
    pub fn next_order(&mut self) -> Option<Result<Order, RowError>> {
        self.next_order_row().map(|row| row.map(|r| r.to_order()))
    }

    /// The next order, borrowed from the reader's buffer (see [`OrderRow`]).
    pub fn next_order_row(&mut self) -> Option<Result<OrderRow<'_>, RowError>> {
        if let Err(e) = self.advance()? {
            return Some(Err(e));
        }
        Some(self.order_row())
    }

    fn order_row(&self) -> Result<OrderRow<'_>, RowError> {
        self.check_width()?;
        let id = self.raw(order::ID).1.trim_ascii();
        Ok(OrderRow {
            line: self.line,
            id: if id.is_empty() {
                format!("line-{}", self.line).into()
            } else {
                id.into()
            },
            has_id: !id.is_empty(),
            customer_id: self.required_text(order::CUSTOMER_ID)?,
            created_at: self.required_timestamp()?,
            total: self.signed_total()?,
            currency: coerce::text_ref(self.raw(order::CURRENCY).1),
            item_count: self.item_count()?,
            cancelled_at: self.get(order::CANCELLED_AT, coerce::timestamp)?,
            refunded: self.refunded()?,
        })
    }

    /// The total, negative for a refund whatever sign it is written with. A negative total
    /// on any other row is a mistake (a refund not marked, a sign slipped in), never a
    /// silent refund.
    fn signed_total(&self) -> Result<Money, RowError> {
        let total = self.required_money()?;
        let (col, text) = self.raw(order::KIND);
        let kind = text.trim_ascii();
        let refund = if kind.is_empty()
            || kind.eq_ignore_ascii_case("order")
            || kind.eq_ignore_ascii_case("sale")
        {
            false
        } else if kind.eq_ignore_ascii_case("refund") {
            true
        } else {
            return Err(self.bad(
                col,
                format!("`{kind}` is not an order kind (expected order, sale or refund)"),
            ));
        };
        let total_col = self.raw(order::TOTAL).0;
        if refund {
            return total
                .raw()
                .checked_abs()
                .map(|units| Money::from_raw(-units))
                .ok_or_else(|| self.bad(total_col, "the refund is too large".to_owned()));
        }
        if total < Money::ZERO {
            let hint = if col.is_some() {
                "write refund in its kind column"
            } else {
                "add a kind column saying refund"
            };
            return Err(self.bad(
                total_col,
                format!("`{total}` is negative; if the row is a refund, {hint}"),
            ));
        }
        Ok(total)
    }

    /// The amount refunded on the order (0 when not given). A refund row gives its amount as
    /// its total, so it may not also have one here.
    fn refunded(&self) -> Result<Money, RowError> {
        let refunded = self
            .get(order::REFUNDED, coerce::money)?
            .unwrap_or(Money::ZERO);
        if refunded != Money::ZERO
            && self
                .raw(order::KIND)
                .1
                .trim_ascii()
                .eq_ignore_ascii_case("refund")
        {
            return Err(self.bad(
                self.raw(order::REFUNDED).0,
                "a refund row gives its amount as its total, not as refunded".to_owned(),
            ));
        }
        Ok(refunded)
    }

    fn required_timestamp(&self) -> Result<Timestamp, RowError> {
        let field = match self.resolved.kind {
            Kind::Events => event::OCCURRED_AT,
            _ => order::CREATED_AT,
        };
        self.get(field, coerce::timestamp)?
            .ok_or_else(|| self.bad(self.raw(field).0, format!("missing {}", field.name)))
    }

    fn required_money(&self) -> Result<Money, RowError> {
        self.get(order::TOTAL, coerce::money)?
            .ok_or_else(|| self.bad(self.raw(order::TOTAL).0, "missing total".to_owned()))
    }

    fn item_count(&self) -> Result<u32, RowError> {
        let (col, _) = self.raw(order::ITEM_COUNT);
        match self.get(order::ITEM_COUNT, coerce::integer)? {
            None => Ok(0),
            Some(n) => u32::try_from(n)
                .map_err(|_| self.bad(col, format!("`{n}` is not a count of items"))),
        }
    }

    /// The next order's facts only, without allocating: the loading fast path.
    pub fn next_order_line(&mut self) -> Option<Result<OrderLine<'_>, RowError>> {
        if let Err(e) = self.advance()? {
            return Some(Err(e));
        }
        Some(self.order_line())
    }

    fn order_line(&self) -> Result<OrderLine<'_>, RowError> {
        self.check_width()?;
        let customer_id = self.required_text(order::CUSTOMER_ID)?;
        let created_at = self.required_timestamp()?;
        let total = self.signed_total()?;
        let refunded = self.refunded()?;
        let cancelled = self.get(order::CANCELLED_AT, coerce::timestamp)?.is_some();
        // As `Order::facts` computes them, so both paths agree.
        let facts = (!cancelled).then(|| OrderFacts {
            created_at,
            net_total: total.checked_sub(refunded).unwrap_or(Money::ZERO),
            item_count: 0,
            refund: total < Money::ZERO,
        });
        let facts = match facts {
            Some(mut f) => {
                f.item_count = self.item_count()?;
                Some(f)
            }
            None => None,
        };
        let currency = Some(self.raw(order::CURRENCY).1.trim_ascii()).filter(|c| !c.is_empty());
        Ok(OrderLine {
            line: self.line,
            id: self.raw(order::ID).1.trim_ascii(),
            customer_id,
            currency,
            facts,
        })
    }

    /// The next event.
    pub fn next_event(&mut self) -> Option<Result<Event, RowError>> {
        if let Err(e) = self.advance()? {
            return Some(Err(e));
        }
        Some(self.event())
    }

    fn event(&self) -> Result<Event, RowError> {
        self.check_width()?;
        Ok(Event {
            id: coerce::text(self.raw(event::ID).1),
            customer_id: CustomerId::new(self.required_text(event::CUSTOMER_ID)?),
            kind: EventKind::parse(self.required_text(event::KIND)?),
            occurred_at: self.required_timestamp()?,
            properties: Default::default(),
        })
    }
}

/// One part of a file read by [`read_in_chunks`].
#[derive(Debug)]
pub struct Chunk<T> {
    /// What reading the part returned.
    pub value: T,
    /// Where the part's reading started.
    pub start: Position,
    /// Rows starting at or after this byte belong to the next part.
    pub end: u64,
}

/// Reads `path` in `count` parts, one thread each, with `read` (which must read its reader to
/// the end, to `None`), and returns the parts in file order.
///
/// Parts are split where quote parity says a row starts ([`CsvReader::open_chunk`]); that is a
/// guess, which a quote left open can defeat, since the reader then skips one row and goes on
/// at the next line. So each part's start is checked against where the previous part really
/// stopped, and a part that started elsewhere is read again from there (after the threads,
/// one at a time). The result is what one reader would have read, whatever the file holds;
/// on well-formed files nothing is read twice.
pub fn read_in_chunks<T, E>(
    path: &Path,
    kind: Kind,
    overrides: &Overrides,
    count: u64,
    read: impl Fn(&mut CsvReader) -> Result<T, E> + Sync,
) -> Result<Vec<Chunk<T>>, E>
where
    T: Send,
    E: From<CsvError> + Send,
{
    let count = count.max(1);
    let readers = (0..count)
        .map(|i| CsvReader::open_chunk(path, kind, overrides, i, count))
        .collect::<Result<Vec<_>, CsvError>>()?;
    let read = &read;
    type Part<T> = (Chunk<T>, Option<Position>);
    let parts: Vec<Result<Part<T>, E>> = std::thread::scope(|scope| {
        let handles: Vec<_> = readers
            .into_iter()
            .map(|mut reader| {
                scope.spawn(move || {
                    let (start, end) = (reader.position(), reader.end);
                    let value = read(&mut reader)?;
                    Ok((Chunk { value, start, end }, reader.stopped_at()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let io = |error| CsvError::Io {
        path: path.to_owned(),
        error,
    };
    let mut out = Vec::with_capacity(parts.len());
    let mut expected: Option<Position> = None;
    for part in parts {
        let (mut chunk, mut stopped) = part?;
        if let Some(from) = expected {
            let there = row_start(path, from).map_err(io)?.byte;
            if row_start(path, chunk.start).map_err(io)?.byte != there {
                let mut reader = CsvReader::open_at(path, kind, overrides, from)?.until(chunk.end);
                chunk.value = read(&mut reader)?;
                chunk.start = from;
                stopped = reader.stopped_at();
            }
        }
        expected = stopped;
        out.push(chunk);
    }
    Ok(out)
}

/// Where the row read from `at` really starts: past the blank lines a parser skips. Two
/// positions are the same place in the file when their row starts are.
pub fn row_start(path: &Path, at: Position) -> std::io::Result<Position> {
    let mut file = std::io::BufReader::new(File::open(path)?);
    file.seek(SeekFrom::Start(at.byte))?;
    let mut pos = at;
    loop {
        let buf = file.fill_buf()?;
        if buf.is_empty() {
            return Ok(pos);
        }
        let n = buf.len();
        for &b in buf {
            match b {
                b'\n' => pos.line += 1,
                b'\r' => {}
                _ => return Ok(pos),
            }
            pos.byte += 1;
        }
        file.consume(n);
    }
}

/// The first row start at or after byte `target`: just past the first newline at
/// `target - 1` or later that is outside quotes. Quote parity is counted from the file's start
/// (an escaped `""` counts twice, so it keeps parity).
fn row_boundary_at_or_after(path: &Path, target: u64) -> std::io::Result<Position> {
    use std::io::Read;
    let mut file = std::io::BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let (mut offset, mut quotes, mut newlines) = (0u64, 0u64, 0u64);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(Position {
                byte: offset,
                line: newlines + 1,
            });
        }
        for i in memchr::memchr2_iter(b'"', b'\n', &buf[..n]) {
            let at = offset + i as u64;
            if buf[i] == b'"' {
                quotes += 1;
                continue;
            }
            newlines += 1;
            if at + 1 >= target && quotes % 2 == 0 {
                return Ok(Position {
                    byte: at + 1,
                    line: newlines + 1,
                });
            }
        }
        offset += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_core::Customer;
    use std::io::Write;

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    fn read_all<T>(
        reader: &mut CsvReader,
        next: impl Fn(&mut CsvReader) -> Option<Result<T, RowError>>,
    ) -> (Vec<T>, Vec<BadRow>) {
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        while let Some(row) = next(reader) {
            match row {
                Ok(r) => good.push(r),
                Err(RowError::Bad(b)) => bad.push(b),
                Err(RowError::Fatal(e)) => panic!("fatal: {e}"),
            }
        }
        (good, bad)
    }

    #[test]
    fn customers_in_the_generator_layout() {
        let f = file(
            "id,email,country,city,birth_year,gender,tags,accepts_marketing,created_at\n\
             1,a@x.com,US,Chicago,1980,female,\"vip,b2b\",true,2020-01-02 03:04:05\n\
             2,b@y.com,GB,London,,,,false,2021-06-01 00:00:00\n",
        );
        let mut r = CsvReader::open(f.path(), Kind::Customers, &Overrides::new()).expect("open");
        let (good, bad) = read_all(&mut r, CsvReader::next_customer);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(good.len(), 2);
        assert_eq!(good[0].tags, vec!["vip", "b2b"]);
        assert!(good[0].accepts_email_marketing);
        assert_eq!(good[0].birth_year, Some(1980));
        assert_eq!(good[1].birth_year, None);
        assert_eq!(
            good[1].created_at,
            Some(Timestamp::parse("2021-06-01").expect("date"))
        );
    }

    #[test]
    fn bad_rows_name_file_line_and_column_and_the_rest_still_load() {
        let f = file(
            "id,customer_id,created_at,total_price,items\n\
             1,10,2024-01-01 00:00:00,12.50,1\n\
             2,10,2024-13-01 00:00:00,3.00,1\n\
             3,11,2024-01-02 00:00:00,abc,2\n\
             4,,2024-01-02 00:00:00,1.00,1\n\
             5,12,2024-01-03 00:00:00,9.99\n\
             6,12,2024-01-04 00:00:00,1.00,1\n",
        );
        let mut r = CsvReader::open(f.path(), Kind::Orders, &Overrides::new()).expect("open");
        let (good, bad) = read_all(&mut r, CsvReader::next_order);
        assert_eq!(
            good.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            ["1", "6"]
        );
        let lines: Vec<(u64, Option<usize>)> = bad.iter().map(|b| (b.line, b.column)).collect();
        assert_eq!(lines, [(3, Some(3)), (4, Some(4)), (5, Some(2)), (6, None)]);
        let msg = bad[1].to_string();
        let name = f.path().display().to_string();
        assert_eq!(
            msg,
            format!(
                "{name}:4:4: total_price: `abc` is not an amount (expected e.g. 12.50 or $1,234.50)"
            )
        );
        assert!(bad[2].reason.contains("missing customer_id"));
        assert!(bad[3].reason.contains("expected 5 fields, found 4"));
    }

    #[test]
    fn order_lines_borrow_and_skip_cancelled_orders() {
        let f = file(
            "order_id,customer,date,amount,refunded,cancelled_at\n\
             a,7,2024-01-01,100.00,25.00,\n\
             b,7,2024-01-02,50.00,,2024-01-03\n",
        );
        let mut r = CsvReader::open(f.path(), Kind::Orders, &Overrides::new()).expect("open");
        let first = r.next_order_line().expect("row").expect("good");
        assert_eq!((first.id, first.customer_id), ("a", "7"));
        assert_eq!(
            first.facts.expect("counts").net_total,
            Money::from_whole(75)
        );
        let second = r.next_order_line().expect("row").expect("good");
        assert_eq!(second.facts, None);
        assert!(r.next_order_line().is_none());
    }

    #[test]
    fn a_negative_total_is_a_bad_row_unless_the_row_is_a_refund() {
        let text = "id,customer_id,created_at,total_price,kind,refunded\n\
                    1,7,2024-01-01,100.00,,10.00\n\
                    2,7,2024-01-02,-25.00,refund,\n\
                    3,7,2024-01-03,25.00,Refund,\n\
                    4,7,2024-01-04,-5.00,,\n\
                    5,7,2024-01-05,-5.00,order,\n\
                    6,7,2024-01-06,5.00,return,\n\
                    7,7,2024-01-07,-5.00,refund,1.00\n";
        let f = file(text);
        let mut r = CsvReader::open(f.path(), Kind::Orders, &Overrides::new()).expect("open");
        let (orders, bad) = read_all(&mut r, CsvReader::next_order);
        let totals: Vec<String> = orders.iter().map(|o| o.total.to_string()).collect();
        assert_eq!(
            totals,
            ["100.00", "-25.00", "-25.00"],
            "either sign, stored negative"
        );
        assert!(!orders[0].is_refund() && orders[1].is_refund());
        let reasons: Vec<String> = bad.iter().map(ToString::to_string).collect();
        let name = f.path().display();
        assert_eq!(
            reasons,
            [
                format!(
                    "{name}:5:4: total_price: `-5.00` is negative; if the row is a refund, write refund in its kind column"
                ),
                format!(
                    "{name}:6:4: total_price: `-5.00` is negative; if the row is a refund, write refund in its kind column"
                ),
                format!(
                    "{name}:7:5: kind: `return` is not an order kind (expected order, sale or refund)"
                ),
                format!(
                    "{name}:8:6: refunded: a refund row gives its amount as its total, not as refunded"
                ),
            ]
        );
        // The allocation-free path says the same as the owned records.
        let mut r = CsvReader::open(f.path(), Kind::Orders, &Overrides::new()).expect("open");
        let (lines, _) = read_all(&mut r, |r| r.next_order_line().map(|l| l.map(|l| l.facts)));
        let owned: Vec<_> = orders.iter().map(Order::facts).collect();
        assert_eq!(lines, owned);
        assert_eq!(lines[1].expect("counts").net_total, Money::from_whole(-25));
        let f = file("customer_id,date,amount\n7,2024-01-01,-1\n");
        let mut r = CsvReader::open(f.path(), Kind::Orders, &Overrides::new()).expect("open");
        let (_, bad) = read_all(&mut r, CsvReader::next_order);
        assert!(
            bad[0].reason.ends_with("add a kind column saying refund"),
            "{bad:?}"
        );
    }

    #[test]
    fn reading_resumes_from_a_saved_position() {
        let f = file(
            "customer_id,kind,occurred_at\n1,email_open,2024-01-01\n2,Opened Email,2024-01-02\n3,page_view,2024-01-03\n",
        );
        let mut r = CsvReader::open(f.path(), Kind::Events, &Overrides::new()).expect("open");
        let first = r.next_event().expect("row").expect("good");
        assert_eq!(first.customer_id.as_str(), "1");
        let pos = r.position();
        drop(r);
        let mut r =
            CsvReader::open_at(f.path(), Kind::Events, &Overrides::new(), pos).expect("reopen");
        let (rest, bad) = read_all(&mut r, CsvReader::next_event);
        assert!(bad.is_empty());
        assert_eq!(
            rest.iter()
                .map(|e| e.customer_id.as_str())
                .collect::<Vec<_>>(),
            ["2", "3"]
        );
        assert_eq!(rest[0].kind, EventKind::EmailOpen);
    }

    #[test]
    fn chunks_read_every_row_once_with_true_line_numbers() {
        let mut text = String::from("id,customer_id,created_at,total_price,items,note\n");
        for i in 0..400 {
            // Some rows carry a quoted newline, to land chunk splits inside quotes; a few
            // leave a quote open, which defeats the parity guess of where rows start.
            let note = match i {
                _ if i % 7 == 0 => "\"two\nlines\"",
                100 | 250 => "\"left open",
                _ => "",
            };
            let total = if i == 333 {
                "oops".to_owned()
            } else {
                format!("{i}.50")
            };
            text.push_str(&format!("{i},{},2024-01-01,{total},1,{note}\n", i % 9));
        }
        let f = file(&text);
        let mut whole = CsvReader::open(f.path(), Kind::Orders, &Overrides::new()).expect("open");
        let (expected, expected_bad) = read_all(&mut whole, CsvReader::next_order);
        for count in 1..=7 {
            let chunks = read_in_chunks(f.path(), Kind::Orders, &Overrides::new(), count, |r| {
                Ok::<_, CsvError>(read_all(r, CsvReader::next_order))
            })
            .expect("chunks");
            let (mut got, mut bad) = (Vec::new(), Vec::new());
            for c in chunks {
                got.extend(c.value.0);
                bad.extend(c.value.1);
            }
            let ids = |v: &[Order]| v.iter().map(|o| o.id.clone()).collect::<Vec<_>>().join(" ");
            assert_eq!(ids(&got), ids(&expected), "{count} chunks");
            assert_eq!(got, expected, "{count} chunks");
            assert_eq!(bad, expected_bad, "{count} chunks");
        }
        assert_eq!(expected.len(), 397);
        let lines: Vec<u64> = expected_bad.iter().map(|b| b.line).collect();
        let line_of = |i: u64| 2 + i + i.div_ceil(7);
        assert_eq!(lines, [line_of(100), line_of(250), line_of(333)]);
    }

    fn customers(text: &str) -> (Vec<Customer>, Vec<BadRow>) {
        let f = file(text);
        let mut r = CsvReader::open(f.path(), Kind::Customers, &Overrides::new()).expect("open");
        read_all(&mut r, CsvReader::next_customer)
    }

    fn ids(good: &[Customer]) -> Vec<&str> {
        good.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn an_unclosed_quote_costs_its_own_row_and_no_other() {
        let (good, bad) = customers(
            "id,email,first_name,accepts_marketing\n\
             1,a@example.com,\"Ann,true\n\
             2,b@example.com,Bob,true\n\
             3,c@example.com,Cy,false\n",
        );
        assert_eq!(ids(&good), ["2", "3"]);
        assert_eq!(good[0].first_name.as_deref(), Some("Bob"));
        assert_eq!(good[0].email.as_deref(), Some("b@example.com"));
        assert!(!good[1].accepts_email_marketing);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 2);
        assert_eq!(
            bad[0].reason,
            "the quote opened at line 2 is never closed; row skipped, reading resumes at line 3"
        );
    }

    #[test]
    fn a_quote_closed_rows_later_does_not_put_those_rows_in_a_field() {
        // The stray quote closes at row 3's opening quote: the parser sees one row of the
        // right width whose first name holds rows 2 and 3.
        let (good, bad) = customers(
            "id,email,first_name,accepts_marketing\n\
             1,a@example.com,\"Ann,true\n\
             2,b@example.com,Bob,true\n\
             3,c@example.com,\"Cy\",true\n\
             4,d@example.com,\"Di, Jr\",true\n",
        );
        assert_eq!(ids(&good), ["2", "3", "4"]);
        assert_eq!(good[1].first_name.as_deref(), Some("Cy"));
        assert_eq!(good[2].first_name.as_deref(), Some("Di, Jr"));
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].line, bad[0].column), (2, Some(3)));
        assert!(
            bad[0].to_string().ends_with(
                ":2:3: first_name: line break inside the field: the quote opened at line 2 is \
                 closed in the wrong place or not at all; row skipped, reading resumes at line 3"
            ),
            "{}",
            bad[0]
        );
    }

    #[test]
    fn a_field_over_max_field_bytes_is_a_bad_row_and_reading_resumes_on_the_next_line() {
        let long = "x".repeat(100);
        let text = format!(
            "id,email,note\n1,a@x.com,\"{long}\n2,b@x.com,\"multi\nline\"\n3,c@x.com,{long}\n4,d@x.com,ok\n"
        );
        let f = file(&text);
        let mut r = CsvReader::open(f.path(), Kind::Customers, &Overrides::new())
            .expect("open")
            .max_field_bytes(32)
            .expect("seek");
        let (good, bad) = read_all(&mut r, CsvReader::next_customer);
        assert_eq!(ids(&good), ["2", "4"], "{bad:?}");
        let got: Vec<(u64, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    2,
                    "the quote opened at line 2 is not closed within 32 bytes (max_field_bytes); \
                     row skipped, reading resumes at line 3"
                ),
                (5, "100 bytes, over max_field_bytes (32)"),
            ]
        );
    }

    #[test]
    fn an_unmapped_column_may_span_lines_unless_it_takes_in_whole_rows() {
        let (good, bad) = customers(
            "id,email,Note,accepts_marketing\n\
             1,a@x.com,\"Call after 5pm,\nnot before\",true\n\
             2,b@x.com,\"Gift, wrap\ngreen\",true\n\
             3,c@x.com,\"Oops,true\n\
             4,d@x.com,\"n\",true\n\
             5,e@x.com,fine,false\n",
        );
        assert_eq!(ids(&good), ["1", "2", "4", "5"], "{bad:?}");
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].line, 6);
        assert_eq!(
            bad[0].reason,
            "the quoted field opened at line 6 takes in line 7, which reads as a whole row; \
             row skipped, reading resumes at line 7"
        );
    }

    /// One generated customer row: id, email, first name, consent, note (unmapped).
    fn row_text(id: usize, name: usize, note: usize) -> String {
        let name = ["Ann", "Bo", "\"Lee, Jr\"", "\"Say \"\"hi\"\"\""][name];
        let note = ["", "plain", "\"two\nlines\"", "\"a, b\""][note];
        format!("{id},u{id}@x.com,{name},{},{note}\n", id.is_multiple_of(2))
    }

    proptest::proptest! {
        #[test]
        fn one_stray_quote_loses_no_other_row(
            rows in proptest::collection::vec((0usize..4, 0usize..4), 1..40),
            victim in 0usize..40,
            at in 0usize..200,
        ) {
            let victim = victim % rows.len();
            let mut text = String::from("id,email,first_name,accepts_marketing,note\n");
            let mut expected = Vec::new();
            for (i, (name, note)) in rows.iter().enumerate() {
                let mut row = row_text(i + 1, *name, *note);
                if i == victim {
                    let at = at % row.len().saturating_sub(1).max(1);
                    row.insert(at, '"');
                } else {
                    expected.push(i + 1);
                }
                text.push_str(&row);
            }
            let f = file(&text);
            let mut whole = CsvReader::open(f.path(), Kind::Customers, &Overrides::new())
                .expect("open");
            let (good, _) = read_all(&mut whole, CsvReader::next_customer);
            // The victim's own row may still read, with the quote in its id.
            let victim_id = (victim + 1).to_string();
            let others: Vec<&Customer> = good
                .iter()
                .filter(|c| c.id.as_str().replace('"', "") != victim_id)
                .collect();
            let got: Vec<usize> = others
                .iter()
                .map(|c| c.id.as_str().parse().expect("a generated id"))
                .collect();
            proptest::prop_assert_eq!(&got, &expected, "{}", text);
            for c in others {
                let id: usize = c.id.as_str().parse().expect("id");
                proptest::prop_assert_eq!(c.email.clone(), Some(format!("u{id}@x.com")));
                let (name, _) = rows[id - 1];
                let want = ["Ann", "Bo", "Lee, Jr", "Say \"hi\""][name];
                proptest::prop_assert_eq!(c.first_name.as_deref(), Some(want));
            }
        }
    }

    #[test]
    fn an_empty_file_is_reported_as_empty_and_a_header_alone_is_valid() {
        for blank in ["", "\n", "\r\n\r\n"] {
            let f = file(blank);
            let err = CsvReader::open(f.path(), Kind::Customers, &Overrides::new())
                .expect_err("no header");
            assert!(matches!(err, CsvError::Empty { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: the file is empty; expected a header line naming the columns",
                    f.path().display()
                )
            );
        }
        let f = file("id,email\n");
        let mut r = CsvReader::open(f.path(), Kind::Customers, &Overrides::new()).expect("open");
        let (good, bad) = read_all(&mut r, CsvReader::next_customer);
        assert!(good.is_empty() && bad.is_empty());
    }

    #[test]
    fn an_unusable_header_fails_the_file_with_a_clear_message() {
        let f = file("who,what\n1,2\n");
        let err = CsvReader::open(f.path(), Kind::Customers, &Overrides::new())
            .expect_err("no id column");
        let msg = err.to_string();
        assert!(
            msg.contains("no column for required field `id` of customers"),
            "{msg}"
        );
        let missing = CsvReader::open(
            Path::new("/nonexistent/x.csv"),
            Kind::Customers,
            &Overrides::new(),
        );
        assert!(
            missing
                .expect_err("no file")
                .to_string()
                .starts_with("/nonexistent/x.csv: ")
        );
    }
}
