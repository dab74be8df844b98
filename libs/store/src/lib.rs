//! PostgreSQL access for Comptoir services.
//!
//! - [`DatabaseSettings`] and [`connect`]: a deadpool of tokio-postgres connections, plain or
//!   TLS through rustls, password read from a file.
//! - [`migrate`]: runs a service's refinery migrations (embedded in its binary) at startup.
//! - [`provision`]: creates a service's database and role so the role reaches only that
//!   database; used by the local platform, the tests and the production bootstrap alike.
#![forbid(unsafe_code)]

pub mod provision;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};

pub use deadpool_postgres;
pub use tokio_postgres;

/// How the connection to PostgreSQL is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP: only for a database on the same host (loopback).
    Disable,
    /// TLS, with the server certificate verified against `ca_file` (or the web PKI roots) and
    /// its name checked against `host`.
    VerifyFull,
}

/// Where a service's database is and how to log in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// The server, or a comma-separated list of servers (a PostgreSQL HA cluster such as
    /// Patroni's): each connection tries them in order and keeps the first that accepts
    /// writes (`target_session_attrs=read-write`), so a failover needs no configuration change.
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    /// File holding the password (secrets never sit in config values).
    pub password_file: Option<PathBuf>,
    pub tls: TlsMode,
    /// PEM bundle of the CA that signed the server certificate; the web PKI roots if absent.
    pub ca_file: Option<PathBuf>,
    pub pool_size: usize,
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 5432,
            name: String::new(),
            user: String::new(),
            password_file: None,
            tls: TlsMode::Disable,
            ca_file: None,
            pool_size: 16,
            connect_timeout_ms: 5_000,
        }
    }
}

impl DatabaseSettings {
    /// Readable problems with these settings, each naming its key under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.is_empty() {
            problems.push(format!("{prefix}.name must be set"));
        }
        if self.user.is_empty() {
            problems.push(format!("{prefix}.user must be set"));
        }
        if self.pool_size == 0 {
            problems.push(format!("{prefix}.pool_size must be greater than 0"));
        }
        if let Some(path) = &self.password_file
            && !path.is_file()
        {
            problems.push(format!(
                "{prefix}.password_file {} does not exist",
                path.display()
            ));
        }
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            problems.push(format!(
                "{prefix}.ca_file {} does not exist",
                path.display()
            ));
        }
        if self.hosts().any(str::is_empty) {
            problems.push(format!(
                "{prefix}.host {:?} has an empty entry: give one host, or hosts separated by commas",
                self.host
            ));
        }
        if self.tls == TlsMode::Disable && !self.hosts().all(is_loopback_host) {
            problems.push(format!(
                "{prefix}.tls is disable but {prefix}.host {:?} is not loopback: the password and \
                 every row would cross the network in clear; use tls = \"verify-full\"",
                self.host
            ));
        }
        problems
    }
}

impl DatabaseSettings {
    /// The servers `host` names, in the order connections try them.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.host.split(',').map(str::trim)
    }
}

/// Whether `host` is this machine: `localhost`, a loopback address (127.0.0.0/8, ::1), or a
/// Unix-socket directory (PostgreSQL's host may be a path). The one rule the configuration
/// guards use to allow plaintext (database, broker) only where nothing crosses a network.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the database password file {path}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS to PostgreSQL: {0}")]
    Tls(String),
    #[error("cannot build the connection pool")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("cannot get a database connection")]
    Connect(#[from] deadpool_postgres::PoolError),
    #[error("migration failed")]
    Migration(#[from] refinery::Error),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("invalid identifier {0:?}: use lowercase letters, digits and underscores")]
    Identifier(String),
}

/// Builds a connection pool. Connections are opened lazily; call [`ping`] to check one.
pub fn connect(settings: &DatabaseSettings) -> Result<Pool, StoreError> {
    let mut config = base_config(settings)?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match settings.tls {
        TlsMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        }
        TlsMode::VerifyFull => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let connector = tls::connector(settings.ca_file.as_deref())?;
            Manager::from_config(config, connector, manager_config)
        }
    };
    Ok(Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
        .create_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)))
        .build()?)
}

fn base_config(settings: &DatabaseSettings) -> Result<tokio_postgres::Config, StoreError> {
    let mut config = tokio_postgres::Config::new();
    for host in settings.hosts() {
        config.host(host);
    }
    if settings.hosts().count() > 1 {
        // Of several servers only the primary accepts writes; a connection that lands on a
        // standby moves on to the next host.
        config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    }
    config
        .port(settings.port)
        .dbname(&settings.name)
        .user(&settings.user)
        .application_name(&settings.user)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms));
    if let Some(path) = &settings.password_file {
        let raw = std::fs::read_to_string(path).map_err(|source| StoreError::PasswordFile {
            path: path.clone(),
            source,
        })?;
        config.password(raw.trim_end_matches(['\n', '\r']));
    }
    Ok(config)
}

/// A dedicated connection that `LISTEN`s on `channel`: each notification's payload arrives on
/// the receiver, which closes when the connection drops (the caller reconnects). Pools cannot
/// do this: a pooled connection's notifications are discarded.
pub async fn listen(
    settings: &DatabaseSettings,
    channel: &str,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ),
    StoreError,
