//! The inventory service: stock per product, reservations per order.
//!
//! Inventory takes part in the checkout saga orchestrated by orders: it consumes orders'
//! `StockCommand`s (reserve, commit, release; topic `<orders ns>/stock-commands`,
//! subscription `inventory-stock-commands`) and answers each with a `StockOutcome` (topic
//! `<inventory ns>/stock-outcomes`, keyed by order id) written into the outbox in the same
//! transaction as the change ([`commands`]). It never sells a unit twice: a reserve locks the
//! stock rows it needs and checks what is available under the lock, and the table's CHECKs
//! refuse anything that would hold more than is on hand. Reservations lapse after
//! `reservation_ttl_secs` ([`sweep`]). Products come from the catalog's events
//! ([`catalog_sync`]); administrators count and adjust the stock over HTTP ([`api`]). Every
//! stock change publishes a `StockLevelChanged` (topic `<inventory ns>/stock-levels`).
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`error`]
//! errors as problem+json, [`domain`] validated inputs and command lines, [`repo`] owns the
//! SQL, [`commands`] the saga handler, [`catalog_sync`] the product handler, [`sweep`] the
//! expiry job, [`api`] the routes, [`gdpr`] answers export and erasure.
#![forbid(unsafe_code)]

pub mod api;
pub mod catalog_sync;
pub mod commands;
pub mod domain;
pub mod error;
pub mod gdpr;
pub mod repo;
pub mod settings;
pub mod sweep;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comptoir_events::consumer::{ConsumerConfig, EventConsumer};
use comptoir_events::contracts::catalog::PRODUCT_EVENTS_TOPIC;
use comptoir_events::contracts::inventory::{STOCK_LEVELS_TOPIC, STOCK_OUTCOMES_TOPIC};
use comptoir_events::contracts::orders::STOCK_COMMANDS_TOPIC;
use comptoir_events::outbox::Relay;
use comptoir_platform::secret::{Secret, read_secret_file};
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::settings::Settings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The CloudEvents `source` of every inventory event.
pub const EVENT_SOURCE: &str = "/comptoir/inventory";
/// The subscription inventory consumes orders' stock commands with.
pub const COMMANDS_SUBSCRIPTION: &str = "inventory-stock-commands";
/// Stock commands applied at once, split by order.
const COMMAND_LANES: usize = 4;
/// The subscription inventory consumes the catalog's product events with.
pub const CATALOG_SUBSCRIPTION: &str = "inventory-catalog-sync";

/// Full names of the topics inventory publishes to.
#[derive(Debug, Clone)]
pub struct Topics {
    /// `stock-outcomes`: replies to orders, keyed by order id.
    pub outcomes: String,
    /// `stock-levels`: a product's stock after each change, keyed by product id.
    pub levels: String,
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub topics: Topics,
    /// Wakes the outbox relay after a commit so events leave at once.
    pub relay_wake: Arc<tokio::sync::Notify>,
    pub admin_token: Arc<Secret<String>>,
}

/// Runs inventory on `listener` until `shutdown` is cancelled: migrates the database, starts
/// the outbox relay, the consumers and the expiry sweep, serves HTTP, then drains requests,
/// stops the consumers and the sweep, and publishes what is left in the outbox before
/// returning.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the inventory database")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;
    let admin_token = settings
        .admin_token_file
        .as_deref()
        .context("admin_token_file is not set")
        .and_then(|path| read_secret_file(path).context("admin token"))?;

    let topics = Topics {
        outcomes: settings.pulsar.topic(STOCK_OUTCOMES_TOPIC),
        levels: settings.pulsar.topic(STOCK_LEVELS_TOPIC),
    };
    let relay = Relay::connect(pool.clone(), &settings.pulsar, "inventory-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let state = AppState {
        pool: pool.clone(),
        topics: topics.clone(),
        relay_wake: relay.waker(),
        admin_token: Arc::new(admin_token),
    };

    // Stopped in this order once the last request has drained: the consumers and the sweep
    // answer through the outbox, so they stop before the relay, and the relay stops last,
    // after publishing every committed change.
    let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));

    let commands_topic = format!(
        "persistent://{}/{STOCK_COMMANDS_TOPIC}",
        settings.orders_namespace
    );
    let commands = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig {
            // One command per transaction: each takes its stock locks in product id order,
            // which a batch (the locks of several commands, in arrival order) would not.
            max_batch: 1,
            // Several orders' commands at once (one transaction each, so the lock order holds);
            // two orders of the same product wait for each other on its row, not in a queue.
            lanes: COMMAND_LANES,
            // A reserve for a product whose catalog event has not arrived yet is retried with
            // backoff (up to 30 s apart): 20 deliveries give the catalog about 7 minutes.
            max_redeliveries: 20,
            ..ConsumerConfig::new(&commands_topic, COMMANDS_SUBSCRIPTION)
        },
        commands::StockCommands::new(topics.clone(), settings.reservation_ttl_secs),
    );
    stages.spawn("consumers", |stop| commands.run(stop));

    let products_topic = format!(
        "persistent://{}/{PRODUCT_EVENTS_TOPIC}",
        settings.catalog_namespace
    );
    let catalog = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(&products_topic, CATALOG_SUBSCRIPTION),
        catalog_sync::CatalogSync::new(
            topics.levels.clone(),
            settings.demo_stock_per_product.unwrap_or(0),
        ),
    );
    stages.spawn("consumers", |stop| catalog.run(stop));

    let gdpr_topics = comptoir_events::gdpr::GdprTopics {
        requests_namespace: settings.gdpr_requests_namespace.clone(),
        replies_namespace: settings.pulsar.namespace.clone(),
    };
    let (export, erasure) = comptoir_events::gdpr::consumers(
        pool.clone(),
        pulsar.clone(),
        Arc::new(gdpr::InventoryParticipant),
        &gdpr_topics,
    );
    stages.spawn("consumers", |stop| export.run(stop));
    stages.spawn("consumers", |stop| erasure.run(stop));

    let sweep_pool = pool.clone();
    let sweep_interval = Duration::from_millis(settings.sweep_interval_ms);
    stages.spawn("background", move |stop| {
        sweep::run(sweep_pool, topics, sweep_interval, stop)
    });

    let checks =
        comptoir_events::health::postgres_and_pulsar(pool, pulsar, state.topics.outcomes.clone());
    let app = comptoir_platform::http::app("inventory", api::router(state), &settings.http, checks);
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
