//! The relay wakes on the database's `NOTIFY outbox`, so events written by any connection (not
//! only this process) leave at once rather than at the next poll.

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::contracts::catalog::ProductChanged;
use comptoir_events::outbox::{OUTBOX_TABLE_SQL, Relay, enqueue};
use comptoir_store::{DatabaseSettings, TlsMode};
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url};
use futures::TryStreamExt;
use pulsar::{Pulsar, TokioExecutor};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_by_another_connection_are_published_on_notify() {
    let db = TestDatabase::create("events_test").await.expect("db");
    let writer = db.connect_as_role(&db.name).await.expect("connect");
    writer
        .batch_execute(OUTBOX_TABLE_SQL)
        .await
        .expect("schema");
    let settings = DatabaseSettings {
        tls: TlsMode::VerifyFull,
        ca_file: Some(comptoir_testkit::pg_ca_file()),
        pool_size: 2,
        ..db.settings()
    };
    let pool = comptoir_store::connect(&settings).expect("pool");
    let settings_copy = settings.clone();
    let namespace = TestNamespace::create().await.expect("namespace");
    let topic = namespace.topic("events");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let mut consumer = comptoir_testkit::subscribe(&pulsar, &topic, "notify-test").await;

    // Polling once an hour: only a notification can make these rows leave within the test.
    let relay = Relay::new(pool, pulsar.clone(), "notify-test")
        .poll_every(Duration::from_secs(3600))
        .listen_on(settings);
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));

    // Another pool: its commits reach the relay only through the database.
    let writers = comptoir_store::connect(&DatabaseSettings {
        tls: TlsMode::Disable,
        ca_file: None,
        ..settings_copy
    })
    .expect("writer pool");
    let mut writer = writers.get().await.expect("writer");
    for name in ["first", "second", "third"] {
        let data = ProductChanged {
            name: name.to_owned(),
            ..ProductChanged::sample()
        };
        let event = CloudEvent::new("/comptoir/test", data.product_id.to_string(), data);
        let tx = writer.transaction().await.expect("begin");
        enqueue(&tx, &topic, &event).await.expect("enqueue");
        tx.commit().await.expect("commit");

        let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
            .await
            .unwrap_or_else(|_| panic!("{name} was not published on NOTIFY"))
            .expect("stream ok")
            .expect("stream open");
        let received: CloudEvent<ProductChanged> =
            serde_json::from_slice(&message.payload.data).expect("event");
        assert_eq!(received.id, event.id);
        consumer.ack(&message).await.expect("ack");
    }
    stop.cancel();
    task.await.expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_backlog_is_published_once_each_in_order() {
    // Thousands of rows at once fill the client's send queue; the relay must wait for room,
    // not fail and republish what already went out.
    let db = TestDatabase::create("events_test").await.expect("db");
    db.connect_as_role(&db.name)
        .await
        .expect("connect")
        .batch_execute(OUTBOX_TABLE_SQL)
        .await
        .expect("schema");
    let settings = DatabaseSettings {
        pool_size: 2,
        ..db.settings()
    };
    let pool = comptoir_store::connect(&settings).expect("pool");
    let namespace = TestNamespace::create().await.expect("namespace");
    let topic = namespace.topic("backlog");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let mut consumer = comptoir_testkit::subscribe(&pulsar, &topic, "backlog-test").await;

    const ROWS: usize = 3_000;
    let product = uuid::Uuid::now_v7();
    {
        let mut client = pool.get().await.expect("client");
        let tx = client.transaction().await.expect("begin");
        for version in 1..=ROWS as i64 {
            let data = ProductChanged {
                product_id: product,
                version,
                ..ProductChanged::sample()
            };
            let event = CloudEvent::new("/comptoir/test", product.to_string(), data);
            enqueue(&tx, &topic, &event).await.expect("enqueue");
        }
        tx.commit().await.expect("commit");
    }
    let stop = CancellationToken::new();
    let task =
        tokio::spawn(Relay::new(pool.clone(), pulsar.clone(), "backlog-test").run(stop.clone()));

    for expected in 1..=ROWS as i64 {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.try_next())
            .await
            .expect("the backlog keeps flowing")
            .expect("stream ok")
            .expect("stream open");
        let event: CloudEvent<ProductChanged> =
            serde_json::from_slice(&message.payload.data).expect("event");
        assert_eq!(
            event.data.version, expected,
            "one key's events arrive in order, once"
        );
        consumer.ack(&message).await.expect("ack");
    }
    stop.cancel();
    task.await.expect("relay stops");
    let admin =
        comptoir_events::admin::PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    let stats = admin.topic_stats(&topic).await.expect("stats");
    assert_eq!(
        stats["msgInCounter"], ROWS as u64,
        "nothing was published twice: {stats}"
    );
    let left: i64 = pool
        .get()
        .await
        .expect("client")
        .query_one("SELECT count(*) FROM outbox", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0);
}

/// Enqueues a product event named `name` for `topic`, committed on its own.
async fn write(writers: &deadpool_postgres::Pool, topic: &str, name: &str) {
    let writer = writers.get().await.expect("writer");
    let data = ProductChanged {
        name: name.to_owned(),
        ..ProductChanged::sample()
    };
    let event = CloudEvent::new("/comptoir/test", data.product_id.to_string(), data);
    enqueue(&writer, topic, &event).await.expect("enqueue");
}

