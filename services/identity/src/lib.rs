//! The identity service: customers, credentials, consents, subject keys and the PII access
//! log. It is the only holder of personal data in Comptoir (docs/architecture.md §3, §5) and the
//! issuer of the access tokens every other service verifies (`comptoir-auth`).
//!
//! Layout: [`domain`] turns request bodies into validated values held in `Pii`, [`vault`]
//! seals and opens personal data (per-customer data keys, wrapped by the KEK keyring),
//! [`password`] hashes with argon2id, [`limits`] rate-limits credential routes, [`repo`] owns
//! the SQL, [`api`] maps the public routes and [`internal`] the service-to-service route
//! (`/internal`, which the gateway never routes), [`rewrap`] moves data keys to the active
//! KEK after a rotation, [`gdpr`] runs exports and erasures with the other services over
//! Pulsar (through the outbox, replies consumed idempotently).
#![forbid(unsafe_code)]

pub mod api;
pub mod domain;
pub mod gdpr;
pub mod internal;
pub mod limits;
pub mod password;
pub mod repo;
pub mod rewrap;
pub mod vault;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::FromRef;
use comptoir_auth::{Authenticator, Jwks, Signer, Verifier};
use comptoir_events::outbox::Relay;
use comptoir_events::pulsar::PulsarSettings;
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use comptoir_platform::health::ReadinessCheck;
use comptoir_platform::secret::{MIN_BEARER_TOKEN_LEN, Secret, read_secret_file};
use comptoir_platform::telemetry::error_chain;
use comptoir_privacy::{BlindIndexKey, Kek, Keyring};
use comptoir_store::DatabaseSettings;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gdpr::{Gdpr, GdprSettings};
use crate::limits::{LoginLimiter, LoginSettings};
use crate::password::{Argon2Settings, Hasher};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// A key-encryption key: its id (stored beside every key it wraps) and the file holding it
/// (32 bytes, base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KekFile {
    pub id: String,
    pub file: PathBuf,
}

/// Where identity's keys are. Every one is a file: secrets never sit in config values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// The KEK new data keys are wrapped under.
    pub active_kek: Option<KekFile>,
    /// Older KEKs, kept only to unwrap data keys until the rewrap job has moved them all.
    pub retired_keks: Vec<KekFile>,
    /// HMAC key of the email blind index (32 bytes, base64). Changing it needs a reindex.
    pub blind_index_key_file: Option<PathBuf>,
    /// Data keys moved to the active KEK per rewrap transaction.
    pub rewrap_batch: i64,
}

/// A signing key retired by a rotation: its id and its (private, PKCS#8 PEM) key file, from
/// which the public key is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredSigningKey {
    pub kid: String,
    /// The retired key's public half only, as SubjectPublicKeyInfo PEM (`openssl pkey -in
    /// old.pem -pubout`): it is published in the JWKS until the tokens it signed expire; the
    /// private key is destroyed at rotation and never deployed again.
    pub public_key_file: PathBuf,
}

/// Access and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    /// Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    pub signing_key_file: Option<PathBuf>,
    /// The key id published in the JWKS and put in every token header.
    pub signing_kid: String,
    /// Keys tokens were signed with before the last rotation: their public halves stay in the
    /// JWKS, so tokens already issued keep verifying until they expire. Remove an entry once
    /// `access_ttl_secs` has passed since the rotation.
    pub retired_signing_keys: Vec<RetiredSigningKey>,
    pub issuer: String,
    pub audience: String,
    /// Lifetime of an access token.
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token (each use issues a new one).
    pub refresh_ttl_secs: u64,
    /// Absolute lifetime of a session: however often it is refreshed, it ends this long
    /// after the sign-in, and the customer signs in again.
    pub session_max_age_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            signing_kid: "identity-1".to_owned(),
            retired_signing_keys: Vec::new(),
            issuer: comptoir_auth::DEFAULT_ISSUER.to_owned(),
            audience: comptoir_auth::DEFAULT_AUDIENCE.to_owned(),
            access_ttl_secs: 300,
            refresh_ttl_secs: 30 * 24 * 3600,
            session_max_age_secs: 90 * 24 * 3600,
        }
    }
}

/// A service allowed to resolve PII through `/internal`, and the purposes it may declare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalClientSettings {
    /// File holding the bearer token the client presents.
    pub token_file: PathBuf,
    /// Purposes the client may declare, each with the only fields it may read for it (data
    /// minimisation), e.g. `order-confirmation = ["email", "name"]`.
    pub purposes: BTreeMap<String, Vec<String>>,
}

