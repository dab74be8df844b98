//! The payments service: an order's payment, through a payment provider.
//!
//! Payments takes part in the checkout saga orchestrated by orders: it consumes orders'
//! `PaymentCommand`s (authorise, capture, void, refund; topic `<orders ns>/payment-commands`,
//! subscription `payments-commands`), calls the payment provider, and answers each with a
//! `PaymentOutcome` (topic `<payments ns>/payment-outcomes`, keyed by order id) written into
//! the outbox in the same transaction as the payment's new state. Every command is idempotent
//! per (order, action), and every provider call carries an idempotency key, so redeliveries,
//! repeated commands and retries never charge twice.
//!
//! The provider is a trait ([`provider::PaymentProvider`]); this repository ships only
//! [`simulated::SimulatedProvider`], a SIMULATION of an outside party (test card tokens,
//! latency, transient failures). No real money moves.
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`error`]
//! errors as problem+json, [`domain`] validated commands and the state table, [`repo`] owns
//! the SQL, [`commands`] the saga handler, [`provider`] the provider trait, [`simulated`] the
//! simulated provider, [`api`] the admin route, [`gdpr`] answers export and erasure.
#![forbid(unsafe_code)]

pub mod api;
pub mod commands;
pub mod domain;
pub mod error;
pub mod gdpr;
pub mod provider;
pub mod repo;
pub mod settings;
pub mod simulated;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comptoir_events::consumer::{ConsumerConfig, EventConsumer};
use comptoir_events::contracts::orders::PAYMENT_COMMANDS_TOPIC;
use comptoir_events::contracts::payments::PAYMENT_OUTCOMES_TOPIC;
use comptoir_events::outbox::Relay;
use comptoir_platform::secret::{Secret, read_secret_file};
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::settings::Settings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The CloudEvents `source` of every payments event.
pub const EVENT_SOURCE: &str = "/comptoir/payments";
/// The subscription payments consumes orders' payment commands with.
pub const COMMANDS_SUBSCRIPTION: &str = "payments-commands";
/// Commands applied at once, split by order: each waits for the provider's answer (tens of
/// milliseconds), so one at a time would cap every shop at a few dozen payments a second.
const COMMAND_LANES: usize = 8;
/// Connections of the simulated provider's own pool (its memory is not in our transactions):
/// one for each lane's call at most.
const SIMULATED_PROVIDER_POOL_SIZE: usize = COMMAND_LANES;

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub admin_token: Arc<Secret<String>>,
}

/// Runs payments on `listener` until `shutdown` is cancelled: migrates the database, starts
/// the outbox relay, the command and GDPR consumers, serves HTTP, then drains requests, stops
/// the consumers and publishes what is left in the outbox before returning.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the payments database")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;
    let admin_token = settings
        .admin_token_file
        .as_deref()
        .context("admin_token_file is not set")
        .and_then(|path| read_secret_file(path).context("admin token"))?;

    // The SIMULATED provider: its memory goes through a pool of its own, so what it did
    // survives the rollback of the handler's transaction, as at a real provider. A real PSP
    // adapter would be built here instead (README: "Plugging in a real provider").
    let simulation_pool = comptoir_store::connect(&comptoir_store::DatabaseSettings {
        pool_size: SIMULATED_PROVIDER_POOL_SIZE,
        ..settings.database.clone()
    })
    .context("simulated provider database settings")?;
    let provider: Arc<dyn provider::PaymentProvider> = Arc::new(
        simulated::SimulatedProvider::with_database(&settings.simulated_provider, simulation_pool),
    );
    tracing::warn!(
        latency_ms = settings.simulated_provider.latency_ms,
        failure_rate = settings.simulated_provider.failure_rate,
        "Payments uses the SIMULATED payment provider: no real money moves"
    );

    let outcomes_topic = settings.pulsar.topic(PAYMENT_OUTCOMES_TOPIC);
    let commands_topic = format!(
        "persistent://{}/{PAYMENT_COMMANDS_TOPIC}",
        settings.orders_namespace
    );
    let relay = Relay::connect(pool.clone(), &settings.pulsar, "payments-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let state = AppState {
        pool: pool.clone(),
        admin_token: Arc::new(admin_token),
    };

    // Stopped in this order once the last request has drained: the consumers answer through
    // the outbox, so they stop before the relay, and the relay stops last, after publishing
    // every committed outcome.
    let mut stages = Stages::new(["consumers", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));
    let commands = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig {
            max_redeliveries: settings.commands_max_redeliveries,
            lanes: COMMAND_LANES,
            ..ConsumerConfig::new(&commands_topic, COMMANDS_SUBSCRIPTION)
        },
        commands::PaymentCommands::new(
            provider,
            Duration::from_millis(settings.provider_timeout_ms),
            outcomes_topic.clone(),
        ),
    );
    stages.spawn("consumers", |stop| commands.run(stop));
    let gdpr_topics = comptoir_events::gdpr::GdprTopics {
        requests_namespace: settings.gdpr_requests_namespace.clone(),
        replies_namespace: settings.pulsar.namespace.clone(),
    };
    let (export, erasure) = comptoir_events::gdpr::consumers(
        pool.clone(),
        pulsar.clone(),
        Arc::new(gdpr::PaymentsParticipant),
        &gdpr_topics,
    );
    stages.spawn("consumers", |stop| export.run(stop));
    stages.spawn("consumers", |stop| erasure.run(stop));

    let checks = comptoir_events::health::postgres_and_pulsar(pool, pulsar, outcomes_topic);
    let app = comptoir_platform::http::app("payments", api::router(state), &settings.http, checks);
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
