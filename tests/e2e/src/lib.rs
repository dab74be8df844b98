//! The whole platform in one test process, driven through the gateway like a client would.
//!
//! [`Platform::start`] runs every service (catalog, identity, orders, inventory, payments,
//! notifications and the gateway: their real `run` functions) on port 0, each against a fresh
//! database of its own, all in one fresh Pulsar namespace (standing for every service's
//! namespace), with a real SMTP server (Mailpit) for the mails, and captures every log line
//! the services write. The PII scanners then look for a customer's strings where they must never
//! be: a `pg_dump` of each service database, every message retained on every topic, and the
//! logs.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use comptoir_events::admin::PulsarAdmin;
use comptoir_testkit::mailpit::Mailpit;
use comptoir_testkit::{
    TestDatabase, TestNamespace, pulsar_url, wait_for, write_key, write_secret,
};

/// Units of each new product inventory stocks (its demo setting).
pub const DEMO_STOCK: i64 = 20;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every log line the services of this process wrote, as JSON lines.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a subscriber that keeps every log line at debug level, so a
/// leak at any level is found.
fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,pulsar=info,hyper=info,h2=info,tokio_postgres=info,reqwest=info",
            ))
            .with_writer(move || writer.clone())
            .try_init();
        logs
    })
    .clone()
}

/// One running service.
struct Service {
    base: String,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn listener() -> anyhow::Result<(TcpListener, String)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    Ok((listener, base))
}

async fn ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{base}/readyz");
    wait_for(
        &format!("{base} to be ready"),
        Duration::from_secs(60),
        || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let response = http.get(url).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        },
    )
    .await
}

/// Every service, running.
pub struct Platform {
    /// The gateway's base URL: the only one tests talk to, except to stop a service.
    pub gateway: String,
    pub identity_db: Arc<TestDatabase>,
    pub catalog_db: Arc<TestDatabase>,
    pub orders_db: Arc<TestDatabase>,
    pub inventory_db: Arc<TestDatabase>,
    pub payments_db: Arc<TestDatabase>,
    pub notifications_db: Arc<TestDatabase>,
    pub analytics_db: Arc<TestDatabase>,
    /// Where the shoppers' mails arrive.
    pub mailpit: Mailpit,
    pub namespace: Arc<TestNamespace>,
    pub logs: Logs,
    pub admin: PulsarAdmin,
    catalog_token_file: PathBuf,
    /// Admin token of inventory, payments and notifications (one for the three, in tests).
    operator_token_file: PathBuf,
    /// What notifications presents to identity's `/internal` route.
    notifications_token_file: PathBuf,
    identity_settings: comptoir_identity::Settings,
    services: Vec<(&'static str, Service)>,
}

impl Platform {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts the platform with identity's settings adjusted first (limits, for example).
    pub async fn start_with(
        customise_identity: impl FnOnce(&mut comptoir_identity::Settings),
    ) -> anyhow::Result<Self> {
        let logs = capture_logs();
        let namespace = Arc::new(TestNamespace::create().await?);
        let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
        // As the production topology does: messages stay after they are consumed, so the PII
        // scan sees everything that ever crossed the broker in this test.
        admin
            .set_policy(
                &namespace.name,
                "retention",
                serde_json::json!({ "retentionTimeInMinutes": 60, "retentionSizeInMB": 64 }),
            )
            .await?;
        // Orders' events are partitioned in production (the topology file): so here too.
        admin
            .ensure_partitioned_topic(
                &format!(
                    "{}/{}",
                    namespace.name,
                    comptoir_events::contracts::orders::ORDER_EVENTS_TOPIC
                ),
                4,
            )
            .await?;
        let catalog_db = Arc::new(TestDatabase::create("e2e_catalog").await?);
        let identity_db = Arc::new(TestDatabase::create("e2e_identity").await?);
        let orders_db = Arc::new(TestDatabase::create("e2e_orders").await?);
        let inventory_db = Arc::new(TestDatabase::create("e2e_inventory").await?);
        let payments_db = Arc::new(TestDatabase::create("e2e_payments").await?);
        let notifications_db = Arc::new(TestDatabase::create("e2e_notifications").await?);
        let analytics_db = Arc::new(TestDatabase::create("e2e_analytics").await?);
        let mailpit = Mailpit::start().await;

        let catalog_token_file = catalog_db.scratch_dir().join("admin-token");
        write_secret(&catalog_token_file, uuid_like().as_bytes());
        let operator_token_file = orders_db.scratch_dir().join("operator-token");
        write_secret(&operator_token_file, uuid_like().as_bytes());
        let notifications_token_file = notifications_db.scratch_dir().join("identity-token");
        write_secret(&notifications_token_file, uuid_like().as_bytes());

        let keys = identity_db.scratch_dir().join("keys");
        std::fs::create_dir_all(&keys)?;
        for name in ["kek-1", "blind-index"] {
            write_key(&keys.join(name));
        }
        write_secret(
            &keys.join("signing.pem"),
            comptoir_auth::Signer::generate_pem().as_bytes(),
        );
        let mut identity = comptoir_identity::Settings {
            database: comptoir_store::DatabaseSettings {
                pool_size: 4,
                ..identity_db.settings()
            },
            ..comptoir_identity::Settings::default()
        };
        identity.keys.active_kek = Some(comptoir_identity::KekFile {
            id: "kek-1".to_owned(),
            file: keys.join("kek-1"),
        });
        identity.keys.blind_index_key_file = Some(keys.join("blind-index"));
        identity.tokens.signing_key_file = Some(keys.join("signing.pem"));
        identity.tokens.signing_kid = "e2e-1".to_owned();
        // Cheap hashing: these tests exercise flows, not the cost of a sign-in.
        identity.argon2 = comptoir_identity::password::Argon2Settings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            ..Default::default()
        };
        identity.pulsar.url = pulsar_url();
        identity.pulsar.namespace = namespace.name.clone();
        identity.gdpr.participants = [
            "catalog",
            "orders",
            "inventory",
            "payments",
            "notifications",
            "analytics",
        ]
        .into_iter()
        .map(|name| {
            comptoir_identity::gdpr::ParticipantEntry::Table(
                comptoir_identity::gdpr::ParticipantTable {
                    name: name.to_owned(),
                    namespace: Some(namespace.name.clone()),
                },
            )
        })
        .collect();
        // Notifications reads a customer's email and name to send a transactional mail.
        identity.internal_clients.insert(
            "notifications".to_owned(),
            comptoir_identity::InternalClientSettings {
                token_file: notifications_token_file.clone(),
                purposes: [(
                    "transactional".to_owned(),
                    vec!["email".to_owned(), "name".to_owned()],
                )]
                .into(),
            },
        );
        identity.http.shutdown_grace_ms = 5_000;
        // As every deployment does: identity believes the gateway's X-Forwarded-For, from
        // the gateway's network (here loopback), so its per-address limits see the clients.
        identity.login.trusted_proxies =
            comptoir_platform::client::TrustedProxies::parse(&["127.0.0.0/8", "::1"])
                .map_err(anyhow::Error::msg)?;
        customise_identity(&mut identity);

