//! The notifications service's typed settings: defaults, then a TOML file, then
//! `COMPTOIR_NOTIFICATIONS__...` variables; every problem is reported at once, before a port is
//! bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

use comptoir_events::pulsar::PulsarSettings;
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

/// Notifications settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// The broker; `namespace` is the service's own (`comptoir/notifications`), where its
    /// GDPR replies go.
    pub pulsar: PulsarSettings,
    /// File holding the bearer token the admin routes require.
    pub admin_token_file: Option<PathBuf>,
    /// Orders' namespace, where `order-events` is published.
    pub orders_namespace: String,
    /// Identity's namespace, where GDPR export and erasure requests are published.
    pub gdpr_requests_namespace: String,
    /// Where the recipient's address is asked for, at send time.
    pub identity: IdentitySettings,
    /// The mail relay.
    pub smtp: SmtpSettings,
    /// How failed sends are retried.
    pub retry: RetrySettings,
    /// How the sender picks due deliveries.
    pub sender: SenderSettings,
}

/// Identity's internal PII route (`POST /internal/v1/customers/{id}/pii`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// Identity's base URL: `https://`, or `http://` to a loopback host only.
    pub url: String,
    /// File holding the bearer token identity knows this service by.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle to verify identity's certificate with (otherwise the system roots).
    pub ca_file: Option<PathBuf>,
    /// Whole-request timeout.
    pub timeout_ms: u64,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8082".to_owned(),
            token_file: None,
            ca_file: None,
            timeout_ms: 2_000,
        }
    }
}

/// The SMTP relay. Plaintext only (no TLS support yet), hence loopback only: a relay on the
/// same host or pod (a sidecar) that forwards over TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// A loopback host: `127.0.0.1`, `::1` or `localhost`.
    pub host: String,
    pub port: u16,
    /// The `From:` mailbox, `Display Name <address>` or a bare address.
    pub from: String,
    /// Timeout of each SMTP command (connection included).
    pub timeout_ms: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1025,
            from: "Comptoir <orders@comptoir.example>".to_owned(),
            timeout_ms: 5_000,
        }
    }
}

/// Exponential backoff of failed sends: `base_ms`, doubled per attempt, capped at `max_ms`;
/// after `max_attempts` attempts a delivery is given up (`failed`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    pub base_ms: u64,
    pub max_ms: u64,
    pub max_attempts: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            max_ms: 300_000,
            max_attempts: 8,
        }
    }
}

impl RetrySettings {
    /// Wait before the next attempt of a delivery that has now failed `attempts` times (≥ 1).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u64.saturating_pow(attempts.saturating_sub(1).min(32));
        Duration::from_millis(self.base_ms.saturating_mul(factor).min(self.max_ms))
    }
}

/// The sender's polling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SenderSettings {
    /// How often due deliveries are looked for when the last look found none.
    pub poll_interval_ms: u64,
    /// Deliveries claimed (and sent concurrently) at a time.
    pub batch_size: u32,
}

impl Default for SenderSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            batch_size: 20,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "notifications".to_owned(),
                user: "notifications".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/notifications".to_owned(),
                ..PulsarSettings::default()
            },
            admin_token_file: None,
            orders_namespace: "comptoir/orders".to_owned(),
            gdpr_requests_namespace: "comptoir/identity".to_owned(),
            identity: IdentitySettings::default(),
            smtp: SmtpSettings::default(),
            retry: RetrySettings::default(),
            sender: SenderSettings::default(),
        }
    }
}

impl comptoir_platform::service::ServiceSettings for Settings {
    fn http(&self) -> &HttpSettings {
        &self.http
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

/// Whether `host` is this machine: `localhost`, or a loopback IPv4 or IPv6 address.
pub fn is_loopback(host: &str) -> bool {
    // comptoir_store::is_loopback_host also takes a Unix socket path; SMTP has none here.
    !host.starts_with('/') && comptoir_store::is_loopback_host(host)
}

/// The CA certificates of `path` (PEM), at least one.
pub(crate) fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not PEM certificates: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certificates)
}

impl IdentitySettings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.url) {
            Ok(url) if url.scheme() == "https" => {}
            Ok(url) if url.scheme() == "http" => {
                let host = url.host_str().unwrap_or("?");
                if !is_loopback(host) {
                    problems.push(format!(
                        "{prefix}.url is plain http:// to {host}, which is not loopback: the \
                         token and the customers' addresses would cross the network in clear; \
                         use https://"
                    ));
                }
            }
            _ => problems.push(format!("{prefix}.url must be an http(s) URL")),
        }
        if let Some(problem) = comptoir_platform::secret::bearer_token_file_problem(
            &format!("{prefix}.token_file"),
            self.token_file.as_deref(),
            "identity only answers a known client",
        ) {
            problems.push(problem);
        }
        if let Some(ca_file) = &self.ca_file
            && let Err(error) = read_ca(ca_file)
        {
            problems.push(format!("{prefix}.ca_file: {error}"));
        }
        if self.timeout_ms == 0 {
            problems.push(format!("{prefix}.timeout_ms must be greater than 0"));
        }
        problems
    }
}

