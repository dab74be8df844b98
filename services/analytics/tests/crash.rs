//! `kill -9` of the analytics binary while its processor works through the click stream: after
//! a restart the aggregates are exact, every click counted once. Counts and inbox ids commit
//! together, and the broker redelivers whatever was not acknowledged.

mod support;

use std::sync::Arc;
use std::time::Duration;

use comptoir_analytics::CLICKSTREAM_SUBSCRIPTION;
use comptoir_events::CloudEvent;
use comptoir_events::contracts::analytics::{CLICKSTREAM_TOPIC, Click, ClickBatch, ClickKind};
use comptoir_testkit::jwks::Keys;
use comptoir_testkit::{ServiceProcess, TestDatabase, TestNamespace, wait_for};
use time::OffsetDateTime;
use uuid::Uuid;

/// Messages on the stream, and clicks per message.
const MESSAGES: usize = 3_000;
const CLICKS: usize = 20;
/// Products the views are spread over.
const PRODUCTS: usize = 25;

async fn start(db: &TestDatabase, namespace: &TestNamespace, keys: &Keys) -> ServiceProcess {
    let (_, token_file, keys_dir) = support::secrets(db);
    let (mut command, port) = ServiceProcess::command(
        env!("CARGO_BIN_EXE_comptoir-analytics"),
        "analytics",
        db,
        &namespace.name,
    );
    command
        .env("COMPTOIR_ANALYTICS__IDENTITY_NAMESPACE", &namespace.name)
        .env("COMPTOIR_ANALYTICS__ORDERS_NAMESPACE", &namespace.name)
        .env("COMPTOIR_ANALYTICS__AUTH__URL", &keys.url)
        .env("COMPTOIR_ANALYTICS__ADMIN_TOKEN_FILE", token_file)
        .env("COMPTOIR_ANALYTICS__PSEUDONYM_KEYS_DIR", keys_dir);
    ServiceProcess::start(command, port)
        .await
        .expect("analytics binary")
}

/// Product views counted so far, from the database.
async fn counted(db: &TestDatabase) -> i64 {
    db.admin()
        .await
        .expect("admin")
        .query_one(
            "SELECT coalesce(sum(clicks), 0)::bigint FROM clicks_per_minute",
            &[],
        )
        .await
        .expect("sum")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_mid_stream_counts_every_click_exactly_once_after_restart() {
    let (db, namespace) = support::fresh().await;
    let keys = Arc::new(Keys::start().await);
    // A first run creates the durable subscription; stopped, it leaves the stream to pile up.
    start(&db, &namespace, &keys).await.kill();

    let pulsar = pulsar::Pulsar::builder(
        comptoir_testkit::pulsar_url().as_str(),
        pulsar::TokioExecutor,
    )
    .build()
    .await
    .expect("connect");
    let topic = namespace.topic(CLICKSTREAM_TOPIC);
    let mut producer = pulsar
        .producer()
        .with_topic(&topic)
        .with_options(pulsar::ProducerOptions {
            // Wait for room in the client's queue rather than fail with SlowDown.
            block_queue_if_full: true,
            ..Default::default()
        })
        .build()
        .await
        .expect("producer");
    let products: Vec<Uuid> = (0..PRODUCTS).map(|_| Uuid::now_v7()).collect();
    let now = OffsetDateTime::now_utc();
    let mut receipts = Vec::with_capacity(MESSAGES);
    for message in 0..MESSAGES {
        let visitor = format!("{:032x}", message % 97);
        let batch = ClickBatch {
            visitor: visitor.clone(),
            epoch: "2026-12".to_owned(),
            signed_in: false,
            clicks: (0..CLICKS)
                .map(|click| Click {
                    kind: ClickKind::ProductView,
                    at: now,
                    product_id: Some(products[(message + click) % PRODUCTS]),
                    page: None,
                    results: None,
                    quantity: None,
                })
                .collect(),
        };
        let event = CloudEvent::new("/comptoir/analytics", visitor.clone(), batch);
        receipts.push(
            producer
                .send_non_blocking(pulsar::producer::Message {
                    payload: serde_json::to_vec(&event).expect("json"),
                    partition_key: Some(visitor),
                    ..Default::default()
                })
                .await
                .expect("send"),
        );
    }
    for receipt in receipts {
        receipt.await.expect("broker acknowledgement");
    }
    let total = (MESSAGES * CLICKS) as i64;

    // Killed as soon as its first transactions have committed.
    let process = start(&db, &namespace, &keys).await;
    let at_kill = wait_for("the first counts", Duration::from_secs(60), || async {
        let now = counted(&db).await;
        (now > 0).then_some(now)
    })
    .await
    .expect("counting started");
    process.kill();
    let after_kill = counted(&db).await;
    assert!(
        after_kill < total,
        "the processor was killed before the end ({at_kill}, then {after_kill} of {total})"
    );

    let _process = start(&db, &namespace, &keys).await;
    comptoir_testkit::drained(&topic, CLICKSTREAM_SUBSCRIPTION).await;
    assert_eq!(counted(&db).await, total, "every click counted once");
    let per_product: Vec<i64> = db
        .admin()
        .await
        .expect("admin")
        .query(
            "SELECT sum(clicks)::bigint FROM clicks_per_minute GROUP BY product_id",
            &[],
        )
        .await
        .expect("per product")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(per_product.len(), PRODUCTS);
    assert!(
        per_product.iter().all(|&n| n == total / PRODUCTS as i64),
        "{per_product:?}"
    );
}
