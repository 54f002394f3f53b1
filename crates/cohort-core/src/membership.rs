//! Segment memberships, how they change between runs, and how segments overlap.
//!
//! A membership is a sorted list of customer ids, so diffs are a single merge and the result
//! is deterministic (the order in which a destination receives changes does not depend on a
//! hash seed).

use std::cmp::Ordering;

use serde::Serialize;

use crate::bitset::Bitset;
use crate::features::FeatureTable;
use crate::record::CustomerId;

/// The customers in one segment, sorted in natural id order, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Membership(Vec<CustomerId>);

impl Membership {
    /// A membership from ids in any order; duplicates collapse.
    pub fn from_ids(ids: impl IntoIterator<Item = CustomerId>) -> Self {
        let mut ids: Vec<CustomerId> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        Membership(ids)
    }

    /// The ids of the rows of `table` in `rows`.
    pub fn from_rows(table: &FeatureTable, rows: &Bitset) -> Self {
        Membership::from_ids(rows.iter().map(|r| table.ids()[r].clone()))
    }

    /// Sorted ids.
    pub fn ids(&self) -> &[CustomerId] {
        &self.0
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nobody is a member.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `id` is a member.
    pub fn contains(&self, id: &CustomerId) -> bool {
        self.0.binary_search(id).is_ok()
    }

    /// What changed from `previous` to `self`.
    pub fn diff_from(&self, previous: &Membership) -> MembershipDiff {
        let mut diff = MembershipDiff::default();
        merge(
            &previous.0,
            &self.0,
            |a, b| a.cmp(b),
            |step| match step {
                Step::Left(id) => diff.removed.push(id.clone()),
                Step::Right(id) => diff.added.push(id.clone()),
                Step::Both(id, _) => diff.unchanged.push(id.clone()),
            },
        );
        diff
    }
}

/// How a membership changed between two runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MembershipDiff {
    /// In now, not before.
    pub added: Vec<CustomerId>,
    /// In before, not now.
    pub removed: Vec<CustomerId>,
    /// In both.
    pub unchanged: Vec<CustomerId>,
}

/// How keyed state changed: for each key, the value last acknowledged and the value now.
///
/// Destinations diff `(customer, payload hash)` pairs with this, so a customer whose rendered
/// payload changed is sent again even though the membership did not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDiff<K, V> {
    /// Keys only in the new state.
    pub added: Vec<(K, V)>,
    /// Keys only in the old state.
    pub removed: Vec<(K, V)>,
    /// Keys in both with different values: `(key, old, new)`.
    pub changed: Vec<(K, V, V)>,
    /// Keys in both with equal values.
    pub unchanged: Vec<K>,
}

impl<K, V> Default for StateDiff<K, V> {
    fn default() -> Self {
        StateDiff {
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            unchanged: Vec::new(),
        }
    }
}

/// Diffs two states, each sorted by key with unique keys.
pub fn diff_states<K: Ord + Clone, V: PartialEq + Clone>(
    old: &[(K, V)],
    new: &[(K, V)],
) -> StateDiff<K, V> {
    debug_assert!(
        old.windows(2).all(|w| w[0].0 < w[1].0),
        "old state must be sorted by unique key"
    );
    debug_assert!(
        new.windows(2).all(|w| w[0].0 < w[1].0),
        "new state must be sorted by unique key"
    );
    let mut diff = StateDiff::default();
    merge(
        old,
        new,
        |a, b| a.0.cmp(&b.0),
        |step| match step {
            Step::Left(o) => diff.removed.push(o.clone()),
            Step::Right(n) => diff.added.push(n.clone()),
            Step::Both(o, n) if o.1 == n.1 => diff.unchanged.push(o.0.clone()),
            Step::Both(o, n) => diff.changed.push((o.0.clone(), o.1.clone(), n.1.clone())),
        },
    );
    diff
}

enum Step<'a, T> {
    Left(&'a T),
    Right(&'a T),
    Both(&'a T, &'a T),
}

fn merge<'a, T>(
    left: &'a [T],
    right: &'a [T],
    cmp: impl Fn(&T, &T) -> Ordering,
    mut f: impl FnMut(Step<'a, T>),
) {
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        match cmp(&left[i], &right[j]) {
            Ordering::Less => {
                f(Step::Left(&left[i]));
                i += 1;
            }
            Ordering::Greater => {
                f(Step::Right(&right[j]));
                j += 1;
            }
            Ordering::Equal => {
                f(Step::Both(&left[i], &right[j]));
                i += 1;
                j += 1;
            }
        }
    }
    left[i..].iter().for_each(|x| f(Step::Left(x)));
    right[j..].iter().for_each(|x| f(Step::Right(x)));
}

/// Pairwise overlap of a set of segments, with the classic over-segmenting mistakes flagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overlap {
    /// Segment names, in the order given.
    pub names: Vec<String>,
    /// Members per segment.
    pub sizes: Vec<usize>,
    /// `matrix[i][j]`: customers in both segment `i` and segment `j` (`matrix[i][i]` is the
    /// size).
    pub matrix: Vec<Vec<usize>>,
    /// What deserves a look.
    pub warnings: Vec<OverlapWarning>,
}

/// A segment that is probably not worth its own campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OverlapWarning {
    /// Fewer members than the minimum size.
    TooSmall {
        /// The segment.
        segment: String,
        /// Its members.
        size: usize,
        /// The minimum.
        min_size: usize,
    },
    /// At least 90% of the segment is also in another one.
    MostlyInside {
        /// The smaller segment.
        segment: String,
        /// The segment that contains most of it.
        other: String,
        /// Share of `segment` inside `other`, 0–1.
        share: f64,
    },
}

