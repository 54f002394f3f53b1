//! Per-customer features, held column by column.
//!
//! A [`FeatureTable`] has one row per customer and one typed [`Column`] per feature. The
//! [`FeatureBuilder`] fills it in a single pass over customers, orders and events (orders and
//! events are folded into running aggregates, never kept), then ranks RFM over the aggregates.
//! Segments are evaluated over these columns; nothing downstream reads order history again.
//!
//! The feature names are the public vocabulary of the segment language; [`catalog`] lists them
//! with their types and meanings, and the docs are generated from that list.

mod builder;
pub mod catalog;
mod column;
mod ids;
mod rfm;
mod table;
mod totals;

pub use builder::{BuildError, BuildStats, FeatureBuilder, FoldedOrders, OrderFold};
pub use catalog::catalogue_fields;
pub use column::{
    BoolColumn, CategoryBuilder, CategoryColumn, Column, FieldType, Nullable, TagsBuilder,
    TagsColumn, TextColumn,
};
pub use rfm::{RfmGroup, rfm_score};
pub use table::{FeatureTable, FieldInfo, TableError, Value};
pub use totals::{EventChange, EventTotals, OrderChange, OrderTotals};
