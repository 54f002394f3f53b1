//! One redaction path for the whole process.
//!
//! Every value a `${env:..}` or `${file:..}` placeholder resolves to is registered here the
//! moment it is read, and everything that leaves the process (printed errors, log lines, the
//! run record, per-record errors) passes through [`redact`] on its way out. A secret can reach
//! an error message by many roads (a plugin quoting its config, a driver quoting a URL, a path
//! built from a secret folder); masking at the exits, rather than at each road, is what keeps
//! that from depending on every message being written carefully.
//!
//! The registry only grows: a secret read once stays masked for the life of the process (a
//! daemon that reloads its config keeps masking the old token too).

use std::borrow::Cow;
use std::sync::{PoisonError, RwLock};

/// What replaces a secret.
pub const MASK: &str = "[redacted]";

/// Values shorter than this are not masked: replacing every `1` or `on` would garble output
/// without protecting anything (and such values are not secrets worth the name).
const MIN_LEN: usize = 4;

/// Registered secrets, longest first, so a secret that contains another is masked whole.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `value` as secret: from now on [`redact`] hides it.
pub fn register(value: &str) {
    let value = value.trim();
    if value.len() < MIN_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    if secrets.iter().any(|s| s == value) {
        return;
    }
    secrets.push(value.to_owned());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    let mut out = Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    out
}

/// Every registered secret, longest first (for redactors that work elsewhere, such as the
/// plugin host's).
pub fn registered() -> Vec<String> {
    SECRETS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_longest_first_and_short_ones_ignored() {
        register("mask-test-secret");
        register("mask-test-secret-longer");
        register("ab");
        assert_eq!(
            redact("a=mask-test-secret-longer b=mask-test-secret c=ab"),
            "a=[redacted] b=[redacted] c=ab"
        );
        assert!(matches!(redact("nothing here"), Cow::Borrowed(_)));
    }
}
