//! Order events become mail: through the real broker (a partitioned `order-events`), the real
//! identity (the recipient, asked at send time) and a real SMTP server (Mailpit).

mod support;

use std::time::Duration;

use comptoir_events::contracts::orders::OrderStatus;
use comptoir_notifications::domain::{Kind, Status, short_id};
use comptoir_testkit::wait_for;
use support::{order_changed, spawn_app, spawn_app_smtp_down};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_order_sends_one_mail_and_stores_no_personal_data() {
    let app = spawn_app().await;
    let email = format!("ada.{}@example.org", comptoir_testkit::unique_suffix());
    let name = "Ada Zéphyrine Lovelace";
    let customer = app.identity().register(&email, name).await;
    let order = Uuid::now_v7();

    let event = order_changed(order, customer, OrderStatus::Confirmed);
    app.publish(&event).await;
    let mails = app.mailpit().wait_for_messages(1).await;
    assert_eq!(mails[0].to, [email.as_str()]);
    assert_eq!(
        mails[0].subject,
        format!("Your Comptoir order {} is confirmed", short_id(order))
    );
    let message = app.mailpit().message(&mails[0].id).await;
    let text = message["Text"].as_str().expect("a text part");
    assert!(text.contains("Total: 25.80 EUR"), "{text}");
    assert!(text.contains("Items: 2 items"), "{text}");
    assert!(text.contains(&order.to_string()), "{text}");
    assert!(text.starts_with(&format!("Hello {name},")), "{text}");
    assert_eq!(message["From"]["Address"], "orders@comptoir.example");
    assert_eq!(message["To"][0]["Name"], name);

    let delivered = app
        .wait_delivery(order, "the delivery to be recorded as sent", |d| {
            d.status == Status::Sent
        })
        .await;
    assert_eq!(delivered.kind, Kind::OrderConfirmed);
    assert_eq!(delivered.customer_id, customer);
    assert_eq!(delivered.attempts, 1);
    assert!(delivered.sent_at.is_some());
    assert_eq!(delivered.last_error, None);
    assert_eq!(
        message["MessageID"],
        format!("{}@comptoir.example", delivered.id)
    );

    // The same event redelivered (same id: the inbox drops it) and orders publishing the same
    // outcome again (a new event id: the delivery log's unique key drops it).
    app.publish(&event).await;
    app.publish(&order_changed(order, customer, OrderStatus::Confirmed))
        .await;
    app.wait_inbox(2).await;
    // Both handled; one delivery, already sent: no other message can follow.
    assert_eq!(app.deliveries(order).await.len(), 1);
    assert_eq!(app.mailpit().messages().await.len(), 1);
    assert_eq!(app.counter("notifications_sent_total").await, 1.0);

    // No address and no name in the database or the logs; identity audited the read.
    let dump = app.database_dump().await;
    assert!(dump.contains(&customer.to_string()), "the dump is real");
    let logs = support::logs().text();
    assert!(
        logs.contains(&delivered.id.to_string()),
        "the logs are real"
    );
    for needle in [email.as_str(), "Zéphyrine", "Lovelace"] {
        assert!(!dump.contains(needle), "{needle} in the database:\n{dump}");
        assert!(!logs.contains(needle), "{needle} in the logs");
    }
    let audit = app
        .identity()
        .db
        .admin()
        .await
        .expect("admin")
        .query(
            "SELECT client, purpose, outcome FROM pii_access_log WHERE subject = $1",
            &[&customer],
        )
        .await
        .expect("audit");
    let audit: Vec<(String, String, String)> = audit
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        audit,
        [(
            "notifications".to_owned(),
            "transactional".to_owned(),
            "granted".to_owned()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_and_intermediate_statuses_send_nothing() {
    let app = spawn_app().await;
    let customer = app.identity().register("grace@example.org", "Grace").await;
    let order = Uuid::now_v7();
    for status in [
        OrderStatus::Pending,
        OrderStatus::StockReserved,
        OrderStatus::RefundRequested,
    ] {
        app.publish(&order_changed(order, customer, status)).await;
    }
    app.wait_inbox(3).await;
    assert!(app.deliveries(order).await.is_empty());
    // The events were handled in the same transaction as their (absent) effect: nothing can
    // be sent later.
    assert!(app.mailpit().messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_and_refund_mails_say_what_happened() {
    let app = spawn_app().await;
    let email = "barbara@example.org";
    let customer = app.identity().register(email, "Barbara").await;
    let cancelled = Uuid::now_v7();
    let mut event = order_changed(cancelled, customer, OrderStatus::Cancelled);
    event.data.reason = Some("payment-declined".to_owned());
    app.publish(&event).await;
    let refunded = Uuid::now_v7();
    app.publish(&order_changed(refunded, customer, OrderStatus::Refunded))
        .await;

    let mails = app.mailpit().wait_for_messages(2).await;
    let find = |subject: String| {
        mails
            .iter()
            .find(|m| m.subject == subject)
            .unwrap_or_else(|| panic!("no mail {subject:?} in {mails:?}"))
            .clone()
    };
    let cancellation = find(format!(
        "Your Comptoir order {} was cancelled",
        short_id(cancelled)
    ));
    let refund = find(format!(
        "Your Comptoir order {} was refunded",
        short_id(refunded)
    ));
    let text = app.mailpit().message(&cancellation.id).await["Text"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(text.contains("because the payment was declined"), "{text}");
    let text = app.mailpit().message(&refund.id).await["Text"]
        .as_str()
        .expect("text")
        .to_owned();
    assert!(text.contains("Total: 25.80 EUR"), "{text}");
    assert_eq!(refund.to, [email]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_customer_is_skipped_without_retry() {
    let app = spawn_app().await;
    let order = Uuid::now_v7();
    app.publish(&order_changed(
        order,
        Uuid::now_v7(),
        OrderStatus::Confirmed,
    ))
    .await;
    let skipped = app
        .wait_delivery(order, "the delivery to be skipped", |d| {
            d.status == Status::Skipped
        })
        .await;
    assert_eq!(skipped.attempts, 1);
    assert_eq!(
        skipped.last_error.as_deref(),
        Some("customer unknown to identity")
    );
    assert!(app.mailpit().messages().await.is_empty());
    assert_eq!(app.counter("notifications_retries_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_smtp_is_down_sends_are_retried_and_the_mail_arrives_once_it_is_up() {
    let mut app = spawn_app_smtp_down(|s| {
        s.retry.base_ms = 100;
        s.retry.max_ms = 400;
        s.retry.max_attempts = 100;
    })
    .await;
    let email = "katherine@example.org";
    let customer = app.identity().register(email, "Katherine").await;
    let order = Uuid::now_v7();
    app.publish(&order_changed(order, customer, OrderStatus::Confirmed))
        .await;

    let retried = app
        .wait_delivery(order, "three failed attempts", |d| d.attempts >= 3)
        .await;
    assert_eq!(retried.status, Status::Pending);
    assert_eq!(
        retried.last_error.as_deref(),
        Some("the mail relay is unreachable (connection failed)")
    );
    assert!(app.counter("notifications_retries_total").await >= 3.0);
    // Backoff, not a busy loop: the next attempt is ahead, at most max_ms away.
    let ahead = retried.next_attempt_at - time::OffsetDateTime::now_utc();
    assert!(ahead <= time::Duration::milliseconds(400), "{ahead}");

    app.start_mailpit().await;
    let sent = app
        .wait_delivery(order, "the delivery to be sent", |d| {
            d.status == Status::Sent
        })
        .await;
    assert!(sent.attempts >= 4, "{sent:?}");
    assert_eq!(sent.last_error, None);
    let mails = app.mailpit().wait_for_messages(1).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, [email]);
    assert!(!support::logs().text().contains(email));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_given_up_after_max_attempts() {
    let app = spawn_app_smtp_down(|s| {
        s.retry.base_ms = 50;
        s.retry.max_ms = 100;
        s.retry.max_attempts = 3;
    })
    .await;
    let customer = app
        .identity()
        .register("hedy@example.org", "Hedy Lamarr")
        .await;
    let order = Uuid::now_v7();
    app.publish(&order_changed(order, customer, OrderStatus::Confirmed))
        .await;
    let failed = app
        .wait_delivery(order, "the delivery to fail", |d| {
            d.status == Status::Failed
        })
        .await;
    assert_eq!(failed.attempts, 3);
    assert!(failed.sent_at.is_none());
    wait_for("the failure metric", Duration::from_secs(5), || async {
        (app.counter("notifications_failed_total").await == 1.0).then_some(())
    })
    .await
    .expect("notifications_failed_total 1");
    assert_eq!(app.counter("notifications_retries_total").await, 2.0);
}
