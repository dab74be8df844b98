//! Inventory's HTTP API: a client's view, on a real PostgreSQL and Pulsar.

mod support;

use comptoir_inventory::domain::Stock;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{assert_problem, spawn_app};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_sets_adjusts_and_reads_stock_with_etags() {
    let app = spawn_app().await;
    let product = Uuid::now_v7();
    app.catalog_says(
        product,
        comptoir_events::contracts::catalog::ProductChange::Created,
    )
    .await;
    let created = app.known(product).await;
    assert_eq!(
        (created.on_hand, created.reserved, created.version),
        (0, 0, 1)
    );

    let response = app.put_stock(product, Some("\"1\""), 40).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let set: Stock = response.json().await.expect("json");
    assert_eq!((set.on_hand, set.available, set.version), (40, 40, 2));

    let response = app
        .admin(
            Method::POST,
            &format!("/v1/admin/stock/{product}/adjustments"),
        )
        .json(&json!({ "delta": -3, "reason": "breakage in the warehouse" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let adjusted: Stock = response.json().await.expect("json");
    assert_eq!((adjusted.on_hand, adjusted.version), (37, 3));

    let response = app
        .admin(Method::GET, &format!("/v1/admin/stock/{product}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["etag"], "\"3\"");
    let read: Stock = response.json().await.expect("json");
    assert_eq!(read, adjusted);
    let public: Value = app
        .get(&format!("/v1/stock/{product}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        public,
        json!({ "product_id": product.to_string(), "available": 37 })
    );

    // Both changes are in the log, with their reasons.
    assert_eq!(
        app.count(&format!(
            "FROM stock_adjustments WHERE product_id = '{product}' \
             AND ((delta = 40 AND reason = 'count') OR (delta = -3 AND reason = 'breakage in the warehouse'))"
        ))
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_problems() {
    let app = spawn_app().await;
    let product = app.product(10).await;
    let path = format!("/v1/admin/stock/{product}");
    let adjustments = format!("{path}/adjustments");

    // No token, or a wrong one.
    let response = app.http.get(app.url(&path)).send().await.expect("request");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"comptoir-inventory\""
    );
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .http
        .put(app.url(&path))
        .bearer_auth("not-the-token")
        .header("if-match", "\"2\"")
        .json(&json!({ "on_hand": 5 }))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;

    // If-Match missing, stale, or not an ETag.
    assert_problem(
        app.put_stock(product, None, 5).await,
        StatusCode::PRECONDITION_REQUIRED,
    )
    .await;
    let stale = assert_problem(
        app.put_stock(product, Some("\"1\""), 5).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        stale["type"],
        "https://comptoir.dev/problems/version-conflict"
    );
    assert_problem(
        app.put_stock(product, Some("yesterday"), 5).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Negative and absurd quantities.
    for on_hand in [-1, 1_000_000_001] {
        let problem = assert_problem(
            app.put_stock(product, Some("\"2\""), on_hand).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "on_hand", "{problem}");
    }
    for (body, field) in [
        (json!({ "delta": 0, "reason": "nothing" }), "delta"),
        (json!({ "delta": 2_000_000_000, "reason": "typo" }), "delta"),
        (json!({ "delta": 5, "reason": "" }), "reason"),
        (json!({ "delta": 5, "reason": "x".repeat(201) }), "reason"),
        (json!({ "delta": "five", "reason": "delivery" }), "delta"),
        (json!({ "delta": 5 }), ""),
        (json!({ "delta": 5, "reason": "ok", "extra": 1 }), ""),
    ] {
        let response = app
            .admin(Method::POST, &adjustments)
            .json(&body)
            .send()
            .await
            .expect("request");
        let problem = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
        }
    }

    // Removing more than is on hand; a 10-unit product with nothing reserved.
    let problem = assert_problem(
        app.admin(Method::POST, &adjustments)
            .json(&json!({ "delta": -11, "reason": "theft" }))
            .send()
            .await
            .expect("request"),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        problem["type"],
        "https://comptoir.dev/problems/below-reserved"
    );
    let problem = assert_problem(
        app.admin(Method::POST, &adjustments)
            .json(&json!({ "delta": 999_999_995, "reason": "typo" }))
            .send()
            .await
            .expect("request"),
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        problem["type"],
        "https://comptoir.dev/problems/above-maximum"
    );

    // Malformed JSON, and JSON without its content type.
    let response = app
        .admin(Method::PUT, &path)
        .header("if-match", "\"2\"")
        .header("content-type", "application/json")
        .body("{\"on_hand\": ")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_REQUEST).await;
    let response = app
        .admin(Method::POST, &adjustments)
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // Unknown products and ids that are not UUIDs.
    let unknown = Uuid::now_v7();
    assert_problem(
        app.get(&format!("/v1/stock/{unknown}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.put_stock(unknown, Some("\"1\""), 5).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.admin(
            Method::POST,
            &format!("/v1/admin/stock/{unknown}/adjustments"),
        )
        .json(&json!({ "delta": 5, "reason": "delivery" }))
        .send()
        .await
        .expect("request"),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.get("/v1/stock/not-a-uuid").await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Nothing of the above changed the stock.
    let stock = app.stock(product).await;
    assert_eq!((stock.on_hand, stock.version), (10, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_hand_cannot_fall_below_what_is_reserved() {
    use comptoir_events::contracts::inventory::StockResult;
    use comptoir_events::contracts::orders::StockAction;
    use support::{ask, command, line};

    let app = spawn_app().await;
    let product = app.product(10).await;
    let mut outcomes = app.outcomes("api-test").await;
    let order = Uuid::now_v7();
    let outcome = ask(
        &app,
        &mut outcomes,
        command(order, StockAction::Reserve, vec![line(product, 4)]),
    )
    .await;
    assert_eq!(outcome.result, StockResult::Reserved);
    let stock = app.stock(product).await;
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (10, 4, 6));

    let problem = assert_problem(
        app.put_stock(product, Some(&format!("\"{}\"", stock.version)), 3)
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(
        problem["type"],
        "https://comptoir.dev/problems/below-reserved"
    );
    let response = app
        .put_stock(product, Some(&format!("\"{}\"", stock.version)), 4)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let stock: Stock = response.json().await.expect("json");
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (4, 4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route_and_health_answers() {
    let app = spawn_app().await;
    assert_eq!(app.get("/livez").await.status(), StatusCode::OK);
    let doc: Value = app.get("/openapi.json").await.json().await.expect("json");
    assert_eq!(doc["info"]["title"], "Comptoir inventory");
    for path in [
        "/v1/stock/{product_id}",
        "/v1/admin/stock/{product_id}",
        "/v1/admin/stock/{product_id}/adjustments",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    let put = &doc["paths"]["/v1/admin/stock/{product_id}"]["put"];
    for status in ["409", "422", "428"] {
        assert!(put["responses"][status].is_object(), "PUT {status} missing");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}
