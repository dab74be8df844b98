//! The identity service: customers, credentials, consents, subject keys and the PII access
//! log. It is the only holder of personal data in Comptoir (docs/architecture.md §3, §5) and the
//! issuer of the access tokens every other service verifies (`comptoir-auth`).
//!
//! Layout (the shape of every service, STYLE.md): [`settings`] the typed settings, [`keys`]
//! every key read from its file, [`error`] the error type and its problem+json mapping;
//! [`domain`] turns request bodies into validated values held in `Pii`, [`vault`]
//! seals and opens personal data (per-customer data keys, wrapped by the KEK keyring),
//! [`password`] hashes with argon2id, [`limits`] rate-limits credential routes, [`repo`] owns
//! the SQL, [`api`] maps the public routes and [`internal`] the service-to-service route
//! (`/internal`, which the gateway never routes), [`rewrap`] moves data keys to the active
//! KEK after a rotation, [`gdpr`] runs exports and erasures with the other services over
//! Pulsar (through the outbox, replies consumed idempotently).
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod error;
pub mod gdpr;
pub mod internal;
pub mod keys;
pub mod limits;
pub mod password;
pub mod repo;
pub mod rewrap;
pub mod settings;
pub mod vault;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use comptoir_auth::{Authenticator, Jwks, Verifier};
use comptoir_events::outbox::Relay;
use comptoir_platform::shutdown::Stages;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gdpr::Gdpr;
pub use crate::keys::{InternalClient, Keys};
use crate::limits::{LoginLimiter, LoginSettings};
use crate::password::Hasher;
pub use crate::settings::{
    InternalClientSettings, KekFile, KeySettings, RetiredSigningKey, Settings, TokenSettings,
};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: deadpool_postgres::Pool,
    pub keys: Arc<Keys>,
    pub jwks: Arc<Jwks>,
    pub auth: Authenticator,
    pub hasher: Hasher,
    pub tokens: Arc<TokenSettings>,
    pub login: Arc<LoginSettings>,
    pub limiter: Arc<LoginLimiter>,
    pub gdpr: Arc<Gdpr>,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// Runs identity on `listener` until `shutdown` is cancelled: migrates the database, connects
/// to Pulsar, starts the outbox relay, the GDPR reply consumers and the background jobs (KEK
/// rewrap, GDPR sweep), serves HTTP, then drains requests, stops the consumers and publishes
/// what is left in the outbox before returning.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let keys = Keys::load(&settings).map_err(|problems| {
        anyhow::anyhow!("invalid identity keys:\n  - {}", problems.join("\n  - "))
    })?;
    let pool = comptoir_store::connect(&settings.database).context("database settings")?;
    comptoir_store::migrate(&pool, embedded::migrations::runner())
        .await
        .context("failed to migrate the identity database")?;
    let hasher = Hasher::new(settings.argon2).context("argon2 parameters")?;
    let pulsar = comptoir_events::pulsar::connect(&settings.pulsar)
        .await
        .context("failed to connect to Pulsar")?;

    let jwks = Jwks::new(
        std::iter::once(keys.signer.jwk())
            .chain(keys.retired_jwks.iter().cloned())
            .collect(),
    );
    let verifier = Verifier::new(&jwks, &settings.tokens.issuer, &settings.tokens.audience);
    let keys = Arc::new(keys);
    let limiter = Arc::new(LoginLimiter::new(&settings.login));
    let gdpr = Arc::new(Gdpr::new(
        Arc::clone(&keys),
        settings.gdpr.clone(),
        &settings.pulsar.namespace,
    ));
    let state = AppState {
        pool: pool.clone(),
        keys: Arc::clone(&keys),
        jwks: Arc::new(jwks),
        auth: Authenticator::Local(Arc::new(verifier)),
        hasher,
        tokens: Arc::new(settings.tokens.clone()),
        login: Arc::new(settings.login.clone()),
        limiter: Arc::clone(&limiter),
        gdpr: Arc::clone(&gdpr),
    };

    // Stopped in this order once the last request has drained: the consumers, the
    // background jobs, then the relay, last, after publishing every committed request.
    let relay = Relay::connect(pool.clone(), &settings.pulsar, "identity-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
    stages.spawn("outbox relay", |stop| relay.run(stop));
    gdpr::spawn_consumers(&pool, &pulsar, &gdpr, &mut stages);
    stages.spawn("background", |stop| {
        rewrap::run(
            pool.clone(),
            Arc::clone(&keys),
            settings.keys.rewrap_batch,
            stop,
        )
    });
    stages.spawn("background", |stop| limits::run_housekeeping(limiter, stop));
    stages.spawn("background", |stop| {
        gdpr::sweep::run(
            pool.clone(),
            Arc::clone(&gdpr),
            settings.login.lockout_secs,
            stop,
        )
    });

    let checks = comptoir_events::health::postgres_and_pulsar(
        pool,
        pulsar,
        gdpr.export_requests_topic.clone(),
    );
    let router = api::router(state.clone())
        .merge(gdpr::api::router(state.clone()))
        .merge(internal::router(state));
    let app = comptoir_platform::http::app("identity", router, &settings.http, checks);
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_outbox_table_is_the_shared_definition() {
        let migration = include_str!("../migrations/V1__identity.sql");
        assert!(migration.contains(comptoir_events::outbox::OUTBOX_TABLE_SQL));
    }

    #[test]
    fn the_inbox_table_is_the_shared_definition() {
        let migration = include_str!("../migrations/V2__gdpr.sql");
        assert!(migration.contains(comptoir_events::consumer::INBOX_TABLE_SQL));
    }
}
