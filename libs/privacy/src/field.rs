//! Field encryption under a subject's [`DataKey`]: AES-256-GCM with a random 96-bit nonce.
//!
//! Ciphertext format, version 1 (what [`encrypt`] returns and a bytea column stores):
//!
//! ```text
//! 0x01 || nonce (12 bytes) || ciphertext (len of plaintext) || GCM tag (16 bytes)
//! ```
//!
//! The GCM associated data is the version byte followed by the caller's AAD, so the format
//! version is authenticated too. The caller's AAD names where the value lives, typically
//! [`field_aad`]`(subject id, field name)`: a ciphertext copied onto another subject's row
//! or into another column then fails to decrypt instead of passing for that other value.
//!
//! A random nonce is safe for about 2^32 encryptions under one key; one data key per subject
//! is far below that.

use aes_gcm::aead::Aead as _;
use aes_gcm::aead::Payload;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use zeroize::Zeroizing;

use crate::key::{DataKey, KEY_LEN, fill_random};
use crate::pii::Pii;

const VERSION: u8 = 1;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;

/// Why a ciphertext could not be decrypted. Deliberately vague about the authentication
/// failure: wrong key, wrong AAD and tampering are indistinguishable by design.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("ciphertext of {len} bytes is too short to be one")]
    Truncated { len: usize },
    #[error("unknown ciphertext format version {0}")]
    UnknownVersion(u8),
    #[error("ciphertext failed authentication (wrong key, wrong AAD, or altered)")]
    Authentication,
    /// Only from [`decrypt_str`]. The bytes are not kept: they are personal data.
    #[error("decrypted value is not UTF-8")]
    NotUtf8,
}

/// Encrypts `plaintext` under `key`, bound to `aad` (see the module docs for the format).
///
/// # Panics
/// If the operating system's random generator fails, or the plaintext exceeds AES-GCM's limit
/// of 64 GiB; neither happens to a field value.
pub fn encrypt(key: &DataKey, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let (nonce, sealed) = seal(key.bytes(), plaintext, &versioned_aad(aad));
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Decrypts what [`encrypt`] returned, given the same key and AAD.
///
/// The plaintext comes back in a buffer that is wiped when dropped.
pub fn decrypt(
    key: &DataKey,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
    let Some((&version, rest)) = ciphertext.split_first() else {
        return Err(DecryptError::Truncated { len: 0 });
    };
    if version != VERSION {
        return Err(DecryptError::UnknownVersion(version));
    }
    let Some((nonce, sealed)) = rest.split_first_chunk::<NONCE_LEN>() else {
        return Err(DecryptError::Truncated {
            len: ciphertext.len(),
        });
    };
    if sealed.len() < TAG_LEN {
        return Err(DecryptError::Truncated {
            len: ciphertext.len(),
        });
    }
    open(key.bytes(), nonce, sealed, &versioned_aad(aad))
        .map(Zeroizing::new)
        .ok_or(DecryptError::Authentication)
}

/// [`encrypt`] for text.
///
/// # Panics
/// As [`encrypt`].
pub fn encrypt_str(key: &DataKey, plaintext: &str, aad: &[u8]) -> Vec<u8> {
    encrypt(key, plaintext.as_bytes(), aad)
}

/// [`decrypt`] for text that [`encrypt_str`] encrypted; the result stays wrapped in [`Pii`].
pub fn decrypt_str(
    key: &DataKey,
    ciphertext: &[u8],
    aad: &[u8],
) -> Result<Pii<String>, DecryptError> {
    let bytes = decrypt(key, ciphertext, aad)?;
    // One copy into the Pii (wiped when dropped); the decrypted buffer is wiped here.
    std::str::from_utf8(&bytes)
        .map(|text| Pii::new(text.to_owned()))
        .map_err(|_| DecryptError::NotUtf8)
}

/// The AAD that binds a value to one subject and one field: `u32 big-endian length of
/// subject || subject || field`. The length prefix keeps the pair unambiguous (subject `ab`
/// with field `c` differs from subject `a` with field `bc`).
///
/// # Panics
/// If `subject` is 4 GiB or longer.
pub fn field_aad(subject: &[u8], field: &str) -> Vec<u8> {
    let subject_len = u32::try_from(subject.len()).expect("a subject id is shorter than 4 GiB");
    let mut aad = Vec::with_capacity(4 + subject.len() + field.len());
    aad.extend_from_slice(&subject_len.to_be_bytes());
    aad.extend_from_slice(subject);
    aad.extend_from_slice(field.as_bytes());
    aad
}

fn versioned_aad(aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + aad.len());
    out.push(VERSION);
    out.extend_from_slice(aad);
    out
}

