//! Recency, frequency and monetary scores.
//!
//! The definition is fixed because it is checked against an independent reference: over the
//! customers with at least one order, rank by recency (whole calendar days since the last order,
//! descending, so the most recent rank last), by order count and by spend (both ascending), with
//! ties broken by the lower customer id. With `n` buyers and 1-based rank `k`, the score is
//! `max(1, ceil(5·(k−1)/(n−1)))`, which equals pandas' `qcut(rank(method='first'), 5)` over rows
//! sorted by id. Ranking sorts integer keys only: ids are turned into an order key once.

use std::fmt;

/// The quintile score of 1-based rank `k` among `n` ranked customers.
///
/// A lone buyer (`n == 1`) scores 1: there is nobody to be better than.
pub fn rfm_score(k: u64, n: u64) -> u8 {
    if n <= 1 {
        return 1;
    }
    let score = (5 * (k - 1)).div_ceil(n - 1);
    // k ≤ n, so the score is at most 5; the clamp keeps a wrong caller from overflowing u8.
    score.clamp(1, 5) as u8
}

/// Scores every row of `rows` by ascending `(key, id_key)`.
///
/// Returns scores parallel to `rows`.
pub(crate) fn scores_by(rows: &[u32], key: impl Fn(u32) -> i64, id_key: &[u64]) -> Vec<u8> {
    let mut order: Vec<(i64, u64, u32)> = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| (key(r), id_key[r as usize], i as u32))
        .collect();
    order.sort_unstable();
    let n = order.len() as u64;
    let mut scores = vec![0u8; rows.len()];
    for (k0, &(_, _, i)) in order.iter().enumerate() {
        scores[i as usize] = rfm_score(k0 as u64 + 1, n);
    }
    scores
}

/// Named groups of customers by R and F score, in the manner of Shopify's `rfm_group`.
///
/// | R \ F | 1 | 2 | 3 | 4 | 5 |
/// |---|---|---|---|---|---|
/// | 5 | new | active | active | champions | champions |
/// | 4 | promising | active | active | loyal | loyal |
/// | 3 | almost_lost | almost_lost | needs_attention | loyal | loyal |
/// | 1–2 | dormant | dormant | at_risk | at_risk | previously_loyal |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RfmGroup {
    /// Bought very recently and often.
    Champions,
    /// Buy often, fairly recently.
    Loyal,
    /// Recent, with a few orders.
    Active,
    /// First order, very recently.
    New,
    /// Recent first order.
    Promising,
    /// Average on both.
    NeedsAttention,
    /// Haven't bought for a while and never often.
    AlmostLost,
    /// Used to buy often, not lately.
    AtRisk,
    /// Were among the most frequent, long ago.
    PreviouslyLoyal,
    /// Long ago, rarely.
    Dormant,
}

impl RfmGroup {
    /// Every group.
    pub const ALL: [RfmGroup; 10] = [
        RfmGroup::Champions,
        RfmGroup::Loyal,
        RfmGroup::Active,
        RfmGroup::New,
        RfmGroup::Promising,
        RfmGroup::NeedsAttention,
        RfmGroup::AlmostLost,
        RfmGroup::AtRisk,
        RfmGroup::PreviouslyLoyal,
        RfmGroup::Dormant,
    ];

    /// The group of a customer with recency score `r` and frequency score `f` (each 1–5).
    pub fn from_scores(r: u8, f: u8) -> RfmGroup {
        match (r, f) {
            (5, 4 | 5) => RfmGroup::Champions,
            (3 | 4, 4 | 5) => RfmGroup::Loyal,
            (5, 1) => RfmGroup::New,
            (4, 1) => RfmGroup::Promising,
            (4 | 5, _) => RfmGroup::Active,
            (3, 3) => RfmGroup::NeedsAttention,
            (3, _) => RfmGroup::AlmostLost,
            (_, 5) => RfmGroup::PreviouslyLoyal,
            (_, 3 | 4) => RfmGroup::AtRisk,
            _ => RfmGroup::Dormant,
        }
    }

    /// The name used in segments (`rfm_group = 'at_risk'`).
    pub fn as_str(self) -> &'static str {
        match self {
            RfmGroup::Champions => "champions",
            RfmGroup::Loyal => "loyal",
            RfmGroup::Active => "active",
            RfmGroup::New => "new",
            RfmGroup::Promising => "promising",
            RfmGroup::NeedsAttention => "needs_attention",
            RfmGroup::AlmostLost => "almost_lost",
            RfmGroup::AtRisk => "at_risk",
            RfmGroup::PreviouslyLoyal => "previously_loyal",
            RfmGroup::Dormant => "dormant",
        }
    }
}

impl fmt::Display for RfmGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_split_into_equal_quintiles() {
        let n = 23_570u64;
        let mut per = [0u64; 6];
        for k in 1..=n {
            per[rfm_score(k, n) as usize] += 1;
        }
        assert_eq!(per[1..], [4714, 4714, 4714, 4714, 4714]);
    }

    #[test]
    fn scores_match_the_pandas_qcut_formula_for_small_n() {
        // pandas: qcut(rank(method='first'), 5, labels=[1..5]) for n = 7 gives these labels.
        let got: Vec<u8> = (1..=7).map(|k| rfm_score(k, 7)).collect();
        assert_eq!(got, [1, 1, 2, 3, 4, 5, 5]);
        assert_eq!(rfm_score(1, 1), 1);
        assert_eq!(rfm_score(2, 2), 5);
    }

    #[test]
    fn ties_go_to_the_lower_id() {
        let rows = [0, 1, 2, 3, 4, 5];
        let id_key = [60, 50, 40, 30, 20, 10];
        let scores = scores_by(&rows, |_| 7, &id_key);
        // All keys tie, so the order is by id: row 5 (id 10) ranks first.
        assert_eq!(scores, [5, 4, 3, 2, 1, 1]);
    }

    #[test]
    fn every_cell_of_the_grid_has_a_group() {
        let mut seen = std::collections::HashSet::new();
        for r in 1..=5 {
            for f in 1..=5 {
                seen.insert(RfmGroup::from_scores(r, f));
            }
        }
        assert_eq!(seen.len(), RfmGroup::ALL.len(), "every group is reachable");
        assert_eq!(RfmGroup::from_scores(5, 5), RfmGroup::Champions);
        assert_eq!(RfmGroup::from_scores(4, 4), RfmGroup::Loyal);
        assert_eq!(RfmGroup::from_scores(1, 5), RfmGroup::PreviouslyLoyal);
        assert_eq!(RfmGroup::from_scores(2, 3), RfmGroup::AtRisk);
        assert_eq!(RfmGroup::from_scores(3, 2), RfmGroup::AlmostLost);
    }
}