        let mut platform = Self {
            gateway: String::new(),
            identity_db,
            catalog_db,
            orders_db,
            inventory_db,
            payments_db,
            notifications_db,
            analytics_db,
            mailpit,
            namespace,
            logs,
            admin,
            catalog_token_file,
            operator_token_file,
            notifications_token_file,
            identity_settings: identity,
            services: Vec::new(),
        };
        platform.start_catalog().await?;
        platform.start_identity().await?;
        platform.start_inventory().await?;
        platform.start_payments().await?;
        platform.start_orders().await?;
        platform.start_notifications().await?;
        platform.start_analytics().await?;
        platform.start_gateway().await?;
        Ok(platform)
    }

    fn base(&self, name: &str) -> anyhow::Result<String> {
        self.services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.base.clone())
            .with_context(|| format!("{name} is not running"))
    }

    pub async fn start_catalog(&mut self) -> anyhow::Result<()> {
        let mut settings = comptoir_catalog::Settings::default();
        settings.database = comptoir_store::DatabaseSettings {
            pool_size: 4,
            ..self.catalog_db.settings()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = self.namespace.name.clone();
        settings.gdpr_requests_namespace = self.namespace.name.clone();
        settings.admin_token_file = Some(self.catalog_token_file.clone());
        settings.http.shutdown_grace_ms = 5_000;
        let (listener, base) = listener().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(comptoir_catalog::run(listener, settings, stop.clone()));
        ready(&base).await?;
        self.services
            .push(("catalog", Service { base, stop, task }));
        Ok(())
    }

    async fn start_identity(&mut self) -> anyhow::Result<()> {
        let (listener, base) = listener().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(comptoir_identity::run(
            listener,
            self.identity_settings.clone(),
            stop.clone(),
        ));
        ready(&base).await?;
        self.services
            .push(("identity", Service { base, stop, task }));
        Ok(())
    }

    /// Runs a service's `run` on port 0 and waits until it is ready.
    async fn spawn<S, F, Fut>(
        &mut self,
        name: &'static str,
        settings: S,
        run: F,
    ) -> anyhow::Result<()>
    where
        F: FnOnce(TcpListener, S, CancellationToken) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (listener, base) = listener().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(listener, settings, stop.clone()));
        ready(&base).await?;
        self.services.push((name, Service { base, stop, task }));
        Ok(())
    }

    fn database(db: &TestDatabase) -> comptoir_store::DatabaseSettings {
        comptoir_store::DatabaseSettings {
            pool_size: 4,
            ..db.settings()
        }
    }

    pub async fn start_inventory(&mut self) -> anyhow::Result<()> {
        let ns = self.namespace.name.clone();
        let mut settings = comptoir_inventory::Settings {
            database: Self::database(&self.inventory_db),
            ..Default::default()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = ns.clone();
        settings.catalog_namespace = ns.clone();
        settings.orders_namespace = ns.clone();
        settings.gdpr_requests_namespace = ns;
        settings.admin_token_file = Some(self.operator_token_file.clone());
        settings.demo_stock_per_product = Some(DEMO_STOCK);
        settings.http.shutdown_grace_ms = 5_000;
        self.spawn("inventory", settings, comptoir_inventory::run)
            .await
    }

    pub async fn start_payments(&mut self) -> anyhow::Result<()> {
        let ns = self.namespace.name.clone();
        let mut settings = comptoir_payments::Settings {
            database: Self::database(&self.payments_db),
            ..Default::default()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = ns.clone();
        settings.orders_namespace = ns.clone();
        settings.gdpr_requests_namespace = ns;
        settings.admin_token_file = Some(self.operator_token_file.clone());
        settings.simulated_provider.latency_ms = 5;
        settings.http.shutdown_grace_ms = 5_000;
        self.spawn("payments", settings, comptoir_payments::run)
            .await
    }

    pub async fn start_orders(&mut self) -> anyhow::Result<()> {
        let ns = self.namespace.name.clone();
        let identity = self.base("identity")?;
        let mut settings = comptoir_orders::Settings {
            database: Self::database(&self.orders_db),
            ..Default::default()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = ns.clone();
        settings.catalog_namespace = ns.clone();
        settings.inventory_namespace = ns.clone();
        settings.payments_namespace = ns.clone();
        settings.gdpr_requests_namespace = ns;
        settings.auth.url = format!("{identity}/.well-known/jwks.json");
        settings.saga.sweep_interval_ms = 200;
        settings.http.shutdown_grace_ms = 5_000;
        self.spawn("orders", settings, comptoir_orders::run).await
    }

    pub async fn start_notifications(&mut self) -> anyhow::Result<()> {
        let ns = self.namespace.name.clone();
        let identity = self.base("identity")?;
        let mut settings = comptoir_notifications::Settings {
            database: Self::database(&self.notifications_db),
            ..Default::default()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = ns.clone();
        settings.orders_namespace = ns.clone();
        settings.gdpr_requests_namespace = ns;
        settings.admin_token_file = Some(self.operator_token_file.clone());
        settings.identity.url = identity;
        settings.identity.token_file = Some(self.notifications_token_file.clone());
        settings.smtp.port = self.mailpit.smtp_port;
        settings.sender.poll_interval_ms = 100;
        settings.http.shutdown_grace_ms = 5_000;
        self.spawn("notifications", settings, comptoir_notifications::run)
            .await
    }

    pub async fn start_analytics(&mut self) -> anyhow::Result<()> {
        let ns = self.namespace.name.clone();
        let identity = self.base("identity")?;
        let keys = self.analytics_db.scratch_dir().join("pseudonym-keys");
        if !keys.exists() {
            std::fs::create_dir_all(&keys)?;
            let now = time::OffsetDateTime::now_utc();
            for at in [now, now + time::Duration::days(32)] {
                write_key(&keys.join(format!("{:04}-{:02}.key", at.year(), u8::from(at.month()))));
            }
        }
        let mut settings = comptoir_analytics::Settings {
            database: Self::database(&self.analytics_db),
            ..Default::default()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = ns.clone();
        settings.identity_namespace = ns.clone();
        settings.orders_namespace = ns;
        settings.admin_token_file = Some(self.operator_token_file.clone());
        settings.pseudonym_keys_dir = Some(keys);
        settings.auth.url = format!("{identity}/.well-known/jwks.json");
        settings.http.shutdown_grace_ms = 5_000;
        self.spawn("analytics", settings, comptoir_analytics::run)
            .await
    }

    /// The catalog's admin token, to create products through the gateway.
    pub fn catalog_admin_token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.catalog_token_file)?
            .trim()
            .to_owned())
    }

    /// The admin token of inventory, payments, notifications and analytics.
    pub fn operator_token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.operator_token_file)?
            .trim()
            .to_owned())
    }

    /// Every service database, by service, for the personal-data scan.
    pub fn databases(&self) -> [(&'static str, &TestDatabase); 7] {
        [
            ("catalog", &self.catalog_db),
            ("identity", &self.identity_db),
            ("orders", &self.orders_db),
            ("inventory", &self.inventory_db),
            ("payments", &self.payments_db),
            ("notifications", &self.notifications_db),
            ("analytics", &self.analytics_db),
        ]
    }

    async fn start_gateway(&mut self) -> anyhow::Result<()> {
        let mut settings = comptoir_gateway::Settings::default();
        for name in [
            "catalog",
            "identity",
            "orders",
            "inventory",
            "payments",
            "notifications",
            "analytics",
        ] {
            let url = self.base(name)?;
            if let Some(upstream) = settings.upstreams.get_mut(name) {
                upstream.url = url;
            }
        }
        let identity = self.base("identity")?;
        settings.auth.url = format!("{identity}/.well-known/jwks.json");
        // One client (this test) makes every request: limits high enough not to interfere,
        // which the gateway's own tests cover.
        settings.rate_limit.per_ip_per_second = 10_000;
        settings.rate_limit.per_ip_burst = 10_000;
        settings.rate_limit.per_subject_per_second = 10_000;
        settings.rate_limit.per_subject_burst = 10_000;
        let (listener, base) = listener().await?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(comptoir_gateway::run(listener, settings, stop.clone()));
        ready(&base).await?;
        self.gateway = base.clone();
        self.services
            .push(("gateway", Service { base, stop, task }));
        Ok(())
    }

    /// Stops one service and waits for it to drain (its consumers' subscriptions stay).
    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        let index = self
            .services
            .iter()
            .position(|(n, _)| *n == name)
            .with_context(|| format!("{name} is not running"))?;
        let (_, service) = self.services.remove(index);
        service.stop.cancel();
        service.task.await??;
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// The plain-text dump of a service database, as its administrator takes it.
    pub fn pg_dump(&self, db: &TestDatabase) -> anyhow::Result<String> {
        let mut url = url_with_database(&comptoir_testkit::pg_admin_url(), &db.name)?;
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str("sslmode=disable");
        let output = std::process::Command::new("pg_dump")
            .args(["--no-owner", "--data-only", "--inserts", "--dbname", &url])
            .output()
            .context("cannot run pg_dump (Debian package postgresql-client)")?;
        if !output.status.success() {
            bail!(
                "pg_dump of {} failed: {}",
                db.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Where `needles` (a customer's strings) appear among the places personal data must never
    /// be in plaintext: a dump of every service database, every message the broker retained,
    /// every log line. Identity's database holds them only encrypted.
    pub async fn leaks(&self, needles: &[String]) -> anyhow::Result<Vec<String>> {
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let mut places: Vec<(String, String)> = Vec::new();
        for (service, db) in self.databases() {
            places.push((format!("the {service} database"), self.pg_dump(db)?));
        }
        places.push(("the service logs".to_owned(), self.logs.text()));
        for (topic, text) in self.retained_messages().await? {
            places.push((format!("a message on {topic}"), text));
        }
        Ok(occurrences(
            &needles,
            places.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        ))
    }

    /// Every message retained on every topic of the namespace: payload and properties.
    pub async fn retained_messages(&self) -> anyhow::Result<Vec<(String, String)>> {
        const AUDIT: &str = "pii-audit";
        let mut messages = Vec::new();
        for topic in self.admin.topics(&self.namespace.name).await? {
            self.admin
                .ensure_subscription_from_earliest(&topic, AUDIT)
                .await?;
            let stats = self.admin.topic_stats(&topic).await?;
            let count = stats["subscriptions"][AUDIT]["msgBacklog"]
                .as_u64()
                .unwrap_or(0);
            for position in 1..=count {
                let (headers, body) = self.admin.peek(&topic, AUDIT, position).await?;
                let properties = headers
                    .get("x-pulsar-property")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                messages.push((
                    topic.clone(),
                    format!("{properties}\n{}", String::from_utf8_lossy(&body)),
                ));
            }
        }
        Ok(messages)
    }
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("gateway", &self.gateway)
            .field("namespace", &self.namespace.name)
            .finish_non_exhaustive()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for (_, service) in &self.services {
            service.stop.cancel();
        }
    }
}

/// `postgres://user:pw@host:port/other?x` → the same URL on database `name`.
fn url_with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let mut parsed = reqwest::Url::parse(url).context("admin URL")?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

fn uuid_like() -> String {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 24];
    let _ = rand::rngs::OsRng.try_fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The places a string was found in, for readable failures.
pub fn occurrences<'a>(
    needles: &[&str],
    haystacks: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut found = Vec::new();
    for (place, text) in haystacks {
        let lower = text.to_lowercase();
        for needle in needles {
            if lower.contains(&needle.to_lowercase()) {
                found.push(format!("{needle:?} in {place}"));
            }
        }
    }
    found
}
