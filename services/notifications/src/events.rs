//! The order-events consumer: an `OrderChanged` that a customer is to be told about
//! (confirmed, cancelled, refunded) records a pending delivery, in the consumer's transaction
//! (the same one that records the event in the inbox). A redelivered event is dropped by the
//! inbox; a second event for the same order and outcome (orders republishing it) by the
//! delivery log's `UNIQUE (order_id, kind)`. Either way, one message.

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::orders::OrderChanged;
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;

use crate::domain::NewDelivery;
use crate::repo;

/// The subscription on orders' `order-events`.
pub const SUBSCRIPTION: &str = "notifications-order-events";

/// Records the deliveries order changes call for.
#[derive(Debug, Default)]
pub struct OrderEventsHandler;

impl Handler<OrderChanged> for OrderEventsHandler {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<OrderChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let order = &event.data;
            let Some(new) = NewDelivery::from_event(order) else {
                tracing::debug!(order_id = %order.order_id, status = order.status.as_str(), "No message for this status");
                return Ok(());
            };
            let inserted = repo::insert_delivery(tx, &new).await?;
            tracing::info!(
                order_id = %new.order_id,
                customer_id = %new.customer_id,
                kind = new.kind.as_str(),
                new = inserted,
                "Delivery recorded"
            );
            Ok(())
        })
    }
}
