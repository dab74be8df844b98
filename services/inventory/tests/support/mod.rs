//! `spawn_app()`: inventory on port 0 with a fresh database and a fresh Pulsar namespace (used
//! for the catalog's, orders', identity's and inventory's topics alike), driven as its peers
//! would: product events and stock commands produced to their topics, outcomes read from
//! `stock-outcomes`, stock read and changed through the HTTP API.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::sync::Arc;
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::catalog::{PRODUCT_EVENTS_TOPIC, ProductChange, ProductChanged};
use comptoir_events::contracts::inventory::{STOCK_OUTCOMES_TOPIC, StockOutcome};
use comptoir_events::contracts::orders::{
    OrderLine, STOCK_COMMANDS_TOPIC, StockAction, StockCommand,
};
use comptoir_inventory::Settings;
use comptoir_inventory::domain::Stock;
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::assert_problem;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use futures::TryStreamExt;
use pulsar::{Consumer, Pulsar, TokioExecutor};
use reqwest::{Method, Response, StatusCode};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub namespace: Arc<TestNamespace>,
    pub admin_token: String,
    pub pulsar: Pulsar<TokioExecutor>,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDatabase::create("inventory_test")
        .await
        .expect("test database");
    let namespace = TestNamespace::create().await.expect("test namespace");
    spawn_on(Arc::new(db), Arc::new(namespace), customise).await
}

/// Another inventory on an existing database and namespace: a second instance, or a
/// restarted process.
pub async fn spawn_on(
    db: Arc<TestDatabase>,
    namespace: Arc<TestNamespace>,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let admin_token = Uuid::new_v4().to_string();
    let token_file = db.scratch_dir().join(format!("admin-token-{admin_token}"));
    std::fs::write(&token_file, &admin_token).expect("write token");

    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    // The catalog's events, orders' commands and identity's GDPR requests all come from the
    // same test namespace.
    settings.catalog_namespace = namespace.name.clone();
    settings.orders_namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.http.shutdown_grace_ms = 5_000;
    settings.sweep_interval_ms = 100;
    customise(&mut settings);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_inventory::run(
        listener,
        settings,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let probe = http.clone();
    let ready_url = format!("{base}/readyz");
    wait_for("inventory to be ready", Duration::from_secs(60), || {
        let probe = probe.clone();
        let url = ready_url.clone();
        async move {
            let response = probe.get(url).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        }
    })
    .await
    .expect("inventory ready");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect to Pulsar");
    TestApp {
        base,
        http,
        db,
        namespace,
        admin_token,
        pulsar,
        shutdown,
        handle: Some(handle),
    }
}

/// A reserve command's line.
pub fn line(product: Uuid, quantity: i32) -> OrderLine {
    OrderLine {
        product_id: product,
        quantity,
        unit_price_minor: 1290,
    }
}

/// A command as orders would send it.
pub fn command(order: Uuid, action: StockAction, lines: Vec<OrderLine>) -> StockCommand {
    StockCommand {
        order_id: order,
        action,
        lines,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
    }

    /// The admin view of a product's stock.
    pub async fn stock(&self, product: Uuid) -> Stock {
        let response = self
            .admin(Method::GET, &format!("/v1/admin/stock/{product}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// `PUT /v1/admin/stock/{product}` with `If-Match` when given.
    pub async fn put_stock(&self, product: Uuid, if_match: Option<&str>, on_hand: i64) -> Response {
        let mut request = self
            .admin(Method::PUT, &format!("/v1/admin/stock/{product}"))
            .json(&json!({ "on_hand": on_hand }));
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.expect("request")
    }

    /// Plays the catalog: publishes a `ProductChanged` for `product`.
    pub async fn catalog_says(&self, product: Uuid, change: ProductChange) {
        let data = ProductChanged {
            product_id: product,
            change,
            ..ProductChanged::sample()
        };
        let event = CloudEvent::new("/comptoir/catalog", product.to_string(), data);
        comptoir_testkit::publish(
            &self.pulsar,
            &self.namespace.topic(PRODUCT_EVENTS_TOPIC),
            &event,
        )
        .await;
    }

    /// Waits until inventory has a stock row for `product`.
    pub async fn known(&self, product: Uuid) -> Stock {
        wait_for("the stock row", Duration::from_secs(30), || async {
            let response = self
                .admin(Method::GET, &format!("/v1/admin/stock/{product}"))
                .send()
                .await
                .ok()?;
            if response.status() != StatusCode::OK {
                return None;
            }
            response.json::<Stock>().await.ok()
        })
        .await
        .expect("inventory knows the product")
    }

    /// A new product (announced by the catalog) with `units` on hand.
    pub async fn product(&self, units: i64) -> Uuid {
        let product = Uuid::now_v7();
        self.catalog_says(product, ProductChange::Created).await;
        let stock = self.known(product).await;
        let response = self
            .put_stock(product, Some(&format!("\"{}\"", stock.version)), units)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.text().await
        );
        product
    }

    /// A subscription on `stock-outcomes` reading from the start.
    pub async fn outcomes(&self, subscription: &str) -> Consumer<Vec<u8>, TokioExecutor> {
        comptoir_testkit::subscribe(
            &self.pulsar,
            &self.namespace.topic(STOCK_OUTCOMES_TOPIC),
            subscription,
        )
        .await
    }

    /// Sends `command` as a new event (a fresh event id, as orders re-sending it would),
    /// keyed by order id; returns the event.
    pub async fn send(&self, command: StockCommand) -> CloudEvent<StockCommand> {
        let event = CloudEvent::new("/comptoir/orders", command.order_id.to_string(), command);
        self.send_event(&event).await;
        event
    }

    /// Publishes `event` on `stock-commands` (the same event again is a redelivery).
    pub async fn send_event(&self, event: &CloudEvent<StockCommand>) {
        comptoir_testkit::publish(
            &self.pulsar,
            &self.namespace.topic(STOCK_COMMANDS_TOPIC),
            event,
        )
        .await;
    }

    /// `SELECT count(*)` of `tail` (a `FROM ... WHERE ...`) on the app's database.
    pub async fn count(&self, tail: &str) -> i64 {
        let admin = self.db.admin().await.expect("admin");
        admin
            .query_one(&format!("SELECT count(*) {tail}"), &[])
            .await
            .expect("count")
            .get(0)
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

/// The next outcome on `consumer`, acknowledged, with its message key.
pub async fn next_outcome(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> (Option<String>, CloudEvent<StockOutcome>) {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("an outcome within 30 s")
        .expect("stream ok")
        .expect("stream open");
    consumer.ack(&message).await.expect("ack");
    let key = message.metadata().partition_key.clone();
    let event = serde_json::from_slice(&message.payload.data).expect("a StockOutcome");
    (key, event)
}

/// Sends `command` and returns the next outcome, which must be about the same order.
pub async fn ask(
    app: &TestApp,
    outcomes: &mut Consumer<Vec<u8>, TokioExecutor>,
    command: StockCommand,
) -> StockOutcome {
    let order = command.order_id;
    app.send(command).await;
    let (key, event) = next_outcome(outcomes).await;
    assert_eq!(key, Some(order.to_string()));
    assert_eq!(event.subject, order.to_string());
    assert_eq!(event.data.order_id, order);
    event.data
}
