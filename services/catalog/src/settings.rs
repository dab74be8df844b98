//! The catalog's typed settings: defaults, then a TOML file, then `COMPTOIR_CATALOG__...`
//! variables; every problem is reported at once, before a port is bound.

use std::path::PathBuf;

use comptoir_events::pulsar::PulsarSettings;
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};

/// Catalog settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    pub pulsar: PulsarSettings,
    /// File holding the bearer token the admin routes require.
    pub admin_token_file: Option<PathBuf>,
    /// Load the demo catalogue at startup when the catalogue is empty.
    pub demo_data: bool,
    /// Identity's namespace, where GDPR export and erasure requests are published.
    pub gdpr_requests_namespace: String,
    pub read_cache: ReadCacheSettings,
}

/// The shoppers' read path (`src/pages.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadCacheSettings {
    /// Serve listings and the category list from memory, dropped on every change (off: every
    /// request reads the database, as the benchmarks compare).
    pub enabled: bool,
    /// Pages kept at most; past it the cache starts over.
    pub max_pages: usize,
}

impl Default for ReadCacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pages: 10_000,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "catalog".to_owned(),
                user: "catalog".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/catalog".to_owned(),
                ..PulsarSettings::default()
            },
            admin_token_file: None,
            demo_data: false,
            gdpr_requests_namespace: "comptoir/identity".to_owned(),
            read_cache: ReadCacheSettings::default(),
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
        if let Err(problem) =
            comptoir_events::pulsar::check_namespace(&self.gdpr_requests_namespace)
        {
            problems.push(format!("gdpr_requests_namespace {problem}"));
        }
        problems.extend(comptoir_platform::secret::bearer_token_file_problem(
            "admin_token_file",
            self.admin_token_file.as_deref(),
            "the admin routes need a token",
        ));
        if !(1..=1_000_000).contains(&self.read_cache.max_pages) {
            problems.push("read_cache.max_pages must be between 1 and 1000000".to_owned());
        }
        problems
    }
}
