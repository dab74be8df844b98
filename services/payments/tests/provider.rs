//! The SIMULATED provider's memory is its own: it survives the rollback of the transaction
//! payments called it from, so the retried call returns the first answer (no double charge).

mod support;

use comptoir_payments::provider::PaymentProvider;
use comptoir_payments::settings::SimulatedProviderSettings;
use comptoir_payments::simulated::{SimulatedProvider, tokens};
use support::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_simulation_did_survives_the_callers_rollback() {
    // The app has migrated the database; the simulation gets a pool of its own, as in `run`.
    let app = spawn_app().await;
    let settings = SimulatedProviderSettings {
        latency_ms: 0,
        failure_rate: 0.0,
    };
    let sim = SimulatedProvider::with_database(
        &settings,
        comptoir_store::connect(&app.db.settings()).expect("pool"),
    );
    let handler_pool = comptoir_store::connect(&app.db.settings()).expect("pool");
    let mut client = handler_pool.get().await.expect("client");

    let tx = client.transaction().await.expect("begin");
    tx.execute(
        "INSERT INTO payments (order_id, status, amount_minor, currency) \
         VALUES ('01930000-0000-7000-8000-0000000000a1', 'authorised', 100, 'EUR')",
        &[],
    )
    .await
    .expect("insert");
    let first = sim
        .authorise("o1:authorise", 100, "EUR", tokens::SUCCESS)
        .await
        .expect("authorised");
    tx.rollback().await.expect("rollback");

    // Handled again after the rollback: the same key, the same answer, one operation.
    let again = sim
        .authorise("o1:authorise", 100, "EUR", tokens::SUCCESS)
        .await
        .expect("authorised");
    assert_eq!(again, first);
    assert_eq!(
        app.count("FROM payments").await,
        0,
        "payments' own write rolled back"
    );
    assert_eq!(app.count("FROM simulated_provider_operations").await, 1);
    let admin = app.db.admin().await.expect("admin");
    let result: serde_json::Value = admin
        .query_one(
            "SELECT result FROM simulated_provider_operations WHERE idempotency_key = 'o1:authorise'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(result["outcome"], "authorised");
    assert_eq!(result["reference"], first.reference);
}
