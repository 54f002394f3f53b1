//! Suggestions for names that are almost right: one rule for every "did you mean" in Cohort,
//! whether the name is a config key, a plugin, a feature in a segment, a template field or a
//! CSV column.

/// The candidate nearest to `name`, if one is near enough to be a plausible typo.
///
/// Case differences cost nothing (`Total_Spent` finds `total_spent`). Otherwise the distance is
/// counted in insertions, deletions, substitutions and swaps of two neighbours (`sned` is one
/// swap from `send`), and up to a third of the name's length may differ (at least one edit, one
/// more for names over 8 characters). A name of 3 or more characters that begins a candidate
/// suggests it too (`acc` finds `accepts_email_marketing`). Ties go to the earlier candidate;
/// the name itself is never suggested.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let target = name.to_lowercase();
    let len = target.chars().count();
    let limit = (len / 3).max(1) + usize::from(len > 8);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let other = candidate.to_lowercase();
        let d = strsim::osa_distance(&target, &other);
        let prefix = len >= 3 && other.starts_with(&target);
        if (d <= limit || prefix) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_swaps_case_and_prefixes_find_their_name() {
        let fields = [
            "total_spent",
            "orders_count",
            "accepts_email_marketing",
            "send",
        ];
        assert_eq!(did_you_mean("total_spend", fields), Some("total_spent"));
        assert_eq!(did_you_mean("Total_Spent", fields), Some("total_spent"));
        assert_eq!(did_you_mean("sned", fields), Some("send"));
        assert_eq!(did_you_mean("acc", fields), Some("accepts_email_marketing"));
        assert_eq!(did_you_mean("zzzzzz", fields), None);
        assert_eq!(
            did_you_mean("send", fields),
            None,
            "the name itself is not a suggestion"
        );
    }
}
