//! Finding a customer's row by id, fast.
//!
//! Loading ten million orders means ten million id lookups, and most sources use decimal
//! integers as ids, so those are keyed by their numeric value and everything else by text.

use rustc_hash::FxHashMap;

use crate::record::{CustomerId, natural_cmp};

/// Customer id → row.
///
/// Numeric ids that are dense enough (most shops number customers from 1) live in a plain
/// array indexed by the id: a lookup is one load, and ten million lookups stay in cache far
/// better than a hash table's. A sparse id moves them all to a hash map.
#[derive(Debug, Clone)]
pub(crate) struct IdIndex {
    /// `dense[id] = row + 1`, 0 for absent; only while `dense_ok`.
    dense: Vec<u32>,
    dense_ok: bool,
    numeric: FxHashMap<u64, u32>,
    text: FxHashMap<Box<str>, u32>,
    count: usize,
}

impl Default for IdIndex {
    fn default() -> Self {
        IdIndex {
            dense: Vec::new(),
            dense_ok: true,
            numeric: FxHashMap::default(),
            text: FxHashMap::default(),
            count: 0,
        }
    }
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
    /// The largest id the dense array may reach with `count` ids in it: small tables always,
    /// larger ones while at least one slot in eight is used.
    fn dense_limit(count: usize) -> u64 {
        (8 * (count as u64 + 1)).max(1 << 20)
    }

    /// Records `id` at `row`; returns the row it already had, if any.
    pub(crate) fn insert(&mut self, id: &str, row: u32) -> Option<u32> {
        let Some(n) = canonical_number(id) else {
            let previous = self.text.insert(id.into(), row);
            self.count += usize::from(previous.is_none());
            return previous;
        };
        if self.dense_ok && n >= Self::dense_limit(self.count) {
            self.spill();
        }
        let previous = if self.dense_ok {
            let slot = n as usize;
            if slot >= self.dense.len() {
                self.dense.resize((slot + 1).max(self.dense.len() * 2), 0);
            }
            let old = self.dense[slot];
            self.dense[slot] = row + 1;
            old.checked_sub(1)
        } else {
            self.numeric.insert(n, row)
        };
        self.count += usize::from(previous.is_none());
        previous
    }

    /// Moves the dense ids to the hash map, for good.
    fn spill(&mut self) {
        for (id, &slot) in self.dense.iter().enumerate() {
            if slot != 0 {
                self.numeric.insert(id as u64, slot - 1);
            }
        }
        self.dense = Vec::new();
        self.dense_ok = false;
    }

    /// `id` as a key into the dense array, when it is one: the caller may look its row up
    /// later with [`IdIndex::dense_row`], batching the memory accesses.
    #[inline]
    pub(crate) fn dense_key(&self, id: &str) -> Option<u64> {
        canonical_number(id).filter(|_| self.dense_ok)
    }

    /// The row of a key from [`IdIndex::dense_key`].
    #[inline]
    pub(crate) fn dense_row(&self, key: u64) -> Option<u32> {
        let slot = *self.dense.get(usize::try_from(key).ok()?)?;
        slot.checked_sub(1)
    }

    /// The row of `id`.
    #[inline]
    pub(crate) fn get(&self, id: &str) -> Option<u32> {
        match canonical_number(id) {
            Some(n) if self.dense_ok => self
                .dense
                .get(usize::try_from(n).ok()?)
                .and_then(|&slot| slot.checked_sub(1)),
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
        assert_eq!(
            index.insert("0042", 1),
            None,
            "leading zeros make a different id"
        );
        assert_eq!(index.insert("gid://shopify/Customer/1", 2), None);
        assert_eq!(index.insert("42", 3), Some(0));
        assert_eq!(index.get("0042"), Some(1));
        assert_eq!(index.get("gid://shopify/Customer/1"), Some(2));
        assert_eq!(index.get("43"), None);
    }

    #[test]
    fn sparse_ids_spill_to_the_hash_map_without_losing_any() {
        let mut index = IdIndex::default();
        for (row, id) in [5u64, 1, 3].iter().enumerate() {
            index.insert(&id.to_string(), row as u32);
        }
        assert!(index.dense_ok);
        index.insert("99999999999", 3);
        assert!(!index.dense_ok, "a far-away id spills");
        for (id, row) in [("5", 0), ("1", 1), ("3", 2), ("99999999999", 3)] {
            assert_eq!(index.get(id), Some(row), "{id}");
        }
        assert_eq!(index.insert("3", 9), Some(2));
        assert_eq!(index.get("2"), None);
    }

    #[test]
    fn order_keys_follow_natural_order() {
        let ids: Vec<CustomerId> = ["b", "10", "9", "a"]
            .into_iter()
            .map(CustomerId::from)
            .collect();
        let keys = order_keys(&ids);
        let mut rows: Vec<usize> = (0..4).collect();
        rows.sort_by_key(|&r| keys[r]);
        assert_eq!(rows, [2, 1, 3, 0]);
        let numeric: Vec<CustomerId> = ["10", "9"].into_iter().map(CustomerId::from).collect();
        assert_eq!(order_keys(&numeric), [10, 9]);
    }
}
