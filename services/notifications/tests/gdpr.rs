//! GDPR export and erasure through the real broker, as identity asks: the service answers
//! with the customer's deliveries, and erases them.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::gdpr::{
    ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC, ErasureConfirmed, ExportSlice,
};
use comptoir_events::contracts::identity::{
    CUSTOMER_ERASED_TOPIC, CustomerErased, EXPORT_REQUESTS_TOPIC, ExportRequested,
};
use comptoir_events::contracts::orders::OrderStatus;
use futures::TryStreamExt;
use pulsar::{Consumer, TokioExecutor};
use support::{order_changed, spawn_app_alone};
use uuid::Uuid;

async fn receive<T: serde::de::DeserializeOwned>(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> (Option<String>, CloudEvent<T>) {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("a message within 30 s")
        .expect("stream ok")
        .expect("stream open");
    consumer.ack(&message).await.expect("ack");
    (
        message.metadata().partition_key.clone(),
        serde_json::from_slice(&message.payload.data).expect("an event"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_lists_the_customers_deliveries_and_erasure_deletes_them() {
    let app = spawn_app_alone().await;
    let customer = Uuid::now_v7();
    let (first, second, someone_elses) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    app.publish(&order_changed(first, customer, OrderStatus::Confirmed))
        .await;
    app.publish(&order_changed(second, customer, OrderStatus::Cancelled))
        .await;
    app.publish(&order_changed(
        someone_elses,
        Uuid::now_v7(),
        OrderStatus::Confirmed,
    ))
    .await;
    app.wait_inbox(3).await;

    let mut slices = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(EXPORT_SLICES_TOPIC),
        "identity-test",
    )
    .await;
    let mut confirmations = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(ERASURE_CONFIRMATIONS_TOPIC),
        "identity-test",
    )
    .await;

    let export = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        ExportRequested {
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
    let (key, slice) = receive::<ExportSlice>(&mut slices).await;
    assert_eq!(key, Some(customer.to_string()));
    assert_eq!(slice.data.request_id, export.data.request_id);
    assert_eq!(slice.data.service, "notifications");
    let records = slice.data.data["records"].as_array().expect("records");
    let mut orders: Vec<String> = records
        .iter()
        .map(|r| r["order_id"].as_str().expect("order_id").to_owned())
        .collect();
    orders.sort();
    let mut expected = vec![first.to_string(), second.to_string()];
    expected.sort();
    assert_eq!(orders, expected);
    assert!(
        records.iter().all(|r| r["kind"].is_string()
            && r["status"].is_string()
            && r["created_at"].is_string())
    );
    assert!(
        slice.data.data["statement"]
            .as_str()
            .is_some_and(|s| s.contains("no address"))
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
        &app.namespace.topic(CUSTOMER_ERASED_TOPIC),
        &erase,
    )
    .await;
    let (_, confirmed) = receive::<ErasureConfirmed>(&mut confirmations).await;
    assert_eq!(confirmed.data.request_id, erase.data.request_id);
    assert_eq!(confirmed.data.customer_id, customer);
    assert_eq!(confirmed.data.summary["removed"], 2);
    assert!(app.deliveries(first).await.is_empty());
    assert!(app.deliveries(second).await.is_empty());
    assert_eq!(app.deliveries(someone_elses).await.len(), 1);
}
