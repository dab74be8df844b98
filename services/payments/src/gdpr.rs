//! Payments' part in GDPR exports and erasures. Payments stores order ids, amounts, statuses
//! and provider references: no customer id, no name, no card data, no token. Nothing in it can
//! be found from a customer id, so there is nothing to export or erase; it still answers every
//! request, so identity can tell "holds nothing" from "did not answer", and says why.

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use comptoir_events::consumer::HandlerError;
use comptoir_events::gdpr::Participant;

/// What payments answers for any customer.
pub const STATEMENT: &str = "Payments holds no personal data: it stores one payment per order \
                             (order id, amount, currency, status, the provider's reference), \
                             none of which names a customer; card details and card tokens are \
                             never stored. An order's customer is known to orders only.";

#[derive(Debug, Default)]
pub struct PaymentsParticipant;

impl Participant for PaymentsParticipant {
    fn service(&self) -> &'static str {
        "payments"
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
