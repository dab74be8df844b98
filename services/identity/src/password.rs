//! Password hashing with argon2id.
//!
//! Parameters are configurable; the defaults are OWASP's first recommendation for argon2id
//! (19 MiB of memory, 2 passes, 1 lane: see docs/adr/0012-pii-storage-and-credentials.md).
//! Hashes are PHC strings, so each stored hash carries its own parameters and raising them
//! later does not break old hashes.
//!
//! Hashing is CPU-bound for tens of milliseconds: it runs on tokio's blocking pool, never on
//! a runtime worker. Each hash also holds `memory_kib` of memory while it runs, so the number
//! running at once is capped by a semaphore ([`Argon2Settings::max_concurrent`], by default
//! the CPU count, bounded by [`Argon2Settings::memory_budget_mib`]): without it, the HTTP
//! concurrency limit (1024) and tokio's 512 blocking threads allowed 512 × 19 MiB ≈ 9.5 GiB.
//! A request that finds no slot within [`Argon2Settings::queue_ms`] is shed
//! ([`HashError::Busy`]: 503 with `Retry-After`) rather than queued without end.
//!
//! Stored hashes made with other parameters (older, weaker ones) are recognised by
//! [`Hasher::needs_rehash`] and replaced at the next successful sign-in, so that a raise of
//! the parameters reaches every active account, and their sign-ins cost what an unknown
//! email's dummy check costs (no timing difference to enumerate accounts by).

use std::sync::Arc;
use std::time::Duration;

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
    /// Hashes running at once; 0: as many as CPUs, within `memory_budget_mib`.
    pub max_concurrent: u32,
    /// Memory all running hashes may hold together, in MiB (bounds the automatic
    /// `max_concurrent`).
    pub memory_budget_mib: u32,
    /// How long a request waits for a free slot before it is shed with 503.
    pub queue_ms: u64,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: 0,
            memory_budget_mib: 256,
            queue_ms: 2_000,
        }
    }
}

impl Argon2Settings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems =
            match Params::new(self.memory_kib, self.iterations, self.parallelism, None) {
                Ok(_) => Vec::new(),
                Err(error) => vec![format!("{prefix}: invalid argon2 parameters: {error}")],
            };
        if u64::from(self.memory_budget_mib) * 1024 < u64::from(self.memory_kib) {
            problems.push(format!(
                "{prefix}.memory_budget_mib ({}) is smaller than one hash's memory ({} KiB)",
                self.memory_budget_mib, self.memory_kib
            ));
        }
        problems
    }

    /// Hashes allowed to run at once: `max_concurrent`, or the CPU count bounded by the
    /// memory budget (more than one per CPU only adds latency to each).
    pub fn concurrency(&self) -> usize {
        if self.max_concurrent > 0 {
            return self.max_concurrent as usize;
        }
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let by_memory =
            (u64::from(self.memory_budget_mib) * 1024 / u64::from(self.memory_kib.max(1))) as usize;
        cpus.min(by_memory).max(1)
    }
}

/// Why hashing failed: only a misconfiguration or a corrupt stored hash can cause it.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 failed: {0}")]
    Argon2(String),
    #[error("the hashing task failed")]
    Join(#[from] tokio::task::JoinError),
    /// Every hashing slot stayed busy for the whole queue wait: shed the request.
    #[error("every password-hashing slot is busy")]
    Busy,
}

