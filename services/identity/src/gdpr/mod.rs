//! The GDPR flows, identity's side (docs/architecture.md §5; ADR 0014).
//!
//! - **Export** (Art. 15 and 20): `POST /v1/me/exports` records a job and, in the same
//!   transaction, enqueues `ExportRequested` in identity's outbox. Every participant (the
//!   services listed in `gdpr.participants`) answers with an `ExportSlice` on its own
//!   `export-slices` topic; identity consumes each of those topics, stores the slices sealed
//!   under the customer's data key and, once every participant has answered, assembles one
//!   JSON archive — its own slice (the decrypted profile, consents, sessions, PII access log)
//!   and theirs — sealed under the same key, with an expiry ([`export`]).
//! - **Erasure** (Art. 17): `DELETE /v1/me` with the current password deletes, in one
//!   transaction, the wrapped data key (crypto-shredding every ciphertext, exports included),
//!   the customer row with every encrypted field and the blind index, credentials, sessions,
//!   consents and exports, records a pseudonymous erasure request and enqueues
//!   `CustomerErased`. Each participant's `ErasureConfirmed` is recorded; the request is
//!   complete when all have confirmed ([`erasure`]).
//! - [`store`] owns the SQL, [`api`] the routes, [`sweep`] the periodic job (expired archives,
//!   old erasure records, the pending gauges).
//!
//! A participant that is down when a request is published gets it from its durable
//! subscription when it comes back; identity's reply consumers are durable too, so a reply
//! sent while identity is down is applied when identity comes back.

pub mod api;
pub mod erasure;
pub mod export;
pub mod store;
pub mod sweep;

use std::sync::Arc;

use comptoir_events::consumer::{ConsumerConfig, EventConsumer};
use comptoir_events::contracts::gdpr::{ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC};
use comptoir_events::contracts::identity::{
    CONSENT_CHANGES_TOPIC, CUSTOMER_ERASED_TOPIC, EXPORT_REQUESTS_TOPIC,
};
use serde::{Deserialize, Serialize};

use crate::Keys;

/// The CloudEvents `source` of identity's events.
pub const EVENT_SOURCE: &str = "/comptoir/identity";

/// A service that must answer every export and erasure request.
///
/// Written either as its name (`"catalog"`, namespace `comptoir/catalog`) or as a table
/// (`{ name = "orders", namespace = "comptoir-eu/orders" }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParticipantEntry {
    Name(String),
    Table(ParticipantTable),
}

/// [`ParticipantEntry`] written as a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantTable {
    pub name: String,
    /// Where the participant publishes its replies; default `comptoir/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ParticipantEntry {
    pub fn name(&self) -> &str {
        match self {
            Self::Name(name) => name,
            Self::Table(table) => &table.name,
        }
    }

    /// The namespace the participant replies in.
    pub fn namespace(&self) -> String {
        match self {
            Self::Table(ParticipantTable {
                namespace: Some(namespace),
                ..
            }) => namespace.clone(),
            _ => format!("comptoir/{}", self.name()),
        }
    }
}

/// `gdpr.*` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GdprSettings {
    /// The services that must answer every export and erasure request.
    pub participants: Vec<ParticipantEntry>,
    /// How long a ready export stays downloadable.
    pub export_ttl_secs: u64,
    /// Largest archive assembled, in bytes (identity's slice and every service's, as JSON);
    /// past it the export fails with `archive-too-large` instead of filling the database.
    pub export_max_bytes: usize,
    /// How long the pseudonymous record of a completed erasure is kept (accountability,
    /// Art. 5(2)); default 5 years, the French limitation period for civil claims.
    pub erasure_record_retention_days: u64,
    /// How long a line of the PII access log is kept (it is exported to its subject, and
    /// audits other services' reads of personal data).
    pub access_log_retention_days: u64,
    /// How often the sweep job runs (expired archives, old records, pending gauges).
    pub sweep_interval_ms: u64,
    /// An erasure still waiting for a participant after this long is published again (same
    /// request id; participants erase idempotently and a second confirmation changes
    /// nothing), so a participant down longer than the message TTL still erases.
    pub resend_after_secs: u64,
}

