//! The orders service's typed settings: defaults, then a TOML file, then `COMPTOIR_ORDERS__...`
//! variables; every problem is reported at once, before a port is bound.

use comptoir_auth::JwksCacheSettings;
use comptoir_events::pulsar::{PulsarSettings, check_namespace};
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

/// Orders settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// Orders' own namespace: the saga's commands and the order events are published here.
    pub pulsar: PulsarSettings,
    /// Identity's JWKS, to verify the shoppers' access tokens.
    pub auth: JwksCacheSettings,
    /// Catalog's namespace: product events feed the price projection.
    pub catalog_namespace: String,
    /// Inventory's namespace: the stock outcomes of the saga.
    pub inventory_namespace: String,
    /// Payments' namespace: the payment outcomes of the saga.
    pub payments_namespace: String,
    /// Identity's namespace, where GDPR export and erasure requests are published.
    pub gdpr_requests_namespace: String,
    pub saga: SagaSettings,
    pub kpis: KpiSettings,
}

/// How long the saga waits, and how often it looks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SagaSettings {
    /// A step (reserve, authorise, commit) not answered within this long cancels the order
    /// with reason `timeout` and compensates. Long by default: a participant that is down for
    /// a few minutes delays orders, it does not cancel them. Capture is never abandoned.
    pub step_timeout_secs: u64,
    /// How often the sweep looks for steps past their deadline.
    pub sweep_interval_ms: u64,
}

/// The business KPI gauges (`src/kpis.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KpiSettings {
    /// How often the gauges (active carts, orders in flight) are read from the database.
    pub interval_ms: u64,
}

impl Default for KpiSettings {
    fn default() -> Self {
        Self {
            interval_ms: 15_000,
        }
    }
}

impl Default for SagaSettings {
    fn default() -> Self {
        Self {
            step_timeout_secs: 900,
            sweep_interval_ms: 1_000,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "orders".to_owned(),
                user: "orders".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/orders".to_owned(),
                ..PulsarSettings::default()
            },
            auth: JwksCacheSettings::default(),
            catalog_namespace: "comptoir/catalog".to_owned(),
            inventory_namespace: "comptoir/inventory".to_owned(),
            payments_namespace: "comptoir/payments".to_owned(),
            gdpr_requests_namespace: "comptoir/identity".to_owned(),
            saga: SagaSettings::default(),
            kpis: KpiSettings::default(),
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
        for (key, value) in [
            ("catalog_namespace", &self.catalog_namespace),
            ("inventory_namespace", &self.inventory_namespace),
            ("payments_namespace", &self.payments_namespace),
            ("gdpr_requests_namespace", &self.gdpr_requests_namespace),
        ] {
            if let Err(problem) = check_namespace(value) {
                problems.push(format!("{key} {problem}"));
            }
        }
        if !(1..=86_400).contains(&self.saga.step_timeout_secs) {
            problems.push("saga.step_timeout_secs must be between 1 and 86400".to_owned());
        }
        if !(10..=60_000).contains(&self.saga.sweep_interval_ms) {
            problems.push("saga.sweep_interval_ms must be between 10 and 60000".to_owned());
        }
        if !(100..=600_000).contains(&self.kpis.interval_ms) {
            problems.push("kpis.interval_ms must be between 100 and 600000".to_owned());
        }
        problems
    }
}
