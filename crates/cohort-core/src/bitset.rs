//! A fixed-length set of rows, one bit each.
//!
//! Segment evaluation is columnar: every predicate turns a column into a bitset and the boolean
//! operators combine whole words at a time, so a million customers are 15,625 words.

use std::fmt;

/// A set of row indices in `0..len`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitset {
    words: Vec<u64>,
    len: usize,
}

impl Bitset {
    /// The empty set over `len` rows.
    pub fn new(len: usize) -> Self {
        Bitset {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// The set of all `len` rows.
    pub fn full(len: usize) -> Self {
        let mut set = Bitset {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        set.clear_tail();
        set
    }

    /// Builds a set from one predicate per row, 64 rows to a word (the loop the compiler
    /// vectorises best).
    pub fn from_fn(len: usize, mut pred: impl FnMut(usize) -> bool) -> Self {
        let mut words = Vec::with_capacity(len.div_ceil(64));
        let mut base = 0;
        while base < len {
            let end = (base + 64).min(len);
            let mut w = 0u64;
            for (bit, row) in (base..end).enumerate() {
                w |= u64::from(pred(row)) << bit;
            }
            words.push(w);
            base = end;
        }
        Bitset { words, len }
    }

    /// The number of rows the set ranges over (not the number of members).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set ranges over no rows at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `row` is a member.
    #[inline]
    pub fn contains(&self, row: usize) -> bool {
        row < self.len && self.words[row / 64] & (1 << (row % 64)) != 0
    }

    /// Adds or removes `row`.
    #[inline]
    pub fn set(&mut self, row: usize, member: bool) {
        assert!(row < self.len, "row {row} out of range 0..{}", self.len);
        let mask = 1u64 << (row % 64);
        if member {
            self.words[row / 64] |= mask;
        } else {
            self.words[row / 64] &= !mask;
        }
    }

    /// The number of members.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The words, 64 rows each, low bit first; bits past `len` are always zero.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Mutable words. Callers must leave bits past `len` zero (see [`Bitset::clear_tail`]).
    pub fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    /// Intersection, in place.
    pub fn and_with(&mut self, other: &Bitset) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= *b;
        }
    }

    /// Union, in place.
    pub fn or_with(&mut self, other: &Bitset) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    /// Difference (`self and not other`), in place.
    pub fn and_not_with(&mut self, other: &Bitset) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !*b;
        }
    }

    /// Complement, in place.
    pub fn negate(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.clear_tail();
    }

    /// Size of the intersection, without building it.
    pub fn intersection_count(&self, other: &Bitset) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones() as usize)
            .sum()
    }

    /// Member rows in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + bit)
            })
        })
    }

    /// Zeroes the bits past `len` in the last word, which whole-word operations may have set.
    pub fn clear_tail(&mut self) {
        let rem = self.len % 64;
        if let (true, Some(last)) = (rem != 0, self.words.last_mut()) {
            *last &= (1u64 << rem) - 1;
        }
    }
}

impl fmt::Debug for Bitset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitset({} of {}: ", self.count(), self.len)?;
        f.debug_list().entries(self.iter().take(16)).finish()?;
        f.write_str(")")
    }
}

impl FromIterator<bool> for Bitset {
    fn from_iter<I: IntoIterator<Item = bool>>(iter: I) -> Self {
        let bits: Vec<bool> = iter.into_iter().collect();
        Bitset::from_fn(bits.len(), |i| bits[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn operations_match_a_vec_of_bools(a in proptest::collection::vec(any::<bool>(), 0..300), seed in any::<u64>()) {
            let b: Vec<bool> = a.iter().enumerate().map(|(i, _)| (seed >> (i % 64)) & 1 == 1).collect();
            let (sa, sb): (Bitset, Bitset) = (a.iter().copied().collect(), b.iter().copied().collect());
            let mut and = sa.clone(); and.and_with(&sb);
            let mut or = sa.clone(); or.or_with(&sb);
            let mut not = sa.clone(); not.negate();
            let mut diff = sa.clone(); diff.and_not_with(&sb);
            for i in 0..a.len() {
                prop_assert_eq!(and.contains(i), a[i] && b[i]);
                prop_assert_eq!(or.contains(i), a[i] || b[i]);
                prop_assert_eq!(not.contains(i), !a[i]);
                prop_assert_eq!(diff.contains(i), a[i] && !b[i]);
            }
            prop_assert_eq!(not.count(), a.iter().filter(|x| !**x).count());
            prop_assert_eq!(sa.intersection_count(&sb), and.count());
            prop_assert_eq!(sa.iter().collect::<Vec<_>>(), (0..a.len()).filter(|&i| a[i]).collect::<Vec<_>>());
        }
    }

    #[test]
    fn full_set_has_no_stray_tail_bits() {
        let full = Bitset::full(70);
        assert_eq!(full.count(), 70);
        assert!(!full.contains(70));
    }
}
