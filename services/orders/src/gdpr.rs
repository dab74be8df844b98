//! Orders' part in GDPR exports and erasures (libs/events/src/gdpr.rs).
//!
//! Export: the customer's orders (lines, amounts, statuses and their history) and cart.
//! Erasure: the cart, idempotency keys and cancelled orders are deleted; the other orders are
//! invoices the law requires to keep 10 years (Code de commerce L123-22,
//! docs/gdpr/retention-exceptions.md), so they are kept but detached: their customer id is
//! replaced by a fresh random id that is recorded nowhere, so they no longer lead to anyone.

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use comptoir_events::consumer::HandlerError;
use comptoir_events::gdpr::Participant;

use crate::repo;

#[derive(Debug, Default)]
pub struct OrdersParticipant;

impl Participant for OrdersParticipant {
    fn service(&self) -> &'static str {
        "orders"
    }

    fn export<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async move {
            let (orders, cart) = repo::customer_data(tx, customer).await?;
            Ok(json!({ "orders": orders, "cart": cart }))
        })
    }

    fn erase<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async move {
            let erased = repo::erase_customer(tx, customer, Uuid::new_v4()).await?;
            Ok(json!({
                "removed": {
                    "cart_lines": erased.cart_lines,
                    "idempotency_keys": erased.idempotency_keys,
                    "cancelled_orders": erased.orders_deleted,
                },
                "retained": [{
                    "what": "orders (invoices)",
                    "count": erased.orders_pseudonymised,
                    "basis": "Code de commerce L123-22",
                    "until": "10 years after the end of the financial year",
                    "how": "detached: the customer id was replaced by a random id recorded nowhere",
                }],
            }))
        })
    }
}
