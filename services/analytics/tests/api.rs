//! The click stream through the API: bad batches refused with problems, accepted clicks counted
//! exactly once in their minute, consent obeyed, identifiers pseudonymised before they leave,
//! orders' events in the funnel, the KPI routes guarded.

mod support;

use std::time::Duration;

use comptoir_analytics::CLICKSTREAM_SUBSCRIPTION;
use comptoir_events::CloudEvent;
use comptoir_events::contracts::analytics::{CLICKSTREAM_TOPIC, ClickBatch};
use comptoir_events::contracts::identity::CONSENT_CHANGES_TOPIC;
use comptoir_events::contracts::orders::{ORDER_EVENTS_TOPIC, OrderChanged, OrderStatus};
use comptoir_testkit::{assert_problem, wait_for};
use futures::TryStreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestApp, click, session, spawn_app};
use time::OffsetDateTime;
use uuid::Uuid;

/// The views of `product` in the last hour, once they reach `expected`.
async fn views_reach(app: &TestApp, product: Uuid, expected: i64) {
    wait_for("the views counted", Duration::from_secs(30), || async {
        let top = app
            .kpi("/v1/admin/kpis/top-products?minutes=60&limit=100")
            .await;
        let views = top["products"]
            .as_array()
            .expect("products")
            .iter()
            .find(|p| p["product_id"] == product.to_string())
            .and_then(|p| p["views"].as_i64())
            .unwrap_or(0);
        (views >= expected).then_some(())
    })
    .await
    .expect("views counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_with_problems() {
    let app = spawn_app().await;
    let product = Uuid::now_v7();
    let post = |body: Value| app.http.post(app.url("/v1/events")).json(&body).send();

    let malformed = app
        .http
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .body("{\"session\": \"abc")
        .send()
        .await
        .expect("request");
    assert_problem(malformed, StatusCode::BAD_REQUEST).await;

    let unknown = post(json!({"session": session(), "events": [{"type": "teleport", "at": "2026-12-03T10:00:00Z"}]}))
        .await
        .expect("request");
    assert_problem(unknown, StatusCode::UNPROCESSABLE_ENTITY).await;

    let future = (OffsetDateTime::now_utc() + time::Duration::hours(2))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let ahead = post(json!({"session": session(), "events": [
        {"type": "product-view", "at": future, "product_id": product}]}))
    .await
    .expect("request");
    let body = assert_problem(ahead, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "events[0].at", "{body}");
    assert_eq!(body["errors"][0]["message"], "is too far in the future");

    let too_many = post(json!({"session": session(),
        "events": vec![click("search", None); 501]}))
    .await
    .expect("request");
    let body = assert_problem(too_many, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "events", "{body}");

    // Past the body limit (256 KiB): 413 before anything is parsed.
    let huge = app
        .http
        .post(app.url("/v1/events"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"session\":\"{}\",\"events\":[],\"pad\":\"{}\"}}",
            session(),
            "x".repeat(300 * 1024)
        ))
        .send()
        .await
        .expect("request");
    assert_problem(huge, StatusCode::PAYLOAD_TOO_LARGE).await;

    let no_session = post(json!({"events": [click("search", None)]}))
        .await
        .expect("request");
    let body = assert_problem(no_session, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"][0]["field"], "session", "{body}");

    let unknown_field = post(json!({"session": session(), "events": [], "customer_id": product}))
        .await
        .expect("request");
    assert_problem(unknown_field, StatusCode::UNPROCESSABLE_ENTITY).await;

    // A token that does not verify is refused, never taken for an anonymous visit.
    let forged = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth("not-a-token")
        .json(&json!({"session": session(), "events": [click("search", None)]}))
        .send()
        .await
        .expect("request");
    assert_problem(forged, StatusCode::UNAUTHORIZED).await;

    // The KPIs need the admin token, and a window within bounds.
    let anonymous = app
        .http
        .get(app.url("/v1/admin/kpis/funnel"))
        .send()
        .await
        .expect("request");
    assert_problem(anonymous, StatusCode::UNAUTHORIZED).await;
    let customer = app
        .http
        .get(app.url("/v1/admin/kpis/funnel"))
        .bearer_auth(app.keys.token(Uuid::now_v7()))
        .send()
        .await
        .expect("request");
    assert_problem(customer, StatusCode::UNAUTHORIZED).await;
    let wide = app
        .admin(
            Method::GET,
            "/v1/admin/kpis/top-products?minutes=0&limit=1000",
        )
        .send()
        .await
        .expect("request");
    let body = assert_problem(wide, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(2), "{body}");
    let not_a_number = app
        .admin(Method::GET, "/v1/admin/kpis/funnel?minutes=many")
        .send()
        .await
        .expect("request");
    assert_problem(not_a_number, StatusCode::BAD_REQUEST).await;

    // Nothing refused was counted.
    let funnel = app.kpi("/v1/admin/kpis/funnel?minutes=60").await;
    assert_eq!(funnel["product_views"], 0);
    assert_eq!(funnel["searches"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_clicks_are_counted_in_their_minute_and_a_redelivery_counts_once() {
    let app = spawn_app().await;
    let product = Uuid::now_v7();
    let other = Uuid::now_v7();
    let visitor = session();
    let response = app
        .post_anonymous(
            &visitor,
            vec![
                click("product-view", Some(product)),
                click("product-view", Some(product)),
                click("product-view", Some(other)),
                click("add-to-cart", Some(product)),
                click("page-view", None),
                click("search", None),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body, json!({"accepted": 6, "dropped": 0}));

    views_reach(&app, product, 2).await;
    let top = app
        .kpi("/v1/admin/kpis/top-products?minutes=5&limit=1")
        .await;
    assert_eq!(
        top["products"],
        json!([{"product_id": product, "views": 2}])
    );
    let series = app
        .kpi(&format!("/v1/admin/kpis/products/{product}?minutes=5"))
        .await;
    let minutes = series["series"].as_array().expect("series");
    assert_eq!(minutes.len(), 1, "{series}");
    assert_eq!(minutes[0]["views"], 2);
    assert_eq!(minutes[0]["added_to_cart"], 2, "units, not clicks");
    let funnel = app
        .funnel_until("the whole batch counted", |f| f["searches"] == 1)
        .await;
    assert_eq!(funnel["product_views"], 3);
    assert_eq!(funnel["add_to_carts"], 1);
    assert_eq!(funnel["page_views"], 1);
    assert_eq!(funnel["view_to_cart"].as_f64(), Some(1.0 / 3.0));

    // The same message again (a relay retry, a redelivery after a crash): recognised by its
    // id, counted once.
    let pulsar = &app.pulsar;
    let topic = app.namespace.topic(CLICKSTREAM_TOPIC);
    let mut reader = comptoir_testkit::subscribe(pulsar, &topic, "test-replay").await;
    let message = tokio::time::timeout(Duration::from_secs(30), reader.try_next())
        .await
        .expect("the batch on the topic")
        .expect("stream ok")
        .expect("stream open");
    let original: CloudEvent<ClickBatch> =
        serde_json::from_slice(&message.payload.data).expect("a ClickBatch");
    comptoir_testkit::publish(pulsar, &topic, &original).await;
    comptoir_testkit::drained(&topic, CLICKSTREAM_SUBSCRIPTION).await;
    let top = app
        .kpi("/v1/admin/kpis/top-products?minutes=60&limit=10")
        .await;
    assert_eq!(
        top["products"],
        json!([{"product_id": product, "views": 2}, {"product_id": other, "views": 1}])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_customers_clicks_count_only_with_the_analytics_consent() {
    let app = spawn_app().await;
    let customer = Uuid::now_v7();
    let product = Uuid::now_v7();
    let views = || vec![click("product-view", Some(product))];

    // Never asked: consent is opt-in.
    let response = app.post_as(customer, views()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"accepted": 0, "dropped": 1})
    );

    let granted_at = OffsetDateTime::now_utc();
    app.identity_says(customer, true, granted_at).await;
    app.consent_known(customer, true).await;
    let response = app.post_as(customer, views()).await;
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"accepted": 1, "dropped": 0})
    );
    views_reach(&app, product, 1).await;

    // Withdrawn, then an older grant delivered late: still withdrawn.
    app.identity_says(customer, false, granted_at + time::Duration::seconds(1))
        .await;
    app.consent_known(customer, false).await;
    app.identity_says(customer, true, granted_at - time::Duration::seconds(1))
        .await;
    // Every consent event handled, the late one included: it changed nothing.
    comptoir_testkit::drained(
        &app.namespace.topic(CONSENT_CHANGES_TOPIC),
        comptoir_analytics::CONSENTS_SUBSCRIPTION,
    )
    .await;
    app.consent_known(customer, false).await;
    let marker = Uuid::now_v7();
    app.identity_says(marker, true, granted_at).await;
    app.consent_known(marker, true).await;
    let response = app.post_as(customer, views()).await;
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({"accepted": 0, "dropped": 1})
    );

    // The marker's click shows the stream has moved past: the dropped ones never reached it.
    let response = app.post_as(marker, views()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    views_reach(&app, product, 2).await;
    let top = app.kpi("/v1/admin/kpis/top-products?minutes=60").await;
    assert_eq!(top["products"][0]["views"], 2);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("analytics_clicks_total{result=\"dropped-no-consent\"} 2")),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_raw_identifier_reaches_the_topic_or_the_aggregates() {
    let app = spawn_app().await;
    let customer = Uuid::now_v7();
    let product = Uuid::now_v7();
    app.identity_says(customer, true, OffsetDateTime::now_utc())
        .await;
    app.consent_known(customer, true).await;
    let visitor = session();
    assert_eq!(
        app.post_as(customer, vec![click("add-to-cart", Some(product))])
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.post_anonymous(&visitor, vec![click("product-view", Some(product))])
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let topic = app.namespace.topic(CLICKSTREAM_TOPIC);
    let mut reader = comptoir_testkit::subscribe(&app.pulsar, &topic, "test-scan").await;
    let mut pseudonyms = Vec::new();
    while pseudonyms.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(30), reader.try_next())
            .await
            .expect("both batches on the topic")
            .expect("stream ok")
            .expect("stream open");
        let raw = String::from_utf8_lossy(&message.payload.data).into_owned();
        let properties = format!("{:?}", message.metadata().properties);
        for secret in [
            customer.to_string(),
            customer.simple().to_string(),
            visitor.clone(),
        ] {
            assert!(!raw.contains(&secret), "{secret} in {raw}");
            assert!(!properties.contains(&secret), "{secret} in {properties}");
        }
        let batch: CloudEvent<ClickBatch> = serde_json::from_str(&raw).expect("a ClickBatch");
        assert_eq!(batch.data.visitor.len(), 32);
        assert!(batch.data.visitor.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(batch.subject, batch.data.visitor);
        assert_eq!(
            message.metadata().partition_key.as_deref(),
            Some(batch.data.visitor.as_str())
        );
        pseudonyms.push((batch.data.signed_in, batch.data.visitor));
    }
    pseudonyms.sort();
    assert_ne!(pseudonyms[0].1, pseudonyms[1].1);
    assert_eq!(
        pseudonyms.iter().map(|p| p.0).collect::<Vec<_>>(),
        [false, true]
    );

    // The aggregates hold counts only: no pseudonym, no id but the product's.
    views_reach(&app, product, 1).await;
    let admin = app.db.admin().await.expect("admin");
    let dump: String = admin
        .query_one(
            "SELECT coalesce(string_agg(c::text, ' '), '') FROM clicks_per_minute c",
            &[],
        )
        .await
        .expect("dump")
        .get(0);
    assert!(dump.contains(&product.to_string()), "{dump}");
    for secret in [
        customer.to_string(),
        visitor,
        pseudonyms[0].1.clone(),
        pseudonyms[1].1.clone(),
    ] {
        assert!(!dump.contains(&secret), "{secret} in {dump}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_events_feed_the_funnel_and_the_revenue() {
    let app = spawn_app().await;
    let product = Uuid::now_v7();
    assert_eq!(
        app.post_anonymous(
            &session(),
            vec![
                click("product-view", Some(product)),
                click("product-view", Some(product)),
                click("product-view", Some(product)),
                click("product-view", Some(product)),
                click("add-to-cart", Some(product)),
                click("add-to-cart", Some(product)),
            ],
        )
        .await
        .status(),
        StatusCode::ACCEPTED
    );
    let topic = app.namespace.topic(ORDER_EVENTS_TOPIC);
    let order = |status, total_minor| {
        let data = OrderChanged {
            order_id: Uuid::now_v7(),
            status,
            total_minor,
            ..OrderChanged::sample()
        };
        CloudEvent::new("/comptoir/orders", data.order_id.to_string(), data)
    };
    let placed = order(OrderStatus::Pending, 2580);
    for event in [
        placed.clone(),
        order(OrderStatus::Pending, 1000),
        order(OrderStatus::StockReserved, 2580),
        order(OrderStatus::Confirmed, 2580),
        order(OrderStatus::Cancelled, 1000),
        // A redelivered event changes nothing.
        placed,
    ] {
        comptoir_testkit::publish(&app.pulsar, &topic, &event).await;
    }
    let funnel = app
        .funnel_until("the orders counted", |f| {
            f["checkouts"] == 2
                && f["confirmed_orders"] == 1
                && f["cancelled_orders"] == 1
                && f["add_to_carts"] == 2
        })
        .await;
    assert_eq!(funnel["product_views"], 4);
    assert_eq!(funnel["cart_to_checkout"].as_f64(), Some(1.0));
    assert_eq!(funnel["checkout_to_order"].as_f64(), Some(0.5));
    assert_eq!(funnel["conversion"].as_f64(), Some(0.25));
    assert_eq!(funnel["revenue_minor"], json!({"EUR": 2580}));
    app.stop().await;
}
