//! Test harness shared by Comptoir crates.
//!
//! Integration tests run against the real local platform (`dev/postgres.sh`, `dev/pulsar.sh`),
//! which `dev/test` starts before running them. Each test isolates itself:
//! - [`TestDatabase`]: a fresh database with its own role, as a service gets in production;
//! - [`TestNamespace`]: a fresh Pulsar namespace;
//! - [`wait_for`]: polls a condition until a deadline, instead of sleeping a fixed time;
//! - [`subscribe`]: reads what a service published;
//! - [`jwks::Keys`]: a JWKS endpoint standing in for identity, to act as any customer;
//! - [`tls::TestCa`]: a fresh CA issuing server certificates, for the TLS paths;
//! - [`standalone`]: starts and stops a private Pulsar standalone (for restart tests), open or
//!   secured (TLS, a token per role, authorization).
//!
//! Where the platform is, comes from `COMPTOIR_TEST_PG_ADMIN_URL`, `COMPTOIR_TEST_PULSAR_URL`
//! and `COMPTOIR_TEST_PULSAR_ADMIN_URL`; without them, the local platform's defaults.
#![forbid(unsafe_code)]

pub mod jwks;

pub mod standalone;

pub mod mailpit;

pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comptoir_events::admin::PulsarAdmin;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};
use url::Url;

/// The repository root (tests run with their crate's directory as working directory).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("dev").join("postgres.sh").is_file() {
        if !dir.pop() {
            panic!(
                "cannot find the repository root above {}",
                env!("CARGO_MANIFEST_DIR")
            );
        }
    }
    dir
}

