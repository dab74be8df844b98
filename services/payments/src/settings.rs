//! The payments service's typed settings: defaults, then a TOML file, then
//! `COMPTOIR_PAYMENTS__...` variables; every problem is reported at once, before a port is bound.

use std::path::PathBuf;

use comptoir_events::pulsar::{PulsarSettings, check_namespace};
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

/// Payments settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// The broker, and payments' own namespace, where `payment-outcomes` are published.
    pub pulsar: PulsarSettings,
    /// File holding the bearer token the admin routes require.
    pub admin_token_file: Option<PathBuf>,
    /// Orders' namespace, where the `payment-commands` come from.
    pub orders_namespace: String,
    /// Identity's namespace, where GDPR export and erasure requests are published.
    pub gdpr_requests_namespace: String,
    /// How long a call to the payment provider may take before it counts as timed out.
    pub provider_timeout_ms: u64,
    /// Failed deliveries of a payment command before it goes to the dead-letter topic. A
    /// provider outage fails every delivery, so this (with the consumer's backoff, doubling
    /// from 200 ms up to 30 s) is how long payments keeps trying through one: 20 ≈ 7 min.
    pub commands_max_redeliveries: usize,
    /// The simulated payment provider (the only provider this repository ships).
    pub simulated_provider: SimulatedProviderSettings,
}

/// How the SIMULATED payment provider behaves (see [`crate::simulated`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatedProviderSettings {
    /// Time every simulated call takes, as a network round trip to a real provider would.
    pub latency_ms: u64,
    /// Chance (0.0–1.0) that a call fails with a transient `Unavailable` before doing anything.
    pub failure_rate: f64,
}

impl Default for SimulatedProviderSettings {
    fn default() -> Self {
        Self {
            latency_ms: 20,
            failure_rate: 0.0,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "payments".to_owned(),
                user: "payments".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/payments".to_owned(),
                ..PulsarSettings::default()
            },
            admin_token_file: None,
            orders_namespace: "comptoir/orders".to_owned(),
            gdpr_requests_namespace: "comptoir/identity".to_owned(),
            provider_timeout_ms: 5_000,
            commands_max_redeliveries: 20,
            simulated_provider: SimulatedProviderSettings::default(),
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

/// The longest provider timeout accepted: the call runs inside the consumer's transaction,
/// which stays open (and holds its row lock) while the provider answers.
pub const MAX_PROVIDER_TIMEOUT_MS: u64 = 60_000;

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
            if let Err(problem) = check_namespace(namespace) {
                problems.push(format!("{key} {problem}"));
            }
        }
        if !(1..=MAX_PROVIDER_TIMEOUT_MS).contains(&self.provider_timeout_ms) {
            problems.push(format!(
                "provider_timeout_ms must be between 1 and {MAX_PROVIDER_TIMEOUT_MS}, got {}",
                self.provider_timeout_ms
            ));
        }
        if !(1..=1_000).contains(&self.commands_max_redeliveries) {
            problems.push(format!(
                "commands_max_redeliveries must be between 1 and 1000, got {}",
                self.commands_max_redeliveries
            ));
        }
        let simulated = &self.simulated_provider;
        // `contains` is false for NaN too.
        if !(0.0..=1.0).contains(&simulated.failure_rate) {
            problems.push(format!(
                "simulated_provider.failure_rate must be between 0.0 and 1.0, got {}",
                simulated.failure_rate
            ));
        }
        if simulated.latency_ms >= self.provider_timeout_ms {
            problems.push(format!(
                "simulated_provider.latency_ms ({}) must be below provider_timeout_ms ({}): \
                 every call would time out",
                simulated.latency_ms, self.provider_timeout_ms
            ));
        }
        problems.extend(comptoir_platform::secret::bearer_token_file_problem(
            "admin_token_file",
            self.admin_token_file.as_deref(),
            "the admin routes need a token",
        ));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_token() -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("admin-token");
        std::fs::write(&path, "a-long-enough-admin-token").expect("write");
        let settings = Settings {
            admin_token_file: Some(path),
            ..Settings::default()
        };
        (dir, settings)
    }

    #[test]
    fn the_defaults_with_a_token_are_valid() {
        let (_dir, settings) = with_token();
        assert_eq!(settings.validate(), Vec::<String>::new());
    }

    #[test]
    fn every_provider_problem_is_reported_at_once() {
        let (_dir, mut settings) = with_token();
        settings.provider_timeout_ms = 0;
        settings.simulated_provider.failure_rate = 1.5;
        settings.orders_namespace = "orders".to_owned();
        let problems = settings.validate().join("\n");
        for needle in [
            "provider_timeout_ms must be between 1",
            "simulated_provider.failure_rate must be between 0.0 and 1.0, got 1.5",
            "simulated_provider.latency_ms (20) must be below provider_timeout_ms (0)",
            "orders_namespace must look like tenant/namespace",
        ] {
            assert!(problems.contains(needle), "{needle:?} not in {problems}");
        }
        settings.simulated_provider.failure_rate = f64::NAN;
        assert!(settings.validate().join("\n").contains("failure_rate"));
    }
}
