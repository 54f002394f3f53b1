//! The segment language (being written).