/// Identity settings. See `comptoir_platform::config` for how they are layered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    pub database: DatabaseSettings,
    /// The broker; `namespace` is identity's (`comptoir/identity`), where the export and
    /// erasure requests are published.
    pub pulsar: PulsarSettings,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
    pub argon2: Argon2Settings,
    pub login: LoginSettings,
    /// Clients of the internal PII route, by service name.
    pub internal_clients: BTreeMap<String, InternalClientSettings>,
    /// Exports and erasures: who must answer, how long archives live.
    pub gdpr: GdprSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            telemetry: TelemetrySettings::default(),
            database: DatabaseSettings {
                name: "identity".to_owned(),
                user: "identity".to_owned(),
                ..DatabaseSettings::default()
            },
            pulsar: PulsarSettings {
                namespace: "comptoir/identity".to_owned(),
                ..PulsarSettings::default()
            },
            keys: KeySettings {
                rewrap_batch: 500,
                ..KeySettings::default()
            },
            tokens: TokenSettings::default(),
            argon2: Argon2Settings::default(),
            login: LoginSettings::default(),
            internal_clients: BTreeMap::new(),
            gdpr: GdprSettings::default(),
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
        problems.extend(self.gdpr.problems("gdpr"));
        problems.extend(self.argon2.problems("argon2"));
        problems.extend(self.login.problems("login"));
        if self.tokens.access_ttl_secs == 0 || self.tokens.access_ttl_secs > 3600 {
            problems.push("tokens.access_ttl_secs must be between 1 and 3600".to_owned());
        }
        if self.tokens.refresh_ttl_secs < self.tokens.access_ttl_secs {
            problems.push("tokens.refresh_ttl_secs must be at least access_ttl_secs".to_owned());
        }
        if self.tokens.session_max_age_secs < self.tokens.access_ttl_secs {
            problems
                .push("tokens.session_max_age_secs must be at least access_ttl_secs".to_owned());
        }
        if self.tokens.issuer.is_empty() || self.tokens.audience.is_empty() {
            problems.push("tokens.issuer and tokens.audience must be set".to_owned());
        }
        if self.keys.rewrap_batch < 1 {
            problems.push("keys.rewrap_batch must be at least 1".to_owned());
        }
        // Reading every key now is the point: a missing or malformed key stops the process
        // before it binds a port, with a message naming the file (never its content).
        if let Err(key_problems) = Keys::load(self) {
            problems.extend(key_problems);
        }
        problems
    }
}

/// A configured internal client, its token read.
#[derive(Debug)]
pub struct InternalClient {
    pub name: String,
    pub token: Secret<String>,
    /// Purpose → the fields it allows.
    pub purposes: BTreeMap<String, Vec<String>>,
}

/// Every key identity uses, read from its file.
#[derive(Debug)]
pub struct Keys {
    pub keyring: Keyring,
    pub blind_index: BlindIndexKey,
    pub signer: Signer,
    /// Public keys of retired signing keys, still published (see `TokenSettings`).
    pub retired_jwks: Vec<comptoir_auth::Jwk>,
    pub clients: Vec<InternalClient>,
}

