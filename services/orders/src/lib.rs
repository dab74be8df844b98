//! The orders service: carts, checkout, and the checkout saga it orchestrates.
//!
//! Shoppers fill a cart priced from a local projection of catalog's product events (no call
//! to catalog per request), then check out with an `Idempotency-Key`: the order is written,
//! the cart emptied and the saga's first command put in the outbox, in one transaction, and
//! the answer is 202 at once. The saga ([`saga`]) then moves the order through inventory's
//! and payments' replies to `confirmed`, or compensates and cancels it.
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`error`]
//! errors as problem+json, [`domain`] turns requests into validated values, [`repo`] owns the
//! SQL, [`saga`] the orchestration, [`api`] maps HTTP to both, [`gdpr`] answers export and
//! erasure, [`kpis`] keeps the business gauges.
#![forbid(unsafe_code)]

pub mod api;
pub mod changes;
pub mod domain;
pub mod error;
pub mod gdpr;
pub mod kpis;
pub mod repo;
pub mod saga;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use comptoir_auth::{Authenticator, JwksCache};
use comptoir_events::consumer::{ConsumerConfig, EventConsumer};
use comptoir_events::contracts::{inventory, orders, payments};
use comptoir_events::outbox::Relay;
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::settings::Settings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The CloudEvents `source` of every orders event.
pub const EVENT_SOURCE: &str = "/comptoir/orders";
/// Transactions each saga consumer applies at once (orders' replies from inventory and from
/// payments, split by order): a slow step of one order does not hold up the others.
const SAGA_LANES: usize = 4;

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub saga: saga::Saga,
    /// Wakes the outbox relay after a commit so commands leave at once.
    pub relay_wake: Arc<tokio::sync::Notify>,
    pub auth: Authenticator,
    /// Wakes requests waiting for an order to change (`Prefer: wait`).
    pub changes: Arc<changes::OrderChanges>,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Runs orders on `listener` until `shutdown` is cancelled: migrates the database, connects
/// to Pulsar, starts the consumers (products, stock and payment outcomes, GDPR), the saga's
/// timeout sweep and the outbox relay, serves HTTP, then stops them in order.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the orders database")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;
    let keys = Arc::new(JwksCache::new(settings.auth.clone())?);
    if let Err(error) = keys.refresh().await {
        tracing::warn!(%error, url = %settings.auth.url, "Cannot fetch identity's keys yet; not ready until then");
    }

    let relay = Relay::connect(pool.clone(), &settings.pulsar, "orders-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let saga = saga::Saga {
        topics: saga::Topics {
            stock_commands: settings.pulsar.topic(orders::STOCK_COMMANDS_TOPIC),
            payment_commands: settings.pulsar.topic(orders::PAYMENT_COMMANDS_TOPIC),
            order_events: settings.pulsar.topic(orders::ORDER_EVENTS_TOPIC),
        },
        step_timeout: Duration::from_secs(settings.saga.step_timeout_secs),
    };
    let state = AppState {
        pool: pool.clone(),
        saga: saga.clone(),
        relay_wake: relay.waker(),
        auth: Authenticator::Remote(Arc::clone(&keys)),
        changes: changes::OrderChanges::new(),
    };

    // Stopped in this order once the last request has drained: consumers first (they write to
    // the outbox), then the sweep and the key refresh, and the relay last, after publishing
    // every committed command.
    let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));
    let topic_in = |namespace: &str, topic: &str| format!("persistent://{namespace}/{topic}");
    let products = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(
            &topic_in(
                &settings.catalog_namespace,
                comptoir_events::contracts::catalog::PRODUCT_EVENTS_TOPIC,
            ),
            "orders-catalog-sync",
        ),
        saga::ProductProjection,
    );
    stages.spawn("consumers", |stop| products.run(stop));
    let stock = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig {
            lanes: SAGA_LANES,
            ..ConsumerConfig::new(
                &topic_in(
                    &settings.inventory_namespace,
                    inventory::STOCK_OUTCOMES_TOPIC,
                ),
                "orders-stock-outcomes",
            )
        },
        saga::StockOutcomes(saga.clone()),
    );
    stages.spawn("consumers", |stop| stock.run(stop));
    let payment = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig {
            lanes: SAGA_LANES,
            ..ConsumerConfig::new(
                &topic_in(
                    &settings.payments_namespace,
                    payments::PAYMENT_OUTCOMES_TOPIC,
                ),
                "orders-payment-outcomes",
            )
        },
        saga::PaymentOutcomes(saga.clone()),
    );
    stages.spawn("consumers", |stop| payment.run(stop));
    let gdpr_topics = comptoir_events::gdpr::GdprTopics {
        requests_namespace: settings.gdpr_requests_namespace.clone(),
        replies_namespace: settings.pulsar.namespace.clone(),
    };
    let (export, erasure) = comptoir_events::gdpr::consumers(
        pool.clone(),
        pulsar.clone(),
        Arc::new(gdpr::OrdersParticipant),
        &gdpr_topics,
    );
    stages.spawn("consumers", |stop| export.run(stop));
    stages.spawn("consumers", |stop| erasure.run(stop));
    let wake = Arc::clone(&state.relay_wake);
    let sweep_every = Duration::from_millis(settings.saga.sweep_interval_ms);
    let sweep_pool = pool.clone();
    stages.spawn("background", move |stop| {
        saga.run_sweeper(sweep_pool, sweep_every, wake, stop)
    });
    stages.spawn("background", |stop| {
        Arc::clone(&keys).run_periodic_refresh(stop)
    });
    let order_changes = Arc::clone(&state.changes);
    let listen_settings = settings.database.clone();
    stages.spawn("background", move |stop| {
        order_changes.run(listen_settings, stop)
    });
    let kpi_every = Duration::from_millis(settings.kpis.interval_ms);
    let kpi_pool = pool.clone();
    stages.spawn("background", move |stop| {
        kpis::run(kpi_pool, kpi_every, stop)
    });

    let mut checks = comptoir_events::health::postgres_and_pulsar(
        pool,
        pulsar,
        settings.pulsar.topic(orders::STOCK_COMMANDS_TOPIC),
    );
    checks.push(keys.readiness_check());
    let app = comptoir_platform::http::app("orders", api::router(state), &settings.http, checks);
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
