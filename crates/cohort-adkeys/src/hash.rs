//! SHA-256 over the UTF-8 bytes of a normalised value, as lowercase hex: what both vendors'
//! reference code (`hashlib.sha256(...).hexdigest()`) produces.

use sha2::{Digest, Sha256};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The lowercase hex SHA-256 of `value` (64 characters).
pub fn sha256_hex(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Whether `value` is already a hash: 64 hex digits (SHA-256) or 32 (MD5, which Meta once
/// took). No email, phone, name or postal code looks like that; a campaign that maps a
/// pre-hashed column does, and hashing it again would match no one.
pub fn looks_like_hash(value: &str) -> bool {
    matches!(value.len(), 32 | 64) && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vector_hashes_to_the_published_digest() {
        // shared/specs/ad-platform-normalization.md, "Common to both".
        assert_eq!(
            sha256_hex("test@example.com"),
            "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
        );
    }

    #[test]
    fn the_empty_string_hashes_to_the_standard_digest() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hashes_are_recognised_and_ordinary_values_are_not() {
        assert!(looks_like_hash(&sha256_hex("a")));
        assert!(looks_like_hash("5D41402ABC4B2A76B9719D911017C592"));
        assert!(!looks_like_hash("test@example.com"));
        assert!(!looks_like_hash("16502531234"));
        assert!(!looks_like_hash(&"g".repeat(64)));
    }
}
