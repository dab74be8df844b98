//! A [`Verifier`] fed by identity's JWKS over HTTP.
//!
//! Keys are fetched on first use, then refreshed every `refresh_interval_ms` and whenever a
//! token names a `kid` the cache does not know (identity rotated its key). That second kind of
//! refresh is rate-limited (`min_refresh_interval_ms`) so that tokens with made-up key ids
//! cannot turn every request into a call to identity. A failed fetch keeps the keys already
//! held.
//!
//! Whoever can answer the JWKS fetch chooses which keys sign valid tokens, so the fetch must
//! not be open to tampering: a plain `http://` URL is refused unless it names loopback (a
//! developer machine, a test, a sidecar); in a cluster the JWKS comes over `https://`,
//! verified against the platform's CA (`ca_file`) or the system roots
//! (docs/adr/0015-tls-between-services.md).

use std::net::IpAddr;
use std::path::PathBuf;
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
    /// Identity's JWKS, e.g. `https://identity:8443/.well-known/jwks.json`; `http://` only to
    /// a loopback host.
    pub url: String,
    /// PEM certificate(s) of the CA that signs identity's certificate (the cluster's CA);
    /// absent: the system's roots.
    pub ca_file: Option<PathBuf>,
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
            url: "http://127.0.0.1:8082/.well-known/jwks.json".to_owned(), // identity on the local platform
            ca_file: None,
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
        match reqwest::Url::parse(&self.url) {
            Ok(url) if url.scheme() == "https" => {}
            Ok(url) if url.scheme() == "http" => {
                if !is_loopback(&url) {
                    problems.push(format!(
                        "{prefix}.url is plain http:// to {}, which is not loopback: whoever can \
                         tamper with that traffic could serve their own key and forge any token; \
                         use https://",
                        url.host_str().unwrap_or("?")
                    ));
                }
            }
            _ => problems.push(format!("{prefix}.url must be an http(s) URL")),
        }
        if let Some(ca_file) = &self.ca_file
            && let Err(error) = read_ca(ca_file)
        {
            problems.push(format!("{prefix}.ca_file: {error}"));
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

/// Whether a URL's host is this machine (127.0.0.0/8, ::1 or `localhost`).
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The CA certificates of `path` (PEM), at least one.
fn read_ca(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certificates)
}

/// Why the cache cannot be built (its settings' `problems` name the same, earlier).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the JWKS client: {0}")]
pub struct JwksCacheError(String);

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
    /// A cache for these settings; fails on an unreadable `ca_file` or a plain `http://` URL
    /// to a host that is not loopback (never fetched, even once).
    pub fn new(settings: JwksCacheSettings) -> Result<Self, JwksCacheError> {
        if let Some(problem) = settings.problems("auth").into_iter().next() {
            return Err(JwksCacheError(problem));
        }
        let mut builder =
            reqwest::Client::builder().timeout(Duration::from_millis(settings.fetch_timeout_ms));
        if let Some(ca_file) = &settings.ca_file {
            for certificate in read_ca(ca_file).map_err(JwksCacheError)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| JwksCacheError(e.to_string()))?;
        Ok(Self {
            settings,
            http,
            current: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
        })
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

    /// `Ok` once keys are held; before that, one fetch at most per
    /// `min_refresh_interval_ms` (a readiness probe calls this on every probe).
    pub async fn ensure_loaded(&self) -> Result<(), VerifyError> {
        if self.current().is_none() {
            self.refresh_rate_limited(None).await;
        }
        match self.current() {
            Some(_) => Ok(()),
            None => Err(VerifyError::KeysUnavailable(
                "identity's keys are not loaded yet".to_owned(),
            )),
        }
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

    /// The readiness check of a service that verifies tokens: ready once identity's keys are
    /// held. Until then a probe may try a fetch, but no more often than the unknown-`kid`
    /// refreshes may (`min_refresh_interval_ms`): probes, or anyone who can reach `/readyz`,
    /// cannot turn into a flood of calls to identity.
    pub fn readiness_check(self: &Arc<Self>) -> comptoir_platform::health::ReadinessCheck {
        let keys = Arc::clone(self);
        comptoir_platform::health::ReadinessCheck::new("jwks", move || {
            let keys = Arc::clone(&keys);
            async move { keys.ensure_loaded().await.map_err(|e| e.to_string()) }
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> JwksCacheSettings {
        JwksCacheSettings {
            url: url.to_owned(),
            ..JwksCacheSettings::default()
        }
    }

    #[test]
    fn plain_http_is_refused_outside_loopback() {
        for url in [
            "http://identity:8080/.well-known/jwks.json",
            "http://10.0.0.7/.well-known/jwks.json",
            "http://[fd00::7]/.well-known/jwks.json",
            "http://127.0.0.1.nip.io/.well-known/jwks.json",
        ] {
            let problems = with_url(url).problems("auth");
            assert_eq!(problems.len(), 1, "{url}: {problems:?}");
            assert!(problems[0].contains("not loopback"), "{problems:?}");
            let error = JwksCache::new(with_url(url)).expect_err(url);
            assert!(error.to_string().contains("https://"), "{error}");
        }
        for url in [
            "http://127.0.0.1:8082/.well-known/jwks.json",
            "http://127.0.0.2/.well-known/jwks.json",
            "http://[::1]:8082/.well-known/jwks.json",
            "http://localhost:8082/.well-known/jwks.json",
            "https://identity:8443/.well-known/jwks.json",
        ] {
            assert!(with_url(url).problems("auth").is_empty(), "{url}");
            assert!(JwksCache::new(with_url(url)).is_ok(), "{url}");
        }
        assert!(!with_url("ftp://identity/jwks").problems("auth").is_empty());
    }

    #[test]
    fn an_unreadable_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        for ca_file in [dir.path().join("missing.pem"), empty] {
            let settings = JwksCacheSettings {
                ca_file: Some(ca_file.clone()),
                ..with_url("https://identity:8443/.well-known/jwks.json")
            };
            let problems = settings.problems("auth");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("auth.ca_file:"), "{problems:?}");
            assert!(JwksCache::new(settings).is_err());
        }
    }
}