/// Runs `dev/<script> <verb>` and returns its trimmed standard output.
fn dev_script(script: &str, verb: &str) -> String {
    let output = std::process::Command::new(repo_root().join("dev").join(script))
        .arg(verb)
        .output()
        .unwrap_or_else(|e| panic!("cannot run dev/{script} {verb}: {e}"));
    assert!(
        output.status.success(),
        "dev/{script} {verb} failed (is the local platform up? run dev/test): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Administrator URL of the test PostgreSQL cluster.
pub fn pg_admin_url() -> String {
    std::env::var("COMPTOIR_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| dev_script("postgres.sh", "admin-url"))
}

/// CA certificate of the test cluster's TLS server certificate.
pub fn pg_ca_file() -> PathBuf {
    PathBuf::from(
        std::env::var("COMPTOIR_TEST_PG_CA_FILE")
            .unwrap_or_else(|_| dev_script("postgres.sh", "ca-file")),
    )
}

/// An exclusive subscription reading `topic` from its earliest retained message: what a test
/// uses to see what a service published.
pub async fn subscribe(
    pulsar: &pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: &str,
    subscription: &str,
) -> pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor> {
    pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription(subscription)
        .with_subscription_type(pulsar::SubType::Exclusive)
        .with_options(
            pulsar::consumer::ConsumerOptions::default()
                .with_initial_position(pulsar::consumer::InitialPosition::Earliest),
        )
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot subscribe to {topic}: {e}"))
}

/// Publishes `event` to `topic` keyed by its subject, as a service's outbox relay would, and
/// waits for the broker's acknowledgement: how a test plays the part of another service's
/// event (a catalog product change, a saga command) on the real broker.
pub async fn publish<T: serde::Serialize>(
    pulsar: &pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: &str,
    event: &comptoir_events::CloudEvent<T>,
) {
    let mut producer = pulsar
        .producer()
        .with_topic(topic)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot produce to {topic}: {e}"));
    let message = pulsar::producer::Message {
        payload: serde_json::to_vec(event).expect("event as JSON"),
        partition_key: Some(event.subject.clone()),
        ..Default::default()
    };
    producer
        .send_non_blocking(message)
        .await
        .expect("send")
        .await
        .expect("broker acknowledgement");
    producer.close().await.expect("close the producer");
}

/// Binary-protocol URL of the test broker.
pub fn pulsar_url() -> Url {
    let raw = std::env::var("COMPTOIR_TEST_PULSAR_URL")
        .unwrap_or_else(|_| "pulsar://127.0.0.1:6650".to_owned());
    Url::parse(&raw).expect("COMPTOIR_TEST_PULSAR_URL is not a URL")
}

/// Admin REST URL of the test broker.
pub fn pulsar_admin_url() -> Url {
    let raw = std::env::var("COMPTOIR_TEST_PULSAR_ADMIN_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    Url::parse(&raw).expect("COMPTOIR_TEST_PULSAR_ADMIN_URL is not a URL")
}

/// A short random suffix for names (lowercase letters and digits).
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Connects with the administrator role to `database`.
pub async fn admin_client(database: &str) -> anyhow::Result<Client> {
    let mut config = tokio_postgres::Config::from_str(&pg_admin_url())?;
    config.dbname(database);
    let (client, connection) = config.connect(NoTls).await.context(
        "cannot reach the test PostgreSQL cluster; run dev/test or dev/postgres.sh start",
    )?;
    tokio::spawn(connection);
    Ok(client)
}

/// A fresh database owned by a fresh role of the same name, dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub host: String,
    pub port: u16,
    password: String,
    dir: tempfile::TempDir,
}

impl TestDatabase {
    /// Creates `<prefix>_<random>` with a random password written to a file.
    pub async fn create(prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", unique_suffix());
        let password = uuid::Uuid::new_v4().simple().to_string();
        let admin = admin_client("postgres").await?;
        comptoir_store::provision::ensure_service_database(&admin, &name, &password).await?;
        let config = tokio_postgres::Config::from_str(&pg_admin_url())?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("db-password"), format!("{password}\n"))?;
        Ok(Self {
            name,
            host,
            port,
            password,
            dir,
        })
    }

    /// Settings a service would use to reach this database: its own role, plain TCP on
    /// loopback, a small pool. Tests override fields (`tls`, `pool_size`) as they need.
    pub fn settings(&self) -> comptoir_store::DatabaseSettings {
        comptoir_store::DatabaseSettings {
            host: self.host.clone(),
            port: self.port,
            name: self.name.clone(),
            user: self.name.clone(),
            password_file: Some(self.password_file()),
            tls: comptoir_store::TlsMode::Disable,
            ca_file: None,
            pool_size: 2,
            connect_timeout_ms: 5_000,
        }
    }

    /// File holding the role's password, as services read it.
    pub fn password_file(&self) -> PathBuf {
        self.dir.path().join("db-password")
    }

    /// A scratch directory living as long as the database (for other secret files).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Connects as the service role to `database` (its own, or another one to prove it cannot).
    pub async fn connect_as_role(&self, database: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.name)
            .password(&self.password)
            .dbname(database);
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// An administrator connection to this database (for assertions on stored rows).
    pub async fn admin(&self) -> anyhow::Result<Client> {
        admin_client(&self.name).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Best effort on a separate thread: Drop cannot be async and the test's runtime may be
        // shutting down. A leftover database is harmless; `dev/test` uses a throwaway cluster.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = admin_client("postgres").await {
                    let _ = comptoir_store::provision::drop_service_database(&admin, &name).await;
                }
            });
        })
        .join();
    }
}

/// A fresh namespace in tenant `comptoir-test`, deleted when the test ends.
#[derive(Debug)]
pub struct TestNamespace {
    pub name: String,
    admin: PulsarAdmin,
}

impl TestNamespace {
    pub async fn create() -> anyhow::Result<Self> {
        let admin = PulsarAdmin::new(pulsar_admin_url(), None);
        let name = format!("comptoir-test/ns-{}", unique_suffix());
        admin
            .ensure_namespace(&name)
            .await
            .context("cannot create a test namespace; is Pulsar up? run dev/test")?;
        Ok(Self { name, admin })
    }

    /// Full name of a persistent topic in this namespace.
    pub fn topic(&self, name: &str) -> String {
        format!("persistent://{}/{name}", self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let _ = runtime.block_on(admin.delete_namespace(&name));
        })
        .join();
    }
}

