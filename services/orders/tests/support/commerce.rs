//! Orders with the real inventory and payments beside it, in this process, on one fresh
//! Pulsar namespace: the whole saga, with nothing standing in for a participant. Payments'
//! provider is its simulated one (an outside party, named as such).

use std::sync::Arc;
use std::time::Duration;

use comptoir_events::contracts::catalog::ProductChanged;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for, write_secret};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Keys, TestApp, spawn_on};

/// A participant service running in this process.
pub struct Participant {
    pub base: String,
    pub db: Arc<TestDatabase>,
    pub admin_token: String,
    stop: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Participant {
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("join").expect("stopped cleanly");
        }
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn ready(base: &str) {
    let http = reqwest::Client::new();
    wait_for(&format!("{base} to be ready"), Duration::from_secs(60), || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move { (http.get(&url).send().await.ok()?.status() == StatusCode::OK).then_some(()) }
    })
    .await
    .expect("ready");
}

async fn listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, base)
}

fn admin_token(db: &TestDatabase) -> (String, std::path::PathBuf) {
    let token = format!("admin-{}", uuid::Uuid::new_v4().simple());
    let file = db.scratch_dir().join("admin-token");
    write_secret(&file, token.as_bytes());
    (token, file)
}

/// Inventory on `namespace`, every new product stocked with `stock` units.
pub async fn start_inventory(
    db: Arc<TestDatabase>,
    namespace: &TestNamespace,
    stock: i64,
) -> Participant {
    let (token, token_file) = admin_token(&db);
    let mut settings = comptoir_inventory::Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.catalog_namespace = namespace.name.clone();
    settings.orders_namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.demo_stock_per_product = Some(stock);
    settings.http.shutdown_grace_ms = 5_000;
    let (listener, base) = listener().await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(comptoir_inventory::run(listener, settings, stop.clone()));
    ready(&base).await;
    Participant {
        base,
        db,
        admin_token: token,
        stop,
        task: Some(task),
    }
}

/// Payments on `namespace`, its simulated provider answering after `latency_ms`.
pub async fn start_payments(
    db: Arc<TestDatabase>,
    namespace: &TestNamespace,
    customise: impl FnOnce(&mut comptoir_payments::Settings),
) -> Participant {
    let (token, token_file) = admin_token(&db);
    let mut settings = comptoir_payments::Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.orders_namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.simulated_provider.latency_ms = 5;
    settings.provider_timeout_ms = 1_000;
    settings.http.shutdown_grace_ms = 5_000;
    customise(&mut settings);
    let (listener, base) = listener().await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(comptoir_payments::run(listener, settings, stop.clone()));
    ready(&base).await;
    Participant {
        base,
        db,
        admin_token: token,
        stop,
        task: Some(task),
    }
}

/// Orders, inventory and payments on one namespace.
pub struct Commerce {
    pub orders: TestApp,
    pub inventory: Option<Participant>,
    pub payments: Option<Participant>,
    pub inventory_db: Arc<TestDatabase>,
    pub payments_db: Arc<TestDatabase>,
}

impl Commerce {
    /// Everything up, `stock` units of each product.
    pub async fn start(stock: i64) -> Self {
        Self::start_with(stock, true, |_| {}, |_| {}).await
    }

    pub async fn start_with(
        stock: i64,
        with_inventory: bool,
        orders: impl FnOnce(&mut comptoir_orders::Settings),
        payments: impl FnOnce(&mut comptoir_payments::Settings),
    ) -> Self {
        let namespace = Arc::new(TestNamespace::create().await.expect("namespace"));
        let orders_db = Arc::new(TestDatabase::create("orders_saga").await.expect("db"));
        let inventory_db = Arc::new(TestDatabase::create("inventory_saga").await.expect("db"));
        let payments_db = Arc::new(TestDatabase::create("payments_saga").await.expect("db"));
        let keys = Arc::new(Keys::start().await);
        let inventory = if with_inventory {
            Some(start_inventory(Arc::clone(&inventory_db), &namespace, stock).await)
        } else {
            None
        };
        let payments = Some(start_payments(Arc::clone(&payments_db), &namespace, payments).await);
        let orders = spawn_on(orders_db, namespace, keys, orders).await;
        Self {
            orders,
            inventory,
            payments,
            inventory_db,
            payments_db,
        }
    }

    /// A new product, known to orders (priced) and to inventory (stocked) when it runs.
    pub async fn product(&self, price_cents: i64) -> ProductChanged {
        let product = super::product(price_cents);
        self.orders.catalog_says(&product).await;
        if let Some(inventory) = &self.inventory {
            available(inventory, product.product_id, |_| true).await;
        }
        product
    }

    /// Inventory's view of a product's stock: `(on_hand, reserved)`.
    pub async fn stock(&self, product: uuid::Uuid) -> (i64, i64) {
        let admin = self.inventory_db.admin().await.expect("admin");
        let row = admin
            .query_one(
                "SELECT on_hand, reserved FROM stock WHERE product_id = $1",
                &[&product],
            )
            .await
            .expect("stock row");
        (row.get(0), row.get(1))
    }

    /// How many calls of `action` the simulated provider received for `order` (its own
    /// memory of idempotency keys: one row per distinct call).
    pub async fn provider_calls(&self, order: uuid::Uuid, action: &str) -> i64 {
        let admin = self.payments_db.admin().await.expect("admin");
        admin
            .query_one(
                "SELECT count(*) FROM simulated_provider_operations WHERE idempotency_key = $1",
                &[&format!("{order}:{action}")],
            )
            .await
            .expect("count")
            .get(0)
    }

    /// Waits until the simulated provider received `calls` calls of `action` for `order`.
    pub async fn wait_provider_calls(&self, order: uuid::Uuid, action: &str, calls: i64) {
        wait_for(
            &format!("{calls} {action} call(s) at the provider"),
            Duration::from_secs(60),
            || async { (self.provider_calls(order, action).await == calls).then_some(()) },
        )
        .await
        .expect("provider calls");
    }
}

/// Waits until inventory's public availability of `product` satisfies `wanted`.
pub async fn available(
    inventory: &Participant,
    product: uuid::Uuid,
    wanted: impl Fn(i64) -> bool,
) -> i64 {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/stock/{product}", inventory.base);
    wait_for("inventory's availability", Duration::from_secs(60), || {
        let http = http.clone();
        let url = url.clone();
        let wanted = &wanted;
        async move {
            let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let available = body["available"].as_i64()?;
            wanted(available).then_some(available)
        }
    })
    .await
    .expect("availability")
}
