//! The click stream and orders' events out, as aggregates: tumbling one-minute windows of event
//! time per kind and product (`clicks_per_minute`), and of orders per stage and currency
//! (`orders_per_minute`). Sliding windows (the last N minutes) are sums of these, computed
//! when read ([`crate::repo::top_products`], [`crate::repo::funnel`]).
//!
//! Both run on `comptoir_events::consumer::EventConsumer`: a message's counts are added in the
//! transaction that records its id in the inbox, so a redelivered message (a crash before the
//! acknowledgement, a nack) is recognised and counted once. Messages that have arrived together
//! (up to 500) share one transaction, and the click counts of all of them are summed in memory
//! and written in one statement when it ends. [`ConsentProjection`] keeps identity's analytics consents.

use std::collections::BTreeMap;

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::analytics::ClickBatch;
use comptoir_events::contracts::identity::ConsentChanged;
use comptoir_events::contracts::orders::{OrderChanged, OrderStatus};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::domain::minute_of;
use crate::repo::{self, ClickKey};

/// The consent purpose analytics obeys.
pub const ANALYTICS_PURPOSE: &str = "analytics";

/// Counts the click stream (subscription `analytics-clickstream`). The counts of a
/// transaction's messages (up to 500) are gathered in `handle` and written in `finish`, one
/// statement per transaction.
#[derive(Debug, Default)]
pub struct ClickCounter {
    gathered: std::sync::Mutex<Gathered>,
}

/// What a transaction's messages add up to so far: (clicks, units) per key.
type Gathered = BTreeMap<ClickKey, (i64, i64)>;

impl ClickCounter {
    fn gathered(&self) -> std::sync::MutexGuard<'_, Gathered> {
        // A panic while the lock was held leaves counts that the rolled-back transaction never
        // wrote: `begin` clears them anyway.
        self.gathered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The counts one batch adds, per (minute, kind, product): (clicks, units).
pub fn counts(batch: &ClickBatch) -> BTreeMap<ClickKey, (i64, i64)> {
    let mut counts = BTreeMap::new();
    add_counts(&mut counts, batch);
    counts
}

/// The clicks of `counts` per kind (a handful of kinds: a bounded metric label).
pub fn clicks_per_kind(counts: &BTreeMap<ClickKey, (i64, i64)>) -> BTreeMap<&'static str, u64> {
    let mut per_kind = BTreeMap::new();
    for (key, (clicks, _)) in counts {
        *per_kind.entry(key.kind).or_default() += u64::try_from(*clicks).unwrap_or(0);
    }
    per_kind
}

/// Adds `batch`'s counts to `counts`.
fn add_counts(counts: &mut BTreeMap<ClickKey, (i64, i64)>, batch: &ClickBatch) {
    for click in &batch.clicks {
        let key = ClickKey {
            minute: minute_of(click.at),
            kind: click.kind.as_str(),
            product_id: click.product_id.unwrap_or(Uuid::nil()),
        };
        let entry = counts.entry(key).or_default();
        entry.0 += 1;
        entry.1 += i64::from(click.quantity.unwrap_or(0));
    }
}

impl Handler<ClickBatch> for ClickCounter {
    fn handle<'a>(
        &'a self,
        _tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ClickBatch>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        add_counts(&mut self.gathered(), &event.data);
        Box::pin(async { Ok(()) })
    }

    fn begin(&self) {
        *self.gathered() = Default::default();
    }

    fn finish<'a>(&'a self, tx: &'a Transaction<'a>) -> BoxFuture<'a, Result<(), HandlerError>> {
        let counts = std::mem::take(&mut *self.gathered());
        Box::pin(async move {
            repo::add_clicks(tx, &counts).await?;
            // Counted once committed... or, should the commit fail, a few clicks early: the
            // metric is a rate for dashboards (the funnel's first steps), the table is the record.
            for (kind, clicks) in clicks_per_kind(&counts) {
                metrics::counter!("analytics_clicks_counted_total", "kind" => kind)
                    .increment(clicks);
            }
            Ok(())
        })
    }
}

