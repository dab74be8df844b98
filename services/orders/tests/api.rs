//! Carts and checkout through the HTTP API, on the real PostgreSQL and Pulsar. Inventory and
//! payments are not running here, so orders stay where the saga's first step leaves them;
//! `tests/saga.rs` runs the whole saga with them.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::inventory::{STOCK_OUTCOMES_TOPIC, StockOutcome, StockResult};
use comptoir_events::contracts::orders::{
    PAYMENT_COMMANDS_TOPIC, PaymentAction, PaymentCommand, STOCK_COMMANDS_TOPIC, StockAction,
    StockCommand,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{assert_problem, next_event, product, spawn_app, spawn_app_with};
use uuid::Uuid;

/// The card token orders holds for an order (none since migration V4).
async fn stored_token(admin: &tokio_postgres::Client, order: Uuid) -> Option<String> {
    admin
        .query_one(
            "SELECT payment_token FROM orders WHERE order_id = $1",
            &[&order],
        )
        .await
        .expect("row")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_is_priced_at_current_prices_and_shows_a_change() {
    let app = spawn_app().await;
    let shopper = Uuid::now_v7();
    let mut coffee = product(1290);
    app.catalog_says(&coffee).await;

    let response = app.put_line(shopper, coffee.product_id, 2).await;
    assert_eq!(response.status(), StatusCode::OK);
    let cart: Value = response.json().await.expect("json");
    assert_eq!(cart["total_minor"], 2580);
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(cart["lines"][0]["price_changed"], false);

    // The catalog raises the price: the cart shows it, against the price when added.
    coffee.version = 2;
    coffee.price_cents = 1490;
    coffee.change = comptoir_events::contracts::catalog::ProductChange::Updated;
    app.catalog_says(&coffee).await;
    let cart: Value = app
        .get(shopper, "/v1/cart")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cart["lines"][0]["unit_price_minor"], 1490);
    assert_eq!(cart["lines"][0]["added_price_minor"], 1290);
    assert_eq!(cart["lines"][0]["price_changed"], true);
    assert_eq!(cart["total_minor"], 2980);

    // An older event arriving late changes nothing.
    let mut stale = coffee.clone();
    stale.version = 1;
    stale.price_cents = 1;
    let event = CloudEvent::new("/comptoir/catalog", stale.product_id.to_string(), stale);
    comptoir_testkit::publish(&app.pulsar, &app.namespace.topic("product-events"), &event).await;
    let mut newer = coffee.clone();
    newer.version = 3;
    app.catalog_says(&newer).await;
    let cart: Value = app
        .get(shopper, "/v1/cart")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cart["lines"][0]["unit_price_minor"], 1490);

    // Another shopper's cart is their own.
    let other: Value = app
        .get(Uuid::now_v7(), "/v1/cart")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(other["lines"], json!([]));

    let response = app
        .http
        .delete(format!("{}/v1/cart/lines/{}", app.base, coffee.product_id))
        .bearer_auth(app.token(shopper))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cart: Value = app
        .get(shopper, "/v1/cart")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cart["lines"], json!([]));
    assert_eq!(cart["total_minor"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cart_requests_get_problems_not_errors() {
    let app = spawn_app().await;
    let shopper = Uuid::now_v7();
    let coffee = product(1290);
    app.catalog_says(&coffee).await;

    for quantity in [0, -3, 100, 1_000_000_000_000] {
        let response = app.put_line(shopper, coffee.product_id, quantity).await;
        let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(body["errors"][0]["field"], "quantity", "{quantity}");
    }
    let response = app.put_line(shopper, Uuid::now_v7(), 1).await;
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "product_id");

    let response = app
        .http
        .put(format!("{}/v1/cart/lines/{}", app.base, coffee.product_id))
        .bearer_auth(app.token(shopper))
        .header("content-type", "application/json")
        .body("{\"quantity\": ")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;

    let response = app
        .http
        .put(format!("{}/v1/cart/lines/not-a-uuid", app.base))
        .bearer_auth(app.token(shopper))
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;

    let response = app
        .http
        .get(format!("{}/v1/cart", app.base))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .http
        .get(format!("{}/v1/cart", app.base))
        .bearer_auth("not.a.token")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    let response = app
        .http
        .delete(format!("{}/v1/cart/lines/{}", app.base, coffee.product_id))
        .bearer_auth(app.token(shopper))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_places_one_order_per_idempotency_key_and_starts_the_saga() {
    let app = spawn_app().await;
    let shopper = Uuid::now_v7();
    let coffee = product(1290);
    app.catalog_says(&coffee).await;
    let mut commands = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(STOCK_COMMANDS_TOPIC),
        "test-stock-commands",
    )
    .await;
    let mut payment_commands = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(PAYMENT_COMMANDS_TOPIC),
        "test-payment-commands",
    )
    .await;

    // Without a key, or with an empty cart: refused, nothing placed.
    let response = app
        .http
        .post(format!("{}/v1/orders", app.base))
        .bearer_auth(app.token(shopper))
        .json(&json!({ "payment_token": "tok_success" }))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let response = app.checkout(shopper, "first", "tok_success").await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    // A cart of free products only: nothing to pay, refused (the database would refuse an
    // order of 0; a 500 before this check).
    let sample = product(0);
    app.catalog_says(&sample).await;
    assert_eq!(
        app.put_line(shopper, sample.product_id, 1).await.status(),
        StatusCode::OK
    );
    let response = app.checkout(shopper, "free", "tok_success").await;
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["type"]
            .as_str()
            .expect("type")
            .ends_with("nothing-to-pay")
    );
    let removed = app
        .http
        .delete(format!("{}/v1/cart/lines/{}", app.base, sample.product_id))
        .bearer_auth(app.token(shopper))
        .send()
        .await
        .expect("request");
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    // A card number is not a token.
    assert_eq!(
        app.put_line(shopper, coffee.product_id, 3).await.status(),
        StatusCode::OK
    );
    let response = app.checkout(shopper, "first", "4111 1111 1111 1111").await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;

    // The same key (and body) several times at once: one order, the same answer to all.
    let answers =
        futures::future::join_all((0..6).map(|_| app.checkout(shopper, "first", "tok_success")))
            .await;
    let mut ids = Vec::new();
    for response in answers {
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let order: Value = response.json().await.expect("json");
        assert_eq!(
            location,
            format!("/v1/orders/{}", order["id"].as_str().expect("id"))
        );
        ids.push(order["id"].as_str().expect("id").to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");
    let order_id: Uuid = ids[0].parse().expect("uuid");
    let admin = app.db.admin().await.expect("admin");
    let count: i64 = admin
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, 1);

    // The cart was emptied into the order; a retry later still answers the same order.
    let cart: Value = app
        .get(shopper, "/v1/cart")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cart["lines"], json!([]));
    let retry = app.checkout(shopper, "first", "tok_success").await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let order: Value = retry.json().await.expect("json");
    assert_eq!(order["id"], ids[0].as_str());
    assert_eq!(order["status"], "pending");
    assert_eq!(order["total_minor"], 3870);
    // The same key with another body is refused.
    let response = app.checkout(shopper, "first", "tok_decline").await;
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(
        body["type"]
            .as_str()
            .expect("type")
            .ends_with("idempotency-key-reused")
    );

    // The saga's first commands left through the outbox together: reserve exactly these lines,
    // and authorise their total on the shopper's card token, which orders itself never stored.
    let (command, key) = next_event::<StockCommand>(&mut commands).await;
    assert_eq!(command.data.order_id, order_id);
    assert_eq!(command.data.action, StockAction::Reserve);
    assert_eq!(command.data.lines.len(), 1);
    assert_eq!(command.data.lines[0].quantity, 3);
    assert_eq!(command.data.lines[0].unit_price_minor, 1290);
    assert_eq!(key.as_deref(), Some(order_id.to_string().as_str()));
    let (command, key) = next_event::<PaymentCommand>(&mut payment_commands).await;
    assert_eq!(command.data.order_id, order_id);
    assert_eq!(command.data.action, PaymentAction::Authorise);
    assert_eq!(command.data.amount_minor, 3870);
    assert_eq!(command.data.payment_token.as_deref(), Some("tok_success"));
    assert_eq!(key.as_deref(), Some(order_id.to_string().as_str()));
    assert_eq!(stored_token(&admin, order_id).await, None);

    // The history lists it; another customer cannot see it.
    let page: Value = app
        .get(shopper, "/v1/orders")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], ids[0].as_str());
    let intruder = Uuid::now_v7();
    let response = app.get(intruder, &format!("/v1/orders/{order_id}")).await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let response = app
        .post(intruder, &format!("/v1/orders/{order_id}/cancellation"))
        .await;
    assert_problem(response, StatusCode::NOT_FOUND).await;
    let page: Value = app
        .get(intruder, "/v1/orders")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["total"], 0);
    let response = app.get(shopper, "/v1/orders?limit=0").await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cancels_before_capture_and_what_was_asked_for_is_released() {
    let app = spawn_app().await;
    let shopper = Uuid::now_v7();
    let coffee = product(990);
    app.catalog_says(&coffee).await;
    let mut commands = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(STOCK_COMMANDS_TOPIC),
        "test-stock-commands",
    )
    .await;
    let mut payment_commands = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(PAYMENT_COMMANDS_TOPIC),
        "test-payment-commands",
    )
    .await;
    let id = app.buy(shopper, coffee.product_id, 1, "tok_success").await;

    // A refund needs a confirmed order.
    let response = app.post(shopper, &format!("/v1/orders/{id}/refund")).await;
    assert_problem(response, StatusCode::CONFLICT).await;

    let response = app
        .post(shopper, &format!("/v1/orders/{id}/cancellation"))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order: Value = response.json().await.expect("json");
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["reason"], "customer");
    let statuses: Vec<&str> = order["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["pending", "cancelled"]);
    let response = app
        .post(shopper, &format!("/v1/orders/{id}/cancellation"))
        .await;
    assert_problem(response, StatusCode::CONFLICT).await;

    // Reserve, then the compensating release, in that order on the order's key; the same for
    // the authorisation and its void (both legs were asked for at checkout).
    let mut actions = Vec::new();
    while actions.len() < 2 {
        let (command, _) = next_event::<StockCommand>(&mut commands).await;
        actions.push(command.data.action);
    }
    assert_eq!(actions, [StockAction::Reserve, StockAction::Release]);
    let mut actions = Vec::new();
    while actions.len() < 2 {
        let (command, _) = next_event::<PaymentCommand>(&mut payment_commands).await;
        actions.push(command.data.action);
    }
    assert_eq!(actions, [PaymentAction::Authorise, PaymentAction::Void]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_placed_before_the_parallel_legs_sends_its_authorise_once_reserved() {
    // Before migration V4 the authorise left after the reservation, and the card token waited
    // on the order. Such an order, still pending at the upgrade, must go on the old way.
    let app = spawn_app().await;
    let shopper = Uuid::now_v7();
    let coffee = product(700);
    app.catalog_says(&coffee).await;
    let id = app.buy(shopper, coffee.product_id, 2, "tok_success").await;
    let admin = app.db.admin().await.expect("admin");
    admin
        .execute(
            "UPDATE orders SET payment_token = 'tok_legacy' WHERE order_id = $1",
            &[&id],
        )
        .await
        .expect("a pre-V4 order");
    let mut payment_commands = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(PAYMENT_COMMANDS_TOPIC),
        "test-legacy-payment-commands",
    )
    .await;
    let reserved = CloudEvent::new(
        "/comptoir/inventory",
        id.to_string(),
        StockOutcome {
            order_id: id,
            result: StockResult::Reserved,
            reason: None,
        },
    );
    comptoir_testkit::publish(
        &app.pulsar,
        &app.namespace.topic(STOCK_OUTCOMES_TOPIC),
        &reserved,
    )
    .await;
    let order = app.wait_status(shopper, id, "stock-reserved").await;
    assert_eq!(order["status"], "stock-reserved");
    // From the topic's start: the checkout's own authorise, then the one the reservation sent.
    let mut sent = Vec::new();
    while sent.len() < 2 {
        let (command, _) = next_event::<PaymentCommand>(&mut payment_commands).await;
        assert_eq!(command.data.order_id, id);
        sent.push((command.data.action, command.data.payment_token));
    }
    assert_eq!(
        sent,
        [
            (PaymentAction::Authorise, Some("tok_success".to_owned())),
            (PaymentAction::Authorise, Some("tok_legacy".to_owned())),
        ]
    );
    assert_eq!(stored_token(&admin, id).await, None, "dropped once sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_nobody_answers_times_out_and_is_compensated() {
    // Inventory never answers here: with a one-second step timeout, the sweep cancels.
    let app = spawn_app_with(|s| s.saga.step_timeout_secs = 1).await;
    let shopper = Uuid::now_v7();
    let coffee = product(500);
    app.catalog_says(&coffee).await;
    let id = app.buy(shopper, coffee.product_id, 2, "tok_success").await;
    let order = app.wait_status(shopper, id, "cancelled").await;
    assert_eq!(order["reason"], "timeout");
    // The card token was never stored: it left in the authorise command.
    let admin = app.db.admin().await.expect("admin");
    assert_eq!(stored_token(&admin, id).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_read_answers_when_the_order_changes() {
    let app = spawn_app().await;
    let shopper = Uuid::now_v7();
    let coffee = product(990);
    app.catalog_says(&coffee).await;
    let id = app.buy(shopper, coffee.product_id, 1, "tok_success").await;
    let url = format!("{}/v1/orders/{id}", app.base);
    let read = |tag: &str, prefer: Option<&str>, customer: Uuid| {
        let mut request = app
            .http
            .get(&url)
            .bearer_auth(app.token(customer))
            .header("if-none-match", tag);
        if let Some(prefer) = prefer {
            request = request.header("prefer", prefer);
        }
        request.send()
    };

    let first = app.get(shopper, &format!("/v1/orders/{id}")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tag = first.headers()["etag"].to_str().expect("ascii").to_owned();

    // Conditional without a wait (or with a preference it cannot read): 304 at once.
    for prefer in [None, Some("respond-async, wait=soon")] {
        let response = read(&tag, prefer, shopper).await.expect("request");
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED, "{prefer:?}");
        assert_eq!(response.headers()["etag"], tag.as_str());
        assert!(!response.headers().contains_key("preference-applied"));
    }
    // Waiting while nothing changes: 304 once the wait is over, the wait said as applied.
    let response = read(&tag, Some("wait=1"), shopper).await.expect("request");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["preference-applied"], "wait=1");
    // Another customer waiting on this order: 404 at once, as for any read of it.
    let response = read(&tag, Some("wait=4"), Uuid::now_v7())
        .await
        .expect("request");
    assert_problem(response, StatusCode::NOT_FOUND).await;

    // Waiting while the customer cancels (asked for a minute, granted the longest wait, four
    // seconds): answered with the new version when it commits, not when the wait runs out.
    let started = std::time::Instant::now();
    let (waited, cancelled) = tokio::join!(read(&tag, Some("wait=60"), shopper), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.post(shopper, &format!("/v1/orders/{id}/cancellation"))
            .await
    });
    let waited = waited.expect("request");
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken by the change, not by the end of the wait ({:?})",
        started.elapsed()
    );
    assert_eq!(waited.status(), StatusCode::OK);
    assert_eq!(waited.headers()["preference-applied"], "wait=4");
    assert_ne!(waited.headers()["etag"], tag.as_str());
    let order: Value = waited.json().await.expect("json");
    assert_eq!(order["status"], "cancelled");
}
