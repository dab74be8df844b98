//! The catalog service: products, categories and prices.
//!
//! Shoppers read and search the catalogue; administrators create, update and delete products
//! and categories with optimistic concurrency (ETag / If-Match). Every product change is
//! written with a `product-changed` event into the outbox in the same transaction, and the
//! outbox relay publishes it to Pulsar keyed by product id.
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`error`]
//! errors as problem+json, [`domain`] turns requests into validated values, [`repo`] owns the
//! SQL, [`api`] maps HTTP to both, [`pages`] keeps the shoppers' pages in memory, [`gdpr`]
//! answers export and erasure, [`demo`] seeds a realistic catalogue.
#![forbid(unsafe_code)]

pub mod api;
pub mod demo;
pub mod domain;
pub mod error;
pub mod gdpr;
pub mod pages;
pub mod repo;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comptoir_events::outbox::Relay;
use comptoir_platform::secret::{Secret, read_secret_file};
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::settings::Settings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Name of the topic product events go to, inside the configured namespace.
pub const PRODUCT_TOPIC: &str = comptoir_events::contracts::catalog::PRODUCT_EVENTS_TOPIC;
/// The CloudEvents `source` of every catalog event.
pub const EVENT_SOURCE: &str = "/comptoir/catalog";

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    /// Full name of the product events topic.
    pub topic: String,
    /// Wakes the outbox relay after a commit so events leave at once.
    pub relay_wake: Arc<tokio::sync::Notify>,
    pub admin_token: Arc<Secret<String>>,
    /// The shoppers' pages kept in memory ([`pages`]).
    pub pages: pages::PageCache,
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
        pages: pages::PageCache::new(settings.read_cache.enabled, settings.read_cache.max_pages),
    };
    if settings.demo_data {
        let loaded = demo::load(&state)
            .await
            .context("failed to load the demo catalogue")?;
        tracing::info!(products = loaded, "Demo catalogue ready");
    }

    // Stopped in this order once the last request has drained: the GDPR consumers answer
    // through the outbox, so they stop before the relay, and the relay stops last, after
    // publishing every committed change.
    let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));
    let pages = state.pages.clone();
    let database = settings.database.clone();
    stages.spawn("background", move |stop| pages.run_listener(database, stop));
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
    stages.spawn("consumers", |stop| export.run(stop));
    stages.spawn("consumers", |stop| erasure.run(stop));

    let checks = comptoir_events::health::postgres_and_pulsar(pool, pulsar, state.topic.clone());
    let app = comptoir_platform::http::app("catalog", api::router(state), &settings.http, checks);
    let served = comptoir_platform::http::serve(
        listener,
        app,
        shutdown,
        Duration::from_millis(settings.http.shutdown_grace_ms),
    )
    .await;
    stages.stop().await;
    served.context("HTTP server failed")
}
