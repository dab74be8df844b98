//! Inventory's part in GDPR exports and erasures. Inventory stores stock per product and
//! reservations per order (an order id, products and quantities): nothing that names or
//! points to a customer. It still answers every request, so identity can tell "holds
//! nothing" from "did not answer", and says so in its slice.

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use comptoir_events::consumer::HandlerError;
use comptoir_events::gdpr::Participant;

/// What inventory answers for any customer.
const STATEMENT: &str = "Inventory holds no personal data: it stores stock per product and \
                         reservations per order (order id, products, quantities), none of \
                         which refers to a customer.";

#[derive(Debug, Default)]
pub struct InventoryParticipant;

impl Participant for InventoryParticipant {
    fn service(&self) -> &'static str {
        "inventory"
    }

    fn export<'a>(
        &'a self,
        _tx: &'a Transaction<'a>,
        _customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async { Ok(json!({ "records": [], "statement": STATEMENT })) })
    }

    fn erase<'a>(
        &'a self,
        _tx: &'a Transaction<'a>,
        _customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async { Ok(json!({ "removed": 0, "retained": [], "statement": STATEMENT })) })
    }
}
