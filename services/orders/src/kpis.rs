//! Business KPIs as metrics, for the dashboards and alerts (`nixos/monitoring/`).
//!
//! Counters move with the saga ([`crate::saga`]): `orders_checkouts_total`,
//! `orders_saga_finished_total{status, reason}`, `orders_revenue_minor_total{currency}` (the
//! amounts of orders captured, in minor units: a counter never holds a float of money) and
//! `orders_refunded_minor_total{currency}` (the amounts given back).
//! Gauges are read from the database here, every `kpis.interval_ms`, by every instance alike
//! (they describe the database, so the dashboards take their `max`):
//! - `orders_active_carts`: shoppers with a cart line added within the last hour;
//! - `orders_in_flight{status}`: orders whose saga has not finished, per step (the saga's
//!   backlog: it grows when a participant stops answering).
//!
//! Conversion (confirmed orders per checkout, per cart) is computed by recording rules from
//! these series, not here.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use comptoir_events::contracts::orders::OrderStatus;

use crate::repo::{self, RepoError};

/// The saga steps an order can wait in, so that a step emptied since the last look reads 0
/// instead of keeping its old value.
const IN_FLIGHT: [OrderStatus; 5] = [
    OrderStatus::Pending,
    OrderStatus::StockReserved,
    OrderStatus::PaymentAuthorised,
    OrderStatus::StockCommitted,
    OrderStatus::RefundRequested,
];

/// Refreshes the gauges every `interval` until `shutdown`; a failed read is logged and tried
/// again at the next tick (the gauges keep their last value meanwhile).
pub async fn run(pool: deadpool_postgres::Pool, interval: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(error) = refresh(&pool).await {
            tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "KPI refresh failed; will retry");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

async fn refresh(pool: &deadpool_postgres::Pool) -> Result<(), RepoError> {
    let client = pool.get().await?;
    let snapshot = repo::kpi_snapshot(&client).await?;
    metrics::gauge!("orders_active_carts").set(snapshot.active_carts as f64);
    for status in IN_FLIGHT {
        let count = snapshot
            .in_flight
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        metrics::gauge!("orders_in_flight", "status" => status.as_str()).set(count as f64);
    }
    Ok(())
}
