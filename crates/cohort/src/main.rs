//! The `cohort` binary (being written).
fn main() {}
