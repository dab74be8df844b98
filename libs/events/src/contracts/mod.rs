//! Event payloads, one module per bounded context. Versioning rule: add optional fields in
//! place (old payloads must still decode, which the tests check); anything breaking is a new
//! type with the next `.vN` suffix.

pub mod analytics;
pub mod catalog;
pub mod gdpr;
pub mod identity;
pub mod inventory;
pub mod orders;
pub mod payments;

/// The JSON Schema of every event type, as `(CloudEvents type, schema)`. Each is also
/// committed under `docs/events/<type>.json`; a test fails when the two drift apart.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    use crate::envelope::{CloudEvent, EventType};
    fn schema<T: EventType + schemars::JsonSchema>() -> (&'static str, serde_json::Value) {
        let schema = schemars::schema_for!(CloudEvent<T>);
        (T::TYPE, serde_json::to_value(schema).unwrap_or_default())
    }
    vec![
        schema::<catalog::ProductChanged>(),
        schema::<identity::ExportRequested>(),
        schema::<identity::CustomerErased>(),
        schema::<identity::ConsentChanged>(),
        schema::<analytics::ClickBatch>(),
        schema::<gdpr::ExportSlice>(),
        schema::<gdpr::ErasureConfirmed>(),
        schema::<orders::StockCommand>(),
        schema::<orders::PaymentCommand>(),
        schema::<orders::OrderChanged>(),
        schema::<inventory::StockOutcome>(),
        schema::<inventory::StockLevelChanged>(),
        schema::<payments::PaymentOutcome>(),
    ]
}
