//! `spawn_app()`: orders on port 0 with a fresh database and a fresh Pulsar namespace (used as
//! every namespace orders reads from), driven like a client would.
//!
//! Access tokens come from [`Keys`] (`comptoir_testkit::jwks`), a JWKS endpoint serving a key
//! generated in the test: it stands in for identity's `/.well-known/jwks.json`, so these tests can
//! act as any customer. The end-to-end tests (`tests/e2e`) sign in through the real identity.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

pub mod commerce;

use std::sync::Arc;
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::catalog::{PRODUCT_EVENTS_TOPIC, ProductChange, ProductChanged};
use comptoir_orders::Settings;
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::assert_problem;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use comptoir_testkit::jwks::Keys;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub namespace: Arc<TestNamespace>,
    pub keys: Arc<Keys>,
    pub pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDatabase::create("orders_test")
        .await
        .expect("test database");
    let namespace = TestNamespace::create().await.expect("test namespace");
    let keys = Keys::start().await;
    spawn_on(Arc::new(db), Arc::new(namespace), Arc::new(keys), customise).await
}

/// The settings orders gets in these tests: `namespace` stands for every namespace.
pub fn settings_for(db: &TestDatabase, namespace: &TestNamespace, keys: &Keys) -> Settings {
    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.catalog_namespace = namespace.name.clone();
    settings.inventory_namespace = namespace.name.clone();
    settings.payments_namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.auth.url = keys.url.clone();
    settings.http.shutdown_grace_ms = 5_000;
    settings.saga.sweep_interval_ms = 100;
    settings.kpis.interval_ms = 100;
    settings
}

/// Orders on an existing database and namespace (a restart, or a second replica).
pub async fn spawn_on(
    db: Arc<TestDatabase>,
    namespace: Arc<TestNamespace>,
    keys: Arc<Keys>,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = settings_for(&db, &namespace, &keys);
    customise(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_orders::run(listener, settings, shutdown.clone()));
    let http = reqwest::Client::new();
    wait_for("orders to be ready", Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move {
            let ready = http.get(&url).send().await.ok()?.status() == StatusCode::OK;
            ready.then_some(())
        }
    })
    .await
    .expect("orders ready");
    let pulsar = comptoir_events::pulsar::connect(&comptoir_events::pulsar::PulsarSettings {
        url: pulsar_url(),
        namespace: namespace.name.clone(),
        ..Default::default()
    })
    .await
    .expect("pulsar");
    TestApp {
        base,
        http,
        db,
        namespace,
        keys,
        pulsar,
        shutdown,
        handle: Some(handle),
    }
}

/// A product of the demo kind, 12.90 EUR unless told otherwise.
pub fn product(price_cents: i64) -> ProductChanged {
    ProductChanged {
        product_id: Uuid::now_v7(),
        change: ProductChange::Created,
        version: 1,
        sku: format!("SKU-{}", comptoir_testkit::unique_suffix()),
        name: "Kenya AA, whole beans, 250 g".to_owned(),
        category_id: None,
        price_cents,
        currency: "EUR".to_owned(),
        active: true,
    }
}

impl TestApp {
    /// Publishes a catalog product event and waits until orders' projection holds it.
    pub async fn catalog_says(&self, product: &ProductChanged) {
        let event = CloudEvent::new(
            "/comptoir/catalog",
            product.product_id.to_string(),
            product.clone(),
        );
        comptoir_testkit::publish(
            &self.pulsar,
            &self.namespace.topic(PRODUCT_EVENTS_TOPIC),
            &event,
        )
        .await;
        let admin = self.db.admin().await.expect("admin");
        wait_for("the product projection", Duration::from_secs(30), || {
            let admin = &admin;
            async move {
                let row = admin
                    .query_opt(
                        "SELECT version FROM products WHERE product_id = $1",
                        &[&product.product_id],
                    )
                    .await
                    .ok()??;
                (row.get::<_, i64>(0) >= product.version).then_some(())
            }
        })
        .await
        .expect("projection");
    }

    pub fn token(&self, customer: Uuid) -> String {
        self.keys.token(customer)
    }

    /// The value of the sample `series` (name and labels exactly as `/metrics` writes
    /// them), once `/metrics` shows it equal to `expected`; panics with the last value after
    /// the deadline.
    pub async fn wait_metric(&self, series: &str, expected: f64) {
        let what = format!("{series} = {expected}");
        let last = std::sync::Mutex::new(None::<f64>);
        let found = wait_for(&what, Duration::from_secs(30), || async {
            let text = self
                .http
                .get(format!("{}/metrics", self.base))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let value = text.lines().find_map(|line| {
                let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
                rest.trim().parse::<f64>().ok()
            });
            *last.lock().expect("lock") = value;
            (value == Some(expected)).then_some(())
        })
        .await;
        if let Err(error) = found {
            panic!("{error}; last seen: {:?}", last.lock().expect("lock"));
        }
    }

    pub async fn put_line(&self, customer: Uuid, product: Uuid, quantity: i64) -> Response {
        self.http
            .put(format!("{}/v1/cart/lines/{product}", self.base))
            .bearer_auth(self.token(customer))
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, customer: Uuid, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.token(customer))
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, customer: Uuid, path: &str) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token(customer))
            .send()
            .await
            .expect("request")
    }

    pub async fn checkout(&self, customer: Uuid, key: &str, token: &str) -> Response {
        self.http
            .post(format!("{}/v1/orders", self.base))
            .bearer_auth(self.token(customer))
            .header("idempotency-key", key)
            .json(&json!({ "payment_token": token }))
            .send()
            .await
            .expect("request")
    }

    /// Puts `quantity` of `product` in the cart and checks out with `card` and a fresh key:
    /// the order id (accepted, its saga started).
    pub async fn buy(&self, customer: Uuid, product: Uuid, quantity: i64, card: &str) -> Uuid {
        let response = self.put_line(customer, product, quantity).await;
        assert_eq!(response.status(), StatusCode::OK, "cart line");
        let response = self
            .checkout(customer, &Uuid::new_v4().to_string(), card)
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED, "checkout");
        let order: Value = response.json().await.expect("json");
        order["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// Waits until the customer's order has `status`, and returns it.
    pub async fn wait_status(&self, customer: Uuid, order: Uuid, status: &str) -> Value {
        self.wait_status_in(customer, order, &[status]).await
    }

    /// Waits until the customer's order has one of `statuses`, and returns it.
    pub async fn wait_status_in(&self, customer: Uuid, order: Uuid, statuses: &[&str]) -> Value {
        let path = format!("/v1/orders/{order}");
        let what = format!("order {order} to be {}", statuses.join(" or "));
        let found = wait_for(&what, Duration::from_secs(60), || {
            let path = path.clone();
            async move {
                let body: Value = self.get(customer, &path).await.json().await.ok()?;
                let status = body["status"].as_str()?;
                statuses.contains(&status).then_some(body)
            }
        })
        .await;
        match found {
            Ok(body) => body,
            Err(error) => {
                let last: Value = self
                    .get(customer, &path)
                    .await
                    .json()
                    .await
                    .unwrap_or_default();
                panic!("{error}; last seen: {last}")
            }
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("orders stopped cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The next event on a test subscription (within 30 s) and its message's key.
pub async fn next_event<T: serde::de::DeserializeOwned>(
    subscription: &mut pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor>,
) -> (CloudEvent<T>, Option<String>) {
    use futures::StreamExt as _;
    let message = tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("an event within 30 s")
        .expect("stream")
        .expect("message");
    let event = serde_json::from_slice(&message.payload.data).expect("the event's JSON");
    (event, message.key())
}
