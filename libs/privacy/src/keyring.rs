//! Envelope encryption: subjects' [`DataKey`]s wrapped under key-encryption keys.
//!
//! [`WrappedKey`] byte format, version 1 (what [`WrappedKey::to_bytes`] returns and a bytea
//! column stores):
//!
//! ```text
//! 0x01 || kek id length (1 byte) || kek id (ASCII) || nonce (12 bytes)
//!      || wrapped data key (32 bytes) || GCM tag (16 bytes)
//! ```
//!
//! The key is wrapped with AES-256-GCM under the KEK; the associated data is the header
//! (`0x01 || id length || id`) followed by the subject id. So a wrapped key copied onto
//! another subject does not unwrap, and neither does one whose KEK id was relabelled.

use std::fmt;

use zeroize::Zeroizing;

use crate::field::{NONCE_LEN, TAG_LEN, open, seal};
use crate::key::{DataKey, KEY_LEN, Kek, KeyBytes, is_valid_kek_id};

const VERSION: u8 = 1;
const SEALED_LEN: usize = KEY_LEN + TAG_LEN;

/// A subject's data key, encrypted under the KEK named by [`WrappedKey::kek_id`]. This is
/// what gets stored; deleting it crypto-shreds the subject.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    kek_id: String,
    nonce: [u8; NONCE_LEN],
    /// The encrypted key followed by the GCM tag.
    sealed: [u8; SEALED_LEN],
}

impl WrappedKey {
    /// The id of the KEK this key is wrapped under.
    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }

    /// The stable, versioned encoding (see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Parses [`WrappedKey::to_bytes`]'s output. Checks the shape only: whether the key
    /// unwraps is for [`Keyring::unwrap`] to say.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WrappedKeyDecodeError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(WrappedKeyDecodeError::Truncated)?;
        if version != VERSION {
            return Err(WrappedKeyDecodeError::UnknownVersion(version));
        }
        let (&id_len, rest) = rest.split_first().ok_or(WrappedKeyDecodeError::Truncated)?;
        let id_len = usize::from(id_len);
        if rest.len() != id_len + NONCE_LEN + SEALED_LEN {
            return Err(WrappedKeyDecodeError::WrongLength { len: bytes.len() });
        }
        let (id, rest) = rest.split_at(id_len);
        let kek_id = std::str::from_utf8(id)
            .ok()
            .filter(|id| is_valid_kek_id(id))
            .ok_or(WrappedKeyDecodeError::InvalidKekId)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        Ok(Self {
            kek_id: kek_id.to_owned(),
            nonce: nonce
                .try_into()
                .map_err(|_| WrappedKeyDecodeError::WrongLength { len: bytes.len() })?,
            sealed: sealed
                .try_into()
                .map_err(|_| WrappedKeyDecodeError::WrongLength { len: bytes.len() })?,
        })
    }

    /// `version || id length || id`: the start of the encoding and of the AAD.
    fn header(&self) -> Vec<u8> {
        header(&self.kek_id)
    }
}

fn header(kek_id: &str) -> Vec<u8> {
    let id_len = u8::try_from(kek_id.len()).expect("a valid KEK id is at most 64 bytes");
    let mut out = Vec::with_capacity(2 + kek_id.len() + NONCE_LEN + SEALED_LEN);
    out.push(VERSION);
    out.push(id_len);
    out.extend_from_slice(kek_id.as_bytes());
    out
}

fn wrap_aad(kek_id: &str, subject: &[u8]) -> Vec<u8> {
    let mut aad = header(kek_id);
    aad.extend_from_slice(subject);
    aad
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ciphertext, not secret, but of no use in a log line.
        f.debug_struct("WrappedKey")
            .field("kek_id", &self.kek_id)
            .finish_non_exhaustive()
    }
}

/// Why stored bytes are not a [`WrappedKey`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WrappedKeyDecodeError {
    #[error("wrapped key is truncated")]
    Truncated,
    #[error("unknown wrapped key format version {0}")]
    UnknownVersion(u8),
    #[error("wrapped key of {len} bytes has the wrong length for its header")]
    WrongLength { len: usize },
    #[error("wrapped key names an invalid key-encryption key id")]
    InvalidKekId,
}

/// Why a [`WrappedKey`] could not be unwrapped.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    #[error("no key-encryption key {kek_id:?} in the keyring")]
    UnknownKek { kek_id: String },
    #[error(
        "key wrapped under {kek_id:?} failed authentication (another subject's key, or altered)"
    )]
    Authentication { kek_id: String },
}

/// Two KEKs of one keyring share an id.
#[derive(Debug, thiserror::Error)]
#[error("key-encryption key id {id:?} is in the keyring twice")]
pub struct DuplicateKekId {
    pub id: String,
}