/// Waits until `subscription` exists on `topic` with nothing left to acknowledge: every
/// message published so far has been handled. A partitioned topic's partitions are each
/// waited for.
pub async fn drained(topic: &str, subscription: &str) {
    let admin = PulsarAdmin::new(pulsar_admin_url(), None);
    wait_for(
        &format!("{subscription} to exist and drain"),
        Duration::from_secs(60),
        || async {
            let stats = match admin.topic_stats(topic).await {
                Ok(stats) => stats,
                Err(_) => admin.partitioned_topic_stats(topic).await.ok()?,
            };
            let partitions: Vec<serde_json::Value> = match stats["partitions"].as_object() {
                Some(partitions) if !partitions.is_empty() => {
                    partitions.values().cloned().collect()
                }
                _ => vec![stats],
            };
            partitions
                .iter()
                .all(|stats| {
                    let sub = &stats["subscriptions"][subscription];
                    sub.is_object() && sub["msgBacklog"] == 0 && sub["unackedMessages"] == 0
                })
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `response` is an RFC 9457 problem with `status` (the status line, the
/// `application/problem+json` type, the body's `status` and `title`), and returns its body.
/// The one check every service's tests and the end-to-end tests make of an error answer.
pub async fn assert_problem(
    response: reqwest::Response,
    status: reqwest::StatusCode,
) -> serde_json::Value {
    let url = response.url().clone();
    assert_eq!(response.status(), status, "status of {url}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        content_type, "application/problem+json",
        "problem+json from {url}"
    );
    let body: serde_json::Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    assert!(body["title"].is_string(), "{body}");
    body
}

/// Writes a secret file readable by its owner only (what services insist on for keys).
pub fn write_secret(path: &Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Writes a random 32-byte key, base64, as a secret file (a KEK, a blind-index key).
pub fn write_key(path: &Path) {
    use base64::Engine as _;
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random generator failed");
    write_secret(
        path,
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .as_bytes(),
    );
}

/// A TCP port free at the time of the call, on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port")
}

/// A service binary started as its own process (`kill -9` tests, configuration tests), with
/// its settings from `COMPTOIR_<SERVICE>__*` variables as in a deployment.
#[derive(Debug)]
pub struct ServiceProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl ServiceProcess {
    /// The command that runs `binary` (a `CARGO_BIN_EXE_*` path) as `service` on a free port,
    /// against `db` (its own role, plain TCP on loopback) and Pulsar's `namespace`. Add the
    /// service's other settings with `.env(...)`, then [`ServiceProcess::start`].
    pub fn command(
        binary: &str,
        service: &str,
        db: &TestDatabase,
        namespace: &str,
    ) -> (std::process::Command, u16) {
        let prefix = format!("COMPTOIR_{}__", service.to_ascii_uppercase());
        let port = free_port();
        let mut command = std::process::Command::new(binary);
        command
            .env(format!("{prefix}HTTP__LISTEN"), format!("127.0.0.1:{port}"))
            .env(format!("{prefix}DATABASE__HOST"), &db.host)
            .env(format!("{prefix}DATABASE__PORT"), db.port.to_string())
            .env(format!("{prefix}DATABASE__NAME"), &db.name)
            .env(format!("{prefix}DATABASE__USER"), &db.name)
            .env(
                format!("{prefix}DATABASE__PASSWORD_FILE"),
                db.password_file(),
            )
            .env(format!("{prefix}PULSAR__URL"), pulsar_url().as_str())
            .env(format!("{prefix}PULSAR__NAMESPACE"), namespace)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        (command, port)
    }

    /// Spawns `command` (from [`ServiceProcess::command`]) and waits until it is ready.
    pub async fn start(mut command: std::process::Command, port: u16) -> anyhow::Result<Self> {
        let mut child = command.spawn().context("cannot start the service binary")?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = wait_for("the binary to be ready", Duration::from_secs(60), || {
            let request = http.get(format!("{base}/readyz")).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
        })
        .await;
        if let Err(error) = ready {
            let _ = child.kill();
            return Err(error);
        }
        Ok(Self { child, base })
    }

    /// `kill -9`: no drain, no shutdown hook.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
