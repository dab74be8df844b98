//! Payments' HTTP side: the admin read of a payment, its errors as problem+json, OpenAPI and
//! health, on a real PostgreSQL and Pulsar.

mod support;

use comptoir_events::contracts::orders::PaymentAction;
use comptoir_payments::simulated::tokens;
use comptoir_testkit::wait_for;
use reqwest::StatusCode;
use serde_json::Value;
use support::{assert_problem, command, spawn_app};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_route_shows_a_payment_and_refuses_everything_else_as_problems() {
    let app = spawn_app().await;
    let path = |order: &str| format!("/v1/admin/payments/{order}");
    let order = Uuid::now_v7();

    // No token, a wrong token: 401 with a challenge.
    let anonymous = app.get(&path(&order.to_string())).await;
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"comptoir-payments\""
    );
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let wrong = app
        .http
        .get(app.url(&path(&order.to_string())))
        .bearer_auth("not-the-admin-token")
        .send()
        .await
        .expect("request");
    assert_problem(wrong, StatusCode::UNAUTHORIZED).await;

    // Not a uuid: 400; an order payments never saw: 404.
    assert_problem(
        app.admin_get(&path("not-a-uuid")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_problem(
        app.admin_get(&path(&order.to_string())).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Once orders asked for an authorisation, the payment and its operations are there.
    let pulsar = app.pulsar().await;
    app.send(
        &pulsar,
        command(order, PaymentAction::Authorise, 1290, Some(tokens::SUCCESS)),
    )
    .await;
    let payment: Value = wait_for(
        "the payment",
        std::time::Duration::from_secs(30),
        || async {
            let response = app.admin_get(&path(&order.to_string())).await;
            if response.status() == StatusCode::OK {
                response.json().await.ok()
            } else {
                None
            }
        },
    )
    .await
    .expect("payment recorded");
    assert_eq!(payment["order_id"], order.to_string());
    assert_eq!(payment["status"], "authorised");
    assert_eq!(payment["amount_minor"], 1290);
    assert_eq!(payment["currency"], "EUR");
    assert!(
        payment["provider_reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("sim_"))
    );
    assert_eq!(payment["operations"][0]["action"], "authorise");
    assert_eq!(payment["operations"][0]["result"], "authorised");
    assert!(
        payment["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_health_and_metrics_are_served() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.expect("json");
    let route = &doc["paths"]["/v1/admin/payments/{order_id}"]["get"];
    for status in ["200", "400", "401", "404"] {
        assert!(
            route["responses"][status].is_object(),
            "{status} missing: {route}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["admin"].is_object());
    assert!(doc["components"]["schemas"]["PaymentView"].is_object());

    assert_eq!(app.get("/livez").await.status(), StatusCode::OK);
    let ready: Value = app.get("/readyz").await.json().await.expect("json");
    assert_eq!(ready["status"], "ready");
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
}
