//! GDPR requests answered (the consent exported, then forgotten), and the retention job.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::gdpr::{
    ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC, ErasureConfirmed, ExportSlice,
};
use comptoir_events::contracts::identity::{
    CUSTOMER_ERASED_TOPIC, CustomerErased, EXPORT_REQUESTS_TOPIC, ExportRequested,
};
use futures::TryStreamExt as _;
use pulsar::{Consumer, TokioExecutor};
use serde_json::json;
use support::spawn_app;
use time::OffsetDateTime;
use uuid::Uuid;

async fn receive<T: serde::de::DeserializeOwned>(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
) -> CloudEvent<T> {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("a reply within 30 s")
        .expect("stream ok")
        .expect("stream open");
    serde_json::from_slice(&message.payload.data).expect("a reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdpr_export_shows_the_consent_and_erasure_forgets_it() {
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
    app.identity_says(customer, true, OffsetDateTime::now_utc())
        .await;
    app.consent_known(customer, true).await;

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
    let slice: CloudEvent<ExportSlice> = receive(&mut slices).await;
    assert_eq!(slice.source, "/comptoir/analytics");
    assert_eq!(slice.data.service, "analytics");
    assert_eq!(slice.data.request_id, export.data.request_id);
    let records = &slice.data.data["records"];
    assert_eq!(records[0]["kind"], "analytics-consent");
    assert_eq!(records[0]["granted"], true);
    assert!(
        slice.data.data["statement"]
            .as_str()
            .is_some_and(|s| s.contains("cannot be linked to you"))
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
    let confirmed: CloudEvent<ErasureConfirmed> = receive(&mut confirmations).await;
    assert_eq!(confirmed.data.request_id, erase.data.request_id);
    assert_eq!(confirmed.data.summary["removed"], 1);
    assert_eq!(confirmed.data.summary["retained"], json!([]));
    let left = app
        .db
        .admin()
        .await
        .expect("admin")
        .query_opt(
            "SELECT 1 FROM consents WHERE customer_id = $1",
            &[&customer],
        )
        .await
        .expect("query");
    assert!(left.is_none(), "the consent is forgotten");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_job_deletes_what_is_older_than_the_retention() {
    let app = spawn_app().await;
    let admin = app.db.admin().await.expect("admin");
    let (old, recent) = (Uuid::now_v7(), Uuid::now_v7());
    admin
        .batch_execute(&format!(
            "INSERT INTO clicks_per_minute (minute, kind, product_id, clicks) VALUES
               (date_trunc('minute', now() - interval '400 days'), 'product-view', '{old}', 5),
               (date_trunc('minute', now() - interval '10 days'), 'product-view', '{recent}', 7);
             INSERT INTO orders_per_minute (minute, stage, currency, orders, amount_minor) VALUES
               (date_trunc('minute', now() - interval '400 days'), 'confirmed', 'EUR', 1, 100),
               (date_trunc('minute', now() - interval '1 day'), 'confirmed', 'EUR', 1, 100);
             INSERT INTO inbox (subscription, event_id, processed_at) VALUES
               ('analytics-clickstream', '{old}', now() - interval '3 days'),
               ('analytics-clickstream', '{recent}', now());"
        ))
        .await
        .expect("seed");
    let pool = comptoir_store::connect(&comptoir_store::DatabaseSettings {
        pool_size: 1,
        ..app.db.settings()
    })
    .expect("pool");
    let pruned = comptoir_analytics::retention::pass(&pool, 395)
        .await
        .expect("a pass");
    assert_eq!(pruned.aggregates, 2);
    assert_eq!(pruned.inbox, 1);
    let kept: Vec<Uuid> = admin
        .query("SELECT product_id FROM clicks_per_minute", &[])
        .await
        .expect("query")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(kept, [recent]);
    let again = comptoir_analytics::retention::pass(&pool, 395)
        .await
        .expect("a pass");
    assert_eq!((again.aggregates, again.inbox), (0, 0));
    app.stop().await;
}