> {
    let channel = provision::identifier(channel)?.to_owned();
    let mut config = base_config(settings)?;
    // Named so that an operator (or a test) can tell it from the pool's connections.
    config.application_name(format!("{} listen {channel}", settings.user));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let client = match settings.tls {
        TlsMode::Disable => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(forward_notifications(connection, sender));
            client
        }
        TlsMode::VerifyFull => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = config
                .connect(tls::connector(settings.ca_file.as_deref())?)
                .await?;
            tokio::spawn(forward_notifications(connection, sender));
            client
        }
    };
    client.batch_execute(&format!("LISTEN {channel}")).await?;
    Ok((client, receiver))
}

/// What [`keep_listening`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listening<'a> {
    /// The `LISTEN` is in place (first time, or again after a loss): whatever was committed
    /// while nobody listened must be looked at now, no notification will say it.
    Connected,
    /// A notification, with its payload.
    Notified(&'a str),
    /// The connection dropped, or could not be made: notifications may be missed until the
    /// next `Connected`.
    Lost,
}

/// Keeps a `LISTEN channel` connection open until `shutdown`, reconnecting with backoff
/// (200 ms doubling to 10 s), and tells `on` what happens ([`Listening`]). The outbox relay
/// wakes on it; the catalog's read path drops its pages on it.
///
/// A connection can also die silently (a partition, a server that froze): TCP would notice
/// only after its keepalive, hours by default. So every `heartbeat` the connection runs an
/// empty query, and one not answered within another `heartbeat` counts as a loss.
pub async fn keep_listening(
    settings: DatabaseSettings,
    channel: &str,
    heartbeat: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
    mut on: impl FnMut(Listening<'_>) + Send,
) {
    let mut backoff = std::time::Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match listen(&settings, channel).await {
            Ok((client, mut notifications)) => {
                backoff = std::time::Duration::from_millis(200);
                on(Listening::Connected);
                let mut beat = tokio::time::interval(heartbeat);
                beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        received = notifications.recv() => match received {
                            Some(payload) => on(Listening::Notified(&payload)),
                            None => break,
                        },
                        _ = beat.tick() => {
                            let answered = tokio::time::timeout(heartbeat, client.simple_query("")).await;
                            if !matches!(answered, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!(channel, "Notification connection lost; reconnecting");
            }
            Err(error) => {
                let chain = std::iter::successors(
                    Some(&error as &(dyn std::error::Error + 'static)),
                    |e| e.source(),
                )
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(": ");
                tracing::warn!(channel, error = %chain, "Cannot listen for notifications; retrying");
            }
        }
        on(Listening::Lost);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
    }
}

async fn forward_notifications<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    sender: tokio::sync::mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                if sender.send(n.payload().to_owned()).is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                tracing::warn!(%error, "Notification connection failed");
                return;
            }
            None => return,
        }
    }
}

/// One round trip to the database: the readiness check of every service.
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// The advisory lock [`migrate`] holds (advisory locks are per database, so one key serves
/// every service's database).
const MIGRATION_LOCK: i64 = 0x636f_6d70_746f_6972; // "comptoir"

/// Applies the migrations embedded in `runner` (from `refinery::embed_migrations!`).
///
/// Replicas starting together (a rollout, a cluster start) would otherwise race: each reads an
/// empty history, both apply V1, and the loser stops with a duplicate-table error. So the
/// migrations run under a session advisory lock: the others wait for it, then find the history
/// up to date and apply nothing. A connection that dies releases the lock with it.
pub async fn migrate(pool: &Pool, runner: refinery::Runner) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = runner.run_async(&mut **client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    if unlocked.is_err() {
        // Never hand a connection that may still hold the lock back to the pool.
        drop(deadpool_postgres::Object::take(client));
    }
    for migration in report?.applied_migrations() {
        tracing::info!(migration = %migration, "Applied migration");
    }
    unlocked?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(host: &str, tls: TlsMode) -> DatabaseSettings {
        DatabaseSettings {
            host: host.to_owned(),
            name: "catalog".to_owned(),
            user: "catalog".to_owned(),
            tls,
            ..DatabaseSettings::default()
        }
    }

    #[test]
    fn plaintext_is_refused_off_loopback() {
        for host in [
            "db.internal",
            "10.0.0.5",
            "fd00::5",
            "127.0.0.1.example",
            "127.0.0.1,10.0.0.5",
        ] {
            let problems = at(host, TlsMode::Disable).problems("database");
            assert_eq!(problems.len(), 1, "{host}: {problems:?}");
            assert!(problems[0].contains("verify-full"), "{problems:?}");
            assert!(
                at(host, TlsMode::VerifyFull)
                    .problems("database")
                    .is_empty()
            );
        }
        for host in [
            "127.0.0.1",
            "127.0.0.1,localhost",
            "127.0.0.2",
            "::1",
            "[::1]",
            "localhost",
            "/run/postgresql",
        ] {
            assert!(
                at(host, TlsMode::Disable).problems("database").is_empty(),
                "{host}"
            );
        }
    }

    #[test]
    fn a_host_list_is_split_on_commas_and_an_empty_entry_is_refused() {
        let settings = at("10.0.0.1, 10.0.0.2,10.0.0.3", TlsMode::VerifyFull);
        assert_eq!(
            settings.hosts().collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert!(settings.problems("database").is_empty());
        let problems = at("10.0.0.1,,10.0.0.3", TlsMode::VerifyFull).problems("database");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("empty entry"), "{problems:?}");
    }
}
