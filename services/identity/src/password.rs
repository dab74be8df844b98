//! Password hashing with argon2id.
//!
//! Parameters are configurable; the defaults are OWASP's first recommendation for argon2id
//! (19 MiB of memory, 2 passes, 1 lane: see docs/adr/0012-pii-storage-and-credentials.md).
//! Hashes are PHC strings, so each stored hash carries its own parameters and raising them
//! later does not break old hashes.
//!
//! Hashing is CPU-bound for tens of milliseconds: it runs on tokio's blocking pool, never on
//! a runtime worker.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use crate::domain::Password;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Settings {
    /// Memory per hash, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Settings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        match Params::new(self.memory_kib, self.iterations, self.parallelism, None) {
            Ok(_) => Vec::new(),
            Err(error) => vec![format!("{prefix}: invalid argon2 parameters: {error}")],
        }
    }
}

/// Why hashing failed: only a misconfiguration or a corrupt stored hash can cause it.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the hashing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords with one set of parameters.
#[derive(Clone)]
pub struct Hasher {
    argon2: Arc<Argon2<'static>>,
    /// A hash of a random password with the same parameters: what an unknown email is
    /// checked against, so that it costs as much time as a known one.
    dummy: Arc<String>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", self.argon2.params())
            .finish_non_exhaustive()
    }
}

impl Hasher {
    pub fn new(settings: Argon2Settings) -> Result<Self, HashError> {
        let params = Params::new(
            settings.memory_kib,
            settings.iterations,
            settings.parallelism,
            None,
        )
        .map_err(|e| HashError::Argon2(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = argon2
            .hash_password(uuid::Uuid::new_v4().as_bytes())
            .map_err(|e| HashError::Argon2(e.to_string()))?
            .to_string();
        Ok(Self {
            argon2: Arc::new(argon2),
            dummy: Arc::new(dummy),
        })
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let argon2 = Arc::clone(&self.argon2);
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|e| HashError::Argon2(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `stored`; with `None` (no such customer) it checks against
    /// the dummy hash and returns false, taking the same time.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let argon2 = Arc::clone(&self.argon2);
        let password = password.clone();
        let real = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy.as_ref().clone());
        tokio::task::spawn_blocking(move || {
            let parsed =
                PasswordHash::new(&stored).map_err(|e| HashError::Argon2(e.to_string()))?;
            let matches = argon2
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok();
            Ok(real && matches)
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Hasher {
        Hasher::new(Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .expect("valid params")
    }

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let hasher = cheap();
        let password = Password::presented("correct horse battery staple");
        let hash = hasher.hash(&password).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(
            hasher
                .verify(&password, Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify(&Password::presented("wrong"), Some(hash))
                .await
                .expect("verify")
        );
        // No customer: false, even for the password behind the dummy hash.
        assert!(!hasher.verify(&password, None).await.expect("verify"));
    }

    #[test]
    fn defaults_are_owasp_and_bad_parameters_are_named() {
        assert_eq!(
            Argon2Settings::default(),
            Argon2Settings {
                memory_kib: 19_456,
                iterations: 2,
                parallelism: 1
            }
        );
        assert!(Argon2Settings::default().problems("argon2").is_empty());
        let bad = Argon2Settings {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        };
        assert!(bad.problems("argon2")[0].starts_with("argon2:"));
    }
}
