//! A service's HTTPS listener (`http.tls`): the same public routes as `http.listen`, over TLS
//! with a certificate and key read from files, reloaded when the files change.
//!
//! Why a service serves TLS itself (docs/adr/0015-tls-between-services.md): some hops carry
//! what a reader or a tamperer of the network must not get — identity's JWKS (whoever answers
//! it chooses the keys every token is checked against) and identity's `/internal` route (a
//! bearer token and customers' addresses). Their clients refuse plain `http://` off loopback,
//! so identity serves those on an HTTPS port with a certificate from the platform's CA.
//!
//! The certificate rotates without a restart: every `reload_interval_ms` the files'
//! modification times are compared with the last load's, and a changed pair is loaded and
//! swapped in for new connections (a Kubernetes Secret volume or a cert-manager renewal
//! replaces the files in place). A pair that does not load (half-written, key not matching)
//! is logged and the previous one kept: a bad rotation never takes the listener down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Makes ring the process's default rustls crypto provider, unless one is already set.
///
/// Our own TLS configurations name ring explicitly, but some libraries build theirs from the
/// process default (pulsar-rs for `pulsar+ssl://`). rustls picks that default from its crate
/// features only when exactly one provider is compiled in; a build of the whole workspace
/// also compiles aws-lc-rs (the load generator's HTTP client brings it), and rustls then
/// refuses to guess and panics at the first handshake. Call this before such a library
/// connects; it is cheap and idempotent.
pub fn use_ring_by_default() {
    // Refused (and dropped) when a provider is already set: either way one is.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTPS listener of `http.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerSettings {
    /// Address to bind, e.g. `0.0.0.0:8443`. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the two files are checked for a new certificate.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval_ms() -> u64 {
    30_000
}

impl TlsListenerSettings {
    /// Readable problems with these settings, each naming its key under `prefix`. Loads the
    /// certificate and key, so a missing file or a key of another certificate stops the
    /// service before it binds anything.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(problem) = server_config(&self.cert_file, &self.key_file) {
            problems.push(format!("{prefix}: {problem}"));
        }
        if self.reload_interval_ms == 0 {
            problems.push(format!(
                "{prefix}.reload_interval_ms must be greater than 0"
            ));
        }
        problems
    }
}

/// The rustls configuration for `cert_file` and `key_file`: ring as the crypto provider (the
/// only one the workspace links), TLS 1.2 and 1.3, HTTP/1.1. The message names the file at
/// fault and never the key's content.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, String> {
    let cert_pem = std::fs::read(cert_file)
        .map_err(|e| format!("cannot read cert_file {}: {e}", cert_file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "cert_file {} is not PEM certificates: {e}",
                cert_file.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "no certificate in cert_file {}",
            cert_file.display()
        ));
    }
    let key_pem = std::fs::read(key_file)
        .map_err(|e| format!("cannot read key_file {}: {e}", key_file.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| format!("key_file {} holds no PEM private key", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "key_file {} does not go with cert_file {}: {e}",
                key_file.display(),
                cert_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// When the two files last changed (the later of the two), if both can be read.
fn modified(settings: &TlsListenerSettings) -> Option<SystemTime> {
    let time = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    Some(time(&settings.cert_file)?.max(time(&settings.key_file)?))
}

/// The listener's configuration, loaded now, and a task that reloads it whenever the files
/// change, until `shutdown`.
pub(crate) fn rustls_config(
    settings: &TlsListenerSettings,
    shutdown: CancellationToken,
) -> std::io::Result<RustlsConfig> {
    let loaded = server_config(&settings.cert_file, &settings.key_file)
        .map_err(|problem| std::io::Error::new(std::io::ErrorKind::InvalidData, problem))?;
    let config = RustlsConfig::from_config(loaded);
    let reloaded = config.clone();
    let settings = settings.clone();
    tokio::spawn(async move {
        let mut last = modified(&settings);
        let mut tick = tokio::time::interval(Duration::from_millis(settings.reload_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = modified(&settings);
            if now == last {
                continue;
            }
            match server_config(&settings.cert_file, &settings.key_file) {
                Ok(config) => {
                    reloaded.reload_from_config(config);
                    last = now;
                    metrics::counter!("tls_certificate_reloads_total", "outcome" => "loaded")
                        .increment(1);
                    tracing::info!(cert_file = %settings.cert_file.display(), "TLS certificate reloaded");
                }
                Err(problem) => {
                    // Tried again at the next tick: the files may be mid-replacement.
                    metrics::counter!("tls_certificate_reloads_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(%problem, "TLS certificate not reloaded; keeping the previous one");
                }
            }
        }
    });
    Ok(config)
}
