//! `kill -9` of the orders binary in the middle of a saga: after a restart the order completes
//! exactly once (one reservation, one authorisation, one capture). The saga's state is the
//! order row; the reply that arrived while orders was dead waits in the broker.

mod support;

use std::sync::Arc;
use std::time::Duration;

use comptoir_testkit::{ServiceProcess, TestDatabase, TestNamespace, wait_for};
use serde_json::Value;
use support::commerce::{Participant, start_inventory, start_payments};
use support::{Keys, TestApp};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn start_orders(db: &TestDatabase, namespace: &TestNamespace, keys: &Keys) -> ServiceProcess {
    let (mut command, port) = ServiceProcess::command(
        env!("CARGO_BIN_EXE_comptoir-orders"),
        "orders",
        db,
        &namespace.name,
    );
    for key in [
        "CATALOG_NAMESPACE",
        "INVENTORY_NAMESPACE",
        "PAYMENTS_NAMESPACE",
        "GDPR_REQUESTS_NAMESPACE",
    ] {
        command.env(format!("COMPTOIR_ORDERS__{key}"), &namespace.name);
    }
    command.env("COMPTOIR_ORDERS__AUTH__URL", &keys.url);
    ServiceProcess::start(command, port)
        .await
        .expect("orders binary")
}

async fn status_in_db(db: &TestDatabase, order: Uuid) -> Option<String> {
    db.admin()
        .await
        .ok()?
        .query_opt("SELECT status FROM orders WHERE order_id = $1", &[&order])
        .await
        .ok()?
        .map(|row| row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_mid_saga_completes_the_order_exactly_once_after_restart() {
    let namespace = Arc::new(TestNamespace::create().await.expect("namespace"));
    let orders_db = Arc::new(TestDatabase::create("orders_crash").await.expect("db"));
    let inventory_db = Arc::new(TestDatabase::create("inventory_crash").await.expect("db"));
    let payments_db = Arc::new(TestDatabase::create("payments_crash").await.expect("db"));
    let keys = Arc::new(Keys::start().await);
    let _inventory: Participant = start_inventory(inventory_db.clone(), &namespace, 10).await;
    // A slow provider: the authorisation is in flight when orders dies.
    let _payments: Participant = start_payments(payments_db.clone(), &namespace, |p| {
        p.simulated_provider.latency_ms = 1_500;
        p.provider_timeout_ms = 10_000;
    })
    .await;

    let process = start_orders(&orders_db, &namespace, &keys).await;
    let pulsar = comptoir_events::pulsar::connect(&comptoir_events::pulsar::PulsarSettings {
        url: comptoir_testkit::pulsar_url(),
        namespace: namespace.name.clone(),
        ..Default::default()
    })
    .await
    .expect("pulsar");
    let client = |base: String| TestApp {
        base,
        http: reqwest::Client::new(),
        db: orders_db.clone(),
        namespace: namespace.clone(),
        keys: keys.clone(),
        pulsar: pulsar.clone(),
        shutdown: CancellationToken::new(),
        handle: None,
    };
    let app = client(process.base.clone());
    let coffee = support::product(1200);
    app.catalog_says(&coffee).await;
    let inventory_admin = inventory_db.admin().await.expect("admin");
    wait_for(
        "inventory to stock the product",
        Duration::from_secs(30),
        || {
            let admin = &inventory_admin;
            async move {
                admin
                    .query_opt(
                        "SELECT 1 FROM stock WHERE product_id = $1",
                        &[&coffee.product_id],
                    )
                    .await
                    .ok()?
                    .map(drop)
            }
        },
    )
    .await
    .expect("stocked");

    let shopper = Uuid::now_v7();
    app.put_line(shopper, coffee.product_id, 2).await;
    let order: Value = app
        .checkout(shopper, "crash", "tok_success")
        .await
        .json()
        .await
        .expect("json");
    let id: Uuid = order["id"].as_str().expect("id").parse().expect("uuid");

    // Stock reserved, authorisation asked for and not yet answered: kill -9.
    wait_for(
        "the stock to be reserved",
        Duration::from_secs(30),
        || async {
            (status_in_db(&orders_db, id).await.as_deref() == Some("stock-reserved")).then_some(())
        },
    )
    .await
    .expect("reserved");
    // ...and the authorise command published (it leaves orders' outbox within milliseconds;
    // killed before that, orders would only send it once restarted).
    wait_for(
        "the authorise command to leave the outbox",
        Duration::from_secs(30),
        || async {
            let left: i64 = orders_db
                .admin()
                .await
                .ok()?
                .query_one("SELECT count(*) FROM outbox", &[])
                .await
                .ok()?
                .get(0);
            (left == 0).then_some(())
        },
    )
    .await
    .expect("published");
    process.kill();

    // The authorisation completes while orders is dead; its reply waits in the broker.
    let payments_admin = payments_db.admin().await.expect("admin");
    wait_for("the authorisation", Duration::from_secs(30), || {
        let admin = &payments_admin;
        async move {
            let status: String = admin
                .query_opt("SELECT status FROM payments WHERE order_id = $1", &[&id])
                .await
                .ok()??
                .get(0);
            (status == "authorised").then_some(())
        }
    })
    .await
    .expect("authorised");
    assert_eq!(
        status_in_db(&orders_db, id).await.as_deref(),
        Some("stock-reserved")
    );

    let restarted = start_orders(&orders_db, &namespace, &keys).await;
    let app = client(restarted.base.clone());
    let order = app.wait_status(shopper, id, "confirmed").await;
    let history: Vec<&str> = order["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().expect("status"))
        .collect();
    assert_eq!(
        history,
        [
            "pending",
            "stock-reserved",
            "payment-authorised",
            "stock-committed",
            "confirmed"
        ]
    );

    // Exactly once: one reservation (committed), one authorisation, one capture.
    let reservations: i64 = inventory_admin
        .query_one(
            "SELECT count(*) FROM reservations WHERE order_id = $1",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(reservations, 1);
    let row = inventory_admin
        .query_one(
            "SELECT on_hand, reserved FROM stock WHERE product_id = $1",
            &[&coffee.product_id],
        )
        .await
        .expect("stock");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (8, 0));
    for (action, expected) in [("authorise", 1), ("capture", 1), ("void", 0)] {
        let calls: i64 = payments_admin
            .query_one(
                "SELECT count(*) FROM simulated_provider_operations WHERE idempotency_key = $1",
                &[&format!("{id}:{action}")],
            )
            .await
            .expect("count")
            .get(0);
        assert_eq!(calls, expected, "{action}");
    }
    let captured: i64 = payments_admin
        .query_one(
            "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'captured'",
            &[&id],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(captured, 1);
}
