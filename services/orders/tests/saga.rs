//! The checkout saga end to end at the service level: orders with the real inventory and
//! payments, on the real PostgreSQL and Pulsar. Each test asserts from the participants'
//! databases, not only from what orders says.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::commerce::{Commerce, available, start_inventory};
use uuid::Uuid;

fn order_id(order: &Value) -> Uuid {
    order["id"].as_str().expect("id").parse().expect("uuid")
}

/// The history of every confirmed order, whichever of its two first legs answered first.
const CONFIRMED_HISTORY: [&str; 5] = [
    "pending",
    "stock-reserved",
    "payment-authorised",
    "stock-committed",
    "confirmed",
];

fn statuses(order: &Value) -> Vec<String> {
    order["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().expect("status").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_order_is_confirmed_with_its_stock_sold_and_one_capture() {
    let shop = Commerce::start(10).await;
    let app = &shop.orders;
    let shopper = Uuid::now_v7();
    let coffee = shop.product(1290).await;
    app.put_line(shopper, coffee.product_id, 3).await;
    // The KPI gauges: one active cart, then the order in flight instead.
    app.wait_metric("orders_active_carts", 1.0).await;
    let response = app.checkout(shopper, "buy-1", "tok_success").await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = order_id(&response.json().await.expect("json"));

    let order = app.wait_status(shopper, id, "confirmed").await;
    assert_eq!(statuses(&order), CONFIRMED_HISTORY);
    assert_eq!(order["total_minor"], 3870);
    // Sold: out of the stock, nothing left reserved.
    assert_eq!(shop.stock(coffee.product_id).await, (7, 0));
    // One authorisation, one capture, at the (simulated) provider.
    assert_eq!(shop.provider_calls(id, "authorise").await, 1);
    assert_eq!(shop.provider_calls(id, "capture").await, 1);
    assert_eq!(shop.provider_calls(id, "void").await, 0);

    // A refund goes through payments.
    let response = app.post(shopper, &format!("/v1/orders/{id}/refund")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.wait_status(shopper, id, "refunded").await;
    assert_eq!(shop.provider_calls(id, "refund").await, 1);

    // The business KPIs: one checkout, one saga finished confirmed (the refund is not a
    // second end), its amount captured then refunded, nothing left in flight, the cart gone.
    app.wait_metric("orders_checkouts_total", 1.0).await;
    app.wait_metric(
        r#"orders_saga_finished_total{status="confirmed",reason="none"}"#,
        1.0,
    )
    .await;
    app.wait_metric(r#"orders_revenue_minor_total{currency="EUR"}"#, 3870.0)
        .await;
    app.wait_metric(r#"orders_refunded_minor_total{currency="EUR"}"#, 3870.0)
        .await;
    for step in [
        "pending",
        "stock-reserved",
        "payment-authorised",
        "stock-committed",
        "refund-requested",
    ] {
        app.wait_metric(&format!(r#"orders_in_flight{{status="{step}"}}"#), 0.0)
            .await;
    }
    app.wait_metric("orders_active_carts", 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_cancels_the_order_and_releases_the_stock() {
    let shop = Commerce::start(10).await;
    let app = &shop.orders;
    let shopper = Uuid::now_v7();
    let coffee = shop.product(800).await;
    let id = app.buy(shopper, coffee.product_id, 4, "tok_decline").await;
    let order = app.wait_status(shopper, id, "cancelled").await;
    assert_eq!(order["reason"], "card-declined");
    let inventory = shop.inventory.as_ref().expect("inventory");
    available(inventory, coffee.product_id, |a| a == 10).await;
    assert_eq!(shop.stock(coffee.product_id).await, (10, 0));
    assert_eq!(shop.provider_calls(id, "capture").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_times_out_is_compensated() {
    // `tok_timeout` never answers the authorisation, whatever the timeout; the void that
    // follows is an ordinary call under the same timeout, so the timeout is kept well above
    // what a loaded CI machine needs for it (300 ms was not: the void timed out too, and was
    // rightly left to the provider's expiry).
    let shop = Commerce::start_with(10, true, |_| {}, |p| p.provider_timeout_ms = 2_000).await;
    let app = &shop.orders;
    let shopper = Uuid::now_v7();
    let coffee = shop.product(800).await;
    let id = app.buy(shopper, coffee.product_id, 2, "tok_timeout").await;
    let order = app.wait_status(shopper, id, "cancelled").await;
    assert_eq!(order["reason"], "provider-timeout");
    let inventory = shop.inventory.as_ref().expect("inventory");
    available(inventory, coffee.product_id, |a| a == 10).await;
    // Whatever the provider may have done, payments voided it.
    assert_eq!(shop.provider_calls(id, "void").await, 1);
    assert_eq!(shop.provider_calls(id, "capture").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_stock_is_refused_and_nothing_is_charged() {
    let shop = Commerce::start(2).await;
    let app = &shop.orders;
    let shopper = Uuid::now_v7();
    let coffee = shop.product(800).await;
    let id = app.buy(shopper, coffee.product_id, 3, "tok_success").await;
    let order = app.wait_status(shopper, id, "cancelled").await;
    assert_eq!(order["reason"], "out-of-stock");
    assert_eq!(shop.stock(coffee.product_id).await, (2, 0));
    // The authorisation ran alongside the reservation; the refusal voided it. Never captured.
    assert_eq!(shop.provider_calls(id, "authorise").await, 1);
    shop.wait_provider_calls(id, "void", 1).await;
    assert_eq!(shop.provider_calls(id, "capture").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_shoppers_racing_for_the_last_units_buy_exactly_the_stock() {
    const STOCK: i64 = 3;
    const SHOPPERS: usize = 10;
    let shop = Commerce::start(STOCK).await;
    let app = &shop.orders;
    let coffee = shop.product(1000).await;
    let shoppers: Vec<Uuid> = (0..SHOPPERS).map(|_| Uuid::now_v7()).collect();
    for shopper in &shoppers {
        assert_eq!(
            app.put_line(*shopper, coffee.product_id, 1).await.status(),
            StatusCode::OK
        );
    }
    let placed = futures::future::join_all(
        shoppers
            .iter()
            .map(|shopper| app.checkout(*shopper, "race", "tok_success")),
    )
    .await;
    let mut orders = Vec::new();
    for (shopper, response) in shoppers.iter().zip(placed) {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        orders.push((*shopper, order_id(&response.json().await.expect("json"))));
    }
    let mut confirmed = 0;
    let mut cancelled = 0;
    for (shopper, id) in orders {
        let order = app
            .wait_status_in(shopper, id, &["confirmed", "cancelled"])
            .await;
        match order["status"].as_str() {
            Some("confirmed") => confirmed += 1,
            _ => {
                assert_eq!(order["reason"], "out-of-stock");
                cancelled += 1;
            }
        }
    }
    assert_eq!(confirmed, STOCK);
    assert_eq!(cancelled, SHOPPERS as i64 - STOCK);
    assert_eq!(shop.stock(coffee.product_id).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_waits_for_inventory_to_come_back_and_then_completes() {
    // Inventory is down at checkout time: the order is accepted and waits, it does not fail.
    let mut shop = Commerce::start_with(5, false, |_| {}, |_| {}).await;
    let coffee = shop.product(700).await;
    let shopper = Uuid::now_v7();
    let id = shop
        .orders
        .buy(shopper, coffee.product_id, 1, "tok_success")
        .await;
    // The reserve command has left orders (its outbox is empty) and nobody answered.
    let admin = shop.orders.db.admin().await.expect("admin");
    comptoir_testkit::wait_for("the outbox to drain", Duration::from_secs(30), || {
        let admin = &admin;
        async move {
            let left: i64 = admin
                .query_one("SELECT count(*) FROM outbox", &[])
                .await
                .ok()?
                .get(0);
            (left == 0).then_some(())
        }
    })
    .await
    .expect("drained");
    let order: Value = shop
        .orders
        .get(shopper, &format!("/v1/orders/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(order["status"], "pending");
    // Meanwhile payments authorised the card (the two legs run at once): remembered, the
    // order still pending, its version (what a waiting read watches) unchanged.
    shop.wait_provider_calls(id, "authorise", 1).await;
    comptoir_testkit::wait_for(
        "the authorisation to reach orders",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            async move {
                let row = admin
                .query_one(
                    "SELECT payment_authorised, status, version FROM orders WHERE order_id = $1",
                    &[&id],
                )
                .await
                .ok()?;
                row.get::<_, bool>(0)
                    .then(|| (row.get::<_, String>(1), row.get::<_, i64>(2)))
            }
        },
    )
    .await
    .map(|(status, version)| {
        assert_eq!(status, "pending");
        assert_eq!(version, 1);
    })
    .expect("authorised");

    // Inventory starts; it learns the product from the catalog's retained events, then
    // answers the waiting command, and the saga completes: both first steps recorded, in order.
    shop.inventory =
        Some(start_inventory(shop.inventory_db.clone(), &shop.orders.namespace, 5).await);
    let order = shop.orders.wait_status(shopper, id, "confirmed").await;
    assert_eq!(statuses(&order), CONFIRMED_HISTORY);
    assert_eq!(shop.stock(coffee.product_id).await, (4, 0));
    assert_eq!(shop.provider_calls(id, "authorise").await, 1);
    assert_eq!(shop.provider_calls(id, "capture").await, 1);
}