/// Hashes and verifies passwords with one set of parameters.
#[derive(Clone)]
pub struct Hasher {
    argon2: Arc<Argon2<'static>>,
    /// A hash of a random password with the same parameters: what an unknown email is
    /// checked against, so that it costs as much time as a known one.
    dummy: Arc<String>,
    /// One permit per hash allowed to run at once.
    slots: Arc<tokio::sync::Semaphore>,
    queue: Duration,
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
            slots: Arc::new(tokio::sync::Semaphore::new(settings.concurrency())),
            queue: Duration::from_millis(settings.queue_ms),
        })
    }

    /// A hashing slot, or [`HashError::Busy`] after the queue wait.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, HashError> {
        let waited =
            tokio::time::timeout(self.queue, Arc::clone(&self.slots).acquire_owned()).await;
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or closed (never: the semaphore is not closed while self lives).
            Ok(Err(_)) | Err(_) => {
                metrics::counter!("identity_password_hashing_shed_total").increment(1);
                Err(HashError::Busy)
            }
        }
    }

    /// The PHC string of `password` with a fresh random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, HashError> {
        let argon2 = Arc::clone(&self.argon2);
        let password = password.clone();
        let permit = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit; // held while the hash holds its memory
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
        let permit = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let parsed =
                PasswordHash::new(&stored).map_err(|e| HashError::Argon2(e.to_string()))?;
            let matches = argon2
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok();
            Ok(real && matches)
        })
        .await?
    }

    /// Whether `stored` was made with other parameters than this hasher's (or is not even
    /// argon2id): it should be replaced by a fresh hash at the next successful sign-in.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return true;
        };
        let params = self.argon2.params();
        let param = |name: &str| parsed.params.get_decimal(name);
        parsed.algorithm.as_str() != "argon2id"
            || parsed.version != Some(Version::V0x13.into())
            || param("m") != Some(params.m_cost())
            || param("t") != Some(params.t_cost())
            || param("p") != Some(params.p_cost())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap_settings() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            ..Argon2Settings::default()
        }
    }

    fn cheap() -> Hasher {
        Hasher::new(cheap_settings()).expect("valid params")
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
                parallelism: 1,
                max_concurrent: 0,
                memory_budget_mib: 256,
                queue_ms: 2_000,
            }
        );
        assert!(Argon2Settings::default().problems("argon2").is_empty());
        let bad = Argon2Settings {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
            ..Argon2Settings::default()
        };
        assert!(bad.problems("argon2")[0].starts_with("argon2:"));
        let starved = Argon2Settings {
            memory_budget_mib: 8,
            ..Argon2Settings::default()
        };
        assert!(starved.problems("argon2")[0].contains("memory_budget_mib"));
    }

    #[test]
    fn concurrency_is_the_cpus_within_the_memory_budget() {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(Argon2Settings::default().concurrency(), cpus.min(256 / 19));
        let tight = Argon2Settings {
            memory_budget_mib: 19,
            ..Argon2Settings::default()
        };
        assert_eq!(tight.concurrency(), 1, "one 19 MiB hash fits in 19 MiB");
        let pinned = Argon2Settings {
            max_concurrent: 7,
            ..Argon2Settings::default()
        };
        assert_eq!(pinned.concurrency(), 7);
    }

    #[tokio::test]
    async fn a_check_that_finds_no_free_slot_in_time_is_shed() {
        // One slot, no queue: while a hash holds the slot, the next check is refused at once
        // instead of piling up another 19 MiB on the blocking pool.
        let hasher = Hasher::new(Argon2Settings {
            memory_kib: 8 * 1024,
            iterations: 4,
            max_concurrent: 1,
            queue_ms: 0,
            ..cheap_settings()
        })
        .expect("valid params");
        let held = hasher.slot().await.expect("the only slot");
        let password = Password::presented("correct horse battery staple");
        assert!(matches!(
            hasher.verify(&password, None).await,
            Err(HashError::Busy)
        ));
        assert!(matches!(hasher.hash(&password).await, Err(HashError::Busy)));
        drop(held);
        assert!(
            !hasher
                .verify(&password, None)
                .await
                .expect("a free slot again")
        );
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_need_a_rehash() {
        let old = cheap();
        let password = Password::presented("correct horse battery staple");
        let old_hash = old.hash(&password).await.expect("hash");
        assert!(!old.needs_rehash(&old_hash));
        let raised = Hasher::new(Argon2Settings {
            memory_kib: 128,
            ..cheap_settings()
        })
        .expect("valid params");
        assert!(raised.needs_rehash(&old_hash));
        // The old hash still verifies under the new hasher (its PHC string carries its own
        // parameters): the sign-in succeeds, then the hash is replaced.
        assert!(
            raised
                .verify(&password, Some(old_hash))
                .await
                .expect("verify")
        );
        let fresh = raised.hash(&password).await.expect("hash");
        assert!(!raised.needs_rehash(&fresh));
        assert!(raised.needs_rehash("not a phc string"));
    }
}
