//! RFM scores and groups (being written).

/// A group name derived from R and F scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RfmGroup {
    /// Bought recently and often.
    Champions,
}

/// The quintile score of 1-based rank `k` among `n`.
pub fn rfm_score(k: u64, n: u64) -> u8 {
    if n <= 1 {
        return 1;
    }
    let s = (5 * (k - 1)).div_ceil(n - 1);
    s.clamp(1, 5) as u8
}