/// The share of a segment inside another above which it is flagged.
pub const MOSTLY_INSIDE: f64 = 0.9;

impl std::fmt::Display for OverlapWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverlapWarning::TooSmall {
                segment,
                size,
                min_size,
            } => {
                write!(
                    f,
                    "segment `{segment}` has {size} members, below its minimum of {min_size}"
                )
            }
            OverlapWarning::MostlyInside {
                segment,
                other,
                share,
            } => write!(
                f,
                "{:.0}% of segment `{segment}` is also in `{other}`; consider merging them or excluding one from the other",
                share * 100.0
            ),
        }
    }
}

/// Computes the overlap matrix. `min_size(i)` is segment `i`'s minimum size (0 for none).
pub fn overlap(segments: &[(String, Bitset)], min_size: impl Fn(usize) -> usize) -> Overlap {
    let n = segments.len();
    let sizes: Vec<usize> = segments.iter().map(|(_, s)| s.count()).collect();
    let mut matrix = vec![vec![0; n]; n];
    for i in 0..n {
        matrix[i][i] = sizes[i];
        for j in i + 1..n {
            let both = segments[i].1.intersection_count(&segments[j].1);
            matrix[i][j] = both;
            matrix[j][i] = both;
        }
    }
    let mut warnings = Vec::new();
    for i in 0..n {
        let min = min_size(i);
        if sizes[i] < min {
            warnings.push(OverlapWarning::TooSmall {
                segment: segments[i].0.clone(),
                size: sizes[i],
                min_size: min,
            });
        }
        if sizes[i] == 0 {
            continue;
        }
        for j in 0..n {
            let share = matrix[i][j] as f64 / sizes[i] as f64;
            if i != j && share >= MOSTLY_INSIDE {
                warnings.push(OverlapWarning::MostlyInside {
                    segment: segments[i].0.clone(),
                    other: segments[j].0.clone(),
                    share,
                });
            }
        }
    }
    Overlap {
        names: segments.iter().map(|(n, _)| n.clone()).collect(),
        sizes,
        matrix,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn ids(v: &[u16]) -> Membership {
        Membership::from_ids(v.iter().map(|i| CustomerId::new(i.to_string())))
    }

    proptest! {
        #[test]
        fn membership_diff_partitions_both_sides(old in proptest::collection::vec(0u16..300, 0..120), new in proptest::collection::vec(0u16..300, 0..120)) {
            let (o, n) = (ids(&old), ids(&new));
            let d = n.diff_from(&o);
            let set = |v: &[CustomerId]| v.iter().cloned().collect::<BTreeSet<_>>();
            let (os, ns) = (set(o.ids()), set(n.ids()));
            prop_assert_eq!(set(&d.added), ns.difference(&os).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(set(&d.removed), os.difference(&ns).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(set(&d.unchanged), os.intersection(&ns).cloned().collect::<BTreeSet<_>>());
            prop_assert_eq!(d.added.len() + d.unchanged.len(), n.len());
            prop_assert_eq!(d.removed.len() + d.unchanged.len(), o.len());
            // Applying the diff to the old membership gives the new one.
            let applied = Membership::from_ids(o.ids().iter().filter(|id| !d.removed.contains(id)).cloned().chain(d.added.iter().cloned()));
            prop_assert_eq!(applied, n);
        }

        #[test]
        fn state_diff_matches_a_map_comparison(old in proptest::collection::btree_map(0u16..200, 0u8..4, 0..80), new in proptest::collection::btree_map(0u16..200, 0u8..4, 0..80)) {
            let to_vec = |m: &BTreeMap<u16, u8>| m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>();
            let d = diff_states(&to_vec(&old), &to_vec(&new));
            for (k, v) in &new {
                match old.get(k) {
                    None => prop_assert!(d.added.contains(&(*k, *v))),
                    Some(o) if o == v => prop_assert!(d.unchanged.contains(k)),
                    Some(o) => prop_assert!(d.changed.contains(&(*k, *o, *v))),
                }
            }
            for (k, v) in &old {
                if !new.contains_key(k) { prop_assert!(d.removed.contains(&(*k, *v))); }
            }
            prop_assert_eq!(d.added.len() + d.changed.len() + d.unchanged.len(), new.len());
            prop_assert_eq!(d.removed.len() + d.changed.len() + d.unchanged.len(), old.len());
        }
    }

    #[test]
    fn overlap_flags_small_and_nested_segments() {
        let a: Bitset = (0..100).map(|i| i < 50).collect();
        let b: Bitset = (0..100).map(|i| i < 40).collect();
        let c: Bitset = (0..100).map(|i| i >= 98).collect();
        let o = overlap(&[("a".into(), a), ("b".into(), b), ("c".into(), c)], |i| {
            if i == 2 { 10 } else { 0 }
        });
        assert_eq!(
            o.matrix,
            vec![vec![50, 40, 0], vec![40, 40, 0], vec![0, 0, 2]]
        );
        assert_eq!(
            o.warnings,
            vec![
                OverlapWarning::MostlyInside {
                    segment: "b".into(),
                    other: "a".into(),
                    share: 1.0
                },
                OverlapWarning::TooSmall {
                    segment: "c".into(),
                    size: 2,
                    min_size: 10
                },
            ]
        );
        assert!(
            o.warnings[0]
                .to_string()
                .contains("100% of segment `b` is also in `a`")
        );
    }
}
