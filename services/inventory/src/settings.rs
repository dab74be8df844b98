//! Inventory's typed settings: defaults, then a TOML file, then `COMPTOIR_INVENTORY__...`
//! variables; every problem is reported at once, before a port is bound.

use std::path::PathBuf;

use comptoir_events::pulsar::{PulsarSettings, check_namespace};
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

use crate::domain::MAX_ON_HAND;

/// Longest reservation accepted: a week.
pub const MAX_RESERVATION_TTL_SECS: u64 = 7 * 24 * 3600;
/// Longest pause between two sweeps: an hour.
pub const MAX_SWEEP_INTERVAL_MS: u64 = 3_600_000;

/// Inventory settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// The broker, and inventory's own namespace, where `stock-outcomes` and `stock-levels`
    /// are published.
    pub pulsar: PulsarSettings,
    /// File holding the bearer token the admin routes require.
    pub admin_token_file: Option<PathBuf>,
    /// The catalog's namespace, where `product-events` come from.
    pub catalog_namespace: String,
    /// Orders' namespace, where the `stock-commands` come from.
    pub orders_namespace: String,
    /// Identity's namespace, where GDPR export and erasure requests are published.
    pub gdpr_requests_namespace: String,
    /// Units a product the catalog creates starts with (demo and test environments); unset,
    /// a new product starts at 0 and an administrator stocks it.
    pub demo_stock_per_product: Option<i64>,
    /// How long a reservation holds its units before the sweep gives them back, unless
    /// committed or released first.
    pub reservation_ttl_secs: u64,
    /// Pause between two runs of the expiry sweep.
    pub sweep_interval_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "inventory".to_owned(),
                user: "inventory".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/inventory".to_owned(),
                ..PulsarSettings::default()
            },
            admin_token_file: None,
            catalog_namespace: "comptoir/catalog".to_owned(),
            orders_namespace: "comptoir/orders".to_owned(),
            gdpr_requests_namespace: "comptoir/identity".to_owned(),
            demo_stock_per_product: None,
            reservation_ttl_secs: 900,
            sweep_interval_ms: 5_000,
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
        for (key, namespace) in [
            ("catalog_namespace", &self.catalog_namespace),
            ("orders_namespace", &self.orders_namespace),
            ("gdpr_requests_namespace", &self.gdpr_requests_namespace),
        ] {
            if let Err(problem) = check_namespace(namespace) {
                problems.push(format!("{key} {problem}"));
            }
        }
        if let Some(units) = self.demo_stock_per_product
            && !(0..=MAX_ON_HAND).contains(&units)
        {
            problems.push(format!(
                "demo_stock_per_product must be between 0 and {MAX_ON_HAND}, got {units}"
            ));
        }
        if !(1..=MAX_RESERVATION_TTL_SECS).contains(&self.reservation_ttl_secs) {
            problems.push(format!(
                "reservation_ttl_secs must be between 1 and {MAX_RESERVATION_TTL_SECS}, got {}",
                self.reservation_ttl_secs
            ));
        }
        if !(10..=MAX_SWEEP_INTERVAL_MS).contains(&self.sweep_interval_ms) {
            problems.push(format!(
                "sweep_interval_ms must be between 10 and {MAX_SWEEP_INTERVAL_MS}, got {}",
                self.sweep_interval_ms
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
    fn every_inventory_problem_is_reported_at_once() {
        let (_dir, mut settings) = with_token();
        settings.demo_stock_per_product = Some(-1);
        settings.reservation_ttl_secs = 0;
        settings.sweep_interval_ms = 0;
        settings.catalog_namespace = "catalog".to_owned();
        settings.orders_namespace = String::new();
        let problems = settings.validate().join("\n");
        for needle in [
            "demo_stock_per_product must be between 0 and 1000000000, got -1",
            "reservation_ttl_secs must be between 1",
            "sweep_interval_ms must be between 10",
            "catalog_namespace must look like tenant/namespace",
            "orders_namespace",
        ] {
            assert!(problems.contains(needle), "{needle:?} not in {problems}");
        }
    }
}
