//! Personal data (PII) protection primitives for Comptoir (docs/architecture.md §5).
//!
//! - [`pii`]: [`Pii<T>`], a wrapper whose `Debug` and `Display` redact and which can be
//!   deserialized from a request body but never serialized into an event or a log record.
//! - [`key`]: the key types: a per-subject [`DataKey`], a key-encryption key [`Kek`], and the
//!   key-file reader they and the HMAC keys share.
//! - [`keyring`]: envelope encryption: a [`Keyring`] wraps each subject's data key under the
//!   active KEK into a [`WrappedKey`], unwraps under older ones, and rewraps on rotation.
//! - [`field`]: AES-256-GCM encryption of a field's value under a subject's data key.
//! - [`blind_index`]: a keyed, domain-separated blind index ([`BlindIndexKey`]) so that lookups
//!   such as login by email never need the plaintext.
//! - [`pseudonym`]: keyed, per-epoch pseudonyms for analytics ids ([`Pseudonymizer`]).
//!
//! # Crypto-shredding
//!
//! Every field of a subject is encrypted under that subject's own [`DataKey`], and the data key
//! is stored only wrapped (encrypted) under a KEK. Deleting the subject's [`WrappedKey`] makes
//! every ciphertext of that subject unreadable, wherever copies of it live (replicas, backups,
//! exports): erasure is one row delete, not a hunt through every store. That holds once no
//! copy of the wrapped key survives either: backups holding it must expire, or the KEK they
//! were wrapped under be rotated out and destroyed.
//!
//! # Rotation
//!
//! A KEK is rotated without touching the data: add a new active KEK to the [`Keyring`], keep
//! the old one as retired, and [`Keyring::rewrap`] each wrapped key that
//! [`Keyring::needs_rewrap`]; once none is left, drop the old KEK. Pseudonym keys rotate by
//! epoch, and dropping an old epoch's key makes its pseudonyms unlinkable for good.
//!
//! # Secrets
//!
//! Operational secrets (passwords, tokens) are not personal data: they use
//! `comptoir_platform::secret::Secret`, which this crate does not depend on so that it stays
//! free of the HTTP stack.
//!
//! Only RustCrypto primitives (`aes-gcm`, `hmac`, `sha2`) are used; keys are zeroized on drop
//! and random bytes come from the operating system.

pub mod blind_index;
pub mod field;
pub mod key;
pub mod keyring;
pub mod pii;
pub mod pseudonym;

pub use blind_index::{BlindIndexKey, normalize_email};
pub use field::{DecryptError, decrypt, decrypt_str, encrypt, encrypt_str, field_aad};
pub use key::{DataKey, InvalidKekId, KEY_LEN, Kek, KeyFileError};
pub use keyring::{DuplicateKekId, Keyring, UnwrapError, WrappedKey, WrappedKeyDecodeError};
pub use pii::Pii;
pub use pseudonym::{PseudonymKey, Pseudonymizer, UnknownEpoch};
