//! Keyed blind indexes: look a subject up by a personal value (login by email) without
//! storing or querying that value in clear.
//!
//! `index = HMAC-SHA256(key, "comptoir-privacy/blind-index/v1" || u64 big-endian length of
//! domain || domain || normalized value)`. The domain ("email", "phone") keeps the indexes
//! of one string in two columns unrelated; the key keeps a dump of the index column from
//! being reversed by hashing a list of known emails.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use crate::key::{KEY_LEN, KeyBytes, KeyFileError};

const LABEL: &[u8] = b"comptoir-privacy/blind-index/v1";

/// The HMAC key of the blind indexes. Changing it means recomputing every index.
pub struct BlindIndexKey(KeyBytes);

impl BlindIndexKey {
    /// Reads the key from a key file (standard base64 of 32 bytes, whitespace trimmed).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        KeyBytes::from_file(path.as_ref()).map(Self)
    }

    /// Prefer [`BlindIndexKey::from_file`]: bytes passed by value leave copies this crate
    /// cannot zeroize.
    pub fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        Self(KeyBytes::new(key))
    }

    /// The blind index of `normalized_value` in `domain`. Normalize first (see
    /// [`normalize_email`]): the index of `Ada@Example.com` differs from `ada@example.com`.
    pub fn blind_index(&self, domain: &str, normalized_value: &str) -> [u8; 32] {
        hmac_sha256(
            self.0.expose(),
            &[
                LABEL,
                &(domain.len() as u64).to_be_bytes(),
                domain.as_bytes(),
                normalized_value.as_bytes(),
            ],
        )
    }
}

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey([redacted])")
    }
}

/// The form of an email address its blind index is taken of: surrounding whitespace trimmed,
/// lowercased (so `Ada@Example.com ` and `ada@example.com` find the same account).
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalize_email_trims_and_lowercases() {
        assert_eq!(normalize_email("  Ada@Example.COM\n"), "ada@example.com");
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", BlindIndexKey::from_bytes([1; KEY_LEN])),
            "BlindIndexKey([redacted])"
        );
    }

    #[test]
    fn known_answer() {
        // Pins the construction: a change here invalidates every stored index.
        let key = BlindIndexKey::from_bytes([0x0b; KEY_LEN]);
        let mut message = LABEL.to_vec();
        message.extend_from_slice(&5u64.to_be_bytes());
        message.extend_from_slice(b"emaila@b.c");
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0x0b; KEY_LEN]).expect("any length");
        mac.update(&message);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(key.blind_index("email", "a@b.c"), expected);
    }

    proptest! {
        #[test]
        fn deterministic_and_key_and_domain_dependent(
            key in any::<[u8; KEY_LEN]>(),
            other_key in any::<[u8; KEY_LEN]>(),
            value in any::<String>(),
        ) {
            prop_assume!(key != other_key);
            let index = BlindIndexKey::from_bytes(key);
            prop_assert_eq!(index.blind_index("email", &value), index.blind_index("email", &value));
            prop_assert_ne!(index.blind_index("email", &value), index.blind_index("phone", &value));
            prop_assert_ne!(
                index.blind_index("email", &value),
                BlindIndexKey::from_bytes(other_key).blind_index("email", &value)
            );
        }

        #[test]
        fn domain_and_value_do_not_run_together(
            domain in any::<String>(),
            value in any::<String>(),
            split in any::<prop::sample::Index>(),
        ) {
            // Moving the boundary between domain and value changes the index.
            let joined = format!("{domain}{value}");
            let at = split.index(joined.len() + 1);
            prop_assume!(at != domain.len() && joined.is_char_boundary(at));
            let index = BlindIndexKey::from_bytes([3; KEY_LEN]);
            prop_assert_ne!(
                index.blind_index(&domain, &value),
                index.blind_index(&joined[..at], &joined[at..])
            );
        }
    }
}
