//! Analytics' typed settings: defaults, then a TOML file, then `COMPTOIR_ANALYTICS__...`
//! variables; every problem is reported at once, before a port is bound.

use std::path::PathBuf;

use comptoir_auth::JwksCacheSettings;
use comptoir_events::pulsar::{PulsarSettings, check_namespace};
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

use crate::domain::PseudonymKeys;

/// Most clicks in one batch the API accepts at all.
pub const MAX_BATCH_CLICKS: usize = 10_000;
/// Longest kept aggregate: ten years.
pub const MAX_RETENTION_DAYS: u32 = 3_650;

/// Analytics settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// The broker, and analytics' own namespace, where the partitioned `clickstream` topic is.
    pub pulsar: PulsarSettings,
    /// Identity's JWKS: a signed-in shopper's clicks carry their access token.
    pub auth: JwksCacheSettings,
    /// File holding the bearer token the KPI routes require.
    pub admin_token_file: Option<PathBuf>,
    /// A directory holding the pseudonymisation keys, one file per epoch named
    /// `<YYYY-MM>.key` (standard base64 of 32 random bytes); its other files are ignored. Clicks are pseudonymised with the key of the
    /// current UTC month; deleting a month's file once its clicks have expired makes its
    /// pseudonyms unlinkable to anyone.
    pub pseudonym_keys_dir: Option<PathBuf>,
    /// Identity's namespace: `consent-changes` and the GDPR requests come from there.
    pub identity_namespace: String,
    /// Orders' namespace: `order-events` feed the checkout funnel.
    pub orders_namespace: String,
    /// Most clicks in one `POST /v1/events` batch.
    pub max_batch_clicks: usize,
    /// How far in the future a click's time may be (clock skew of the visitor's device).
    pub max_future_skew_secs: u64,
    /// How old a click may be when it arrives (a device that was offline).
    pub max_age_secs: u64,
    /// Aggregates older than this many days are deleted by the retention job.
    pub retention_days: u32,
    /// Pause between two runs of the retention job.
    pub retention_interval_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "analytics".to_owned(),
                user: "analytics".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/analytics".to_owned(),
                ..PulsarSettings::default()
            },
            auth: JwksCacheSettings::default(),
            admin_token_file: None,
            pseudonym_keys_dir: None,
            identity_namespace: "comptoir/identity".to_owned(),
            orders_namespace: "comptoir/orders".to_owned(),
            max_batch_clicks: 500,
            max_future_skew_secs: 300,
            max_age_secs: 24 * 3600,
            retention_days: 395,
            retention_interval_ms: 3_600_000,
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

impl Validate for Settings {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.http.validate();
        problems.extend(self.telemetry.validate());
        problems.extend(self.database.problems("database"));
        problems.extend(self.pulsar.problems("pulsar"));
        problems.extend(self.auth.problems("auth"));
        for (key, namespace) in [
            ("identity_namespace", &self.identity_namespace),
            ("orders_namespace", &self.orders_namespace),
        ] {
            if let Err(problem) = check_namespace(namespace) {
                problems.push(format!("{key} {problem}"));
            }
        }
        if !(1..=MAX_BATCH_CLICKS).contains(&self.max_batch_clicks) {
            problems.push(format!(
                "max_batch_clicks must be between 1 and {MAX_BATCH_CLICKS}, got {}",
                self.max_batch_clicks
            ));
        }
        if self.max_future_skew_secs > 3_600 {
            problems.push(format!(
                "max_future_skew_secs must be at most 3600, got {}",
                self.max_future_skew_secs
            ));
        }
        if !(60..=7 * 24 * 3600).contains(&self.max_age_secs) {
            problems.push(format!(
                "max_age_secs must be between 60 and 604800, got {}",
                self.max_age_secs
            ));
        }
        if !(1..=MAX_RETENTION_DAYS).contains(&self.retention_days) {
            problems.push(format!(
                "retention_days must be between 1 and {MAX_RETENTION_DAYS}, got {}",
                self.retention_days
            ));
        }
        if !(10..=86_400_000).contains(&self.retention_interval_ms) {
            problems.push(format!(
                "retention_interval_ms must be between 10 and 86400000, got {}",
                self.retention_interval_ms
            ));
        }
        match &self.pseudonym_keys_dir {
            None => problems.push(
                "pseudonym_keys_dir must be set: clicks are pseudonymised with its keys".to_owned(),
            ),
            Some(dir) => {
                if let Err(problem) = PseudonymKeys::load(dir) {
                    problems.push(format!("pseudonym_keys_dir: {problem}"));
                }
            }
        }
        problems.extend(comptoir_platform::secret::bearer_token_file_problem(
            "admin_token_file",
            self.admin_token_file.as_deref(),
            "the KPI routes need a token",
        ));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("admin-token");
        std::fs::write(&token, "a-long-enough-admin-token").expect("write");
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).expect("keys dir");
        std::fs::write(
            keys.join("2026-12.key"),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )
        .expect("write key");
        let settings = Settings {
            admin_token_file: Some(token),
            pseudonym_keys_dir: Some(keys),
            ..Settings::default()
        };
        (dir, settings)
    }

    #[test]
    fn the_defaults_with_a_token_and_keys_are_valid() {
        let (_dir, settings) = valid();
        assert_eq!(settings.validate(), Vec::<String>::new());
    }

    #[test]
    fn every_analytics_problem_is_reported_at_once() {
        let (_dir, mut settings) = valid();
        settings.max_batch_clicks = 0;
        settings.max_future_skew_secs = 7_200;
        settings.max_age_secs = 1;
        settings.retention_days = 0;
        settings.retention_interval_ms = 0;
        settings.orders_namespace = "orders".to_owned();
        settings.pseudonym_keys_dir = None;
        let problems = settings.validate().join("\n");
        for needle in [
            "max_batch_clicks must be between 1 and 10000, got 0",
            "max_future_skew_secs must be at most 3600",
            "max_age_secs must be between 60",
            "retention_days must be between 1",
            "retention_interval_ms must be between 10",
            "orders_namespace must look like tenant/namespace",
            "pseudonym_keys_dir must be set",
        ] {
            assert!(problems.contains(needle), "{needle:?} not in {problems}");
        }
    }

    #[test]
    fn a_keys_directory_without_keys_is_refused() {
        let (dir, mut settings) = valid();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("dir");
        settings.pseudonym_keys_dir = Some(empty);
        let problems = settings.validate().join("\n");
        assert!(problems.contains("no <YYYY-MM>.key file"), "{problems}");
    }
}
