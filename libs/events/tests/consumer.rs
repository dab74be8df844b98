//! Idempotent consumers against the real broker and database: duplicates applied once, a
//! poison message dead-lettered without stopping its key, and a database outage that stalls the
//! consumer without losing or dead-lettering anything; dead letters listed, inspected,
//! replayed and discarded through [`comptoir_events::dlq`] (what `comptoir-xtask dlq` runs).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::consumer::{
    ConsumerConfig, EventConsumer, Handler, HandlerError, INBOX_TABLE_SQL,
};
use comptoir_events::contracts::catalog::ProductChanged;
use comptoir_events::dlq::{self, Action, DlqError, Selection};
use comptoir_store::{DatabaseSettings, TlsMode};
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use deadpool_postgres::{Pool, Transaction};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::producer::Message;
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Records each product change as an effect row; refuses products named "poison" until the
/// flag says the cause was fixed.
struct RecordEffects {
    poison_cured: Arc<AtomicBool>,
}

impl Handler<ProductChanged> for RecordEffects {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if event.data.name == "poison" && !self.poison_cured.load(Ordering::SeqCst) {
                return Err("this product cannot be applied".into());
            }
            tx.execute(
                "INSERT INTO effects (event_id, product_id, version) VALUES ($1, $2, $3)",
                &[&event.id, &event.data.product_id, &event.data.version],
            )
            .await?;
            Ok(())
        })
    }
}

struct Fixture {
    db: TestDatabase,
    /// Held so the namespace lives (and is deleted) with the fixture.
    _namespace: TestNamespace,
    pool: Pool,
    pulsar: Pulsar<TokioExecutor>,
    admin: PulsarAdmin,
    topic: String,
    namespace: String,
    poison_cured: Arc<AtomicBool>,
}

async fn fixture() -> Fixture {
    let db = TestDatabase::create("events_test").await.expect("db");
    let own = db.connect_as_role(&db.name).await.expect("connect");
    own.batch_execute(
        &format!(
            "{INBOX_TABLE_SQL}\n CREATE TABLE effects (event_id uuid NOT NULL, product_id uuid NOT NULL, version bigint NOT NULL);"
        ),
    )
    .await
    .expect("schema");
    let pool = comptoir_store::connect(&DatabaseSettings {
        tls: TlsMode::Disable,
        pool_size: 2,
        connect_timeout_ms: 1_000,
        ..db.settings()
    })
    .expect("pool");
    let namespace = TestNamespace::create().await.expect("namespace");
    let topic = namespace.topic("product-events");
    let namespace_name = namespace.name.clone();
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    Fixture {
        db,
        _namespace: namespace,
        pool,
        pulsar,
        admin,
        topic,
        namespace: namespace_name,
        poison_cured: Arc::new(AtomicBool::new(false)),
    }
}

fn event(product: Uuid, version: i64, name: &str) -> CloudEvent<ProductChanged> {
    let data = ProductChanged {
        product_id: product,
        version,
        name: name.to_owned(),
        ..ProductChanged::sample()
    };
    CloudEvent::new("/comptoir/test", product.to_string(), data)
}

impl Fixture {
    fn start(&self, config: ConsumerConfig) -> CancellationToken {
        let stop = CancellationToken::new();
        let consumer = EventConsumer::new(
            self.pool.clone(),
            self.pulsar.clone(),
            config,
            RecordEffects {
                poison_cured: self.poison_cured.clone(),
            },
        );
        tokio::spawn(consumer.run(stop.clone()));
        stop
    }

    async fn publish(&self, events: &[&CloudEvent<ProductChanged>]) {
        let mut producer = self
            .pulsar
            .producer()
            .with_topic(&self.topic)
            .build()
            .await
            .expect("producer");
        for event in events {
            let message = Message {
                payload: serde_json::to_vec(event).expect("json"),
                partition_key: Some(event.subject.clone()),
                ..Default::default()
            };
            producer
                .send_non_blocking(message)
                .await
                .expect("send")
                .await
                .expect("ack");
        }
        producer.close().await.expect("close");
    }

    /// Waits until the subscription has nothing left to acknowledge.
    async fn drained(&self, subscription: &str) {
        wait_for(
            "the subscription to drain",
            Duration::from_secs(60),
            || async {
                let stats = self.admin.topic_stats(&self.topic).await.ok()?;
                let sub = &stats["subscriptions"][subscription];
                (sub["msgBacklog"] == 0 && sub["unackedMessages"] == 0).then_some(())
            },
        )
        .await
        .expect("drained");
    }

