//! The catalog service: products, categories and prices.
//!
//! Shoppers read and search the catalogue; administrators create, update and delete products
//! and categories with optimistic concurrency (ETag / If-Match). Every product change is
//! written with a `product-changed` event into the outbox in the same transaction, and the
//! outbox relay publishes it to Pulsar keyed by product id.
//!
//! Layout: [`domain`] turns requests into validated values, [`repo`] owns the SQL, [`api`] maps
//! HTTP to both and errors to problem+json, [`demo`] seeds a realistic catalogue.
#![forbid(unsafe_code)]

pub mod api;
pub mod demo;
pub mod domain;
pub mod gdpr;
pub mod repo;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comptoir_events::outbox::Relay;
use comptoir_events::pulsar::PulsarSettings;
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_platform::health::ReadinessCheck;
use comptoir_platform::secret::{MIN_BEARER_TOKEN_LEN, Secret, read_secret_file};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Name of the topic product events go to, inside the configured namespace.
pub const PRODUCT_TOPIC: &str = "product-events";
/// The CloudEvents `source` of every catalog event.
pub const EVENT_SOURCE: &str = "/comptoir/catalog";

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
        if self
            .gdpr_requests_namespace
            .split('/')
            .filter(|p| !p.is_empty())
            .count()
            != 2
        {
            problems.push(format!(
                "gdpr_requests_namespace must look like tenant/namespace, got {:?}",
                self.gdpr_requests_namespace
            ));
        }
        match &self.admin_token_file {
            None => problems
                .push("admin_token_file must be set: the admin routes need a token".to_owned()),
            Some(path) => match read_secret_file(path) {
                Err(error) => problems.push(format!(
                    "admin_token_file: {}",
                    comptoir_platform::telemetry::error_chain(&error)
                )),
                Ok(token) if token.expose().len() < MIN_BEARER_TOKEN_LEN => problems.push(format!(
                    "admin_token_file: the token must be at least {MIN_BEARER_TOKEN_LEN} characters"
                )),
                Ok(_) => {}
            },
        }
        problems
    }
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    /// Full name of the product events topic.
    pub topic: String,
    /// Wakes the outbox relay after a commit so events leave at once.
    pub relay_wake: Arc<tokio::sync::Notify>,
    pub admin_token: Arc<Secret<String>>,
}

/// Runs the catalog on `listener` until `shutdown` is cancelled: migrates the database,
/// connects to Pulsar, starts the outbox relay, serves HTTP, then drains requests and
/// publishes what is left in the outbox before returning.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the catalog database")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;
    let admin_token = settings
        .admin_token_file
        .as_deref()
        .context("admin_token_file is not set")
        .and_then(|path| read_secret_file(path).context("admin token"))?;

    let relay = Relay::connect(pool.clone(), &settings.pulsar, "catalog-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let state = AppState {
        pool: pool.clone(),
        topic: settings.pulsar.topic(PRODUCT_TOPIC),
        relay_wake: relay.waker(),
        admin_token: Arc::new(admin_token),
    };
    if settings.demo_data {
        let loaded = demo::load(&state)
            .await
            .context("failed to load the demo catalogue")?;
        tracing::info!(products = loaded, "Demo catalogue ready");
    }

    // The relay outlives the HTTP server: it stops only after the last request has drained,
    // so every committed change is published before the process exits.
    let relay_stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));
    // GDPR requests from identity: answered through the outbox, so before the relay stops.
    let gdpr_topics = comptoir_events::gdpr::GdprTopics {
        requests_namespace: settings.gdpr_requests_namespace.clone(),
        replies_namespace: settings.pulsar.namespace.clone(),
    };
    let (export, erasure) = comptoir_events::gdpr::consumers(
        pool.clone(),
        pulsar.clone(),
        Arc::new(gdpr::CatalogParticipant),
        &gdpr_topics,
    );
    let consumers_stop = CancellationToken::new();
    let consumer_tasks = [
        tokio::spawn(export.run(consumers_stop.clone())),
        tokio::spawn(erasure.run(consumers_stop.clone())),
    ];

    let checks = readiness_checks(pool, pulsar, state.topic.clone());
    let app = comptoir_platform::http::app("catalog", api::router(state), &settings.http, checks);
    let served = comptoir_platform::http::serve(
        listener,
        app,
        shutdown,
        Duration::from_millis(settings.http.shutdown_grace_ms),
    )
    .await;
    consumers_stop.cancel();
    for task in consumer_tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "GDPR consumer task failed");
        }
    }
    relay_stop.cancel();
    if let Err(error) = relay_task.await {
        tracing::error!(%error, "Outbox relay task failed");
    }
    served.context("HTTP server failed")
}

fn readiness_checks(
    pool: deadpool_postgres::Pool,
    pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: String,
) -> Vec<ReadinessCheck> {
    vec![
        ReadinessCheck::new("postgres", move || {
            let pool = pool.clone();
            async move { comptoir_store::ping(&pool).await.map_err(|e| e.to_string()) }
        }),
        ReadinessCheck::new("pulsar", move || {
            let pulsar = pulsar.clone();
            let topic = topic.clone();
            async move {
                pulsar
                    .lookup_topic(topic)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }),
    ]
}
