//! Key material: per-subject [`DataKey`]s, key-encryption keys ([`Kek`]) and the key-file
//! format every long-lived key is read from.
//!
//! A key file holds exactly [`KEY_LEN`] bytes as standard base64 (with padding), surrounding
//! whitespace ignored: `openssl rand -base64 32 > kek-2026-11` makes one. Errors name the file,
//! never its content.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// The length of every key in this crate: AES-256 and HMAC-SHA256 keys alike.
pub const KEY_LEN: usize = 32;

/// Fills `buf` from the operating system's random generator.
///
/// # Panics
/// If the generator fails: without it no key or nonce can be made safely, and `rand::rng()`
/// panics in the same case.
pub(crate) fn fill_random(buf: &mut [u8]) {
    OsRng
        .try_fill_bytes(buf)
        .expect("the operating system's random generator failed");
}

/// 32 secret bytes, zeroized on drop. Never printed: the types holding it redact.
pub(crate) struct KeyBytes(Zeroizing<[u8; KEY_LEN]>);

impl KeyBytes {
    pub(crate) fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Fresh bytes from the operating system's generator.
    pub(crate) fn random() -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut());
        Self(bytes)
    }

    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads a key file (see the module docs for the format).
    pub(crate) fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        let raw = Zeroizing::new(std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?);
        // The decode error is dropped on purpose: its message quotes the offending byte.
        let decoded = Zeroizing::new(STANDARD.decode(raw.trim_ascii()).map_err(|_| {
            KeyFileError::NotBase64 {
                path: path.to_owned(),
            }
        })?);
        Self::from_slice(&decoded).ok_or_else(|| KeyFileError::WrongLength {
            path: path.to_owned(),
            len: decoded.len(),
        })
    }

    /// Copies `bytes` straight into zeroized storage; `None` unless it is [`KEY_LEN`] long.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        Some(Self(key))
    }
}

/// Why a key file could not be used. Messages name the path, never the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {} does not hold standard base64", path.display())]
    NotBase64 { path: PathBuf },
    #[error("key file {} holds {len} bytes once decoded, a key is {KEY_LEN}", path.display())]
    WrongLength { path: PathBuf, len: usize },
    #[error(transparent)]
    InvalidKekId(#[from] InvalidKekId),
}

/// A subject's data key: every field of one subject is encrypted under it
/// ([`crate::field`]), and it is stored only wrapped by a [`crate::Keyring`]. Deleting the
/// wrapped key crypto-shreds the subject.
pub struct DataKey(KeyBytes);

impl DataKey {
    /// A fresh random key, for a new subject.
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }

    pub(crate) fn from_key_bytes(bytes: KeyBytes) -> Self {
        Self(bytes)
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        self.0.expose()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// The longest KEK id, so that it fits the one-byte length of [`crate::WrappedKey`]'s
/// encoding with room to spare.
const KEK_ID_MAX_LEN: usize = 64;

/// A key-encryption key: wraps subjects' data keys, never encrypts data itself. Its `id`
/// (e.g. `2026-11`) is stored beside every key it wraps, so that the right KEK is found on
/// unwrap after a rotation.
pub struct Kek {
    id: String,
    key: KeyBytes,
}

impl Kek {
    /// A KEK from its id and bytes. Prefer [`Kek::from_file`]: bytes passed by value leave
    /// copies this crate cannot zeroize.
    pub fn new(id: impl Into<String>, key: [u8; KEY_LEN]) -> Result<Self, InvalidKekId> {
        Ok(Self {
            id: validate_kek_id(id.into())?,
            key: KeyBytes::new(key),
        })
    }

    /// Reads a KEK from a key file (standard base64 of 32 bytes, whitespace trimmed).
    pub fn from_file(id: impl Into<String>, path: impl AsRef<Path>) -> Result<Self, KeyFileError> {
        let id = validate_kek_id(id.into())?;
        let key = KeyBytes::from_file(path.as_ref())?;
        Ok(Self { id, key })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        self.key.expose()
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

/// A KEK id must be 1 to 64 ASCII letters, digits, `-`, `_` or `.`: it is stored in clear
/// beside every wrapped key and shows up in logs.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid key-encryption key id {id:?}: use 1 to {KEK_ID_MAX_LEN} ASCII letters, digits, '-', '_' or '.'"
)]
pub struct InvalidKekId {
    pub id: String,
}

pub(crate) fn is_valid_kek_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= KEK_ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn validate_kek_id(id: String) -> Result<String, InvalidKekId> {
    if is_valid_kek_id(&id) {
        Ok(id)
    } else {
        Err(InvalidKekId { id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write as _;

    fn key_file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("create a temporary file");
        file.write_all(content).expect("write the temporary file");
        file
    }

    #[test]
    fn reads_a_base64_key_with_surrounding_whitespace() {
        let key = [7u8; KEY_LEN];
        let file = key_file(format!("  {}\r\n\n", STANDARD.encode(key)).as_bytes());
        let kek = Kek::from_file("2026-11", file.path()).expect("a valid key file");
        assert_eq!(kek.id(), "2026-11");
        assert_eq!(kek.bytes(), &key);
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let path = dir.path().join("no-such-kek");
        let err = Kek::from_file("k1", &path).expect_err("the file does not exist");
        assert!(matches!(err, KeyFileError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn non_base64_content_is_named_by_path_only() {
        let content = "s3cr3t-but-not-base64!";
        let file = key_file(content.as_bytes());
        let err = Kek::from_file("k1", file.path()).expect_err("not base64");
        assert!(matches!(err, KeyFileError::NotBase64 { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains(&file.path().display().to_string()),
            "{shown}"
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn wrong_length_says_how_long_but_not_what() {
        let encoded = STANDARD.encode([0xAB; 31]);
        let file = key_file(encoded.as_bytes());
        let err = Kek::from_file("k1", file.path()).expect_err("31 bytes is too short");
        assert!(
            matches!(err, KeyFileError::WrongLength { len: 31, .. }),
            "{err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            shown.contains(&file.path().display().to_string()),
            "{shown}"
        );
        assert!(!shown.contains(&encoded), "{shown}");
    }

    #[test]
    fn empty_file_is_the_wrong_length() {
        let file = key_file(b"\n");
        let err = Kek::from_file("k1", file.path()).expect_err("empty");
        assert!(
            matches!(err, KeyFileError::WrongLength { len: 0, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn kek_ids_are_checked_before_the_file_is_read() {
        for id in ["", "with space", "é", &"x".repeat(KEK_ID_MAX_LEN + 1)] {
            let err = Kek::from_file(id, "/nonexistent").expect_err("invalid id");
            assert!(
                matches!(err, KeyFileError::InvalidKekId(_)),
                "{id:?}: {err:?}"
            );
        }
        assert!(Kek::new("2026-11_a.b", [0; KEY_LEN]).is_ok());
    }

    #[test]
    fn generated_data_keys_differ() {
        assert_ne!(DataKey::generate().bytes(), DataKey::generate().bytes());
    }

    proptest! {
        #[test]
        fn debug_never_shows_key_bytes(
            key in any::<[u8; KEY_LEN]>(),
            id in "[A-Za-z0-9._-]{1,64}",
        ) {
            let kek = Kek::new(id.clone(), key).expect("a valid id");
            prop_assert_eq!(
                format!("{kek:?}"),
                format!("Kek {{ id: {id:?}, key: [redacted] }}")
            );
            let data_key = DataKey::from_key_bytes(KeyBytes::new(key));
            prop_assert_eq!(format!("{data_key:?}"), "DataKey([redacted])");
        }
    }
}
