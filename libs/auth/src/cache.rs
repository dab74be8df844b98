//! A [`Verifier`] fed by identity's JWKS over HTTP.
//!
//! Keys are fetched on first use, then refreshed every `refresh_interval_ms` and whenever a
//! token names a `kid` the cache does not know (identity rotated its key). That second kind of
//! refresh is rate-limited (`min_refresh_interval_ms`) so that tokens with made-up key ids
//! cannot turn every request into a call to identity. A failed fetch keeps the keys already
//! held.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Claims, Jwks, Verifier, VerifyError};

/// Where the JWKS is and what tokens must say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwksCacheSettings {
    /// Identity's JWKS, e.g. `http://identity:8080/.well-known/jwks.json`.
    pub url: String,
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// Periodic refresh, so a key identity removed stops being accepted.
    pub refresh_interval_ms: u64,
    /// At most one refresh for an unknown `kid` within this long.
    pub min_refresh_interval_ms: u64,
    /// Timeout of one JWKS fetch.
    pub fetch_timeout_ms: u64,
}

impl Default for JwksCacheSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081/.well-known/jwks.json".to_owned(),
            issuer: crate::DEFAULT_ISSUER.to_owned(),
            audience: crate::DEFAULT_AUDIENCE.to_owned(),
            refresh_interval_ms: 300_000,
            min_refresh_interval_ms: 10_000,
            fetch_timeout_ms: 2_000,
        }
    }
}

impl JwksCacheSettings {
    /// Readable problems with these settings, each naming its key under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            problems.push(format!("{prefix}.url must be an http(s) URL"));
        }
        if self.issuer.is_empty() {
            problems.push(format!("{prefix}.issuer must be set"));
        }
        if self.audience.is_empty() {
            problems.push(format!("{prefix}.audience must be set"));
        }
        if self.refresh_interval_ms == 0 || self.fetch_timeout_ms == 0 {
            problems.push(format!(
                "{prefix}.refresh_interval_ms and fetch_timeout_ms must be greater than 0"
            ));
        }
        problems
    }
}

/// Verifies tokens against identity's JWKS, fetched and cached.
#[derive(Debug)]
pub struct JwksCache {
    settings: JwksCacheSettings,
    http: reqwest::Client,
    current: RwLock<Option<Arc<Verifier>>>,
    /// When the last fetch started; the lock also makes concurrent refreshes wait for one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    pub fn new(settings: JwksCacheSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.fetch_timeout_ms))
            .build()
            .unwrap_or_default();
        Self {
            settings,
            http,
            current: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Option<Arc<Verifier>> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches the JWKS now and replaces the keys held.
    pub async fn refresh(&self) -> Result<(), VerifyError> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<(), VerifyError> {
        let unavailable = |error: reqwest::Error| VerifyError::KeysUnavailable(error.to_string());
        let jwks: Jwks = self
            .http
            .get(&self.settings.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let verifier = Verifier::new(&jwks, &self.settings.issuer, &self.settings.audience);
        tracing::debug!(?verifier, "JWKS refreshed");
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(verifier));
        Ok(())
    }

    /// Fetches unless a fetch started less than `min_refresh_interval_ms` ago. Returns whether
    /// the keys may have changed (a fetch ran, here or concurrently).
    async fn refresh_rate_limited(&self, seen: Option<&Arc<Verifier>>) -> bool {
        let mut last = self.last_fetch.lock().await;
        // Someone else refreshed while we waited for the lock: use their result.
        if let (Some(seen), Some(now)) = (seen, self.current())
            && !Arc::ptr_eq(seen, &now)
        {
            return true;
        }
        let min = Duration::from_millis(self.settings.min_refresh_interval_ms);
        if last.is_some_and(|at| at.elapsed() < min) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, url = %self.settings.url, "Cannot refresh the JWKS");
                false
            }
        }
    }

    /// The verified claims of `token`, refreshing the keys first when it names an unknown
    /// `kid` (at most once per `min_refresh_interval_ms`).
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let verifier = match self.current() {
            Some(verifier) => verifier,
            None => {
                self.refresh_rate_limited(None).await;
                self.current().ok_or_else(|| {
                    VerifyError::KeysUnavailable("the JWKS has not been fetched".to_owned())
                })?
            }
        };
        match verifier.verify(token) {
            Err(VerifyError::UnknownKid(kid)) => {
                if self.refresh_rate_limited(Some(&verifier)).await
                    && let Some(fresh) = self.current()
                {
                    fresh.verify(token)
                } else {
                    Err(VerifyError::UnknownKid(kid))
                }
            }
            other => other,
        }
    }

    /// Refreshes every `refresh_interval_ms` until `shutdown` is cancelled.
    pub async fn run_periodic_refresh(self: Arc<Self>, shutdown: CancellationToken) {
        let period = Duration::from_millis(self.settings.refresh_interval_ms);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, url = %self.settings.url, "Cannot refresh the JWKS");
            }
        }
    }
}
