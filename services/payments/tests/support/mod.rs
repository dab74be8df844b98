//! `spawn_app()`: payments on port 0 with a fresh database and a fresh Pulsar namespace (used
//! for orders', identity's and payments' topics alike), driven as orders would: commands
//! produced to `payment-commands`, outcomes read from `payment-outcomes`.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::sync::Arc;
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::orders::{PAYMENT_COMMANDS_TOPIC, PaymentAction, PaymentCommand};
use comptoir_events::contracts::payments::{PAYMENT_OUTCOMES_TOPIC, PaymentOutcome};
use comptoir_payments::Settings;
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::assert_problem;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use futures::TryStreamExt;
use pulsar::{Consumer, Pulsar, TokioExecutor};
use reqwest::{Response, StatusCode};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub namespace: Arc<TestNamespace>,
    pub admin_token: String,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDatabase::create("payments_test")
        .await
        .expect("test database");
    let namespace = TestNamespace::create().await.expect("test namespace");
    spawn_with(Arc::new(db), Arc::new(namespace), customise).await
}

async fn spawn_with(
    db: Arc<TestDatabase>,
    namespace: Arc<TestNamespace>,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let admin_token = Uuid::new_v4().to_string();
    let token_file = db.scratch_dir().join("admin-token");
    std::fs::write(&token_file, &admin_token).expect("write token");

    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    // Orders' commands and identity's GDPR requests come from the same test namespace.
    settings.orders_namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.http.shutdown_grace_ms = 5_000;
    settings.simulated_provider.latency_ms = 5;
    customise(&mut settings);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_payments::run(listener, settings, shutdown.clone()));
    let http = reqwest::Client::new();
    let probe = http.clone();
    let ready_url = format!("{base}/readyz");
    wait_for("payments to be ready", Duration::from_secs(60), || {
        let probe = probe.clone();
        let url = ready_url.clone();
        async move {
            let response = probe.get(url).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        }
    })
    .await
    .expect("payments ready");
    TestApp {
        base,
        http,
        db,
        namespace,
        admin_token,
        shutdown,
        handle: Some(handle),
    }
}

/// A command as orders would send it.
pub fn command(
    order: Uuid,
    action: PaymentAction,
    amount_minor: i64,
    token: Option<&str>,
) -> PaymentCommand {
    PaymentCommand {
        order_id: order,
        action,
        amount_minor,
        currency: "EUR".to_owned(),
        payment_token: token.map(str::to_owned),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("request")
    }

    /// The admin view of an order's payment.
    pub async fn payment(&self, order: Uuid) -> serde_json::Value {
        let response = self.admin_get(&format!("/v1/admin/payments/{order}")).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    pub async fn pulsar(&self) -> Pulsar<TokioExecutor> {
        Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
            .build()
            .await
            .expect("connect to Pulsar")
    }

    /// A subscription on `payment-outcomes` (make it before sending commands).
    pub async fn outcomes(
        &self,
        pulsar: &Pulsar<TokioExecutor>,
    ) -> Consumer<Vec<u8>, TokioExecutor> {
        comptoir_testkit::subscribe(
            pulsar,
            &self.namespace.topic(PAYMENT_OUTCOMES_TOPIC),
            "payments-test-outcomes",
        )
        .await
    }

    /// Sends `command` as a new event (a fresh event id, as orders re-sending it would),
    /// keyed by order id; returns the event.
    pub async fn send(
        &self,
        pulsar: &Pulsar<TokioExecutor>,
        command: PaymentCommand,
    ) -> CloudEvent<PaymentCommand> {
        let event = CloudEvent::new("/comptoir/orders", command.order_id.to_string(), command);
        self.produce(pulsar, PAYMENT_COMMANDS_TOPIC, &event.subject, &event)
            .await;
        event
    }

    /// Produces `payload` as JSON on `topic` of the test namespace with `key`.
    pub async fn produce<T: serde::Serialize>(
        &self,
        pulsar: &Pulsar<TokioExecutor>,
        topic: &str,
        key: &str,
        payload: &T,
    ) {
        let mut producer = pulsar
            .producer()
            .with_topic(self.namespace.topic(topic))
            .build()
            .await
            .expect("producer");
        producer
            .create_message()
            .with_key(key)
            .with_content(serde_json::to_vec(payload).expect("json"))
            .send_non_blocking()
            .await
            .expect("send")
            .await
            .expect("ack");
        producer.close().await.expect("close");
    }

    /// `SELECT count(*)` of `sql` (a `FROM ... WHERE ...` tail) on the app's database.
    pub async fn count(&self, tail: &str) -> i64 {
        let admin = self.db.admin().await.expect("admin");
        admin
            .query_one(&format!("SELECT count(*) {tail}"), &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Stops the app (draining it) and starts a new one on the same database and namespace
    /// with settings changed by `customise`.
    pub async fn restart_with(mut self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
        spawn_with(Arc::clone(&self.db), Arc::clone(&self.namespace), customise).await
    }

    /// A metric's value on `/metrics`: the first line starting with `prefix`.
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.ok()?;
        text.lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The next outcome on `consumer`, acknowledged, with its message key.
pub async fn next_outcome(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> (Option<String>, CloudEvent<PaymentOutcome>) {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("an outcome within 30 s")
        .expect("stream ok")
        .expect("stream open");
    consumer.ack(&message).await.expect("ack");
    let key = message.metadata().partition_key.clone();
    let event = serde_json::from_slice(&message.payload.data).expect("a PaymentOutcome");
    (key, event)
}
