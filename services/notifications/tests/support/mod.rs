//! `spawn_app()`: the notifications service on port 0 with a fresh database and a fresh Pulsar
//! namespace, next to the real parts it talks to:
//! - [`Mailpit`], a real SMTP server (with an HTTP API to read what it received), started on
//!   free ports, killed on drop;
//! - the real identity ([`Identity`], its `run` on port 0 with its own database and keys),
//!   whose internal route gives the recipient's address.
//!
//! Tests play orders' part by publishing `OrderChanged` events to the `order-events` topic,
//! created partitioned as in production. Every log line of the process is captured
//! ([`logs`]) so a test can scan it for personal data.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::contracts::orders::{OrderChanged, OrderLine, OrderStatus};
use comptoir_notifications::Settings;
use comptoir_notifications::domain::Delivery;
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::assert_problem;
use comptoir_testkit::{TestDatabase, TestNamespace, free_port, pulsar_url, wait_for};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The token this service presents to identity (identity knows it as `notifications`).
pub const IDENTITY_TOKEN: &str = "notifications-test-token-0123456789";
/// A password identity's strength check accepts.
pub const PASSWORD: &str = "correct horse battery staple";

// ---------------------------------------------------------------------------------------------
// Logs

/// Every log line the process wrote, as JSON lines.
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

/// The process's log lines (a subscriber at debug level is installed on first call), so a
/// leak at any level is found.
pub fn logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,pulsar=info,hyper=info,h2=info,tokio_postgres=info,reqwest=info,\
                 hyper_util=info,rustls=info",
            ))
            .with_writer(move || writer.clone())
            .try_init();
        logs
    })
    .clone()
}

// Mailpit: a real SMTP server, shared with the end-to-end tests.
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::mailpit::{Mail, Mailpit};

// ---------------------------------------------------------------------------------------------
// Identity

