//! The one home for hashing in the core.
//!
//! Hashes that are stored or built into keys (the payload hash inside idempotency keys, outbox
//! file names, CSV fingerprints) must give the same value in every release: a new value would
//! push every audience member again after an upgrade. So the function is written out here,
//! FNV-1a 64, rather than borrowed from a crate whose output could change.

/// FNV-1a, 64 bits.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a 64 as 16 lower-case hex digits.
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a_64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_fnv1a_vectors_hold() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_hex(b"foobar"), "85944171f73967e8");
    }
}
