//! The checkout saga as orders drives it: payment commands in, payment outcomes out, on a real
//! PostgreSQL and Pulsar, with the SIMULATED provider's test card tokens.

mod support;

use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::contracts::orders::{PAYMENT_COMMANDS_TOPIC, PaymentAction};
use comptoir_events::contracts::payments::{PAYMENT_OUTCOMES_TOPIC, PaymentOutcome, PaymentResult};
use comptoir_payments::simulated::tokens;
use comptoir_testkit::wait_for;
use serde_json::json;
use support::{command, next_outcome, spawn_app, spawn_app_with};
use uuid::Uuid;

const AMOUNT: i64 = 2580;

fn assert_outcome(
    (key, event): &(Option<String>, CloudEvent<PaymentOutcome>),
    order: Uuid,
    result: PaymentResult,
    reason: Option<&str>,
) {
    assert_eq!(
        key.as_deref(),
        Some(order.to_string().as_str()),
        "keyed by order id"
    );
    assert_eq!(event.kind, "comptoir.payments.payment-outcome.v1");
    assert_eq!(event.source, "/comptoir/payments");
    assert_eq!(event.subject, order.to_string());
    assert_eq!(event.data.order_id, order);
    assert_eq!(
        (event.data.result, event.data.reason.as_deref()),
        (result, reason),
        "{event:?}"
    );
    assert_eq!(
        (event.data.amount_minor, event.data.currency.as_str()),
        (AMOUNT, "EUR")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorised_payment_is_captured_and_the_token_is_stored_nowhere() {
    let app = spawn_app().await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    let order = Uuid::now_v7();

    app.send(
        &pulsar,
        command(
            order,
            PaymentAction::Authorise,
            AMOUNT,
            Some(tokens::SUCCESS),
        ),
    )
    .await;
    let authorised = next_outcome(&mut outcomes).await;
    assert_outcome(&authorised, order, PaymentResult::Authorised, None);
    let reference = authorised
        .1
        .data
        .provider_reference
        .clone()
        .expect("a reference");
    assert!(reference.starts_with("sim_"), "{reference}");

    app.send(
        &pulsar,
        command(order, PaymentAction::Capture, AMOUNT, None),
    )
    .await;
    let captured = next_outcome(&mut outcomes).await;
    assert_outcome(&captured, order, PaymentResult::Captured, None);
    assert_eq!(
        captured.1.data.provider_reference.as_ref(),
        Some(&reference)
    );

    let payment = app.payment(order).await;
    assert_eq!(payment["status"], "captured");
    assert_eq!(payment["amount_minor"], AMOUNT);
    assert_eq!(payment["currency"], "EUR");
    assert_eq!(payment["provider_reference"], json!(reference));
    let operations: Vec<(String, String)> = payment["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|op| {
            (
                op["action"].as_str().unwrap_or_default().to_owned(),
                op["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        operations,
        [
            ("authorise".into(), "authorised".into()),
            ("capture".into(), "captured".into())
        ]
    );

    // The token went to the provider and nowhere else: no row of any table holds it.
    let admin = app.db.admin().await.expect("admin");
    let tables: Vec<String> = admin
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        tables.contains(&"simulated_provider_operations".to_owned()),
        "{tables:?}"
    );
    for table in tables {
        let hits: i64 = admin
            .query_one(
                &format!("SELECT count(*) FROM \"{table}\" t WHERE to_jsonb(t)::text LIKE '%tok\\_success%'"),
                &[],
            )
            .await
            .expect("scan")
            .get(0);
        assert_eq!(hits, 0, "the card token is stored in {table}");
    }

    // At least: the recorder is per process, and a test harness may run several tests in one.
    let captured = app
        .metric("payments_outcomes_total{result=\"captured\"}")
        .await;
    assert!(captured.is_some_and(|n| n >= 1.0), "{captured:?}");
    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("payments_provider_duration_seconds_count{action=\"capture\""),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_cards_are_declined_with_the_providers_reason() {
    let app = spawn_app().await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    for (token, reason) in [
        (tokens::DECLINE, "card-declined"),
        (tokens::INSUFFICIENT_FUNDS, "insufficient-funds"),
        ("tok_stolen_card_number_4111", "invalid-token"),
    ] {
        let order = Uuid::now_v7();
        app.send(
            &pulsar,
            command(order, PaymentAction::Authorise, AMOUNT, Some(token)),
        )
        .await;
        assert_outcome(
            &next_outcome(&mut outcomes).await,
            order,
            PaymentResult::Declined,
            Some(reason),
        );
        assert_eq!(app.payment(order).await["status"], "declined");

        // Nothing was authorised, so nothing can be captured or refunded; a void is a no-op.
        app.send(
            &pulsar,
            command(order, PaymentAction::Capture, AMOUNT, None),
        )
        .await;
        assert_outcome(
            &next_outcome(&mut outcomes).await,
            order,
            PaymentResult::CaptureFailed,
            Some("not-authorised"),
        );
        app.send(&pulsar, command(order, PaymentAction::Refund, AMOUNT, None))
            .await;
        assert_outcome(
            &next_outcome(&mut outcomes).await,
            order,
            PaymentResult::RefundFailed,
            Some("not-captured"),
        );
        app.send(&pulsar, command(order, PaymentAction::Void, AMOUNT, None))
            .await;
        assert_outcome(
            &next_outcome(&mut outcomes).await,
            order,
            PaymentResult::Voided,
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_in_time_is_voided_and_the_payment_declined() {
    // Long enough for the simulation to act (its first connection included) under a loaded
    // machine, short enough for a test; `tok_timeout` hangs for an hour anyway.
    let app = spawn_app_with(|s| s.provider_timeout_ms = 2_000).await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    let order = Uuid::now_v7();

    app.send(
        &pulsar,
        command(
            order,
            PaymentAction::Authorise,
            AMOUNT,
            Some(tokens::TIMEOUT),
        ),
    )
    .await;
    assert_outcome(
        &next_outcome(&mut outcomes).await,
        order,
        PaymentResult::Declined,
        Some("provider-timeout"),
    );

    // The simulation did hold the money before going silent; payments voided that very
    // authorisation, by the request's idempotency key.
    let admin = app.db.admin().await.expect("admin");
    let row = |key: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT action, result FROM simulated_provider_operations WHERE idempotency_key = $1",
                    &[&key],
                )
                .await
                .map(|row| (row.get::<_, String>(0), row.get::<_, serde_json::Value>(1)))
                .expect("a provider record")
        }
    };
    let (action, authorised) = row(format!("{order}:authorise")).await;
    assert_eq!(
        (action.as_str(), &authorised["outcome"]),
        ("authorise", &json!("authorised"))
    );
    let (action, voided) = row(format!("{order}:void")).await;
    assert_eq!(action, "void");
    assert_eq!(
        voided,
        json!({"outcome": "done", "reference": authorised["reference"]})
    );

    let payment = app.payment(order).await;
    assert_eq!(
        (&payment["status"], &payment["reason"]),
        (&json!("declined"), &json!("provider-timeout"))
    );
    let results: Vec<&str> = payment["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter_map(|op| op["result"].as_str())
        .collect();
    assert_eq!(results, ["timeout", "voided"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_that_overtakes_its_authorise_declines_the_authorise() {
    let app = spawn_app().await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    let order = Uuid::now_v7();

    app.send(&pulsar, command(order, PaymentAction::Void, AMOUNT, None))
        .await;
    assert_outcome(
        &next_outcome(&mut outcomes).await,
        order,
        PaymentResult::Voided,
        None,
    );
    app.send(
        &pulsar,
        command(
            order,
            PaymentAction::Authorise,
            AMOUNT,
            Some(tokens::SUCCESS),
        ),
    )
    .await;
    assert_outcome(
        &next_outcome(&mut outcomes).await,
        order,
        PaymentResult::Declined,
        Some("voided-before-authorise"),
    );
    // The provider was never asked: no money was held for a cancelled order.
    assert_eq!(
        app.count(&format!(
            "FROM simulated_provider_operations WHERE idempotency_key LIKE '{order}:%'"
        ))
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_payment_is_refunded_once_and_cannot_be_voided() {
    let app = spawn_app().await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    let order = Uuid::now_v7();
    let steps = [
        (PaymentAction::Authorise, PaymentResult::Authorised, None),
        (PaymentAction::Capture, PaymentResult::Captured, None),
        // A void after the capture changes nothing and says what is true: captured.
        (PaymentAction::Void, PaymentResult::Captured, None),
        (PaymentAction::Refund, PaymentResult::Refunded, None),
        (PaymentAction::Refund, PaymentResult::Refunded, None),
        (PaymentAction::Void, PaymentResult::Refunded, None),
    ];
    for (action, result, reason) in steps {
        let token = (action == PaymentAction::Authorise).then_some(tokens::SUCCESS);
        app.send(&pulsar, command(order, action, AMOUNT, token))
            .await;
        assert_outcome(&next_outcome(&mut outcomes).await, order, result, reason);
    }
    assert_eq!(app.payment(order).await["status"], "refunded");
    assert_eq!(
        app.count(&format!(
            "FROM simulated_provider_operations WHERE idempotency_key LIKE '{order}:%'"
        ))
        .await,
        3,
        "authorise, capture, refund: one provider operation each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_commands_are_answered_again_without_charging_twice() {
    let app = spawn_app().await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    let order = Uuid::now_v7();

    // Orders re-sends each command (new event ids, so the inbox does not catch them).
    let mut references = Vec::new();
    for (action, result) in [
        (PaymentAction::Authorise, PaymentResult::Authorised),
        (PaymentAction::Authorise, PaymentResult::Authorised),
        (PaymentAction::Capture, PaymentResult::Captured),
        (PaymentAction::Capture, PaymentResult::Captured),
    ] {
        let token = (action == PaymentAction::Authorise).then_some(tokens::SUCCESS);
        app.send(&pulsar, command(order, action, AMOUNT, token))
            .await;
        let outcome = next_outcome(&mut outcomes).await;
        assert_outcome(&outcome, order, result, None);
        references.push(outcome.1.data.provider_reference);
    }
    assert!(
        references
            .iter()
            .all(|r| r.is_some() && *r == references[0]),
        "{references:?}"
    );

    assert_eq!(
        app.count(&format!("FROM payments WHERE order_id = '{order}'"))
            .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "FROM payment_operations WHERE order_id = '{order}'"
        ))
        .await,
        2
    );
    assert_eq!(
        app.count(&format!(
            "FROM simulated_provider_operations WHERE idempotency_key LIKE '{order}:%'"
        ))
        .await,
        2,
        "one authorisation and one capture at the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_provider_failures_are_retried_until_it_answers_without_double_charge() {
    // A provider failing every call: the command is retried, never answered.
    let app = spawn_app_with(|s| s.simulated_provider.failure_rate = 1.0).await;
    let pulsar = app.pulsar().await;
    let mut outcomes = app.outcomes(&pulsar).await;
    let order = Uuid::now_v7();
    app.send(
        &pulsar,
        command(
            order,
            PaymentAction::Authorise,
            AMOUNT,
            Some(tokens::SUCCESS),
        ),
    )
    .await;
    wait_for("a failed attempt", Duration::from_secs(30), || async {
        app.metric("events_failed_total")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await
    .expect("the handler failed at least once");
    assert_eq!(app.count("FROM payments").await, 0);
    assert_eq!(app.count("FROM outbox").await, 0);

    // The provider recovers (a new process with failure_rate 0): the held command succeeds.
    let app = app
        .restart_with(|s| s.simulated_provider.failure_rate = 0.0)
        .await;
    assert_outcome(
        &next_outcome(&mut outcomes).await,
        order,
        PaymentResult::Authorised,
        None,
    );
    assert_eq!(app.count("FROM payments").await, 1);
    assert_eq!(app.count("FROM simulated_provider_operations").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_command_is_refused_into_the_dead_letter_topic() {
    let app = spawn_app_with(|s| s.commands_max_redeliveries = 3).await;
    let pulsar = app.pulsar().await;
    let commands = app.namespace.topic(PAYMENT_COMMANDS_TOPIC);
    let mut dead_letters = comptoir_testkit::subscribe(
        &pulsar,
        &format!("{commands}-payments-commands-DLQ"),
        "payments-test-dlq",
    )
    .await;
    let order = Uuid::now_v7();
    let mut bad = command(order, PaymentAction::Authorise, 0, Some(tokens::SUCCESS));
    bad.currency = "eur".to_owned();
    let sent = app.send(&pulsar, bad).await;

    let message = tokio::time::timeout(
        Duration::from_secs(60),
        futures::TryStreamExt::try_next(&mut dead_letters),
    )
    .await
    .expect("a dead letter within 60 s")
    .expect("stream ok")
    .expect("stream open");
    let dead: CloudEvent<serde_json::Value> =
        serde_json::from_slice(&message.payload.data).expect("the event");
    assert_eq!(dead.id, sent.id);
    assert_eq!(app.count("FROM payments").await, 0);
    assert_eq!(app.count("FROM simulated_provider_operations").await, 0);

    // Nothing was answered for it.
    let admin = PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None);
    let stats = admin
        .topic_stats(&app.namespace.topic(PAYMENT_OUTCOMES_TOPIC))
        .await;
    if let Ok(stats) = stats {
        assert_eq!(stats["msgInCounter"], 0, "{stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdpr_requests_are_answered_with_nothing_held() {
    use comptoir_events::contracts::gdpr::{
        ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC, ErasureConfirmed, ExportSlice,
    };
    use comptoir_events::contracts::identity::{
        CUSTOMER_ERASED_TOPIC, CustomerErased, EXPORT_REQUESTS_TOPIC, ExportRequested,
    };

    let app = spawn_app().await;
    let pulsar = app.pulsar().await;
    let mut slices = comptoir_testkit::subscribe(
        &pulsar,
        &app.namespace.topic(EXPORT_SLICES_TOPIC),
        "identity",
    )
    .await;
    let mut confirmations = comptoir_testkit::subscribe(
        &pulsar,
        &app.namespace.topic(ERASURE_CONFIRMATIONS_TOPIC),
        "identity",
    )
    .await;
    let customer = Uuid::now_v7();
    let export = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        ExportRequested {
            request_id: Uuid::now_v7(),
            customer_id: customer,
        },
    );
    let erase = CloudEvent::new(
        "/comptoir/identity",
        customer.to_string(),
        CustomerErased {
            request_id: Uuid::now_v7(),
            customer_id: customer,
        },
    );
    app.produce(&pulsar, EXPORT_REQUESTS_TOPIC, &export.subject, &export)
        .await;
    app.produce(&pulsar, CUSTOMER_ERASED_TOPIC, &erase.subject, &erase)
        .await;

    let receive = async |consumer: &mut pulsar::Consumer<Vec<u8>, pulsar::TokioExecutor>| {
        let message = tokio::time::timeout(
            Duration::from_secs(30),
            futures::TryStreamExt::try_next(consumer),
        )
        .await
        .expect("a reply within 30 s")
        .expect("stream ok")
        .expect("stream open");
        consumer.ack(&message).await.expect("ack");
        message.payload.data
    };
    let slice: CloudEvent<ExportSlice> =
        serde_json::from_slice(&receive(&mut slices).await).expect("a slice");
    assert_eq!(slice.data.request_id, export.data.request_id);
    assert_eq!(slice.data.service, "payments");
    assert_eq!(slice.data.data["records"], json!([]));
    assert!(
        slice.data.data["statement"]
            .as_str()
            .is_some_and(|s| s.contains("no personal data"))
    );
    let confirmed: CloudEvent<ErasureConfirmed> =
        serde_json::from_slice(&receive(&mut confirmations).await).expect("a confirmation");
    assert_eq!(confirmed.data.request_id, erase.data.request_id);
    assert_eq!(confirmed.data.summary["removed"], 0);
}
