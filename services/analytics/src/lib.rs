//! The analytics service: the storefront's click stream in, real-time KPIs out.
//!
//! `POST /v1/events` takes a visitor's batch of clicks (page views, product views, searches,
//! add-to-cart), validates it, drops it when a signed-in customer has not granted the
//! analytics consent (known from identity's `consent-changes`, kept as a local projection: no
//! call per request), replaces the visitor by a keyed, monthly-rotating pseudonym and puts the
//! batch on the partitioned `clickstream` topic ([`ingest`]). A processor on the same service
//! counts the stream into tumbling one-minute windows in PostgreSQL, exactly once per message
//! ([`processor`]), beside orders' checkouts and confirmations; the KPI routes read sliding
//! windows over them ([`api`]). A job deletes aggregates past their retention ([`retention`]).
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`error`]
//! errors as problem+json, [`domain`] validated inputs, windows and keys, [`repo`] owns the
//! SQL, [`ingest`] the click-stream producer, [`processor`] the consumers, [`retention`] the
//! retention job, [`api`] the routes, [`gdpr`] answers export and erasure.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod error;
pub mod gdpr;
pub mod ingest;
pub mod processor;
pub mod repo;
pub mod retention;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use comptoir_auth::{Authenticator, JwksCache};
use comptoir_events::consumer::{ConsumerConfig, EventConsumer};
use comptoir_events::contracts::analytics::CLICKSTREAM_TOPIC;
use comptoir_events::contracts::identity::CONSENT_CHANGES_TOPIC;
use comptoir_events::contracts::orders::ORDER_EVENTS_TOPIC;
use comptoir_events::outbox::Relay;
use comptoir_platform::secret::{Secret, read_secret_file};
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::{Limits, PseudonymKeys};
pub use crate::settings::Settings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The CloudEvents `source` of every analytics event.
pub const EVENT_SOURCE: &str = "/comptoir/analytics";
/// The subscription the processor counts the click stream with.
pub const CLICKSTREAM_SUBSCRIPTION: &str = "analytics-clickstream";
/// The subscription orders' events feed the funnel with.
pub const ORDERS_SUBSCRIPTION: &str = "analytics-orders";
/// The subscription identity's consent changes are projected with.
pub const CONSENTS_SUBSCRIPTION: &str = "analytics-consents";

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub ingest: Arc<ingest::Ingest>,
    pub limits: Limits,
    pub auth: Authenticator,
    pub admin_token: Arc<Secret<String>>,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Runs analytics on `listener` until `shutdown` is cancelled: migrates the database, connects
/// the click-stream producer, starts the consumers (click stream, orders, consents, GDPR), the
/// retention job and the outbox relay (GDPR replies), serves HTTP, then drains requests, closes
/// the producer and stops the rest in order.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keys_dir = settings
        .pseudonym_keys_dir
        .as_deref()
        .context("pseudonym_keys_dir is not set")?;
    let keys = PseudonymKeys::load(keys_dir).map_err(|problem| anyhow::anyhow!(problem))?;
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the analytics database")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;
    let admin_token = settings
        .admin_token_file
        .as_deref()
        .context("admin_token_file is not set")
        .and_then(|path| read_secret_file(path).context("admin token"))?;
    let jwks = Arc::new(JwksCache::new(settings.auth.clone())?);
    if let Err(error) = jwks.refresh().await {
        tracing::warn!(%error, url = %settings.auth.url, "Cannot fetch identity's keys yet; not ready until then");
    }

    let clickstream = settings.pulsar.topic(CLICKSTREAM_TOPIC);
    let ingest = Arc::new(
        ingest::Ingest::connect(&pulsar, &clickstream, keys)
            .await
            .context("failed to connect the click-stream producer")?,
    );
    let relay = Relay::connect(pool.clone(), &settings.pulsar, "analytics-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let state = AppState {
        pool: pool.clone(),
        ingest: Arc::clone(&ingest),
        limits: Limits {
            max_clicks: settings.max_batch_clicks,
            max_future_skew: time::Duration::seconds(settings.max_future_skew_secs as i64),
            max_age: time::Duration::seconds(settings.max_age_secs as i64),
        },
        auth: Authenticator::Remote(Arc::clone(&jwks)),
        admin_token: Arc::new(admin_token),
    };

    // Stopped in this order once the last request has drained: the consumers (the GDPR ones
    // answer through the outbox), the background jobs, then the relay, last.
    let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));
    let clicks = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig {
            // A busy stream commits hundreds of batches per transaction.
            max_batch: 500,
            ..ConsumerConfig::new(&clickstream, CLICKSTREAM_SUBSCRIPTION)
        },
        processor::ClickCounter::default(),
    );
    stages.spawn("consumers", |stop| clicks.run(stop));
    let topic_in = |namespace: &str, topic: &str| format!("persistent://{namespace}/{topic}");
    let orders = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(
            &topic_in(&settings.orders_namespace, ORDER_EVENTS_TOPIC),
            ORDERS_SUBSCRIPTION,
        ),
        processor::OrderCounter,
    );
    stages.spawn("consumers", |stop| orders.run(stop));
    let consents = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(
            &topic_in(&settings.identity_namespace, CONSENT_CHANGES_TOPIC),
            CONSENTS_SUBSCRIPTION,
        ),
        processor::ConsentProjection,
    );
    stages.spawn("consumers", |stop| consents.run(stop));
    let gdpr_topics = comptoir_events::gdpr::GdprTopics {
        requests_namespace: settings.identity_namespace.clone(),
        replies_namespace: settings.pulsar.namespace.clone(),
    };
    let (export, erasure) = comptoir_events::gdpr::consumers(
        pool.clone(),
        pulsar.clone(),
        Arc::new(gdpr::AnalyticsParticipant),
        &gdpr_topics,
    );
    stages.spawn("consumers", |stop| export.run(stop));
    stages.spawn("consumers", |stop| erasure.run(stop));

    let retention_pool = pool.clone();
    let retention_every = Duration::from_millis(settings.retention_interval_ms);
    let retention_days = settings.retention_days;
    stages.spawn("background", move |stop| {
        retention::run(retention_pool, retention_days, retention_every, stop)
    });
    stages.spawn("background", |stop| {
        Arc::clone(&jwks).run_periodic_refresh(stop)
    });

    let mut checks = comptoir_events::health::postgres_and_pulsar(pool, pulsar, clickstream);
    checks.push(jwks.readiness_check());
    let app = comptoir_platform::http::app("analytics", api::router(state), &settings.http, checks);
    let served = comptoir_platform::http::serve(
        listener,
        app,
        shutdown,
        Duration::from_millis(settings.http.shutdown_grace_ms),
    )
    .await;
    // Every accepted batch was acknowledged before its 202; closing flushes nothing new but
    // tells the broker this producer is gone.
    ingest.close().await;
    stages.stop().await;
    served.context("HTTP server failed")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_migration_holds_the_shared_outbox_and_inbox_tables() {
        let migration = include_str!("../migrations/V1__analytics.sql");
        assert!(migration.contains(comptoir_events::outbox::OUTBOX_TABLE_SQL));
        assert!(migration.contains(comptoir_events::consumer::INBOX_TABLE_SQL));
    }
}
