//! Reads Cohort's canonical records (customers, orders, events) from CSV files.
//!
//! It owns column mapping (known header spellings plus explicit overrides), coercion of export
//! text into typed values, and per-row error reports with file, line and column. It streams:
//! memory does not grow with the file. Both the `cohort` CLI and the CSV source plugin read
//! through it, so a file means the same thing everywhere.
//!
//! It must not decide what a record means for segmentation (that is `cohort-core`), nor keep
//! state between runs (cursors belong to whoever calls it).
#![warn(missing_docs)]

pub mod coerce;
mod guard;
mod ids;
pub mod mapping;
mod reader;

pub use guard::DEFAULT_MAX_FIELD_BYTES;
pub use ids::SeenIds;
pub use mapping::{Kind, OverrideError, Overrides, ResolveError, Resolved};
pub use reader::{
    BadRow, Chunk, CsvError, CsvReader, CustomerRow, OrderLine, OrderRow, Position, RowError,
    read_in_chunks, row_start,
};
