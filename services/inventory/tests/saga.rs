//! The checkout saga from inventory's side, through the real broker: orders' stock commands
//! produced on `stock-commands`, inventory's outcomes read from `stock-outcomes`.

mod support;

use std::time::Duration;

use comptoir_events::contracts::catalog::ProductChange;
use comptoir_events::contracts::inventory::{StockOutcome, StockResult};
use comptoir_events::contracts::orders::StockAction::{Commit, Release, Reserve};
use comptoir_testkit::wait_for;
use support::{ask, command, line, next_outcome, spawn_app, spawn_app_with};
use uuid::Uuid;

fn outcome(order: Uuid, result: StockResult, reason: Option<&str>) -> StockOutcome {
    StockOutcome {
        order_id: order,
        result,
        reason: reason.map(str::to_owned),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_commit_release_round_trip() {
    let app = spawn_app().await;
    let coffee = app.product(10).await;
    let tea = app.product(5).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let order = Uuid::now_v7();

    // Two lines of coffee are summed.
    let reserve = command(
        order,
        Reserve,
        vec![line(coffee, 2), line(tea, 1), line(coffee, 1)],
    );
    assert_eq!(
        ask(&app, &mut outcomes, reserve.clone()).await,
        outcome(order, StockResult::Reserved, None)
    );
    let (c, t) = (app.stock(coffee).await, app.stock(tea).await);
    assert_eq!((c.on_hand, c.reserved, c.available), (10, 3, 7));
    assert_eq!((t.on_hand, t.reserved), (5, 1));

    // Repeated under a new event id: the same answer, nothing more held.
    assert_eq!(
        ask(&app, &mut outcomes, reserve.clone()).await.result,
        StockResult::Reserved
    );
    assert_eq!(app.stock(coffee).await.reserved, 3);

    assert_eq!(
        ask(&app, &mut outcomes, command(order, Commit, vec![])).await,
        outcome(order, StockResult::Committed, None)
    );
    let (c, t) = (app.stock(coffee).await, app.stock(tea).await);
    assert_eq!((c.on_hand, c.reserved, c.available), (7, 0, 7));
    assert_eq!((t.on_hand, t.reserved), (4, 0));
    // A repeated commit, and a reserve after the commit, say where things stand.
    assert_eq!(
        ask(&app, &mut outcomes, command(order, Commit, vec![]))
            .await
            .result,
        StockResult::Committed
    );
    assert_eq!(
        ask(&app, &mut outcomes, reserve).await.result,
        StockResult::Committed
    );
    assert_eq!(app.stock(coffee).await.on_hand, 7);

    // Released after the sale (a refund): the units come back on hand, once.
    for _ in 0..2 {
        assert_eq!(
            ask(&app, &mut outcomes, command(order, Release, vec![])).await,
            outcome(order, StockResult::Released, None)
        );
        let (c, t) = (app.stock(coffee).await, app.stock(tea).await);
        assert_eq!((c.on_hand, c.reserved), (10, 0));
        assert_eq!((t.on_hand, t.reserved), (5, 0));
    }
    // Nothing is held any more, so nothing can be committed.
    assert_eq!(
        ask(&app, &mut outcomes, command(order, Commit, vec![])).await,
        outcome(order, StockResult::CommitRefused, Some("not-reserved"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_reservation_frees_its_units_and_a_redelivery_changes_nothing() {
    let app = spawn_app().await;
    let product = app.product(3).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let order = Uuid::now_v7();

    let event = app
        .send(command(order, Reserve, vec![line(product, 3)]))
        .await;
    assert_eq!(
        next_outcome(&mut outcomes).await.1.data.result,
        StockResult::Reserved
    );
    // The very same event again (a redelivery): the inbox drops it, no second outcome.
    app.send_event(&event).await;
    assert_eq!(
        ask(&app, &mut outcomes, command(order, Release, vec![])).await,
        outcome(order, StockResult::Released, None)
    );
    let stock = app.stock(product).await;
    assert_eq!((stock.on_hand, stock.reserved, stock.available), (3, 0, 3));
    assert_eq!(
        app.count("FROM inbox WHERE subscription = 'inventory-stock-commands'")
            .await,
        2
    );
    // A reserve for the released order is answered with its state, and holds nothing.
    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(order, Reserve, vec![line(product, 3)])
        )
        .await
        .result,
        StockResult::Released
    );
    assert_eq!(app.stock(product).await.reserved, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_before_its_reserve_leaves_a_tombstone() {
    let app = spawn_app().await;
    let product = app.product(5).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let order = Uuid::now_v7();

    assert_eq!(
        ask(&app, &mut outcomes, command(order, Release, vec![])).await,
        outcome(order, StockResult::Released, None)
    );
    let late = command(order, Reserve, vec![line(product, 1)]);
    for _ in 0..2 {
        assert_eq!(
            ask(&app, &mut outcomes, late.clone()).await,
            outcome(order, StockResult::Refused, Some("released-before-reserve"))
        );
    }
    assert_eq!(app.stock(product).await.reserved, 0);
    assert_eq!(
        ask(&app, &mut outcomes, command(order, Commit, vec![])).await,
        outcome(order, StockResult::CommitRefused, Some("not-reserved"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_is_all_or_nothing() {
    let app = spawn_app().await;
    let plenty = app.product(100).await;
    let scarce = app.product(2).await;
    let mut outcomes = app.outcomes("saga-test").await;

    let short = Uuid::now_v7();
    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(short, Reserve, vec![line(plenty, 10), line(scarce, 3)])
        )
        .await,
        outcome(short, StockResult::Refused, Some("out-of-stock"))
    );
    let empty = Uuid::now_v7();
    assert_eq!(
        ask(&app, &mut outcomes, command(empty, Reserve, vec![])).await,
        outcome(empty, StockResult::Refused, Some("invalid-lines"))
    );
    // Nothing was held by any of them, and a refusal is final for its order.
    for product in [plenty, scarce] {
        assert_eq!(app.stock(product).await.reserved, 0);
    }
    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(short, Reserve, vec![line(plenty, 1)])
        )
        .await,
        outcome(short, StockResult::Refused, Some("out-of-stock"))
    );
    assert_eq!(
        ask(&app, &mut outcomes, command(short, Commit, vec![])).await,
        outcome(short, StockResult::CommitRefused, Some("not-reserved"))
    );
    assert_eq!(
        app.count("FROM reservation_lines").await,
        0,
        "no lines for refused reservations"
    );

    // Exactly what is left fits.
    let exact = Uuid::now_v7();
    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(exact, Reserve, vec![line(plenty, 100), line(scarce, 2)])
        )
        .await
        .result,
        StockResult::Reserved
    );
    assert_eq!(app.stock(scarce).await.available, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_reservation_is_released_by_the_sweep() {
    let app = spawn_app_with(|s| s.reservation_ttl_secs = 1).await;
    let product = app.product(4).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let order = Uuid::now_v7();

    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(order, Reserve, vec![line(product, 3)])
        )
        .await
        .result,
        StockResult::Reserved
    );
    assert_eq!(app.stock(product).await.available, 1);
    // A second after, the sweep (every 100 ms in tests) gives the units back.
    let (key, expired) = next_outcome(&mut outcomes).await;
    assert_eq!(key, Some(order.to_string()));
    assert_eq!(expired.data, outcome(order, StockResult::Expired, None));
    wait_for("the units to be back", Duration::from_secs(10), || async {
        (app.stock(product).await.available == 4).then_some(())
    })
    .await
    .expect("released");
    // Too late to sell; a repeated reserve says it expired.
    assert_eq!(
        ask(&app, &mut outcomes, command(order, Commit, vec![])).await,
        outcome(order, StockResult::CommitRefused, Some("not-reserved"))
    );
    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(order, Reserve, vec![line(product, 3)])
        )
        .await
        .result,
        StockResult::Expired
    );
    let stock = app.stock(product).await;
    assert_eq!((stock.on_hand, stock.reserved), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_after_the_expiry_is_refused_even_before_the_sweep() {
    // The sweep runs once an hour here: the commit itself must see the reservation lapsed.
    let app = spawn_app_with(|s| {
        s.reservation_ttl_secs = 1;
        s.sweep_interval_ms = 3_600_000;
    })
    .await;
    let product = app.product(2).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let order = Uuid::now_v7();
    assert_eq!(
        ask(
            &app,
            &mut outcomes,
            command(order, Reserve, vec![line(product, 2)])
        )
        .await
        .result,
        StockResult::Reserved
    );
    let admin = app.db.admin().await.expect("admin");
    wait_for(
        "the reservation to lapse",
        Duration::from_secs(10),
        || async {
            let row = admin
                .query_one(
                    "SELECT expires_at <= now() FROM reservations WHERE order_id = $1",
                    &[&order],
                )
                .await
                .ok()?;
            row.get::<_, bool>(0).then_some(())
        },
    )
    .await
    .expect("lapsed");
    assert_eq!(
        ask(&app, &mut outcomes, command(order, Commit, vec![])).await,
        outcome(order, StockResult::CommitRefused, Some("not-reserved"))
    );
    let stock = app.stock(product).await;
    assert_eq!((stock.on_hand, stock.reserved), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stock_change_publishes_its_level() {
    use comptoir_events::CloudEvent;
    use comptoir_events::contracts::inventory::{STOCK_LEVELS_TOPIC, StockLevelChanged};
    use futures::TryStreamExt;

    let app = spawn_app().await;
    let mut levels = comptoir_testkit::subscribe(
        &app.pulsar,
        &app.namespace.topic(STOCK_LEVELS_TOPIC),
        "levels-test",
    )
    .await;
    let product = app.product(6).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let order = Uuid::now_v7();
    ask(
        &app,
        &mut outcomes,
        command(order, Reserve, vec![line(product, 2)]),
    )
    .await;
    ask(&app, &mut outcomes, command(order, Commit, vec![])).await;

    // Created (0), counted (6), reserved (2 of 6), committed (4 left).
    let mut seen = Vec::new();
    for _ in 0..4 {
        let message = tokio::time::timeout(Duration::from_secs(30), levels.try_next())
            .await
            .expect("a level within 30 s")
            .expect("stream ok")
            .expect("stream open");
        levels.ack(&message).await.expect("ack");
        assert_eq!(
            message.metadata().partition_key.as_deref(),
            Some(product.to_string().as_str())
        );
        let event: CloudEvent<StockLevelChanged> =
            serde_json::from_slice(&message.payload.data).expect("a level");
        let l = event.data;
        seen.push((l.on_hand, l.reserved, l.available, l.version));
    }
    assert_eq!(
        seen,
        [(0, 0, 0, 1), (6, 0, 6, 2), (6, 2, 4, 3), (4, 0, 4, 4)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reserve_for_a_product_not_yet_known_waits_for_the_catalog() {
    // Inventory learns products from the catalog's events; a command may overtake the event
    // (inventory was down, or lags). The reserve is not refused: it is retried and goes
    // through once the catalog's event arrives.
    let app = spawn_app_with(|s| s.demo_stock_per_product = Some(5)).await;
    let mut outcomes = app.outcomes("saga-test").await;
    let late_product = Uuid::now_v7();
    let order = Uuid::now_v7();
    app.send(command(order, Reserve, vec![line(late_product, 2)]))
        .await;
    app.catalog_says(late_product, ProductChange::Created).await;
    let (_, event) = next_outcome(&mut outcomes).await;
    assert_eq!(event.data, outcome(order, StockResult::Reserved, None));
    let stock = app.stock(late_product).await;
    assert_eq!((stock.on_hand, stock.reserved), (5, 2));
}