/// The next message and its product name.
async fn receive(
    consumer: &mut pulsar::Consumer<Vec<u8>, TokioExecutor>,
) -> (pulsar::consumer::Message<Vec<u8>>, String) {
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.try_next())
        .await
        .expect("published within 30 s")
        .expect("stream ok")
        .expect("stream open");
    let event: CloudEvent<ProductChanged> =
        serde_json::from_slice(&message.payload.data).expect("event");
    (message, event.data.name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_relay_of_several_publishes_and_a_standby_takes_over() {
    let db = TestDatabase::create("events_test").await.expect("db");
    let own = db.connect_as_role(&db.name).await.expect("connect");
    own.batch_execute(OUTBOX_TABLE_SQL).await.expect("schema");
    let settings = DatabaseSettings {
        tls: TlsMode::Disable,
        pool_size: 3,
        ..db.settings()
    };
    let namespace = TestNamespace::create().await.expect("namespace");
    let topic = namespace.topic("replicas");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let mut consumer = comptoir_testkit::subscribe(&pulsar, &topic, "replicas-test").await;
    let admin =
        comptoir_events::admin::PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);

    // Two replicas of a service: each its own pool and relay on the same outbox.
    let start = |name: &'static str| {
        let pool = comptoir_store::connect(&settings).expect("pool");
        let relay = Relay::new(pool, pulsar.clone(), name)
            .poll_every(Duration::from_millis(100))
            .listen_on(settings.clone());
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(relay.run(stop)))
    };
    let (stop_a, task_a) = start("replica-a");
    let (stop_b, task_b) = start("replica-b");

    let writers = comptoir_store::connect(&settings).expect("writer pool");
    for name in ["one", "two", "three"] {
        write(&writers, &topic, name).await;
    }
    for expected in ["one", "two", "three"] {
        let (message, name) = receive(&mut consumer).await;
        assert_eq!(name, expected);
        consumer.ack(&message).await.expect("ack");
    }
    let stats = admin.topic_stats(&topic).await.expect("stats");
    let publishers = stats["publishers"].as_array().map_or(0, Vec::len);
    assert_eq!(publishers, 1, "only the leader has a producer: {stats}");
    let leader = stats["publishers"][0]["producerName"]
        .as_str()
        .expect("producer name")
        .to_owned();

    // The leader stops (its lock goes with its connection); the standby carries on.
    let (stop_leader, task_leader, stop_standby, task_standby) = if leader.starts_with("replica-a")
    {
        (stop_a, task_a, stop_b, task_b)
    } else {
        (stop_b, task_b, stop_a, task_a)
    };
    stop_leader.cancel();
    task_leader.await.expect("leader stops");
    write(&writers, &topic, "four").await;
    let (message, name) = receive(&mut consumer).await;
    assert_eq!(name, "four");
    consumer.ack(&message).await.expect("ack");
    let stats = admin.topic_stats(&topic).await.expect("stats");
    let now = stats["publishers"][0]["producerName"]
        .as_str()
        .unwrap_or("");
    assert!(
        !now.is_empty() && now != leader,
        "the standby publishes now: {stats}"
    );
    stop_standby.cancel();
    task_standby.await.expect("standby stops");
}

/// A relay that loses the lock and takes it back later (a database outage, or a standby that
/// led meanwhile) publishes what follows. Its new producers must be new to the broker: with
/// deduplication on (as the topology has it), producers with the old names would number their
/// messages from 0 again, and the broker would drop them as replays while answering success.
/// Found by dev/chaos.sh: after a PostgreSQL restart, an order's reserve command left the
/// outbox and never reached the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_takes_the_lock_back_publishes_what_follows() {
    let db = TestDatabase::create("events_test").await.expect("db");
    let own = db.connect_as_role(&db.name).await.expect("connect");
    own.batch_execute(OUTBOX_TABLE_SQL).await.expect("schema");
    let settings = DatabaseSettings {
        tls: TlsMode::Disable,
        pool_size: 3,
        ..db.settings()
    };
    let namespace = TestNamespace::create().await.expect("namespace");
    let admin =
        comptoir_events::admin::PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    admin
        .set_policy(&namespace.name, "deduplication", serde_json::json!(true))
        .await
        .expect("deduplication on");
    let topic = namespace.topic("lock-back");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let mut consumer = comptoir_testkit::subscribe(&pulsar, &topic, "lock-back-test").await;
    let relay = Relay::new(
        comptoir_store::connect(&settings).expect("pool"),
        pulsar.clone(),
        "lock-back",
    )
    .poll_every(Duration::from_millis(100));
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone()));

    let writers = comptoir_store::connect(&settings).expect("writer pool");
    for name in ["one", "two", "three"] {
        write(&writers, &topic, name).await;
        let (message, received) = receive(&mut consumer).await;
        assert_eq!(received, name);
        consumer.ack(&message).await.expect("ack");
    }

    // The database goes away for the service, as in an outage: its role may not log in and
    // its connections are cut, so the relay loses the lock and cannot take it back; once it
    // has let its producers go, the role logs in again and the relay leads again.
    let admin_db = db.admin().await.expect("admin");
    let role = db.name.as_str();
    admin_db
        .batch_execute(&format!(
            "ALTER ROLE \"{role}\" NOLOGIN; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
        ))
        .await
        .expect("the service's connections cut");
    comptoir_testkit::wait_for("the producers closed", Duration::from_secs(10), || async {
        let stats = admin.topic_stats(&topic).await.ok()?;
        stats["publishers"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await
    .expect("a relay without the lock lets its producers go");
    admin_db
        .batch_execute(&format!("ALTER ROLE \"{role}\" LOGIN"))
        .await
        .expect("the role logs in again");

    for name in ["four", "five"] {
        write(&writers, &topic, name).await;
        let (message, received) = receive(&mut consumer).await;
        assert_eq!(
            received, name,
            "published after the relay took the lock back"
        );
        consumer.ack(&message).await.expect("ack");
    }
    stop.cancel();
    task.await.expect("relay stops");
}
