//! Order events become mail: through the real broker (a partitioned `order-events`), the real
//! identity (the recipient, asked at send time) and a real SMTP server (Mailpit), plaintext on
//! loopback or, as a remote relay, with STARTTLS and authentication.

mod support;

use std::time::Duration;

use comptoir_events::contracts::orders::OrderStatus;
use comptoir_notifications::domain::{Delivery, Kind, Status, short_id};
use comptoir_notifications::settings::SmtpTls;
use comptoir_testkit::tls::TestCa;
use comptoir_testkit::wait_for;
use support::{
    Mailpit, TestApp, order_changed, spawn_app, spawn_app_smtp_down, spawn_app_with_mailpit,
};
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
    let (order, retried) = app.confirmed_order_failing_thrice(email, "Katherine").await;
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

/// The relay's credentials in the STARTTLS tests.
const SMTP_USER: &str = "comptoir-notifications";

/// A Mailpit requiring STARTTLS (a certificate for `localhost` from `ca`) and `password`.
async fn tls_relay(ca: &TestCa, password: &str) -> Mailpit {
    Mailpit::builder()
        .starttls(&ca.issue(&["localhost", "127.0.0.1"]))
        .auth(SMTP_USER, password)
        .start()
        .await
}

/// Writes `trusted`'s certificate and `password` beside the test and points the SMTP settings
/// at `localhost` with STARTTLS, that CA and those credentials.
fn starttls_settings(
    dir: &std::path::Path,
    trusted: &TestCa,
    password: &str,
) -> impl FnOnce(&mut comptoir_notifications::Settings) {
    let ca_file = dir.join("relay-ca.pem");
    std::fs::write(&ca_file, trusted.pem()).expect("write CA");
    let password_file = dir.join("smtp-password");
    comptoir_testkit::write_secret(&password_file, format!("{password}\n").as_bytes());
    move |s| {
        s.smtp.host = "localhost".to_owned();
        s.smtp.tls = SmtpTls::Starttls;
        s.smtp.ca_file = Some(ca_file);
        s.smtp.username = Some(SMTP_USER.to_owned());
        s.smtp.password_file = Some(password_file);
        s.retry.base_ms = 100;
        s.retry.max_ms = 400;
        s.retry.max_attempts = 100;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_goes_through_starttls_with_credentials_verified_against_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let password = format!("relay-{}", Uuid::new_v4());
    let app = spawn_app_with_mailpit(
        tls_relay(&ca, &password).await,
        starttls_settings(dir.path(), &ca, &password),
    )
    .await;
    let email = format!("mary.{}@example.org", comptoir_testkit::unique_suffix());
    let customer = app.identity().register(&email, "Mary Somerville").await;
    let order = Uuid::now_v7();
    app.publish(&order_changed(order, customer, OrderStatus::Confirmed))
        .await;

    let mails = app.mailpit().wait_for_messages(1).await;
    assert_eq!(mails[0].to, [email.as_str()]);
    let sent = app
        .wait_delivery(order, "the delivery to be sent", |d| {
            d.status == Status::Sent
        })
        .await;
    assert_eq!(sent.attempts, 1);
    assert_eq!(sent.last_error, None);
    let logs = support::logs().text();
    assert!(logs.contains(&sent.id.to_string()), "the logs are real");
    assert!(
        !logs.contains(&password),
        "the SMTP password is in the logs"
    );
    assert!(!logs.contains(&email), "the address is in the logs");
}

/// A confirmed order of a new customer, sent to `relay` by a service trusting `trusted` and
/// presenting `password`: what the delivery looks like after three failed attempts, and the
/// service (its Mailpit received nothing, checked here).
async fn three_failed_sends(
    relay: Mailpit,
    trusted: &TestCa,
    password: &str,
    customer: (&str, &str),
) -> (TestApp, Delivery) {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = spawn_app_with_mailpit(relay, starttls_settings(dir.path(), trusted, password)).await;
    let (_, retried) = app
        .confirmed_order_failing_thrice(customer.0, customer.1)
        .await;
    // A configuration to fix, not a verdict on the message: pending, retried with backoff;
    // and nothing sent in clear instead.
    assert_eq!(retried.status, Status::Pending);
    assert!(app.mailpit().messages().await.is_empty());
    (app, retried)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_certified_by_another_ca_gets_nothing_and_the_delivery_waits() {
    let password = format!("relay-{}", Uuid::new_v4());
    let relay = tls_relay(&TestCa::new(), &password).await;
    let (_app, retried) = three_failed_sends(
        relay,
        &TestCa::new(),
        &password,
        ("emmy@example.org", "Emmy Noether"),
    )
    .await;
    assert_eq!(
        retried.last_error.as_deref(),
        Some("the mail relay is unreachable (TLS handshake failed)")
    );
    assert!(!support::logs().text().contains(&password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_smtp_password_sends_nothing_is_retried_and_is_never_logged() {
    let ca = TestCa::new();
    let password = format!("relay-{}", Uuid::new_v4());
    let wrong = format!("wrong-{}", Uuid::new_v4());
    let relay = tls_relay(&ca, &password).await;
    let (app, retried) =
        three_failed_sends(relay, &ca, &wrong, ("sophie@example.org", "Sophie Germain")).await;
    assert_eq!(
        retried.last_error.as_deref(),
        Some("the mail relay refused our credentials (535)")
    );
    assert!(app.counter("notifications_retries_total").await >= 2.0);
    assert_eq!(app.counter("notifications_failed_total").await, 0.0);
    let logs = support::logs().text();
    assert!(
        logs.contains("the mail relay refused our credentials (535)"),
        "the refusal is logged"
    );
    let dump = app.database_dump().await;
    for secret in [&wrong, &password] {
        assert!(
            !logs.contains(secret.as_str()),
            "an SMTP password is in the logs"
        );
        assert!(
            !dump.contains(secret.as_str()),
            "an SMTP password is in the database"
        );
    }
}