impl Default for GdprSettings {
    fn default() -> Self {
        Self {
            // Every service that stores anything keyed by a customer, or could: the platform's
            // services but the gateway (docs/adding-a-service.md).
            participants: [
                "catalog",
                "orders",
                "inventory",
                "payments",
                "notifications",
                "analytics",
            ]
            .into_iter()
            .map(|name| ParticipantEntry::Name(name.to_owned()))
            .collect(),
            export_ttl_secs: 7 * 24 * 3600,
            export_max_bytes: 16 * 1024 * 1024,
            erasure_record_retention_days: 5 * 365,
            access_log_retention_days: 365,
            sweep_interval_ms: 60_000,
            resend_after_secs: 24 * 3600,
        }
    }
}

fn valid_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl GdprSettings {
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for participant in &self.participants {
            let name = participant.name();
            if !valid_service_name(name) {
                problems.push(format!(
                    "{prefix}.participants: {name:?} is not a service name (lowercase letters, digits, -)"
                ));
            }
            if name == "identity" {
                problems.push(format!(
                    "{prefix}.participants: identity assembles the export itself and is not a participant"
                ));
            }
            if !seen.insert(name.to_owned()) {
                problems.push(format!("{prefix}.participants: {name} is listed twice"));
            }
            if let Err(problem) = comptoir_events::pulsar::check_namespace(&participant.namespace())
            {
                problems.push(format!(
                    "{prefix}.participants: the namespace of {name} {problem}"
                ));
            }
        }
        if self.export_ttl_secs == 0 {
            problems.push(format!("{prefix}.export_ttl_secs must be greater than 0"));
        }
        if self.export_max_bytes < 1024 {
            problems.push(format!("{prefix}.export_max_bytes must be at least 1024"));
        }
        if self.erasure_record_retention_days == 0 {
            problems.push(format!(
                "{prefix}.erasure_record_retention_days must be greater than 0"
            ));
        }
        if self.access_log_retention_days == 0 {
            problems.push(format!(
                "{prefix}.access_log_retention_days must be greater than 0"
            ));
        }
        if self.resend_after_secs == 0 {
            problems.push(format!("{prefix}.resend_after_secs must be greater than 0"));
        }
        if self.sweep_interval_ms == 0 {
            problems.push(format!("{prefix}.sweep_interval_ms must be greater than 0"));
        }
        problems
    }

    /// The participants' names, in configuration order.
    pub fn service_names(&self) -> Vec<String> {
        self.participants
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }
}

/// Failures of the flows. None carries personal data: JSON errors in particular are reduced
/// to their category, since serde's messages may quote the value that failed.
#[derive(Debug, thiserror::Error)]
pub enum GdprError {
    #[error(transparent)]
    Repo(#[from] crate::repo::RepoError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot get a database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error("cannot write the event to the outbox")]
    Outbox(#[from] comptoir_events::outbox::OutboxError),
    #[error("a GDPR document does not encode or decode as JSON ({0:?} error)")]
    Json(serde_json::error::Category),
    #[error("the customer has no data key (erased meanwhile)")]
    NoSubjectKey,
}

impl From<serde_json::Error> for GdprError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json(error.classify())
    }
}

/// What the flows share: keys, settings and topic names.
#[derive(Debug)]
pub struct Gdpr {
    pub keys: Arc<Keys>,
    pub settings: GdprSettings,
    /// `persistent://<identity namespace>/export-requests`.
    pub export_requests_topic: String,
    /// `persistent://<identity namespace>/customer-erased`.
    pub customer_erased_topic: String,
    /// `persistent://<identity namespace>/consent-changes` (not a GDPR flow, but identity's
    /// other topic: consents are what analytics and marketing obey).
    pub consent_changes_topic: String,
}

impl Gdpr {
    pub fn new(keys: Arc<Keys>, settings: GdprSettings, identity_namespace: &str) -> Self {
        Self {
            keys,
            settings,
            export_requests_topic: format!(
                "persistent://{identity_namespace}/{EXPORT_REQUESTS_TOPIC}"
            ),
            customer_erased_topic: format!(
                "persistent://{identity_namespace}/{CUSTOMER_ERASED_TOPIC}"
            ),
            consent_changes_topic: format!(
                "persistent://{identity_namespace}/{CONSENT_CHANGES_TOPIC}"
            ),
        }
    }

    pub fn services(&self) -> Vec<String> {
        self.settings.service_names()
    }
}

