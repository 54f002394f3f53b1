//! Memberships and their diffs (being written).
