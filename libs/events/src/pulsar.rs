//! Pulsar client settings and connection.

use std::path::PathBuf;

use std::time::Duration;

use pulsar::{Authentication, ConnectionRetryOptions, Pulsar, TokioExecutor};
use serde::{Deserialize, Serialize};
use url::Url;

/// How a service reaches the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PulsarSettings {
    /// Binary protocol URL: `pulsar://host:6650` or `pulsar+ssl://host:6651`.
    pub url: Url,
    /// Tenant and namespace this service publishes into, e.g. `comptoir/catalog`.
    pub namespace: String,
    /// File holding this service's JWT (token authentication); none for an open broker.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle to verify the broker's certificate with, for `pulsar+ssl://`.
    pub ca_file: Option<PathBuf>,
}

impl Default for PulsarSettings {
    fn default() -> Self {
        Self {
            url: Url::parse("pulsar://127.0.0.1:6650").unwrap_or_else(|_| unreachable!()),
            namespace: String::new(),
            token_file: None,
            ca_file: None,
        }
    }
}

/// The one rule for a Pulsar namespace name in settings and tools: `tenant/namespace`, two
/// non-empty parts of letters, digits, `-`, `_` or `.` (what Pulsar accepts in names).
pub fn check_namespace(value: &str) -> Result<(), String> {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match value.split_once('/') {
        Some((tenant, namespace)) if valid_part(tenant) && valid_part(namespace) => Ok(()),
        _ => Err(format!("must look like tenant/namespace, got {value:?}")),
    }
}

impl PulsarSettings {
    /// Readable problems with these settings, each naming its key under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !matches!(self.url.scheme(), "pulsar" | "pulsar+ssl") {
            problems.push(format!(
                "{prefix}.url must start with pulsar:// or pulsar+ssl://, got {}",
                self.url
            ));
        }
        if let Err(problem) = check_namespace(&self.namespace) {
            problems.push(format!("{prefix}.namespace {problem}"));
        }
        if self.token_file.is_some()
            && self.url.scheme() == "pulsar"
            && !self
                .url
                .host_str()
                .is_some_and(comptoir_store::is_loopback_host)
        {
            problems.push(format!(
                "{prefix}.token_file is set but {prefix}.url is plain pulsar:// to {}, which is \
                 not loopback: the token would cross the network in clear; use pulsar+ssl://",
                self.url.host_str().unwrap_or("?")
            ));
        }
        for (key, path) in [("token_file", &self.token_file), ("ca_file", &self.ca_file)] {
            if let Some(path) = path
                && !path.is_file()
            {
                problems.push(format!("{prefix}.{key} {} does not exist", path.display()));
            }
        }
        problems
    }

    /// The full name of a persistent topic in this service's namespace.
    pub fn topic(&self, name: &str) -> String {
        format!("persistent://{}/{name}", self.namespace)
    }
}

/// Why the broker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to Pulsar at {url}")]
    Pulsar {
        url: Box<Url>,
        #[source]
        source: Box<pulsar::Error>,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::File {
        path: path.clone(),
        source,
    })
}

/// Connects to the broker with the configured authentication and TLS.
///
/// The token is sent as the `token` authentication method; with a CA file, the broker's
/// certificate must chain to it or to a web PKI root, and must name the URL's host (an IP
/// SAN for `pulsar+ssl://127.0.0.1`). `libs/events/tests/secure_broker.rs` proves both.
/// When the broker refuses the token or the TLS handshake fails, pulsar-rs only logs the
/// reason ("connection error, not retryable: ...", through `log`) and returns a generic
/// "fatal error when connecting" (streamnative/pulsar-rs#292): look for that line.
pub async fn connect(settings: &PulsarSettings) -> Result<Pulsar<TokioExecutor>, ConnectError> {
    // pulsar-rs builds its TLS configuration from the process's default provider.
    comptoir_platform::tls::use_ring_by_default();
    let mut builder = Pulsar::builder(settings.url.as_str(), TokioExecutor)
        .with_connection_retry_options(reconnection());
    if let Some(path) = &settings.token_file {
        let token = read(path)?;
        let token = token.trim_ascii().to_vec();
        builder = builder.with_auth(Authentication {
            name: "token".to_owned(),
            data: token,
        });
    }
    if let Some(path) = &settings.ca_file {
        builder = builder.with_certificate_chain(read(path)?);
    }
    builder
        .build()
        .await
        .map_err(|source| ConnectError::Pulsar {
            url: Box::new(settings.url.clone()),
            source: Box::new(source),
        })
}

/// How the client reconnects to a broker, instead of pulsar-rs' defaults (12 attempts with
/// backoff up to 30 s, then it gives up: about 40 s, as the fleet lab found, after which the
/// service's broker operations fail for good; and a 60 s keep-alive, so a broker host that lost
/// power goes unnoticed for up to a minute):
/// - backoff from 100 ms doubling to 2 s, so a broker that comes back is found within 2 s;
/// - 300 attempts, about 10 minutes at 2 s: a broker restart or a rolling upgrade of the
///   pulsar hosts is ridden out; past that the error reaches the service (readiness fails);
/// - a ping every 10 s on each connection, so a silent broker (power loss, partition) is
///   noticed and its topics looked up again within seconds.
fn reconnection() -> ConnectionRetryOptions {
    ConnectionRetryOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        max_retries: 300,
        keep_alive: Duration::from_secs(10),
        ..ConnectionRetryOptions::default()
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    #[test]
    fn namespaces_are_tenant_slash_namespace() {
        for good in ["comptoir/catalog", "comptoir-test/ns-1.a_b"] {
            assert_eq!(check_namespace(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "comptoir",
            "comptoir/",
            "/catalog",
            "a/b/c",
            "comptoir/cat alog",
            "comptoir//x",
        ] {
            let error = check_namespace(bad).expect_err(bad);
            assert!(error.contains("tenant/namespace"), "{error}");
        }
    }

    #[test]
    fn a_token_is_refused_over_plain_pulsar_off_loopback() {
        let token = tempfile::NamedTempFile::new().expect("token file");
        let settings = |url: &str, token_file: Option<PathBuf>| PulsarSettings {
            url: Url::parse(url).expect("url"),
            namespace: "comptoir/catalog".to_owned(),
            token_file,
            ca_file: None,
        };
        let with_token = Some(token.path().to_owned());
        let problems =
            settings("pulsar://pulsar.internal:6650", with_token.clone()).problems("pulsar");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("pulsar+ssl://"), "{problems:?}");
        for fine in [
            settings("pulsar+ssl://pulsar.internal:6651", with_token.clone()),
            settings("pulsar://127.0.0.1:6650", with_token.clone()),
            settings("pulsar://localhost:6650", with_token),
            // No token, nothing secret on the wire (an open development broker).
            settings("pulsar://pulsar.internal:6650", None),
        ] {
            assert!(fine.problems("pulsar").is_empty(), "{}", fine.url);
        }
    }
}