/// AES-256-GCM under a fresh random nonce: returns the nonce and `ciphertext || tag`.
pub(crate) fn seal(
    key: &[u8; KEY_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> ([u8; NONCE_LEN], Vec<u8>) {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encrypts anything shorter than 64 GiB");
    (nonce, sealed)
}

/// The inverse of [`seal`]; `None` when authentication fails.
pub(crate) fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    sealed: &[u8],
    aad: &[u8],
) -> Option<Vec<u8>> {
    Aes256Gcm::new(key.into())
        .decrypt(nonce.into(), Payload { msg: sealed, aad })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format_is_version_nonce_ciphertext_tag() {
        let key = DataKey::generate();
        let out = encrypt(&key, b"hello", b"aad");
        assert_eq!(out.len(), 1 + NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(out[0], VERSION);
    }

    #[test]
    fn same_plaintext_encrypts_differently_each_time() {
        let key = DataKey::generate();
        assert_ne!(encrypt(&key, b"same", b""), encrypt(&key, b"same", b""));
    }

    #[test]
    fn a_value_moved_to_another_row_or_field_fails() {
        let key = DataKey::generate();
        let out = encrypt_str(&key, "ada@example.com", &field_aad(b"subject-1", "email"));
        assert_eq!(
            decrypt_str(&key, &out, &field_aad(b"subject-1", "email"))
                .expect("same subject and field")
                .expose(),
            "ada@example.com"
        );
        for aad in [
            field_aad(b"subject-2", "email"),
            field_aad(b"subject-1", "phone"),
        ] {
            assert_eq!(decrypt(&key, &out, &aad), Err(DecryptError::Authentication));
        }
    }

    #[test]
    fn field_aad_is_unambiguous() {
        assert_ne!(field_aad(b"ab", "c"), field_aad(b"a", "bc"));
    }

    #[test]
    fn short_and_unknown_inputs_are_told_apart() {
        let key = DataKey::generate();
        assert_eq!(
            decrypt(&key, &[], b""),
            Err(DecryptError::Truncated { len: 0 })
        );
        assert_eq!(
            decrypt(&key, &[VERSION; 28], b""),
            Err(DecryptError::Truncated { len: 28 })
        );
        assert_eq!(
            decrypt(&key, &[9; 40], b""),
            Err(DecryptError::UnknownVersion(9))
        );
    }

    #[test]
    fn non_utf8_plaintext_is_reported_without_its_bytes() {
        let key = DataKey::generate();
        let out = encrypt(&key, &[0xff, 0xfe], b"");
        assert_eq!(decrypt_str(&key, &out, b""), Err(DecryptError::NotUtf8));
    }

    proptest! {
        #[test]
        fn roundtrip(plaintext in any::<Vec<u8>>(), aad in any::<Vec<u8>>()) {
            let key = DataKey::generate();
            let out = encrypt(&key, &plaintext, &aad);
            prop_assert_eq!(decrypt(&key, &out, &aad), Ok(Zeroizing::new(plaintext)));
        }

        #[test]
        fn str_roundtrip(plaintext in any::<String>(), aad in any::<Vec<u8>>()) {
            let key = DataKey::generate();
            let out = encrypt_str(&key, &plaintext, &aad);
            prop_assert_eq!(decrypt_str(&key, &out, &aad), Ok(Pii::new(plaintext)));
        }

        #[test]
        fn any_single_bit_flip_fails(
            plaintext in any::<Vec<u8>>(),
            aad in any::<Vec<u8>>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let key = DataKey::generate();
            let mut out = encrypt(&key, &plaintext, &aad);
            let bit = bit.index(out.len() * 8);
            out[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decrypt(&key, &out, &aad).is_err());
        }

        #[test]
        fn another_aad_fails(
            plaintext in any::<Vec<u8>>(),
            aad in any::<Vec<u8>>(),
            other in any::<Vec<u8>>(),
        ) {
            prop_assume!(aad != other);
            let key = DataKey::generate();
            let out = encrypt(&key, &plaintext, &aad);
            prop_assert_eq!(decrypt(&key, &out, &other), Err(DecryptError::Authentication));
        }

        #[test]
        fn another_data_key_fails(plaintext in any::<Vec<u8>>(), aad in any::<Vec<u8>>()) {
            let out = encrypt(&DataKey::generate(), &plaintext, &aad);
            prop_assert_eq!(
                decrypt(&DataKey::generate(), &out, &aad),
                Err(DecryptError::Authentication)
            );
        }
    }
}
