//! Secrets that never print: read from a file, redacted in `Debug` and `Display`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The shortest bearer token a service accepts in its configuration (an operator token, an
/// internal client's token): 16 characters, so a guessable one stops the process at start-up.
pub const MIN_BEARER_TOKEN_LEN: usize = 16;

/// A secret value. Its `Debug` and `Display` print `[redacted]`, so a secret that ends up in a
/// log line or an error message by mistake does not leak.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself. Named loudly so every use stands out in review.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read secret file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file {path} is empty")]
    Empty { path: PathBuf },
}

/// Reads a secret from a file, trimming one trailing newline (as `echo` writes it).
pub fn read_secret_file(path: &Path) -> Result<Secret<String>, SecretFileError> {
    let raw = std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(SecretFileError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_and_display() {
        let s = Secret::new("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_file_is_trimmed_and_empty_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(read_secret_file(&path).expect("read").expose(), "s3cret");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretFileError::Empty { .. })
        ));
        let missing = dir.path().join("missing");
        let err = read_secret_file(&missing).expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
