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

/// The SMTP relay: plaintext to a loopback host only (the dev platform's Mailpit, a sidecar),
/// otherwise STARTTLS or implicit TLS, verified against `ca_file` or the webpki roots, with
/// optional credentials (only ever sent over TLS).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    /// The relay's host name (what its certificate names, with TLS) or address; a loopback
    /// host (`127.0.0.1`, `::1`, `localhost`) when `tls` is `none`.
    pub host: String,
    pub port: u16,
    /// How the connection is protected.
    pub tls: SmtpTls,
    /// PEM CA bundle verifying the relay's certificate, instead of the webpki roots (Mozilla's
    /// list, for a public relay). Only with `tls` `starttls` or `tls`.
    pub ca_file: Option<PathBuf>,
    /// The user to authenticate as (AUTH PLAIN or LOGIN), with `password_file`; never in
    /// plaintext, so only with `tls` `starttls` or `tls`.
    pub username: Option<String>,
    /// File holding the password of `username` (one trailing newline is ignored).
    pub password_file: Option<PathBuf>,
    /// The `From:` mailbox, `Display Name <address>` or a bare address.
    pub from: String,
    /// Timeout of connecting to the relay; a whole send (greeting, TLS handshake,
    /// authentication, the message) may take twice as long.
    pub timeout_ms: u64,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plaintext: only to a loopback host, and without credentials.
    #[default]
    None,
    /// Plaintext, then `STARTTLS` before anything else (RFC 3207; usually port 587): a relay
    /// that does not offer it, or whose certificate does not verify, is not used.
    Starttls,
    /// TLS from the first byte (implicit TLS, RFC 8314; usually port 465).
    Tls,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1025,
            tls: SmtpTls::None,
            ca_file: None,
            username: None,
            password_file: None,
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
        if self.host.is_empty() {
            problems.push(format!("{prefix}.host must not be empty"));
        } else if self.tls == SmtpTls::None && !is_loopback(&self.host) {
            problems.push(format!(
                "{prefix}.host {:?} is not loopback: with {prefix}.tls = \"none\" mail is sent \
                 in plaintext, so only to a relay on this host (127.0.0.1, ::1 or localhost); \
                 use tls = \"starttls\" or \"tls\" for a remote relay",
                self.host
            ));
        } else if self.tls != SmtpTls::None
            && rustls::pki_types::ServerName::try_from(self.host.as_str()).is_err()
        {
            problems.push(format!(
                "{prefix}.host {:?} is not a DNS name or an IP address (without brackets), \
                 which TLS needs to verify the relay's certificate",
                self.host
            ));
        }
        if self.port == 0 {
            problems.push(format!("{prefix}.port must not be 0"));
        }
        if let Some(ca_file) = &self.ca_file {
            if self.tls == SmtpTls::None {
                problems.push(format!(
                    "{prefix}.ca_file is set but {prefix}.tls is \"none\": nothing would be \
                     verified; use tls = \"starttls\" or \"tls\", or remove ca_file"
                ));
            }
            if let Err(error) = read_ca(ca_file) {
                problems.push(format!("{prefix}.ca_file: {error}"));
            }
        }
        match (&self.username, &self.password_file) {
            (None, None) => {}
            (Some(_), None) => problems.push(format!(
                "{prefix}.password_file must be set when {prefix}.username is (both or neither)"
            )),
            (None, Some(_)) => problems.push(format!(
                "{prefix}.username must be set when {prefix}.password_file is (both or neither)"
            )),
            (Some(_), Some(_)) if self.tls == SmtpTls::None => problems.push(format!(
                "{prefix}.username and {prefix}.password_file need {prefix}.tls = \"starttls\" \
                 or \"tls\": a password is never sent in clear, not even to a loopback relay"
            )),
            (Some(_), Some(_)) => {}
        }
        if self.username.as_deref().is_some_and(str::is_empty) {
            problems.push(format!("{prefix}.username must not be empty"));
        }
        if let Some(path) = &self.password_file
            && let Err(error) = comptoir_platform::secret::read_secret_file(path)
        {
            problems.push(format!(
                "{prefix}.password_file: {}",
                comptoir_platform::telemetry::error_chain(&error)
            ));
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
        for host in ["smtp.example.com", "10.0.0.1", "0.0.0.0", "fd00::25"] {
            settings.smtp.host = host.to_owned();
            settings.smtp.tls = SmtpTls::None;
            assert_eq!(
                settings.smtp.problems("smtp"),
                [format!(
                    "smtp.host {host:?} is not loopback: with smtp.tls = \"none\" mail is sent \
                     in plaintext, so only to a relay on this host (127.0.0.1, ::1 or \
                     localhost); use tls = \"starttls\" or \"tls\" for a remote relay"
                )],
            );
            for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
                settings.smtp.tls = tls;
                assert!(settings.smtp.problems("smtp").is_empty(), "{host} {tls:?}");
            }
        }
        // TLS verifies a name or an address the certificate holds: nothing else is a host.
        for host in ["/run/smtp.sock", "[::1]", "smtp example com"] {
            settings.smtp.host = host.to_owned();
            let problems = settings.smtp.problems("smtp");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with(&format!(
                    "smtp.host {host:?} is not a DNS name or an IP address"
                )),
                "{problems:?}"
            );
        }
        settings.smtp.host = String::new();
        assert_eq!(
            settings.smtp.problems("smtp"),
            ["smtp.host must not be empty"]
        );
    }

    #[test]
    fn tls_is_none_starttls_or_tls() {
        let parse = |json: &str| serde_json::from_str::<SmtpSettings>(json).map(|s| s.tls);
        assert_eq!(parse("{}").expect("default"), SmtpTls::None);
        assert_eq!(parse(r#"{"tls": "none"}"#).expect("none"), SmtpTls::None);
        assert_eq!(
            parse(r#"{"tls": "starttls"}"#).expect("starttls"),
            SmtpTls::Starttls
        );
        assert_eq!(parse(r#"{"tls": "tls"}"#).expect("tls"), SmtpTls::Tls);
        for wrong in [
            r#"{"tls": "ssl"}"#,
            r#"{"tls": true}"#,
            r#"{"tls": "STARTTLS"}"#,
            r#"{"password": "x"}"#,
        ] {
            assert!(parse(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn credentials_come_in_pairs_and_only_over_tls() {
        let (dir, mut settings) = valid();
        let password = dir.path().join("smtp-password");
        std::fs::write(&password, "relay-password\n").expect("write");
        settings.smtp.host = "smtp.example.com".to_owned();
        settings.smtp.tls = SmtpTls::Starttls;
        settings.smtp.username = Some("comptoir".to_owned());
        settings.smtp.password_file = Some(password.clone());
        assert!(settings.smtp.problems("smtp").is_empty());

        settings.smtp.password_file = None;
        assert_eq!(
            settings.smtp.problems("smtp"),
            ["smtp.password_file must be set when smtp.username is (both or neither)"]
        );
        settings.smtp.username = None;
        settings.smtp.password_file = Some(password.clone());
        assert_eq!(
            settings.smtp.problems("smtp"),
            ["smtp.username must be set when smtp.password_file is (both or neither)"]
        );
        settings.smtp.username = Some(String::new());
        assert_eq!(
            settings.smtp.problems("smtp"),
            ["smtp.username must not be empty"]
        );

        // Never in clear, not even to a loopback relay.
        settings.smtp.username = Some("comptoir".to_owned());
        settings.smtp.host = "127.0.0.1".to_owned();
        settings.smtp.tls = SmtpTls::None;
        assert_eq!(
            settings.smtp.problems("smtp"),
            [
                "smtp.username and smtp.password_file need smtp.tls = \"starttls\" or \"tls\": \
                 a password is never sent in clear, not even to a loopback relay"
            ]
        );
        settings.smtp.tls = SmtpTls::Tls;
        assert!(settings.smtp.problems("smtp").is_empty());
    }

    #[test]
    fn the_password_file_must_be_readable_and_not_empty() {
        let (dir, mut settings) = valid();
        settings.smtp.tls = SmtpTls::Tls;
        settings.smtp.username = Some("comptoir".to_owned());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        settings.smtp.password_file = Some(empty);
        let problems = settings.smtp.problems("smtp");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("smtp.password_file: secret file")
                && problems[0].ends_with("is empty"),
            "{problems:?}"
        );
        settings.smtp.password_file = Some(dir.path().join("missing"));
        let problems = settings.smtp.problems("smtp");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("smtp.password_file: cannot read secret file"),
            "{problems:?}"
        );
    }

    #[test]
    fn the_ca_file_must_hold_certificates_and_needs_tls() {
        let (dir, mut settings) = valid();
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("ca");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write");
        settings.smtp.host = "smtp.example.com".to_owned();
        settings.smtp.tls = SmtpTls::Starttls;
        settings.smtp.ca_file = Some(ca_file.clone());
        assert!(settings.smtp.problems("smtp").is_empty());

        let not_pem = dir.path().join("not-pem");
        std::fs::write(&not_pem, "hello").expect("write");
        for path in [not_pem, dir.path().join("missing.pem")] {
            settings.smtp.ca_file = Some(path.clone());
            let problems = settings.smtp.problems("smtp");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(problems[0].starts_with("smtp.ca_file: "), "{problems:?}");
        }

        settings.smtp.host = "127.0.0.1".to_owned();
        settings.smtp.tls = SmtpTls::None;
        settings.smtp.ca_file = Some(ca_file);
        assert_eq!(
            settings.smtp.problems("smtp"),
            [
                "smtp.ca_file is set but smtp.tls is \"none\": nothing would be verified; use \
                 tls = \"starttls\" or \"tls\", or remove ca_file"
            ]
        );
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
        settings.smtp.host = "smtp.example.com".to_owned();
        settings.smtp.username = Some("comptoir".to_owned());
        settings.retry.max_ms = 1;
        settings.sender.batch_size = 0;
        settings.orders_namespace = "nope".to_owned();
        let problems = settings.validate().join("\n");
        for needle in [
            "identity.token_file must be set",
            "identity.ca_file",
            "smtp.from",
            "smtp.host",
            "smtp.password_file must be set",
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
