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

/// What is wrong with the bearer-token file a setting `key` names (unset, unreadable, shorter
/// than [`MIN_BEARER_TOKEN_LEN`]), for a settings validation; `why` says what needs it.
pub fn bearer_token_file_problem(key: &str, path: Option<&Path>, why: &str) -> Option<String> {
    let Some(path) = path else {
        return Some(format!("{key} must be set: {why}"));
    };
    match read_secret_file(path) {
        Err(error) => Some(format!("{key}: {}", crate::telemetry::error_chain(&error))),
        Ok(token) if token.expose().len() < MIN_BEARER_TOKEN_LEN => Some(format!(
            "{key}: the token must be at least {MIN_BEARER_TOKEN_LEN} characters"
        )),
        Ok(_) => None,
    }
}

/// Checks `Authorization: Bearer <token>` against a service's operator token, in constant
/// time: the one check behind every service's admin routes. A missing or wrong token is a 401
/// problem with a challenge naming `realm`.
pub fn require_bearer(
    headers: &http::HeaderMap,
    expected: &Secret<String>,
    realm: &'static str,
) -> Result<(), axum::response::Response> {
    use axum::response::IntoResponse;
    let presented = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|token| {
        constant_time_eq::constant_time_eq(token.as_bytes(), expected.expose().as_bytes())
    }) {
        return Ok(());
    }
    let mut response = crate::Problem::status(http::StatusCode::UNAUTHORIZED)
        .with_detail("The admin routes need `Authorization: Bearer <token>`")
        .into_response();
    if let Ok(challenge) = http::HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"")) {
        response
            .headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, challenge);
    }
    Err(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let expected = Secret::new("operator-token-0123456789".to_owned());
        let headers = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(value).expect("header"),
            );
            headers
        };
        assert!(
            require_bearer(&headers("Bearer operator-token-0123456789"), &expected, "r").is_ok()
        );
        for wrong in [
            "Bearer operator-token-012345678",
            "Basic operator-token-0123456789",
            "Bearer ",
        ] {
            let refused =
                require_bearer(&headers(wrong), &expected, "comptoir-x").expect_err(wrong);
            assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
            assert_eq!(
                refused.headers()[http::header::WWW_AUTHENTICATE],
                "Bearer realm=\"comptoir-x\""
            );
        }
        assert!(require_bearer(&http::HeaderMap::new(), &expected, "r").is_err());
    }

    #[test]
    fn token_files_must_exist_and_be_long_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = dir.path().join("short");
        std::fs::write(&short, "too-short").expect("write");
        let good = dir.path().join("good");
        std::fs::write(&good, "long-enough-operator-token").expect("write");
        assert!(
            bearer_token_file_problem("k", None, "why")
                .is_some_and(|p| p.contains("k must be set: why"))
        );
        assert!(
            bearer_token_file_problem("k", Some(&short), "why")
                .is_some_and(|p| p.contains("at least 16"))
        );
        assert!(bearer_token_file_problem("k", Some(&dir.path().join("none")), "why").is_some());
        assert_eq!(bearer_token_file_problem("k", Some(&good), "why"), None);
    }

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
