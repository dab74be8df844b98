//! THE OVERSELL RACE: several inventory instances on one database and one subscription, 40
//! shoppers after the last 5 units at once. Key_Shared spreads the orders over the instances,
//! so their transactions really run side by side; exactly 5 may win.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::contracts::inventory::{STOCK_LEVELS_TOPIC, StockLevelChanged, StockResult};
use comptoir_events::contracts::orders::{STOCK_COMMANDS_TOPIC, StockAction};
use comptoir_inventory::COMMANDS_SUBSCRIPTION;
use comptoir_inventory::commands::result_name;
use comptoir_testkit::wait_for;
use futures::TryStreamExt;
use support::{command, line, next_outcome, spawn_app, spawn_on};
use uuid::Uuid;

const INSTANCES: usize = 3;
const SHOPPERS: usize = 40;
const UNITS: i64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_shoppers_five_units_three_instances_exactly_five_reservations() {
    let first = spawn_app().await;
    let product = first.product(UNITS).await;
    // The others join once the schema exists (migrations are not meant to race).
    let mut instances = vec![first];
    for _ in 1..INSTANCES {
        let (db, namespace) = (instances[0].db.clone(), instances[0].namespace.clone());
        instances.push(spawn_on(db, namespace, |_| {}).await);
    }
    let app = &instances[0];

    // Every instance's consumer is on the subscription before the rush starts.
    let commands_topic = app.namespace.topic(STOCK_COMMANDS_TOPIC);
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    let consumers = |stats: &serde_json::Value| {
        stats["subscriptions"][COMMANDS_SUBSCRIPTION]["consumers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait_for(
        "every instance to subscribe",
        Duration::from_secs(60),
        || async {
            let stats = admin.topic_stats(&commands_topic).await.ok()?;
            (consumers(&stats).len() == INSTANCES).then_some(())
        },
    )
    .await
    .expect("subscribed");

    let mut outcomes = app.outcomes("oversell-test").await;
    let mut levels = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(STOCK_LEVELS_TOPIC),
        "oversell-levels",
    )
    .await;

    // Forty reserves of one unit, for forty orders, sent at once.
    let mut producer = app
        .pulsar
        .producer()
        .with_topic(&commands_topic)
        .build()
        .await
        .expect("producer");
    let mut receipts = Vec::with_capacity(SHOPPERS);
    for _ in 0..SHOPPERS {
        let order = Uuid::now_v7();
        let event = CloudEvent::new(
            "/comptoir/orders",
            order.to_string(),
            command(order, StockAction::Reserve, vec![line(product, 1)]),
        );
        let receipt = producer
            .create_message()
            .with_key(order.to_string())
            .with_content(serde_json::to_vec(&event).expect("json"))
            .send_non_blocking()
            .await
            .expect("send");
        receipts.push(receipt);
    }
    for receipt in receipts {
        receipt.await.expect("broker acknowledgement");
    }

    let mut results: HashMap<&str, usize> = HashMap::new();
    let mut reasons: HashMap<Option<String>, usize> = HashMap::new();
    for _ in 0..SHOPPERS {
        let (_, outcome) = next_outcome(&mut outcomes).await;
        *results.entry(result_name(outcome.data.result)).or_default() += 1;
        if outcome.data.result == StockResult::Refused {
            *reasons.entry(outcome.data.reason).or_default() += 1;
        }
    }
    assert_eq!(
        results,
        HashMap::from([("reserved", 5), ("refused", 35)]),
        "exactly the units there were"
    );
    assert_eq!(
        reasons,
        HashMap::from([(Some("out-of-stock".to_owned()), 35)])
    );

    // The database agrees.
    let db = app.db.admin().await.expect("admin");
    let row = db
        .query_one(
            "SELECT on_hand, reserved FROM stock WHERE product_id = $1",
            &[&product],
        )
        .await
        .expect("stock");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (UNITS, UNITS));
    let held: i64 = db
        .query_one(
            "SELECT coalesce(sum(quantity), 0)::bigint FROM reservation_lines \
             JOIN reservations USING (order_id) WHERE status = 'reserved'",
            &[],
        )
        .await
        .expect("sum")
        .get(0);
    assert_eq!(held, UNITS);
    assert_eq!(
        app.count("FROM reservations WHERE status = 'refused'")
            .await,
        35
    );

    // And at no moment did it hold more than it had: every published level, in order.
    // Created, counted, then one per successful reserve.
    let mut versions = Vec::new();
    for _ in 0..(2 + UNITS) {
        let message = tokio::time::timeout(Duration::from_secs(30), levels.try_next())
            .await
            .expect("a level within 30 s")
            .expect("stream ok")
            .expect("stream open");
        levels.ack(&message).await.expect("ack");
        let level: CloudEvent<StockLevelChanged> =
            serde_json::from_slice(&message.payload.data).expect("a level");
        let level = level.data;
        assert!(level.reserved <= level.on_hand, "oversold: {level:?}");
        assert_eq!(level.available, level.on_hand - level.reserved);
        versions.push(level.version);
    }
    assert_eq!(versions, (1..=2 + UNITS).collect::<Vec<_>>());

    // The race was real: more than one instance handled commands.
    let stats = admin.topic_stats(&commands_topic).await.expect("stats");
    let busy = consumers(&stats)
        .iter()
        .filter(|c| c["msgOutCounter"].as_i64().unwrap_or(0) > 0)
        .count();
    assert!(busy >= 2, "only {busy} instance(s) got commands: {stats}");
}
