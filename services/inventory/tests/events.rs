//! Inventory's other conversations over Pulsar: the catalog's product events in, and GDPR
//! export and erasure requests answered.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::catalog::ProductChange;
use comptoir_events::contracts::gdpr::{
    ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC, ErasureConfirmed, ExportSlice,
};
use comptoir_events::contracts::identity::{
    CUSTOMER_ERASED_TOPIC, CustomerErased, EXPORT_REQUESTS_TOPIC, ExportRequested,
};
use comptoir_testkit::wait_for;
use futures::TryStreamExt;
use pulsar::{Consumer, TokioExecutor};
use serde_json::json;
use support::{spawn_app, spawn_app_with};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_product_gets_the_demo_stock_once() {
    let app = spawn_app_with(|s| s.demo_stock_per_product = Some(25)).await;
    let product = Uuid::now_v7();
    app.catalog_says(product, ProductChange::Created).await;
    let stock = app.known(product).await;
    assert_eq!(
        (
            stock.on_hand,
            stock.reserved,
            stock.available,
            stock.version
        ),
        (25, 0, 25, 1)
    );

    // A repeated announcement, an update and a deletion change nothing; an update of a
    // product never seen creates its row.
    app.catalog_says(product, ProductChange::Created).await;
    app.catalog_says(product, ProductChange::Updated).await;
    app.catalog_says(product, ProductChange::Deleted).await;
    let late = Uuid::now_v7();
    app.catalog_says(late, ProductChange::Updated).await;
    assert_eq!(app.known(late).await.on_hand, 25);
    wait_for(
        "the events to be applied",
        Duration::from_secs(30),
        || async {
            (app.count("FROM inbox WHERE subscription = 'inventory-catalog-sync'")
                .await
                == 5)
                .then_some(())
        },
    )
    .await
    .expect("applied");
    assert_eq!(app.stock(product).await, stock);
    assert_eq!(app.count("FROM stock").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_demo_stock_a_new_product_starts_empty() {
    let app = spawn_app().await;
    let product = Uuid::now_v7();
    app.catalog_says(product, ProductChange::Created).await;
    assert_eq!(app.known(product).await.on_hand, 0);
    let public: serde_json::Value = app
        .get(&format!("/v1/stock/{product}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(public["available"], 0);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdpr_export_and_erasure_are_answered_with_nothing_held() {
    let app = spawn_app().await;
    let mut slices = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(EXPORT_SLICES_TOPIC),
        "identity",
    )
    .await;
    let mut confirmations = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(ERASURE_CONFIRMATIONS_TOPIC),
        "identity",
    )
    .await;
    let customer = Uuid::now_v7();
    let export = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        ExportRequested {
            request_id: Uuid::now_v7(),
            customer_id: customer,
        },
    );
    let erase = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        CustomerErased {
            request_id: Uuid::now_v7(),
            customer_id: customer,
        },
    );
    comptoir_testkit::publish(
        &app.pulsar,
        &app.namespace.topic(EXPORT_REQUESTS_TOPIC),
        &export,
    )
    .await;
    comptoir_testkit::publish(
        &app.pulsar,
        &app.namespace.topic(CUSTOMER_ERASED_TOPIC),
        &erase,
    )
    .await;

    let (key, payload) = receive(&mut slices).await;
    let slice: CloudEvent<ExportSlice> = serde_json::from_slice(&payload).expect("a slice");
    assert_eq!(key, Some(customer.to_string()));
    assert_eq!(slice.source, "/comptoir/inventory");
    assert_eq!(slice.data.request_id, export.data.request_id);
    assert_eq!(slice.data.service, "inventory");
    assert_eq!(slice.data.data["records"], json!([]));
    assert!(
        slice.data.data["statement"]
            .as_str()
            .is_some_and(|s| s.contains("no personal data"))
    );

    let (key, payload) = receive(&mut confirmations).await;
    let confirmed: CloudEvent<ErasureConfirmed> =
        serde_json::from_slice(&payload).expect("a confirmation");
    assert_eq!(key, Some(customer.to_string()));
    assert_eq!(confirmed.data.request_id, erase.data.request_id);
    assert_eq!(confirmed.data.customer_id, customer);
    assert_eq!(confirmed.data.summary["removed"], 0);
}
