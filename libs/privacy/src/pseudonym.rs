//! Keyed, rotating pseudonyms for analytics ids.
//!
//! `pseudonym = lowercase hex of the first 16 bytes of HMAC-SHA256(epoch key,
//! "comptoir-privacy/pseudonym/v1" || u64 big-endian length of epoch || epoch || subject)`.
//!
//! Each epoch (say a month, `2026-11`) has its own independent key, so the pseudonyms of one
//! subject in two epochs cannot be linked without both keys; once an epoch's key is
//! destroyed, its pseudonyms cannot be linked to anyone, even by us.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::Path;

use crate::blind_index::hmac_sha256;
use crate::key::{KEY_LEN, KeyBytes, KeyFileError};

const LABEL: &[u8] = b"comptoir-privacy/pseudonym/v1";
/// 128 bits: collisions stay negligible for any realistic number of subjects.
const PSEUDONYM_LEN: usize = 16;

/// One epoch's pseudonymisation key.
pub struct PseudonymKey(KeyBytes);

impl PseudonymKey {
    /// Reads the key from a key file (standard base64 of 32 bytes, whitespace trimmed).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        KeyBytes::from_file(path.as_ref()).map(Self)
    }

    /// Prefer [`PseudonymKey::from_file`]: bytes passed by value leave copies this crate
    /// cannot zeroize.
    pub fn from_bytes(key: [u8; KEY_LEN]) -> Self {
        Self(KeyBytes::new(key))
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey([redacted])")
    }
}

/// No key is held for the epoch asked for.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("no pseudonymisation key for epoch {epoch:?}")]
pub struct UnknownEpoch {
    pub epoch: String,
}

/// The pseudonymisation keys of the epochs a service may still write or read.
#[derive(Default)]
pub struct Pseudonymizer {
    keys: BTreeMap<String, PseudonymKey>,
}

impl Pseudonymizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the key of `epoch`.
    pub fn with_epoch(mut self, epoch: impl Into<String>, key: PseudonymKey) -> Self {
        self.keys.insert(epoch.into(), key);
        self
    }

    /// The pseudonym of `subject_id` in `epoch`: 32 lowercase hex characters.
    pub fn pseudonym(&self, epoch: &str, subject_id: &[u8]) -> Result<String, UnknownEpoch> {
        let key = self.keys.get(epoch).ok_or_else(|| UnknownEpoch {
            epoch: epoch.to_owned(),
        })?;
        let mac = hmac_sha256(
            key.0.expose(),
            &[
                LABEL,
                &(epoch.len() as u64).to_be_bytes(),
                epoch.as_bytes(),
                subject_id,
            ],
        );
        let mut out = String::with_capacity(2 * PSEUDONYM_LEN);
        for byte in &mac[..PSEUDONYM_LEN] {
            write!(out, "{byte:02x}").expect("writing to a String cannot fail");
        }
        Ok(out)
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pseudonymizer")
            .field("epochs", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pseudonymizer() -> Pseudonymizer {
        Pseudonymizer::new()
            .with_epoch("2026-10", PseudonymKey::from_bytes([1; KEY_LEN]))
            .with_epoch("2026-11", PseudonymKey::from_bytes([2; KEY_LEN]))
    }

    #[test]
    fn unknown_epoch_is_an_error() {
        assert_eq!(
            pseudonymizer().pseudonym("2026-12", b"subject"),
            Err(UnknownEpoch {
                epoch: "2026-12".into()
            })
        );
    }

    #[test]
    fn pseudonyms_are_32_hex_characters() {
        let id = pseudonymizer()
            .pseudonym("2026-11", b"subject")
            .expect("known epoch");
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{id}"
        );
    }

    #[test]
    fn debug_shows_epochs_only() {
        assert_eq!(
            format!("{:?}", pseudonymizer()),
            r#"Pseudonymizer { epochs: ["2026-10", "2026-11"] }"#
        );
    }

    #[test]
    fn same_key_in_two_epochs_still_gives_unlinkable_ids() {
        let p = Pseudonymizer::new()
            .with_epoch("a", PseudonymKey::from_bytes([5; KEY_LEN]))
            .with_epoch("b", PseudonymKey::from_bytes([5; KEY_LEN]));
        assert_ne!(p.pseudonym("a", b"s"), p.pseudonym("b", b"s"));
    }

    proptest! {
        #[test]
        fn stable_within_an_epoch_and_unlinkable_across(
            subject in any::<Vec<u8>>(),
            other in any::<Vec<u8>>(),
        ) {
            prop_assume!(subject != other);
            let p = pseudonymizer();
            let this_month = p.pseudonym("2026-11", &subject).expect("known epoch");
            prop_assert_eq!(&this_month, &p.pseudonym("2026-11", &subject).expect("known epoch"));
            prop_assert_ne!(&this_month, &p.pseudonym("2026-10", &subject).expect("known epoch"));
            prop_assert_ne!(&this_month, &p.pseudonym("2026-11", &other).expect("known epoch"));
        }
    }
}
