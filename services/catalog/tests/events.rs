//! Product changes reach Pulsar as CloudEvents keyed by product id, in order, through the outbox.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::contracts::catalog::{ProductChange, ProductChanged};
use comptoir_testkit::{pulsar_url, wait_for};
use futures::TryStreamExt;
use pulsar::{Consumer, Pulsar, TokioExecutor};
use reqwest::Method;
use serde_json::json;
use support::{product_body, spawn_app};

async fn next_event(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> (
    Option<String>,
    std::collections::HashMap<String, String>,
    CloudEvent<ProductChanged>,
) {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("an event within 30 s")
        .expect("stream ok")
        .expect("stream open");
    consumer.ack(&message).await.expect("ack");
    let metadata = message.metadata().clone();
    let properties = metadata
        .properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let event = serde_json::from_slice(&message.payload.data).expect("a CloudEvent");
    (metadata.partition_key, properties, event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_changes_are_published_in_order_keyed_by_product_id() {
    let app = spawn_app().await;
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let topic = app.namespace.topic(comptoir_catalog::PRODUCT_TOPIC);
    let mut consumer = comptoir_testkit::subscribe(&pulsar, &topic, "catalog-events-test").await;

    let created = app
        .create_product(&product_body("COF-100", "Kenya Nyeri"))
        .await;
    let mut change = product_body("COF-100", "Kenya Nyeri AA");
    change["price_cents"] = json!(1490);
    let response = app
        .admin(Method::PUT, &format!("/v1/admin/products/{}", created.id))
        .header("if-match", "\"1\"")
        .json(&change)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success());
    let response = app
        .admin(
            Method::DELETE,
            &format!("/v1/admin/products/{}", created.id),
        )
        .header("if-match", "\"2\"")
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success());

    let expected = [
        (ProductChange::Created, 1, 1290),
        (ProductChange::Updated, 2, 1490),
        (ProductChange::Deleted, 3, 1490),
    ];
    let mut ids = std::collections::HashSet::new();
    for (change, version, price) in expected {
        let (key, properties, event) = next_event(&mut consumer).await;
        assert_eq!(key.as_deref(), Some(created.id.to_string().as_str()));
        assert_eq!(event.specversion, "1.0");
        assert_eq!(event.kind, "comptoir.catalog.product-changed.v1");
        assert_eq!(event.source, "/comptoir/catalog");
        assert_eq!(event.subject, created.id.to_string());
        assert_eq!(
            properties.get("ce_type").map(String::as_str),
            Some(event.kind.as_str())
        );
        assert_eq!(event.data.product_id, created.id);
        assert_eq!(
            (
                event.data.change,
                event.data.version,
                event.data.price_cents
            ),
            (change, version, price)
        );
        assert!(ids.insert(event.id), "event ids must be unique");
    }

    // Published rows leave the outbox once the broker has acknowledged them.
    wait_for("the outbox to empty", Duration::from_secs(10), || async {
        (app.outbox_rows().await == 0).then_some(())
    })
    .await
    .expect("outbox drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_the_outbox_until_the_broker_side_is_available() {
    // The catalog starts while its namespace does not exist yet: it is alive but not ready,
    // changes still commit with their events, and the events leave once the namespace exists.
    let namespace = format!("comptoir-test/late-{}", comptoir_testkit::unique_suffix());
    let ns = namespace.clone();
    let app = support::spawn_app_alive(move |s| s.pulsar.namespace = ns).await;

    let problem = support::assert_problem(
        app.get("/readyz").await,
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "pulsar");

    app.create_product(&product_body("COF-200", "Brazil Cerrado"))
        .await;
    assert_eq!(app.outbox_rows().await, 1, "the event waits in the outbox");
    wait_for(
        "the backlog gauge to show it",
        Duration::from_secs(10),
        || async { metric(&app, "outbox_backlog").await.filter(|v| *v == 1.0) },
    )
    .await
    .expect("outbox_backlog 1");

    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    admin
        .ensure_namespace(&namespace)
        .await
        .expect("create the namespace");
    wait_for("the outbox to empty", Duration::from_secs(30), || async {
        (app.outbox_rows().await == 0).then_some(())
    })
    .await
    .expect("the waiting event was published");
    assert_eq!(app.get("/readyz").await.status(), reqwest::StatusCode::OK);
    wait_for(
        "the backlog gauge to drop to 0",
        Duration::from_secs(10),
        || async { metric(&app, "outbox_backlog").await.filter(|v| *v == 0.0) },
    )
    .await
    .expect("outbox_backlog 0");
    drop(app);
    admin.delete_namespace(&namespace).await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_catalog_still_publishes_with_broker_deduplication_on() {
    // Production namespaces have deduplication on. A relay that reused its producer name after
    // a restart would have its first messages dropped as duplicates (the Rust client restarts
    // sequence ids at 0); this test fails if that ever happens.
    let app = spawn_app().await;
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    admin
        .set_policy(&app.namespace.name, "deduplication", json!(true))
        .await
        .expect("dedup on");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let topic = app.namespace.topic(comptoir_catalog::PRODUCT_TOPIC);
    let mut consumer = comptoir_testkit::subscribe(&pulsar, &topic, "restart-dedup-test").await;

    let first = app.create_product(&product_body("TEA-100", "Assam")).await;
    assert_eq!(next_event(&mut consumer).await.2.data.product_id, first.id);

    // Same database and namespace, new relay: what a restarted process does.
    let restarted = app.restart().await;
    let second = restarted
        .create_product(&product_body("TEA-101", "Darjeeling"))
        .await;
    assert_eq!(next_event(&mut consumer).await.2.data.product_id, second.id);
}

/// The value of an unlabelled metric on the app's `/metrics`.
async fn metric(app: &support::TestApp, name: &str) -> Option<f64> {
    let text = app.get("/metrics").await.text().await.ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The next message's key and payload, acknowledged.
async fn receive(consumer: &mut Consumer<Vec<u8>, TokioExecutor>) -> (Option<String>, Vec<u8>) {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("a message within 30 s")
        .expect("stream ok")
        .expect("stream open");
    consumer.ack(&message).await.expect("ack");
    (
        message.metadata().partition_key.clone(),
        message.payload.data,
    )
}

/// Waits until `subscription` exists on `topic` with nothing left to acknowledge.
async fn drained(admin: &PulsarAdmin, topic: &str, subscription: &str) {
    wait_for(
        "the subscription to exist and drain",
        Duration::from_secs(60),
        || async {
            let stats = admin.topic_stats(topic).await.ok()?;
            let sub = &stats["subscriptions"][subscription];
            (sub.is_object() && sub["msgBacklog"] == 0 && sub["unackedMessages"] == 0).then_some(())
        },
    )
    .await
    .expect("drained");
}

async fn publish<T: serde::Serialize>(pulsar: &Pulsar<TokioExecutor>, topic: &str, event: &T) {
    let mut producer = pulsar
        .producer()
        .with_topic(topic)
        .build()
        .await
        .expect("producer");
    producer
        .send_non_blocking(serde_json::to_vec(event).expect("json"))
        .await
        .expect("send")
        .await
        .expect("ack");
    producer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdpr_requests_sent_while_down_are_answered_once_after_restart() {
    use comptoir_events::contracts::gdpr::{
        ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC, ErasureConfirmed, ExportSlice,
    };
    use comptoir_events::contracts::identity::{
        CUSTOMER_ERASED_TOPIC, CustomerErased, EXPORT_REQUESTS_TOPIC, ExportRequested,
    };

    let app = spawn_app().await;
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    let requests = app.namespace.topic(EXPORT_REQUESTS_TOPIC);
    let erasures = app.namespace.topic(CUSTOMER_ERASED_TOPIC);
    // The catalog's durable subscriptions exist from its first start on.
    drained(&admin, &requests, "catalog-gdpr-export").await;
    drained(&admin, &erasures, "catalog-gdpr-erasure").await;
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let mut slices = comptoir_testkit::subscribe(
        &pulsar,
        &app.namespace.topic(EXPORT_SLICES_TOPIC),
        "identity",
    )
    .await;
    let mut confirmations = comptoir_testkit::subscribe(
        &pulsar,
        &app.namespace.topic(ERASURE_CONFIRMATIONS_TOPIC),
        "identity",
    )
    .await;

    // The catalog is down while identity asks.
    let (db, namespace) = (app.db.clone(), app.namespace.clone());
    app.stop().await.expect("clean stop");
    let customer = uuid::Uuid::now_v7();
    let export = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        ExportRequested {
            request_id: uuid::Uuid::now_v7(),
            customer_id: customer,
        },
    );
    let erase = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        CustomerErased {
            request_id: uuid::Uuid::now_v7(),
            customer_id: customer,
        },
    );
    publish(&pulsar, &requests, &export).await;
    publish(&pulsar, &erasures, &erase).await;

    let app = support::spawn_app_on(db, namespace).await;
    let (key, payload) = receive(&mut slices).await;
    let slice: CloudEvent<ExportSlice> = serde_json::from_slice(&payload).expect("a slice");
    assert_eq!(key, Some(customer.to_string()));
    assert_eq!(slice.data.request_id, export.data.request_id);
    assert_eq!(slice.data.service, "catalog");
    assert_eq!(slice.data.data["records"], json!([]));
    assert!(
        slice.data.data["statement"]
            .as_str()
            .is_some_and(|s| s.contains("no personal data"))
    );
    let (_, payload) = receive(&mut confirmations).await;
    let confirmed: CloudEvent<ErasureConfirmed> =
        serde_json::from_slice(&payload).expect("a confirmation");
    assert_eq!(confirmed.data.request_id, erase.data.request_id);
    assert_eq!(confirmed.data.customer_id, customer);
    assert_eq!(confirmed.data.summary["removed"], 0);

    // The same request delivered again is answered once only.
    publish(&pulsar, &requests, &export).await;
    drained(&admin, &requests, "catalog-gdpr-export").await;
    wait_for("the outbox to empty", Duration::from_secs(30), || async {
        (app.outbox_rows().await == 0).then_some(())
    })
    .await
    .expect("outbox empty");
    let stats = admin
        .topic_stats(&app.namespace.topic(EXPORT_SLICES_TOPIC))
        .await
        .expect("stats");
    assert_eq!(
        stats["msgInCounter"], 1,
        "one slice for one request: {stats}"
    );
}
