//! The admin route: its answers, its errors (problem+json), and the OpenAPI document.

mod support;

use comptoir_events::contracts::orders::OrderStatus;
use comptoir_notifications::domain::{Kind, Status};
use reqwest::StatusCode;
use serde_json::Value;
use support::{assert_problem, order_changed, spawn_app_alone};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_route_needs_the_admin_token() {
    let app = spawn_app_alone().await;
    let path = format!("/v1/admin/deliveries?order_id={}", Uuid::now_v7());
    let response = app.http.get(app.url(&path)).send().await.expect("request");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"comptoir-notifications\""
    );
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
    let response = app
        .http
        .get(app.url(&path))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_problems_not_server_errors() {
    let app = spawn_app_alone().await;
    for (query, status, field) in [
        ("", StatusCode::UNPROCESSABLE_ENTITY, Some("order_id")),
        (
            "?order_id=",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("order_id"),
        ),
        (
            "?order_id=42",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("order_id"),
        ),
        ("?order=1", StatusCode::BAD_REQUEST, None),
    ] {
        let response = app
            .admin(&format!("/v1/admin/deliveries{query}"))
            .send()
            .await
            .expect("request");
        let problem = assert_problem(response, status).await;
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
        }
    }
    let response = app
        .http
        .post(app.url("/v1/admin/deliveries"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    let response = app.admin("/v1/nothing-here").send().await.expect("request");
    assert_problem(response, StatusCode::NOT_FOUND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_deliveries_lists_none_and_one_with_shows_its_state() {
    let app = spawn_app_alone().await;
    assert!(app.deliveries(Uuid::now_v7()).await.is_empty());

    // Identity is unreachable here: the delivery is recorded and waits, retried.
    let order = Uuid::now_v7();
    let customer = Uuid::now_v7();
    app.publish(&order_changed(order, customer, OrderStatus::Confirmed))
        .await;
    let delivery = app
        .wait_delivery(order, "a failed attempt", |d| d.attempts >= 1)
        .await;
    assert_eq!(delivery.order_id, order);
    assert_eq!(delivery.customer_id, customer);
    assert_eq!(delivery.kind, Kind::OrderConfirmed);
    assert_eq!(delivery.status, Status::Pending);
    assert_eq!(
        delivery.last_error.as_deref(),
        Some("identity is unreachable (connection failed)")
    );
    let raw: Value = app
        .admin(&format!("/v1/admin/deliveries?order_id={order}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(raw["items"][0]["kind"], "order-confirmed");
    assert_eq!(raw["items"][0]["status"], "pending");
    assert!(raw["items"][0]["created_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_route_and_its_errors() {
    let app = spawn_app_alone().await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    let route = &doc["paths"]["/v1/admin/deliveries"]["get"];
    for status in ["200", "400", "401", "422"] {
        assert!(route["responses"][status].is_object(), "{status}: {route}");
    }
    assert!(doc["components"]["securitySchemes"]["admin"].is_object());
    assert!(doc["components"]["schemas"]["Delivery"].is_object());
    // Draining stops the consumers, the sender and the relay, and returns cleanly.
    app.stop().await.expect("clean stop");
}
