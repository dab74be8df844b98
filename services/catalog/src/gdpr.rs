//! The catalog's part in GDPR exports and erasures. The catalog stores products, categories
//! and prices: nothing about any customer. It still answers every request, so identity can
//! tell "holds nothing" from "did not answer", and says so in its slice.

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use comptoir_events::consumer::HandlerError;
use comptoir_events::gdpr::Participant;

/// What the catalog answers for any customer.
const STATEMENT: &str = "The catalog holds no personal data: it stores products, categories \
                         and prices, none of which refers to a customer.";

#[derive(Debug, Default)]
pub struct CatalogParticipant;

impl Participant for CatalogParticipant {
    fn service(&self) -> &'static str {
        "catalog"
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