/// Counts orders' checkouts, confirmations and cancellations (subscription `analytics-orders`).
#[derive(Debug, Default, Clone)]
pub struct OrderCounter;

/// The funnel stage an order's new status counts in, if any.
pub fn stage(status: OrderStatus) -> Option<&'static str> {
    match status {
        OrderStatus::Pending => Some("checkout"),
        OrderStatus::Confirmed => Some("confirmed"),
        OrderStatus::Cancelled => Some("cancelled"),
        _ => None,
    }
}

impl Handler<OrderChanged> for OrderCounter {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<OrderChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let order = &event.data;
            if let Some(stage) = stage(order.status) {
                repo::add_order(
                    tx,
                    minute_of(event.time),
                    stage,
                    &order.currency,
                    order.total_minor.max(0),
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// Keeps the analytics consent of every customer (subscription `analytics-consents`).
#[derive(Debug, Default, Clone)]
pub struct ConsentProjection;

impl Handler<ConsentChanged> for ConsentProjection {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ConsentChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let change = &event.data;
            if change.purpose == ANALYTICS_PURPOSE {
                repo::apply_consent(tx, change.customer_id, change.granted, change.changed_at)
                    .await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comptoir_events::contracts::analytics::{Click, ClickKind};
    use time::macros::datetime;

    #[test]
    fn a_batch_is_counted_per_minute_kind_and_product() {
        let product = Uuid::from_u128(9);
        let click = |kind, at, product_id, quantity| Click {
            kind,
            at,
            product_id,
            page: None,
            results: None,
            quantity,
        };
        let batch = ClickBatch {
            clicks: vec![
                click(
                    ClickKind::ProductView,
                    datetime!(2026-12-03 10:00:01 UTC),
                    Some(product),
                    None,
                ),
                click(
                    ClickKind::ProductView,
                    datetime!(2026-12-03 10:00:59 UTC),
                    Some(product),
                    None,
                ),
                click(
                    ClickKind::ProductView,
                    datetime!(2026-12-03 10:01:00 UTC),
                    Some(product),
                    None,
                ),
                click(
                    ClickKind::AddToCart,
                    datetime!(2026-12-03 10:01:02 UTC),
                    Some(product),
                    Some(3),
                ),
                click(
                    ClickKind::Search,
                    datetime!(2026-12-03 10:01:03 UTC),
                    None,
                    None,
                ),
            ],
            ..ClickBatch::sample()
        };
        let counts = counts(&batch);
        let at = |minute, kind: ClickKind, product_id| ClickKey {
            minute,
            kind: kind.as_str(),
            product_id,
        };
        assert_eq!(counts.len(), 4);
        assert_eq!(
            counts[&at(
                datetime!(2026-12-03 10:00 UTC),
                ClickKind::ProductView,
                product
            )],
            (2, 0)
        );
        assert_eq!(
            counts[&at(
                datetime!(2026-12-03 10:01 UTC),
                ClickKind::AddToCart,
                product
            )],
            (1, 3)
        );
        assert_eq!(
            counts[&at(
                datetime!(2026-12-03 10:01 UTC),
                ClickKind::Search,
                Uuid::nil()
            )],
            (1, 0)
        );
        // The metric's view: clicks per kind, whatever the minute or product (units aside).
        assert_eq!(
            clicks_per_kind(&counts).into_iter().collect::<Vec<_>>(),
            [("add-to-cart", 1), ("product-view", 3), ("search", 1)]
        );
    }

    #[test]
    fn only_acceptance_confirmation_and_cancellation_count() {
        assert_eq!(stage(OrderStatus::Pending), Some("checkout"));
        assert_eq!(stage(OrderStatus::Confirmed), Some("confirmed"));
        assert_eq!(stage(OrderStatus::Cancelled), Some("cancelled"));
        assert_eq!(stage(OrderStatus::StockReserved), None);
        assert_eq!(stage(OrderStatus::Refunded), None);
    }
}