impl SmtpSettings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_loopback(&self.host) {
            problems.push(format!(
                "{prefix}.host {:?} is not loopback: mail is sent in plaintext (no TLS support \
                 yet), so only to a relay on this host (127.0.0.1, ::1 or localhost)",
                self.host
            ));
        }
        if self.port == 0 {
            problems.push(format!("{prefix}.port must not be 0"));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(format!(
                "{prefix}.from must be a mailbox, like `Comptoir <orders@comptoir.example>`"
            ));
        }
        if self.timeout_ms == 0 {
            problems.push(format!("{prefix}.timeout_ms must be greater than 0"));
        }
        problems
    }
}

impl RetrySettings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.base_ms == 0 {
            problems.push(format!("{prefix}.base_ms must be greater than 0"));
        }
        if self.max_ms < self.base_ms {
            problems.push(format!("{prefix}.max_ms must be at least base_ms"));
        }
        if !(1..=100).contains(&self.max_attempts) {
            problems.push(format!("{prefix}.max_attempts must be between 1 and 100"));
        }
        problems
    }
}

impl SenderSettings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.poll_interval_ms == 0 {
            problems.push(format!("{prefix}.poll_interval_ms must be greater than 0"));
        }
        if !(1..=100).contains(&self.batch_size) {
            problems.push(format!("{prefix}.batch_size must be between 1 and 100"));
        }
        problems
    }
}

impl Validate for Settings {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.http.validate();
        problems.extend(self.telemetry.validate());
        problems.extend(self.database.problems("database"));
        problems.extend(self.pulsar.problems("pulsar"));
        for (key, namespace) in [
            ("orders_namespace", &self.orders_namespace),
            ("gdpr_requests_namespace", &self.gdpr_requests_namespace),
        ] {
            if let Err(problem) = comptoir_events::pulsar::check_namespace(namespace) {
                problems.push(format!("{key} {problem}"));
            }
        }
        if let Some(problem) = comptoir_platform::secret::bearer_token_file_problem(
            "admin_token_file",
            self.admin_token_file.as_deref(),
            "the admin routes need a token",
        ) {
            problems.push(problem);
        }
        problems.extend(self.identity.problems("identity"));
        problems.extend(self.smtp.problems("smtp"));
        problems.extend(self.retry.problems("retry"));
        problems.extend(self.sender.problems("sender"));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, "a-token-long-enough-for-tests").expect("write");
        let mut settings = Settings::default();
        settings.database.password_file = Some(token.clone());
        settings.admin_token_file = Some(token.clone());
        settings.identity.token_file = Some(token);
        (dir, settings)
    }

    #[test]
    fn defaults_with_their_files_are_valid() {
        let (_dir, settings) = valid();
        assert_eq!(settings.validate(), Vec::<String>::new());
    }

    #[test]
    fn plaintext_smtp_is_loopback_only() {
        let (_dir, mut settings) = valid();
        for host in ["127.0.0.1", "127.0.0.53", "::1", "[::1]", "localhost"] {
            settings.smtp.host = host.to_owned();
            assert!(settings.smtp.problems("smtp").is_empty(), "{host}");
        }
        for host in ["smtp.example.com", "10.0.0.1", "0.0.0.0", "/run/smtp.sock"] {
            settings.smtp.host = host.to_owned();
            let problems = settings.smtp.problems("smtp");
            assert!(problems[0].starts_with("smtp.host"), "{host}: {problems:?}");
        }
    }

    #[test]
    fn identity_over_http_is_loopback_only() {
        let (_dir, mut settings) = valid();
        settings.identity.url = "http://identity.comptoir.svc:8080".to_owned();
        let problems = settings.identity.problems("identity");
        assert!(problems[0].contains("not loopback"), "{problems:?}");
        settings.identity.url = "https://identity.comptoir.svc".to_owned();
        assert!(settings.identity.problems("identity").is_empty());
        settings.identity.url = "ftp://x".to_owned();
        assert_eq!(
            settings.identity.problems("identity"),
            ["identity.url must be an http(s) URL"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (dir, mut settings) = valid();
        settings.identity.token_file = None;
        settings.identity.ca_file = Some(dir.path().join("missing.pem"));
        settings.smtp.from = "not a mailbox".to_owned();
        settings.retry.max_ms = 1;
        settings.sender.batch_size = 0;
        settings.orders_namespace = "nope".to_owned();
        let problems = settings.validate().join("\n");
        for needle in [
            "identity.token_file must be set",
            "identity.ca_file",
            "smtp.from",
            "retry.max_ms",
            "sender.batch_size",
            "orders_namespace",
        ] {
            assert!(problems.contains(needle), "{needle} not in {problems}");
        }
    }

    #[test]
    fn backoff_doubles_from_base_and_is_capped() {
        let retry = RetrySettings {
            base_ms: 1_000,
            max_ms: 300_000,
            max_attempts: 8,
        };
        assert_eq!(retry.backoff(1), Duration::from_secs(1));
        assert_eq!(retry.backoff(2), Duration::from_secs(2));
        assert_eq!(retry.backoff(5), Duration::from_secs(16));
        assert_eq!(retry.backoff(9), Duration::from_secs(256));
        assert_eq!(retry.backoff(10), Duration::from_secs(300));
        assert_eq!(retry.backoff(u32::MAX), Duration::from_secs(300));
    }
}