impl Keys {
    /// Reads every key file named by `settings`, or lists every problem.
    pub fn load(settings: &Settings) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let keys = &settings.keys;
        let keyring = match &keys.active_kek {
            None => {
                problems.push("keys.active_kek must be set (id and file)".to_owned());
                None
            }
            Some(active) => match Kek::from_file(&active.id, &active.file) {
                Ok(kek) => {
                    let mut keyring = Some(Keyring::new(kek));
                    for retired in &keys.retired_keks {
                        match Kek::from_file(&retired.id, &retired.file) {
                            Ok(kek) => {
                                keyring = match keyring.map(|k| k.with_retired(kek)).transpose() {
                                    Ok(k) => k,
                                    Err(error) => {
                                        problems.push(format!("keys.retired_keks: {error}"));
                                        None
                                    }
                                };
                            }
                            Err(error) => {
                                problems
                                    .push(format!("keys.retired_keks: {}", error_chain(&error)));
                            }
                        }
                    }
                    keyring
                }
                Err(error) => {
                    problems.push(format!("keys.active_kek: {}", error_chain(&error)));
                    None
                }
            },
        };
        let blind_index = match &keys.blind_index_key_file {
            None => {
                problems.push("keys.blind_index_key_file must be set".to_owned());
                None
            }
            Some(path) => BlindIndexKey::from_file(path)
                .map_err(|error| {
                    problems.push(format!(
                        "keys.blind_index_key_file: {}",
                        error_chain(&error)
                    ));
                })
                .ok(),
        };
        let signer = match &settings.tokens.signing_key_file {
            None => {
                problems.push("tokens.signing_key_file must be set".to_owned());
                None
            }
            Some(path) => Signer::from_pem_file(path, &settings.tokens.signing_kid)
                .map_err(|error| {
                    problems.push(format!("tokens.signing_key_file: {}", error_chain(&error)));
                })
                .ok(),
        };
        let mut retired_jwks = Vec::new();
        for retired in &settings.tokens.retired_signing_keys {
            if retired.kid == settings.tokens.signing_kid {
                problems.push(format!(
                    "tokens.retired_signing_keys: kid {:?} is the active signing key's",
                    retired.kid
                ));
                continue;
            }
            match comptoir_auth::Jwk::from_public_key_pem_file(
                &retired.public_key_file,
                &retired.kid,
            ) {
                Ok(jwk) => retired_jwks.push(jwk),
                Err(error) => problems.push(format!(
                    "tokens.retired_signing_keys ({}): {}",
                    retired.kid,
                    error_chain(&error)
                )),
            }
        }
        let mut clients = Vec::new();
        for (name, client) in &settings.internal_clients {
            if client.purposes.is_empty() {
                problems.push(format!(
                    "internal_clients.{name}.purposes must name at least one purpose"
                ));
            }
            for (purpose, fields) in &client.purposes {
                if fields.is_empty()
                    || fields
                        .iter()
                        .any(|f| !internal::FIELDS.contains(&f.as_str()))
                {
                    problems.push(format!(
                        "internal_clients.{name}.purposes.{purpose} must list one or more of {}",
                        internal::FIELDS.join(", ")
                    ));
                }
            }
            match read_secret_file(&client.token_file) {
                Ok(token) if token.expose().len() < MIN_BEARER_TOKEN_LEN => problems.push(format!(
                    "internal_clients.{name}.token_file: the token must be at least {MIN_BEARER_TOKEN_LEN} characters"
                )),
                Ok(token) => clients.push(InternalClient {
                    name: name.clone(),
                    token,
                    purposes: client.purposes.clone(),
                }),
                Err(error) => problems.push(format!(
                    "internal_clients.{name}.token_file: {}",
                    error_chain(&error)
                )),
            }
        }
        match (keyring, blind_index, signer) {
            (Some(keyring), Some(blind_index), Some(signer)) if problems.is_empty() => Ok(Self {
                keyring,
                blind_index,
                signer,
                retired_jwks,
                clients,
            }),
            _ => Err(problems),
        }
    }
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

    // The relay outlives the HTTP server and the consumers: it stops only after the last
    // request has drained, so every committed request is published before the process exits.
    let relay = Relay::connect(pool.clone(), &settings.pulsar, "identity-outbox")
        .await
        .context("failed to connect the outbox relay to Pulsar")?
        .listen_on(settings.database.clone());
    let relay_stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_stop.clone()));
    let consumers_stop = CancellationToken::new();
    let consumer_tasks = gdpr::spawn_consumers(&pool, &pulsar, &gdpr, &consumers_stop);

    let background = CancellationToken::new();
    let rewrap_task = tokio::spawn(rewrap::run(
        pool.clone(),
        Arc::clone(&keys),
        settings.keys.rewrap_batch,
        background.clone(),
    ));
    let limiter_task = tokio::spawn(limits::run_housekeeping(limiter, background.clone()));
    let sweep_task = tokio::spawn(gdpr::sweep::run(
        pool.clone(),
        Arc::clone(&gdpr),
        settings.login.lockout_secs,
        background.clone(),
    ));

    let checks = readiness_checks(pool, pulsar, gdpr.export_requests_topic.clone());
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
    consumers_stop.cancel();
    for task in consumer_tasks {
        if let Err(error) = task.await {
            tracing::error!(%error, "GDPR reply consumer task failed");
        }
    }
    background.cancel();
    for task in [rewrap_task, limiter_task, sweep_task] {
        if let Err(error) = task.await {
            tracing::error!(%error, "Identity background task failed");
        }
    }
    relay_stop.cancel();
    if let Err(error) = relay_task.await {
        tracing::error!(%error, "Outbox relay task failed");
    }
    served.context("HTTP server failed")
}

/// Ready when PostgreSQL answers and the broker can place identity's request topic.
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
