//! The list of built-in features (being written).