/// The KEKs a service holds: one active KEK, which wraps new keys, and retired ones, kept
/// only to unwrap keys that have not been rewrapped yet.
pub struct Keyring {
    active: Kek,
    retired: Vec<Kek>,
}

impl Keyring {
    pub fn new(active: Kek) -> Self {
        Self {
            active,
            retired: Vec::new(),
        }
    }

    /// Adds a retired KEK: it unwraps, it never wraps.
    pub fn with_retired(mut self, kek: Kek) -> Result<Self, DuplicateKekId> {
        if self.find(kek.id()).is_some() {
            return Err(DuplicateKekId {
                id: kek.id().to_owned(),
            });
        }
        self.retired.push(kek);
        Ok(self)
    }

    /// The id of the KEK new keys are wrapped under.
    pub fn active_id(&self) -> &str {
        self.active.id()
    }

    /// Wraps `key` under the active KEK, bound to `subject` (the subject's stable id).
    ///
    /// # Panics
    /// If the operating system's random generator fails.
    pub fn wrap(&self, key: &DataKey, subject: &[u8]) -> WrappedKey {
        let kek_id = self.active.id();
        let (nonce, sealed) = seal(self.active.bytes(), key.bytes(), &wrap_aad(kek_id, subject));
        WrappedKey {
            kek_id: kek_id.to_owned(),
            nonce,
            sealed: sealed
                .try_into()
                .expect("AES-GCM output is the key plus one tag"),
        }
    }

    /// Unwraps a key that [`Keyring::wrap`] wrapped for the same `subject`, under the active
    /// KEK or a retired one.
    pub fn unwrap(&self, wrapped: &WrappedKey, subject: &[u8]) -> Result<DataKey, UnwrapError> {
        let kek = self
            .find(&wrapped.kek_id)
            .ok_or_else(|| UnwrapError::UnknownKek {
                kek_id: wrapped.kek_id.clone(),
            })?;
        let authentication = || UnwrapError::Authentication {
            kek_id: wrapped.kek_id.clone(),
        };
        let plain = Zeroizing::new(
            open(
                kek.bytes(),
                &wrapped.nonce,
                &wrapped.sealed,
                &wrap_aad(&wrapped.kek_id, subject),
            )
            .ok_or_else(authentication)?,
        );
        KeyBytes::from_slice(&plain)
            .map(DataKey::from_key_bytes)
            .ok_or_else(authentication)
    }

    /// Whether `wrapped` is under a KEK other than the active one, so [`Keyring::rewrap`]
    /// should move it before that KEK is dropped.
    pub fn needs_rewrap(&self, wrapped: &WrappedKey) -> bool {
        wrapped.kek_id != self.active.id()
    }

    /// Re-wraps a key under the active KEK: KEK rotation without re-encrypting any data.
    ///
    /// # Panics
    /// If the operating system's random generator fails.
    pub fn rewrap(&self, wrapped: &WrappedKey, subject: &[u8]) -> Result<WrappedKey, UnwrapError> {
        Ok(self.wrap(&self.unwrap(wrapped, subject)?, subject))
    }

