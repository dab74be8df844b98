//! Typed, layered settings: defaults → TOML file → environment.
//!
//! Each service declares one settings struct (serde, `deny_unknown_fields` so a typo is an
//! error rather than a silently ignored key) and implements [`Validate`] for the rules serde
//! cannot express. Environment variables are scoped per service so several services can share
//! one environment: `COMPTOIR_CATALOG__HTTP__LISTEN=0.0.0.0:8080` sets `http.listen` of the
//! catalog. Secrets are never values here, only paths to files (see [`crate::secret`]).

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::tls::TlsListenerSettings;

/// Rules a settings struct checks after it has been deserialised.
pub trait Validate {
    /// Every problem found, each as one readable sentence naming the key.
    fn validate(&self) -> Vec<String>;
}

/// Why settings could not be loaded. Its `Display` is meant for a human at a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The environment prefix of a service: `catalog` → `COMPTOIR_CATALOG__`.
pub fn env_prefix(service: &str) -> String {
    format!("COMPTOIR_{}__", service.to_uppercase().replace('-', "_"))
}

/// Loads settings for `service`: `defaults`, then `file` if given, then the environment.
pub fn load<T>(service: &str, defaults: &T, file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError::MissingFile(file.display().to_string()));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Env::prefixed(&env_prefix(service)).split("__"));
    let settings: T = figment.extract().map_err(Box::new)?;
    let problems = settings.validate();
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// HTTP server settings shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address to bind. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// A request still running after this long is answered 408 and dropped.
    pub request_timeout_ms: u64,
    /// Requests served at once; further ones wait (back-pressure, not errors).
    pub concurrency_limit: usize,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// How long shutdown waits for requests in flight before giving up on them.
    pub shutdown_grace_ms: u64,
    /// A second, internal listener for `/livez`, `/readyz` and `/metrics` (what the k3s
    /// probes and Prometheus use); when set, the public listener does not serve them. Required
    /// when `listen` is not loopback: operational data is not for the public.
    pub ops_listen: Option<SocketAddr>,
    /// An HTTPS listener serving the same public routes, with a certificate from files
    /// ([`crate::tls`]): for the hops whose clients require TLS (identity's JWKS and
    /// `/internal`). Absent: HTTP only.
    pub tls: Option<TlsListenerSettings>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout_ms: 10_000,
            concurrency_limit: 1024,
            body_limit_bytes: 256 * 1024,
            shutdown_grace_ms: 20_000,
            ops_listen: None,
            tls: None,
        }
    }
}

impl Validate for HttpSettings {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.request_timeout_ms == 0 {
            problems.push("http.request_timeout_ms must be greater than 0".to_owned());
        }
        if self.concurrency_limit == 0 {
            problems.push("http.concurrency_limit must be greater than 0".to_owned());
        }
        if self.body_limit_bytes < 1024 {
            problems.push("http.body_limit_bytes must be at least 1024".to_owned());
        }
        match self.ops_listen {
            None if !self.listen.ip().is_loopback() => problems.push(format!(
                "http.ops_listen must be set when http.listen ({}) is not loopback: /metrics and \
                 /readyz belong on an internal listener, not the public one",
                self.listen
            )),
            Some(ops) if ops == self.listen && ops.port() != 0 => {
                problems.push("http.ops_listen must differ from http.listen".to_owned());
            }
            _ => {}
        }
        if let Some(tls) = &self.tls {
            problems.extend(tls.problems("http.tls"));
            let taken = [Some(self.listen), self.ops_listen];
            if tls.listen.port() != 0 && taken.contains(&Some(tls.listen)) {
                problems.push(
                    "http.tls.listen must differ from http.listen and http.ops_listen".to_owned(),
                );
            }
        }
        problems
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line: what production log shippers want.
    Json,
    /// Human-readable, for a developer's terminal.
    Pretty,
}

/// Telemetry settings shared by every service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info,comptoir_catalog=debug`.
    pub log_filter: String,
    /// OTLP/HTTP traces endpoint (e.g. `http://127.0.0.1:4318/v1/traces`); none disables export.
    pub otlp_endpoint: Option<Url>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".to_owned(),
            otlp_endpoint: None,
        }
    }
}

impl Validate for TelemetrySettings {
    fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            problems.push(format!(
                "telemetry.log_filter {:?} is not a valid filter: {error}",
                self.log_filter
            ));
        }
        if let Some(url) = &self.otlp_endpoint
            && !matches!(url.scheme(), "http" | "https")
        {
            problems.push(format!(
                "telemetry.otlp_endpoint must be an http(s) URL, got {url}"
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        http: HttpSettings,
        telemetry: TelemetrySettings,
    }

    impl Validate for Sample {
        fn validate(&self) -> Vec<String> {
            let mut p = self.http.validate();
            p.extend(self.telemetry.validate());
            p
        }
    }

    #[test]
    fn file_overrides_defaults_and_environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sample.toml",
                "[http]\nconcurrency_limit = 7\nrequest_timeout_ms = 5\n",
            )?;
            jail.set_env("COMPTOIR_SAMPLE__HTTP__REQUEST_TIMEOUT_MS", "42");
            let s: Sample = load("sample", &Sample::default(), Some(Path::new("sample.toml")))
                .map_err(|e| e.to_string())?;
            assert_eq!(s.http.concurrency_limit, 7);
            assert_eq!(s.http.request_timeout_ms, 42);
            assert_eq!(
                s.http.body_limit_bytes,
                HttpSettings::default().body_limit_bytes
            );
            Ok(())
        });
    }

    #[test]
    fn wrong_types_unknown_keys_and_rule_violations_are_reported() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("COMPTOIR_SAMPLE__HTTP__LISTEN", "not-an-address");
            let err = load::<Sample>("sample", &Sample::default(), None).expect_err("bad listen");
            assert!(err.to_string().to_lowercase().contains("listen"), "{err}");
            jail.clear_env();

            jail.set_env("COMPTOIR_SAMPLE__HTTP__LISTN", "127.0.0.1:1");
            let err = load::<Sample>("sample", &Sample::default(), None).expect_err("typo");
            assert!(err.to_string().to_lowercase().contains("listn"), "{err}");
            jail.clear_env();

            jail.set_env("COMPTOIR_SAMPLE__HTTP__CONCURRENCY_LIMIT", "0");
            jail.set_env("COMPTOIR_SAMPLE__TELEMETRY__OTLP_ENDPOINT", "ftp://x");
            let err = load::<Sample>("sample", &Sample::default(), None).expect_err("rules");
            let text = err.to_string();
            assert!(text.contains("http.concurrency_limit"), "{text}");
            assert!(text.contains("telemetry.otlp_endpoint"), "{text}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = load::<Sample>(
            "sample",
            &Sample::default(),
            Some(Path::new("/nonexistent.toml")),
        )
        .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent.toml"));
    }
}
