//! The notifications service's part in GDPR exports and erasures. It holds a delivery log per
//! customer (which messages about which orders, and when they were sent) under the customer's
//! opaque id, and no contact data: addresses and names are asked of identity at send time and
//! never stored. Export lists the deliveries; erasure deletes them (a pending one is then
//! never sent).

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use comptoir_events::consumer::HandlerError;
use comptoir_events::gdpr::Participant;

use crate::repo;

const STATEMENT: &str = "Notifications keeps a log of the transactional messages sent about \
                         your orders (which order, which message, when). It stores no address, \
                         no name and no message text: those are read from identity when a \
                         message is sent.";

#[derive(Debug, Default)]
pub struct NotificationsParticipant;

impl Participant for NotificationsParticipant {
    fn service(&self) -> &'static str {
        "notifications"
    }

    fn export<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async move {
            // Every field of each record: ids, kinds, statuses, attempts and times.
            let records = serde_json::to_value(repo::deliveries_of_customer(tx, customer).await?)?;
            Ok(json!({ "records": records, "statement": STATEMENT }))
        })
    }

    fn erase<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async move {
            let removed = repo::delete_customer_deliveries(tx, customer).await?;
            Ok(json!({
                "removed": removed,
                "retained": [],
                "statement": "Every delivery record of the customer was deleted; pending \
                              messages will not be sent."
            }))
        })
    }
}
