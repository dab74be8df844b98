//! The notifications service: transactional mail about orders.
//!
//! It listens to orders' `OrderChanged` events and, when an order is confirmed, cancelled or
//! refunded, records a delivery in its log ([`events`]). A background sender ([`sender`])
//! sends due deliveries: it asks identity for the recipient's address and name at send time
//! ([`identity`], identity's audited internal route), hands a plain-text message to the SMTP
//! relay ([`mailer`]) and forgets the recipient; failures are retried with an exponential
//! backoff. The delivery log holds no personal data: no address, no name, no message text.
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`error`]
//! errors as problem+json, [`domain`] deliveries and the words of each message, [`repo`] owns
//! the SQL, [`api`] the admin route, [`gdpr`] answers export and erasure.
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod error;
pub mod events;
pub mod gdpr;
pub mod identity;
pub mod mailer;
pub mod repo;
pub mod sender;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comptoir_events::consumer::{ConsumerConfig, EventConsumer};
use comptoir_events::contracts::gdpr::EXPORT_SLICES_TOPIC;
use comptoir_events::contracts::orders::{ORDER_EVENTS_TOPIC, OrderChanged};
use comptoir_events::outbox::Relay;
use comptoir_platform::secret::{Secret, read_secret_file};
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::settings::Settings;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub admin_token: Arc<Secret<String>>,
}

/// Full name of orders' `order-events` topic in `orders_namespace`.
pub fn order_events_topic(settings: &Settings) -> String {
    format!(
        "persistent://{}/{ORDER_EVENTS_TOPIC}",
        settings.orders_namespace
    )
}

/// Runs the service on `listener` until `shutdown` is cancelled: migrates the database,
/// consumes order events and GDPR requests, sends due deliveries, serves HTTP; then drains
/// requests, stops the consumers, lets the sender finish its round, and publishes what is left
/// in the outbox before returning.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the notifications database")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;
    let admin_token = settings
        .admin_token_file
        .as_deref()
        .context("admin_token_file is not set")
        .and_then(|path| read_secret_file(path).context("admin token"))?;
    let identity_token = settings
        .identity
        .token_file
        .as_deref()
        .context("identity.token_file is not set")
        .and_then(|path| read_secret_file(path).context("identity token"))?;
    let identity = identity::IdentityClient::new(&settings.identity, identity_token)?;
    let mailer = mailer::Mailer::new(&settings.smtp)?;

    let relay = Relay::connect(pool.clone(), &settings.pulsar, "notifications-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let state = AppState {
        pool: pool.clone(),
        admin_token: Arc::new(admin_token),
    };

    // Stopped in this order once the last request has drained: the consumers first (nothing
    // new is recorded), then the sender (it finishes its round), and the relay last, after
    // publishing every committed GDPR reply.
    let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));
    let orders = EventConsumer::<OrderChanged, _>::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(&order_events_topic(&settings), events::SUBSCRIPTION),
        events::OrderEventsHandler,
    );
    stages.spawn("consumers", |stop| orders.run(stop));
    let gdpr_topics = comptoir_events::gdpr::GdprTopics {
        requests_namespace: settings.gdpr_requests_namespace.clone(),
        replies_namespace: settings.pulsar.namespace.clone(),
    };
    let (export, erasure) = comptoir_events::gdpr::consumers(
        pool.clone(),
        pulsar.clone(),
        Arc::new(gdpr::NotificationsParticipant),
        &gdpr_topics,
    );
    stages.spawn("consumers", |stop| export.run(stop));
    stages.spawn("consumers", |stop| erasure.run(stop));
    let sender = sender::Sender::new(pool.clone(), identity, mailer, &settings);
    stages.spawn("background", |stop| sender.run(stop));

    // Ready on the database and the broker (the topic its replies go to). Neither identity
    // nor the mail relay is a readiness condition: while they are down, deliveries wait.
    let checks = comptoir_events::health::postgres_and_pulsar(
        pool,
        pulsar,
        settings.pulsar.topic(EXPORT_SLICES_TOPIC),
    );
    let app =
        comptoir_platform::http::app("notifications", api::router(state), &settings.http, checks);
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
