//! The broker restarts in the middle of a 10,000-event stream: relay and consumers reconnect on
//! their own, and every event's effect is present exactly once.
//!
//! Runs a private standalone (own data and ports) so stopping it disturbs no other test.

use std::sync::Arc;
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::consumer::INBOX_TABLE_SQL;
use comptoir_events::consumer::{ConsumerConfig, EventConsumer, Handler, HandlerError};
use comptoir_events::contracts::catalog::ProductChanged;
use comptoir_events::outbox::{OUTBOX_TABLE_SQL, Relay, enqueue};
use comptoir_testkit::standalone::Standalone;
use comptoir_testkit::{TestDatabase, wait_for};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use pulsar::{Pulsar, TokioExecutor};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 10_000;

const EFFECTS: &str = "CREATE TABLE effects (event_id uuid NOT NULL, product_id uuid NOT NULL, version bigint NOT NULL);";

struct Record;

impl Handler<ProductChanged> for Record {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            tx.execute(
                "INSERT INTO effects (event_id, product_id, version) VALUES ($1, $2, $3)",
                &[&event.id, &event.data.product_id, &event.data.version],
            )
            .await?;
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_effect_is_present_once_across_a_broker_restart() {
    let broker = Arc::new(
        tokio::task::spawn_blocking(Standalone::start)
            .await
            .expect("join")
            .expect("start a private standalone"),
    );
    let admin = PulsarAdmin::new(broker.admin_url(), None);
    admin
        .ensure_namespace("comptoir/stream")
        .await
        .expect("namespace");
    admin
        .set_policy("comptoir/stream", "deduplication", serde_json::json!(true))
        .await
        .expect("dedup");
    let topic = "persistent://comptoir/stream/product-events";

    let db = TestDatabase::create("events_test").await.expect("db");
    db.connect_as_role(&db.name)
        .await
        .expect("connect")
        .batch_execute(&format!("{OUTBOX_TABLE_SQL}\n{INBOX_TABLE_SQL}\n{EFFECTS}"))
        .await
        .expect("schema");
    let settings = comptoir_store::DatabaseSettings {
        pool_size: 6,
        ..db.settings()
    };
    let pool = comptoir_store::connect(&settings).expect("pool");
    let pulsar = Pulsar::builder(broker.url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let stop = CancellationToken::new();
    for _ in 0..2 {
        let consumer = EventConsumer::new(
            pool.clone(),
            pulsar.clone(),
            ConsumerConfig::new(topic, "stream"),
            Record,
        );
        tokio::spawn(consumer.run(stop.clone()));
    }
    let relay = Relay::new(pool.clone(), pulsar.clone(), "stream-test").listen_on(settings);
    tokio::spawn(relay.run(stop.clone()));

    // 100 products, 100 versions each, one event per transaction as a service writes them.
    let products: Vec<uuid::Uuid> = (0..100).map(|_| uuid::Uuid::now_v7()).collect();
    let writer = {
        let pool = pool.clone();
        let products = products.clone();
        tokio::spawn(async move {
            for version in 1..=(EVENTS / products.len()) as i64 {
                for product in &products {
                    let data = ProductChanged {
                        product_id: *product,
                        version,
                        ..ProductChanged::sample()
                    };
                    let event = CloudEvent::new("/comptoir/test", product.to_string(), data);
                    let mut client = pool.get().await.expect("client");
                    let tx = client.transaction().await.expect("begin");
                    enqueue(&tx, topic, &event).await.expect("enqueue");
                    tx.commit().await.expect("commit");
                }
            }
        })
    };

    let admin_db = db.admin().await.expect("admin");
    let effects = || async {
        admin_db
            .query_one("SELECT count(*) FROM effects", &[])
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    wait_for(
        "a quarter of the stream to be applied",
        Duration::from_secs(120),
        || async { (effects().await >= (EVENTS / 4) as i64).then_some(()) },
    )
    .await
    .expect("stream flowing");

    let b = Arc::clone(&broker);
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        b.stop()?;
        b.restart()
    })
    .await
    .expect("join")
    .expect("restart the broker mid-stream");

    writer.await.expect("every event written");
    wait_for("every effect", Duration::from_secs(300), || async {
        (effects().await >= EVENTS as i64).then_some(())
    })
    .await
    .expect("all events applied after the restart");
    let row = admin_db
        .query_one(
            "SELECT count(*), count(DISTINCT event_id), \
                    count(DISTINCT (product_id, version)) FROM effects",
            &[],
        )
        .await
        .expect("counts");
    let (all, distinct_events, distinct_versions): (i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (all, distinct_events, distinct_versions),
        (EVENTS as i64, EVENTS as i64, EVENTS as i64),
        "each event's effect exactly once"
    );
    stop.cancel();
}
