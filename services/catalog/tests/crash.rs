//! kill -9 of the publishing process between the broker's acknowledgement and the outbox
//! cleanup: the restarted process publishes the event again, and a consumer applies it once.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::consumer::{
    ConsumerConfig, EventConsumer, Handler, HandlerError, INBOX_TABLE_SQL,
};
use comptoir_events::contracts::catalog::ProductChanged;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use pulsar::{Pulsar, TokioExecutor};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

/// A downstream service's effect: one row per applied product event.
struct Apply;

impl Handler<ProductChanged> for Apply {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO applied (product_id, version) VALUES ($1, $2)",
                &[&event.data.product_id, &event.data.version],
            )
            .await?;
            Ok(())
        })
    }
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    db.admin()
        .await
        .expect("admin")
        .query_one(sql, &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_publish_and_cleanup_is_applied_once() {
    let catalog_db = TestDatabase::create("catalog_test").await.expect("db");
    let namespace = TestNamespace::create().await.expect("namespace");
    let topic = namespace.topic(comptoir_catalog::PRODUCT_TOPIC);

    // The consumer: another service with its own database and inbox.
    let consumer_db = TestDatabase::create("consumer_test").await.expect("db");
    consumer_db
        .connect_as_role(&consumer_db.name)
        .await
        .expect("connect")
        .batch_execute(&format!(
            "{INBOX_TABLE_SQL}\n CREATE TABLE applied (product_id uuid NOT NULL, version bigint NOT NULL);"
        ))
        .await
        .expect("schema");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let stop = CancellationToken::new();
    let consumer = EventConsumer::new(
        comptoir_store::connect(&consumer_db.settings()).expect("pool"),
        pulsar,
        ConsumerConfig::new(&topic, "downstream"),
        Apply,
    );
    tokio::spawn(consumer.run(stop.clone()));

    // First run: stops for good after the broker acknowledged, before deleting the row.
    let failpoint = [("COMPTOIR_FAILPOINT", "outbox-after-publish".to_owned())];
    let (mut doomed, base) = support::spawn_binary(&catalog_db, &namespace, &failpoint).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/admin/products"))
        .bearer_auth(support::BINARY_ADMIN_TOKEN)
        .json(&support::product_body("CRA-001", "Crash-tested kettle"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    wait_for(
        "the first delivery to be applied",
        Duration::from_secs(30),
        || async { (count(&consumer_db, "SELECT count(*) FROM applied").await == 1).then_some(()) },
    )
    .await
    .expect("applied");
    assert_eq!(
        count(&catalog_db, "SELECT count(*) FROM outbox").await,
        1,
        "the row is still there: the process has not cleaned up"
    );

    doomed.kill().expect("kill -9");
    doomed.wait().expect("reaped");

    // Second run: republishes the row (a real duplicate on the topic), then cleans up.
    let (mut restarted, _) = support::spawn_binary(&catalog_db, &namespace, &[]).await;
    wait_for(
        "the outbox to be cleaned up",
        Duration::from_secs(30),
        || async { (count(&catalog_db, "SELECT count(*) FROM outbox").await == 0).then_some(()) },
    )
    .await
    .expect("cleaned up");
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    wait_for(
        "the duplicate to be consumed",
        Duration::from_secs(30),
        || async {
            let stats = admin.topic_stats(&topic).await.ok()?;
            let sub = &stats["subscriptions"]["downstream"];
            (stats["msgInCounter"] == 2 && sub["msgBacklog"] == 0 && sub["unackedMessages"] == 0)
                .then_some(())
        },
    )
    .await
    .expect("the event went out twice and both copies were consumed");
    assert_eq!(
        count(&consumer_db, "SELECT count(*) FROM applied").await,
        1,
        "applied exactly once"
    );
    stop.cancel();
    restarted.kill().expect("stop");
    let _ = restarted.wait();
}