    async fn effects_of(&self, event_id: Uuid) -> i64 {
        let admin = self.db.admin().await.expect("admin");
        admin
            .query_one(
                "SELECT count(*) FROM effects WHERE event_id = $1",
                &[&event_id],
            )
            .await
            .expect("count")
            .get(0)
    }

    async fn dlq_consumer(&self, config: &ConsumerConfig) -> Consumer<Vec<u8>, TokioExecutor> {
        self.pulsar
            .consumer()
            .with_topic(&config.dead_letter_topic)
            .with_subscription("dlq-inspector")
            .with_subscription_type(SubType::Exclusive)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build()
            .await
            .expect("subscribe to the dead-letter topic")
    }
}

fn config(f: &Fixture, subscription: &str) -> ConsumerConfig {
    ConsumerConfig {
        max_redeliveries: 2,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        ..ConsumerConfig::new(&f.topic, subscription)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_applied_once() {
    let f = fixture().await;
    let cfg = config(&f, "effects");
    let stop = f.start(cfg.clone());
    let product = Uuid::now_v7();
    let a = event(product, 1, "Assam");
    let b = event(product, 2, "Assam, 250 g");
    // The same event twice, as a relay crash between publish and cleanup produces.
    f.publish(&[&a, &a, &b]).await;
    f.drained(&cfg.subscription).await;
    assert_eq!(f.effects_of(a.id).await, 1);
    assert_eq!(f.effects_of(b.id).await, 1);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_and_its_key_carries_on() {
    let f = fixture().await;
    let cfg = config(&f, "effects");
    let mut dlq = f.dlq_consumer(&cfg).await;
    let stop = f.start(cfg.clone());
    let product = Uuid::now_v7();
    let poison = event(product, 1, "poison");
    let next = event(product, 2, "Assam");
    f.publish(&[&poison, &next]).await;

    let message = tokio::time::timeout(Duration::from_secs(60), dlq.try_next())
        .await
        .expect("the poison event reaches the dead-letter topic")
        .expect("stream ok")
        .expect("stream open");
    let dead: CloudEvent<ProductChanged> =
        serde_json::from_slice(&message.payload.data).expect("event");
    assert_eq!(dead.id, poison.id);
    assert_eq!(
        message.metadata().partition_key.as_deref(),
        Some(product.to_string().as_str())
    );
    dlq.ack(&message).await.expect("ack");

    f.drained(&cfg.subscription).await;
    assert_eq!(
        f.effects_of(next.id).await,
        1,
        "the key's next event was applied"
    );
    assert_eq!(f.effects_of(poison.id).await, 0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_stalls_the_consumer_without_losing_events() {
    let f = fixture().await;
    let cfg = config(&f, "effects");
    let mut dlq = f.dlq_consumer(&cfg).await;
    let stop = f.start(cfg.clone());
    let first = event(Uuid::now_v7(), 1, "before the outage");
    f.publish(&[&first]).await;
    f.drained(&cfg.subscription).await;

    // Outage: the service's database refuses connections and its sessions are cut.
    let admin = comptoir_testkit::admin_client("postgres")
        .await
        .expect("admin");
    let block = format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", f.db.name);
    admin.batch_execute(&block).await.expect("block");
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&f.db.name],
        )
        .await
        .expect("terminate sessions");

    let during: Vec<_> = (0..5)
        .map(|i| event(Uuid::now_v7(), 1, &format!("during {i}")))
        .collect();
    f.publish(&during.iter().collect::<Vec<_>>()).await;
    // Long enough for several retry rounds: with a 50 ms base and 2 redeliveries, an outage
    // counted against the events would have dead-lettered them well within this.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let stats_during = loop {
        let stats = f.admin.topic_stats(&f.topic).await.expect("stats");
        if tokio::time::Instant::now() >= deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        stats_during["subscriptions"]["effects"]["msgBacklog"]
            .as_i64()
            .unwrap_or(0)
            >= 5,
        "nothing may be acknowledged while the database is down: {stats_during}"
    );

    let unblock = format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", f.db.name);
    admin.batch_execute(&unblock).await.expect("unblock");
    f.drained(&cfg.subscription).await;
    for e in std::iter::once(&first).chain(&during) {
        assert_eq!(
            f.effects_of(e.id).await,
            1,
            "{} applied exactly once",
            e.data.name
        );
    }
    let nothing = tokio::time::timeout(Duration::from_secs(2), dlq.try_next()).await;
    assert!(
        nothing.is_err(),
        "nothing may be dead-lettered because of an outage"
    );
    stop.cancel();
}

/// The value of a Prometheus sample of this process, for the fixture's topic.
fn metric(name: &str, topic: &str) -> f64 {
    let text = comptoir_platform::metrics::handle().render();
    let needle = format!("topic=\"{topic}\"");
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(&needle))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_inspected_replayed_and_discarded() {
    let f = fixture().await;
    comptoir_platform::metrics::handle();
    // As in production, the namespace retains messages: dead letters written before anyone
    // looked at the topic are still there for the cursor to start from.
    f.admin
        .set_policy(
            &f.namespace,
            "retention",
            serde_json::json!({ "retentionTimeInMinutes": 60, "retentionSizeInMB": 64 }),
        )
        .await
        .expect("retention");
    let cfg = config(&f, "effects");
    let stop = f.start(cfg.clone());
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let poison_a = event(a, 1, "poison");
    let poison_b = event(b, 1, "poison");
    let fine = event(a, 2, "Assam");
    f.publish(&[&poison_a, &poison_b, &fine]).await;
    f.drained(&cfg.subscription).await;

    let listed = wait_for(
        "two pending dead letters",
        Duration::from_secs(60),
        || async {
            let topics = dlq::list(&f.admin, &f.namespace).await.ok()?;
            (topics.len() == 1 && topics[0].pending == 2).then_some(topics)
        },
    )
    .await
    .expect("listed");
    assert_eq!(listed[0].topic, cfg.dead_letter_topic);

    let letters = dlq::inspect(&f.admin, &cfg.dead_letter_topic, 10)
        .await
        .expect("inspect");
    let ids: HashSet<String> = letters.iter().filter_map(|l| l.event_id.clone()).collect();
    assert_eq!(
        ids,
        HashSet::from([poison_a.id.to_string(), poison_b.id.to_string()])
    );
    let first = letters
        .iter()
        .find(|l| l.event_id == Some(poison_a.id.to_string()))
        .expect("poison a");
    assert_eq!(first.real_topic.as_deref(), Some(f.topic.as_str()));
    assert_eq!(first.key.as_deref(), Some(a.to_string().as_str()));
    assert_eq!(
        first.event_type.as_deref(),
        Some("comptoir.catalog.product-changed.v1")
    );
    let second = letters
        .iter()
        .find(|l| l.event_id == Some(poison_b.id.to_string()))
        .expect("poison b");
    // Inspecting moved nothing.
    assert_eq!(
        dlq::list(&f.admin, &f.namespace).await.expect("list")[0].pending,
        2
    );

    // The cause is fixed; replay one event by id, discard the other by message id.
    f.poison_cured.store(true, Ordering::SeqCst);
    let replayed = dlq::resolve(
        &f.admin,
        &f.pulsar,
        &cfg.dead_letter_topic,
        Action::Replay,
        &Selection::Ids(HashSet::from([poison_a.id.to_string()])),
    )
    .await
    .expect("replay");
    assert_eq!(replayed.done, vec![poison_a.id.to_string()]);
    assert_eq!(replayed.kept, 1);
    wait_for(
        "the replayed event's effect",
        Duration::from_secs(60),
        || async { (f.effects_of(poison_a.id).await == 1).then_some(()) },
    )
    .await
    .expect("replayed event applied");
    assert_eq!(
        dlq::list(&f.admin, &f.namespace).await.expect("list")[0].pending,
        1
    );

    let discarded = dlq::resolve(
        &f.admin,
        &f.pulsar,
        &cfg.dead_letter_topic,
        Action::Discard,
        &Selection::Ids(HashSet::from([second.message_id.clone()])),
    )
    .await
    .expect("discard");
    assert_eq!(discarded.done, vec![poison_b.id.to_string()]);
    assert_eq!(
        dlq::list(&f.admin, &f.namespace).await.expect("list")[0].pending,
        0
    );
    f.drained(&cfg.subscription).await;
    assert_eq!(
        f.effects_of(poison_b.id).await,
        0,
        "discarded, never applied"
    );
    assert_eq!(f.effects_of(poison_a.id).await, 1, "replayed once");
    assert_eq!(f.effects_of(fine.id).await, 1);

    assert!(matches!(
        dlq::inspect(&f.admin, &f.topic, 1).await,
        Err(DlqError::NotDeadLetterTopic { .. })
    ));

    // Consumed: the fine event and the replayed one; two failed for good; lag recorded.
    assert_eq!(metric("events_consumed_total", &f.topic), 2.0);
    assert_eq!(metric("events_dead_lettered_total", &f.topic), 2.0);
    // Each poison event failed once per delivery: `max_redeliveries` times.
    assert_eq!(metric("events_failed_total", &f.topic), 4.0);
    assert_eq!(metric("events_consume_lag_seconds_count", &f.topic), 2.0);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_started_before_its_namespace_exists_subscribes_once_it_does() {
    let f = fixture().await;
    comptoir_platform::metrics::handle();
    // A namespace nobody has created yet: the broker refuses the subscription.
    let late = format!(
        "comptoir-test/ns-late-{}",
        comptoir_testkit::unique_suffix()
    );
    let topic = format!("persistent://{late}/product-events");
    let cfg = ConsumerConfig {
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(400),
        ..ConsumerConfig::new(&topic, "effects")
    };
    let stop = f.start(cfg.clone());
    wait_for(
        "a refused subscription",
        Duration::from_secs(30),
        || async { (metric("events_subscribe_failures_total", &topic) >= 1.0).then_some(()) },
    )
    .await
    .expect("the subscription was refused at first");

    f.admin.ensure_namespace(&late).await.expect("namespace");
    wait_for("the subscription", Duration::from_secs(30), || async {
        let stats = f.admin.topic_stats(&topic).await.ok()?;
        stats["subscriptions"]["effects"]["consumers"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
            .then_some(())
    })
    .await
    .expect("subscribed once the namespace exists");
    let event = event(Uuid::now_v7(), 1, "late but there");
    let mut producer = f
        .pulsar
        .producer()
        .with_topic(&topic)
        .build()
        .await
        .expect("producer");
    producer
        .send_non_blocking(serde_json::to_vec(&event).expect("json"))
        .await
        .expect("send")
        .await
        .expect("ack");
    producer.close().await.expect("close");
    wait_for("the effect", Duration::from_secs(30), || async {
        (f.effects_of(event.id).await == 1).then_some(())
    })
    .await
    .expect("applied");
    stop.cancel();
    f.admin.delete_namespace(&late).await.expect("cleanup");
}

/// Records each event after a pause (a provider's answer, a contended row), counting how many
/// handlers run at once.
struct SlowEffects {
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

impl Handler<ProductChanged> for SlowEffects {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
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
async fn lanes_apply_keys_at_once_and_each_key_in_order() {
    let f = fixture().await;
    f.db.admin()
        .await
        .expect("admin")
        .batch_execute("ALTER TABLE effects ADD COLUMN seq bigserial")
        .await
        .expect("sequence column");
    // Eight keys, five versions each, interleaved as a busy topic carries them.
    let products: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let events: Vec<CloudEvent<ProductChanged>> = (1..=5)
        .flat_map(|version| products.iter().map(move |p| event(*p, version, "tea")))
        .collect();
    f.publish(&events.iter().collect::<Vec<_>>()).await;

    // One lane (the default), then four, each on its own subscription of the same messages.
    let mut most_at_once = Vec::new();
    for (lanes, subscription) in [(1, "one-lane"), (4, "four-lanes")] {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let cfg = ConsumerConfig {
            lanes,
            ..config(&f, subscription)
        };
        let consumer = EventConsumer::new(
            f.pool.clone(),
            f.pulsar.clone(),
            cfg.clone(),
            SlowEffects {
                running: running.clone(),
                most: most.clone(),
            },
        );
        tokio::spawn(consumer.run(stop.clone()));
        f.drained(&cfg.subscription).await;
        stop.cancel();
        most_at_once.push(most.load(Ordering::SeqCst));
    }
    assert_eq!(most_at_once[0], 1, "one lane applies one event at a time");
    assert!(
        most_at_once[1] >= 2,
        "four lanes (pool of two connections) applied at most {} at once",
        most_at_once[1]
    );

    // Every event applied once per subscription, and each key's versions in order both times.
    let admin = f.db.admin().await.expect("admin");
    for product in &products {
        let versions: Vec<i64> = admin
            .query(
                "SELECT version FROM effects WHERE product_id = $1 ORDER BY seq",
                &[product],
            )
            .await
            .expect("effects")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            versions,
            [1, 2, 3, 4, 5, 1, 2, 3, 4, 5],
            "product {product}"
        );
    }
}