/// Starts the reply consumers: per participant, one on its `export-slices` topic and one on
/// its `erasure-confirmations` topic, on durable subscriptions named after it
/// (`identity-gdpr-export-<name>`, `identity-gdpr-erasure-<name>`). They stop when `stop` is
/// cancelled.
pub fn spawn_consumers(
    pool: &deadpool_postgres::Pool,
    pulsar: &pulsar::Pulsar<pulsar::TokioExecutor>,
    gdpr: &Arc<Gdpr>,
    stages: &mut comptoir_platform::shutdown::Stages,
) {
    for participant in &gdpr.settings.participants {
        let name = participant.name();
        let namespace = participant.namespace();
        let slices = EventConsumer::new(
            pool.clone(),
            pulsar.clone(),
            ConsumerConfig::new(
                &format!("persistent://{namespace}/{EXPORT_SLICES_TOPIC}"),
                &format!("identity-gdpr-export-{name}"),
            ),
            export::SliceHandler::new(Arc::clone(gdpr), name),
        );
        let confirmations = EventConsumer::new(
            pool.clone(),
            pulsar.clone(),
            ConsumerConfig::new(
                &format!("persistent://{namespace}/{ERASURE_CONFIRMATIONS_TOPIC}"),
                &format!("identity-gdpr-erasure-{name}"),
            ),
            erasure::ConfirmationHandler::new(name),
        );
        stages.spawn("consumers", |stop| slices.run(stop));
        stages.spawn("consumers", |stop| confirmations.run(stop));
    }
}

/// Metric names, in one place.
pub mod metric {
    /// Counter, label `kind` (`export` | `erasure`): requests accepted.
    pub const REQUESTS: &str = "identity_gdpr_requests_total";
    /// Counter, label `kind`: requests completed (every participant answered).
    pub const COMPLETED: &str = "identity_gdpr_completed_total";
    /// Gauge, label `kind`: requests waiting for a participant (set by the sweep job).
    pub const PENDING: &str = "identity_gdpr_pending";
    /// Histogram, label `kind`: seconds from request to completion. The `_lag_seconds` suffix
    /// gets the platform's long buckets (up to 15 min): a participant may be down a while.
    pub const LAG: &str = "identity_gdpr_request_lag_seconds";
    /// Counter, labels `kind` and `reason`: replies ignored (unknown request, unexpected
    /// service, another customer's id).
    pub const IGNORED: &str = "identity_gdpr_replies_ignored_total";
    /// Counter: erasure requests published again to participants that had not confirmed.
    pub const ERASURES_RESENT: &str = "identity_erasures_resent_total";
    /// Counter: exports that failed, label `reason`.
    pub const EXPORTS_FAILED: &str = "identity_exports_failed_total";
    /// Counter: archives deleted after their expiry.
    pub const EXPORTS_EXPIRED: &str = "identity_exports_expired_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participants_are_names_or_tables_with_a_default_namespace() {
        let settings: GdprSettings = serde_json::from_value(serde_json::json!({
            "participants": ["catalog", {"name": "orders", "namespace": "eu/orders"}, {"name": "payments"}]
        }))
        .expect("settings");
        let names: Vec<(String, String)> = settings
            .participants
            .iter()
            .map(|p| (p.name().to_owned(), p.namespace()))
            .collect();
        assert_eq!(
            names,
            [
                ("catalog".to_owned(), "comptoir/catalog".to_owned()),
                ("orders".to_owned(), "eu/orders".to_owned()),
                ("payments".to_owned(), "comptoir/payments".to_owned()),
            ]
        );
        assert!(settings.problems("gdpr").is_empty());
        assert_eq!(
            GdprSettings::default().service_names(),
            [
                "catalog",
                "orders",
                "inventory",
                "payments",
                "notifications",
                "analytics"
            ]
        );
        assert_eq!(GdprSettings::default().export_ttl_secs, 604_800);
    }

    #[test]
    fn bad_participants_and_limits_are_named() {
        let settings: GdprSettings = serde_json::from_value(serde_json::json!({
            "participants": ["catalog", "catalog", "Orders", "identity", {"name": "x", "namespace": "flat"}],
            "export_ttl_secs": 0,
            "export_max_bytes": 10
        }))
        .expect("settings");
        let problems = settings.problems("gdpr").join("\n");
        for expected in [
            "catalog is listed twice",
            "\"Orders\" is not a service name",
            "identity assembles",
            "namespace of x",
            "export_ttl_secs",
            "export_max_bytes",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
    }
}
