//! Finding a customer's row by id, fast.
//!
//! Loading ten million orders means ten million id lookups, and most sources use decimal
//! integers as ids, so those are keyed by their numeric value and everything else by text.

use rustc_hash::FxHashMap;

use crate::record::{CustomerId, natural_cmp};

/// Customer id → row.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdIndex {
    numeric: FxHashMap<u64, u32>,
    text: FxHashMap<Box<str>, u32>,
}

/// The value of an id written as a canonical decimal (no sign, no leading zero, fits u64).
fn canonical_number(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    if b.is_empty() || b.len() > 19 || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    let mut v = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

impl IdIndex {
    /// Records `id` at `row`; returns the row it already had, if any.
    pub(crate) fn insert(&mut self, id: &str, row: u32) -> Option<u32> {
        match canonical_number(id) {
            Some(n) => self.numeric.insert(n, row),
            None => self.text.insert(id.into(), row),
        }
    }

    /// The row of `id`.
    #[inline]
    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        match canonical_number(id) {
            Some(n) => self.numeric.get(&n).copied(),
            None => self.text.get(id).copied(),
        }
    }
}

/// A key per row whose integer order is the natural order of the ids (see [`CustomerId`]).
pub(crate) fn order_keys(ids: &[CustomerId]) -> Vec<u64> {
    let numeric: Option<Vec<u64>> = ids.iter().map(|id| canonical_number(id.as_str())).collect();
    if let Some(keys) = numeric {
        return keys;
    }
    let mut rows: Vec<u32> = (0..ids.len() as u32).collect();
    rows.sort_by(|&a, &b| natural_cmp(ids[a as usize].as_str(), ids[b as usize].as_str()));
    let mut keys = vec![0u64; ids.len()];
    for (rank, row) in rows.into_iter().enumerate() {
        keys[row as usize] = rank as u64;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_text_ids_both_resolve() {
        let mut index = IdIndex::default();
        assert_eq!(index.insert("42", 0), None);
        assert_eq!(index.insert("0042", 1), None, "leading zeros make a different id");
        assert_eq!(index.insert("gid://shopify/Customer/1", 2), None);
        assert_eq!(index.insert("42", 3), Some(0));
        assert_eq!(index.get("0042"), Some(1));
        assert_eq!(index.get("gid://shopify/Customer/1"), Some(2));
        assert_eq!(index.get("43"), None);
    }

    #[test]
    fn order_keys_follow_natural_order() {
        let ids: Vec<CustomerId> = ["b", "10", "9", "a"].into_iter().map(CustomerId::from).collect();
        let keys = order_keys(&ids);
        let mut rows: Vec<usize> = (0..4).collect();
        rows.sort_by_key(|&r| keys[r]);
        assert_eq!(rows, [2, 1, 3, 0]);
        let numeric: Vec<CustomerId> = ["10", "9"].into_iter().map(CustomerId::from).collect();
        assert_eq!(order_keys(&numeric), [10, 9]);
    }
}