/// The real identity service, with a `notifications` client allowed `email` and `name` for
/// the purpose `transactional`.
pub struct Identity {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Identity {
    pub async fn start(namespace: &TestNamespace, token_file: &Path) -> Self {
        let db = TestDatabase::create("notif_identity")
            .await
            .expect("identity database");
        let keys = db.scratch_dir().join("keys");
        std::fs::create_dir_all(&keys).expect("key dir");
        comptoir_testkit::write_key(&keys.join("kek-1"));
        comptoir_testkit::write_key(&keys.join("blind-index"));
        comptoir_testkit::write_secret(
            &keys.join("signing.pem"),
            comptoir_auth::Signer::generate_pem().as_bytes(),
        );
        let mut settings = comptoir_identity::Settings {
            database: comptoir_store::DatabaseSettings {
                pool_size: 4,
                ..db.settings()
            },
            ..comptoir_identity::Settings::default()
        };
        settings.keys.active_kek = Some(comptoir_identity::KekFile {
            id: "kek-1".to_owned(),
            file: keys.join("kek-1"),
        });
        settings.keys.blind_index_key_file = Some(keys.join("blind-index"));
        settings.tokens.signing_key_file = Some(keys.join("signing.pem"));
        settings.tokens.signing_kid = "notifications-test-1".to_owned();
        settings.argon2 = comptoir_identity::password::Argon2Settings {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
            ..Default::default()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = namespace.name.clone();
        settings.gdpr.participants = vec![comptoir_identity::gdpr::ParticipantEntry::Table(
            comptoir_identity::gdpr::ParticipantTable {
                name: "notifications".to_owned(),
                namespace: Some(namespace.name.clone()),
            },
        )];
        settings.internal_clients.insert(
            "notifications".to_owned(),
            comptoir_identity::InternalClientSettings {
                token_file: token_file.to_owned(),
                purposes: [(
                    "transactional".to_owned(),
                    vec!["email".to_owned(), "name".to_owned()],
                )]
                .into_iter()
                .collect(),
            },
        );
        settings.http.shutdown_grace_ms = 5_000;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(comptoir_identity::run(listener, settings, shutdown.clone()));
        let http = reqwest::Client::new();
        wait_until_ready(&http, &format!("{base}/readyz"), "identity").await;
        Self {
            base,
            http,
            db: Arc::new(db),
            shutdown,
            handle: Some(handle),
        }
    }

    /// Registers a customer and returns their id (read back from `/v1/me` once signed in).
    pub async fn register(&self, email: &str, name: &str) -> Uuid {
        let response = self
            .http
            .post(format!("{}/v1/customers", self.base))
            .json(&json!({ "email": email, "password": PASSWORD, "name": name }))
            .send()
            .await
            .expect("register");
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{:?}",
            response.text().await
        );
        let response = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), StatusCode::OK);
        let tokens: Value = response.json().await.expect("tokens");
        let access = tokens["access_token"].as_str().expect("access_token");
        let me: Value = self
            .http
            .get(format!("{}/v1/me", self.base))
            .bearer_auth(access)
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("me json");
        me["id"].as_str().expect("id").parse().expect("a uuid")
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn wait_until_ready(http: &reqwest::Client, url: &str, what: &str) {
    wait_for(
        &format!("{what} to be ready"),
        Duration::from_secs(60),
        || {
            let request = http.get(url).send();
            async move {
                request
                    .await
                    .ok()
                    .filter(|r| r.status() == StatusCode::OK)
                    .map(drop)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{what} ready: {e}"));
}

// ---------------------------------------------------------------------------------------------
// The service

/// What runs beside the service.
#[derive(Debug)]
pub enum Smtp {
    /// Mailpit, started before the service.
    Running,
    /// No SMTP server yet: the test starts one later with [`TestApp::start_mailpit`].
    Later,
    /// This Mailpit (TLS, authentication...), whose port the service sends to.
    Given(Mailpit),
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub namespace: Arc<TestNamespace>,
    pub admin_token: String,
    pub identity: Option<Identity>,
    pub mailpit: Option<Mailpit>,
    /// The SMTP port the service sends to (Mailpit's, once it runs).
    pub smtp_port: u16,
    pub pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The service with Mailpit and identity running.
pub async fn spawn_app() -> TestApp {
    spawn(true, Smtp::Running, |_| {}).await
}

/// The service with identity running, no SMTP server yet.
pub async fn spawn_app_smtp_down(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(true, Smtp::Later, customise).await
}

/// The service with identity running and `mailpit` as its relay; `customise` says how to
/// reach it (`smtp.tls`, `smtp.ca_file`, credentials).
pub async fn spawn_app_with_mailpit(
    mailpit: Mailpit,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn(true, Smtp::Given(mailpit), customise).await
}

/// The service alone: identity's URL and the SMTP port lead nowhere (deliveries stay pending).
pub async fn spawn_app_alone() -> TestApp {
    spawn(false, Smtp::Later, |_| {}).await
}

async fn spawn(with_identity: bool, smtp: Smtp, customise: impl FnOnce(&mut Settings)) -> TestApp {
    logs();
    let db = Arc::new(
        TestDatabase::create("notifications_test")
            .await
            .expect("test database"),
    );
    let namespace = Arc::new(TestNamespace::create().await.expect("test namespace"));
    // As in production (libs/events/topology): order-events is partitioned, and exists
    // before anyone subscribes to it.
    PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None)
        .ensure_partitioned_topic(
            &format!(
                "{}/{}",
                namespace.name,
                comptoir_events::contracts::orders::ORDER_EVENTS_TOPIC
            ),
            4,
        )
        .await
        .expect("partitioned order-events");

    let admin_token = Uuid::new_v4().to_string();
    let admin_token_file = db.scratch_dir().join("admin-token");
    comptoir_testkit::write_secret(&admin_token_file, admin_token.as_bytes());
    let identity_token_file = db.scratch_dir().join("identity-token");
    comptoir_testkit::write_secret(&identity_token_file, IDENTITY_TOKEN.as_bytes());

    let identity = if with_identity {
        Some(Identity::start(&namespace, &identity_token_file).await)
    } else {
        None
    };
    let mailpit = match smtp {
        Smtp::Running => Some(Mailpit::start().await),
        Smtp::Later => None,
        Smtp::Given(mailpit) => Some(mailpit),
    };
    let smtp_port = mailpit.as_ref().map_or_else(free_port, |m| m.smtp_port);

    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.orders_namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(admin_token_file);
    settings.identity.url = identity.as_ref().map_or_else(
        || format!("http://127.0.0.1:{}", free_port()),
        |i| i.base.clone(),
    );
    settings.identity.token_file = Some(identity_token_file);
    settings.smtp.port = smtp_port;
    settings.sender.poll_interval_ms = 100;
    settings.retry.base_ms = 200;
    settings.retry.max_ms = 1_000;
    settings.http.shutdown_grace_ms = 5_000;
    customise(&mut settings);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_notifications::run(
        listener,
        settings,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    wait_until_ready(&http, &format!("{base}/readyz"), "notifications").await;
    let pulsar = pulsar::Pulsar::builder(pulsar_url().as_str(), pulsar::TokioExecutor)
        .build()
        .await
        .expect("connect to pulsar");
    TestApp {
        base,
        http,
        db,
        namespace,
        admin_token,
        identity,
        mailpit,
        smtp_port,
        pulsar,
        shutdown,
        handle: Some(handle),
    }
}

/// An order change as orders publishes it: one line of two units at 12.90 EUR.
pub fn order_changed(order: Uuid, customer: Uuid, status: OrderStatus) -> CloudEvent<OrderChanged> {
    CloudEvent::new(
        "/comptoir/orders",
        order.to_string(),
        OrderChanged {
            order_id: order,
            customer_id: customer,
            status,
            reason: None,
            lines: vec![OrderLine {
                product_id: Uuid::now_v7(),
                quantity: 2,
                unit_price_minor: 1290,
            }],
            total_minor: 2580,
            currency: "EUR".to_owned(),
            version: 1,
        },
    )
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn mailpit(&self) -> &Mailpit {
        self.mailpit.as_ref().expect("mailpit is running")
    }

    pub fn identity(&self) -> &Identity {
        self.identity.as_ref().expect("identity is running")
    }

    /// Starts Mailpit on the port the service sends to.
    pub async fn start_mailpit(&mut self) {
        self.mailpit = Some(Mailpit::start_on(self.smtp_port).await);
    }

    /// Publishes an order change on `order-events`, keyed by order id, as orders' relay does.
    pub async fn publish(&self, event: &CloudEvent<OrderChanged>) {
        comptoir_testkit::publish(
            &self.pulsar,
            &self
                .namespace
                .topic(comptoir_events::contracts::orders::ORDER_EVENTS_TOPIC),
            event,
        )
        .await;
    }

    pub fn admin(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.admin_token)
    }

    /// The deliveries of an order, through the admin route.
    pub async fn deliveries(&self, order: Uuid) -> Vec<Delivery> {
        let response = self
            .admin(&format!("/v1/admin/deliveries?order_id={order}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        serde_json::from_value(body["items"].clone()).expect("deliveries")
    }

    /// A new customer's order confirmed, then its delivery once three attempts to send it
    /// have failed: the order id and that delivery.
    pub async fn confirmed_order_failing_thrice(
        &self,
        email: &str,
        name: &str,
    ) -> (Uuid, Delivery) {
        let customer = self.identity().register(email, name).await;
        let order = Uuid::now_v7();
        self.publish(&order_changed(order, customer, OrderStatus::Confirmed))
            .await;
        let retried = self
            .wait_delivery(order, "three failed attempts", |d| d.attempts >= 3)
            .await;
        (order, retried)
    }

    /// Waits until the order has a delivery matching `check`, and returns it.
    pub async fn wait_delivery(
        &self,
        order: Uuid,
        what: &str,
        check: impl Fn(&Delivery) -> bool,
    ) -> Delivery {
        wait_for(what, Duration::from_secs(30), || async {
            self.deliveries(order).await.into_iter().find(|d| check(d))
        })
        .await
        .expect(what)
    }

    /// Events of the order-events subscription recorded in the inbox.
    pub async fn inbox_count(&self) -> i64 {
        self.db
            .admin()
            .await
            .expect("admin")
            .query_one(
                "SELECT count(*) FROM inbox WHERE subscription = 'notifications-order-events'",
                &[],
            )
            .await
            .expect("count")
            .get(0)
    }

    /// Waits until `count` order events have been handled.
    pub async fn wait_inbox(&self, count: i64) {
        wait_for(
            &format!("{count} order events handled"),
            Duration::from_secs(30),
            || async { (self.inbox_count().await >= count).then_some(()) },
        )
        .await
        .expect("events handled");
    }

    /// Every row of every table of the service's database, as text: what a PII scan reads.
    pub async fn database_dump(&self) -> String {
        let admin = self.db.admin().await.expect("admin");
        let mut dump = String::new();
        for table in ["deliveries", "outbox", "inbox"] {
            let rows = admin
                .query(
                    &format!("SELECT coalesce(json_agg(t)::text, '') FROM {table} t"),
                    &[],
                )
                .await
                .expect("dump");
            let text: String = rows[0].get(0);
            dump.push_str(&text);
            dump.push('\n');
        }
        dump
    }

    /// The value of a counter on `/metrics`, summed over its labels.
    pub async fn counter(&self, name: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Cancels the app and waits for it to finish draining.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
