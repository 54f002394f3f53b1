//! Fills a feature table in one pass over customers, orders and events (being written).

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// An order or event names a customer that was not added.
    #[error("unknown customer `{0}`")]
    UnknownCustomer(String),
}

/// Counts of what the builder saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Customers added.
    pub customers: usize,
}

/// Builds a [`super::FeatureTable`].
#[derive(Debug, Default)]
pub struct FeatureBuilder {}