    fn find(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.active)
            .chain(&self.retired)
            .find(|kek| kek.id() == id)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active.id())
            .field(
                "retired",
                &self.retired.iter().map(Kek::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::{decrypt, encrypt};
    use proptest::prelude::*;

    fn kek(id: &str, byte: u8) -> Kek {
        Kek::new(id, [byte; KEY_LEN]).expect("a valid id")
    }

    #[test]
    fn encoding_is_versioned_and_names_the_kek() {
        let keyring = Keyring::new(kek("2026-11", 1));
        let wrapped = keyring.wrap(&DataKey::generate(), b"subject");
        let bytes = wrapped.to_bytes();
        assert_eq!(bytes.len(), 2 + 7 + NONCE_LEN + KEY_LEN + TAG_LEN);
        assert_eq!(&bytes[..9], b"\x01\x072026-11");
        assert_eq!(WrappedKey::from_bytes(&bytes), Ok(wrapped));
    }

    #[test]
    fn malformed_encodings_are_rejected() {
        let keyring = Keyring::new(kek("k1", 1));
        let bytes = keyring.wrap(&DataKey::generate(), b"s").to_bytes();
        assert_eq!(
            WrappedKey::from_bytes(&[]),
            Err(WrappedKeyDecodeError::Truncated)
        );
        assert_eq!(
            WrappedKey::from_bytes(&[VERSION]),
            Err(WrappedKeyDecodeError::Truncated)
        );
        assert_eq!(
            WrappedKey::from_bytes(&[2, 0]),
            Err(WrappedKeyDecodeError::UnknownVersion(2))
        );
        assert_eq!(
            WrappedKey::from_bytes(&bytes[..bytes.len() - 1]),
            Err(WrappedKeyDecodeError::WrongLength {
                len: bytes.len() - 1
            })
        );
        let mut bad_id = bytes.clone();
        bad_id[2] = b' ';
        assert_eq!(
            WrappedKey::from_bytes(&bad_id),
            Err(WrappedKeyDecodeError::InvalidKekId)
        );
    }

    #[test]
    fn relabelled_kek_id_fails() {
        let keyring = Keyring::new(kek("k1", 1))
            .with_retired(kek("k2", 1))
            .expect("distinct ids");
        let mut bytes = keyring.wrap(&DataKey::generate(), b"s").to_bytes();
        bytes[3] = b'2';
        let relabelled = WrappedKey::from_bytes(&bytes).expect("still well-formed");
        assert_eq!(
            keyring.unwrap(&relabelled, b"s").map(drop),
            Err(UnwrapError::Authentication {
                kek_id: "k2".into()
            })
        );
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let err = Keyring::new(kek("k1", 1))
            .with_retired(kek("k1", 2))
            .expect_err("same id twice");
        assert_eq!(err.id, "k1");
    }

    #[test]
    fn debug_shows_ids_only() {
        let keyring = Keyring::new(kek("new", 1))
            .with_retired(kek("old", 2))
            .expect("distinct ids");
        assert_eq!(
            format!("{keyring:?}"),
            r#"Keyring { active: "new", retired: ["old"] }"#
        );
        let wrapped = keyring.wrap(&DataKey::generate(), b"s");
        assert_eq!(
            format!("{wrapped:?}"),
            r#"WrappedKey { kek_id: "new", .. }"#
        );
    }

    proptest! {
        #[test]
        fn wrap_unwrap_roundtrip(
            subject in any::<Vec<u8>>(),
            plaintext in any::<Vec<u8>>(),
        ) {
            let keyring = Keyring::new(kek("k1", 1));
            let key = DataKey::generate();
            let ciphertext = encrypt(&key, &plaintext, &subject);
            let stored = keyring.wrap(&key, &subject).to_bytes();
            let wrapped = WrappedKey::from_bytes(&stored).expect("own encoding parses");
            let unwrapped = keyring.unwrap(&wrapped, &subject).expect("same subject");
            prop_assert_eq!(unwrapped.bytes(), key.bytes());
            prop_assert_eq!(decrypt(&unwrapped, &ciphertext, &subject), Ok(Zeroizing::new(plaintext)));
        }

        #[test]
        fn unwrap_for_another_subject_fails(
            subject in any::<Vec<u8>>(),
            other in any::<Vec<u8>>(),
        ) {
            prop_assume!(subject != other);
            let keyring = Keyring::new(kek("k1", 1));
            let wrapped = keyring.wrap(&DataKey::generate(), &subject);
            prop_assert_eq!(
                keyring.unwrap(&wrapped, &other).map(drop),
                Err(UnwrapError::Authentication { kek_id: "k1".into() })
            );
        }

        #[test]
        fn any_single_bit_flip_of_a_wrapped_key_fails(bit in any::<prop::sample::Index>()) {
            let keyring = Keyring::new(kek("k1", 1));
            let mut bytes = keyring.wrap(&DataKey::generate(), b"s").to_bytes();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let unwrapped = WrappedKey::from_bytes(&bytes)
                .map_err(|_| ())
                .and_then(|wrapped| keyring.unwrap(&wrapped, b"s").map_err(|_| ()));
            prop_assert!(unwrapped.is_err());
        }

        #[test]
        fn rewrap_after_rotation(subject in any::<Vec<u8>>(), plaintext in any::<Vec<u8>>()) {
            let old_only = Keyring::new(kek("2026-10", 1));
            let key = DataKey::generate();
            let ciphertext = encrypt(&key, &plaintext, b"aad");
            let wrapped = old_only.wrap(&key, &subject);
            drop(key);

            let rotated = Keyring::new(kek("2026-11", 2))
                .with_retired(kek("2026-10", 1))
                .expect("distinct ids");
            prop_assert!(rotated.needs_rewrap(&wrapped));
            let rewrapped = rotated.rewrap(&wrapped, &subject).expect("retired KEK unwraps");
            prop_assert_eq!(rewrapped.kek_id(), "2026-11");
            prop_assert!(!rotated.needs_rewrap(&rewrapped));

            // The rewrapped key still opens the data encrypted before the rotation...
            let after_rotation = Keyring::new(kek("2026-11", 2));
            let key = after_rotation.unwrap(&rewrapped, &subject).expect("active KEK unwraps");
            prop_assert_eq!(decrypt(&key, &ciphertext, b"aad"), Ok(Zeroizing::new(plaintext)));
            // ...and the old KEK alone no longer can.
            prop_assert_eq!(
                old_only.unwrap(&rewrapped, &subject).map(drop),
                Err(UnwrapError::UnknownKek { kek_id: "2026-11".into() })
            );
        }
    }
}
