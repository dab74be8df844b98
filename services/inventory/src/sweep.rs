//! The expiry sweep: reservations still `reserved` past `expires_at` give their units back.
//!
//! Every `sweep_interval_ms`, batches of lapsed reservations are locked with `FOR UPDATE SKIP
//! LOCKED` (so several instances sweep side by side without waiting on each other, and a
//! reservation a commit or release is deciding right now is left to it), their units go from
//! `reserved` back to available, and each gets a `StockOutcome` `expired` (plus the products'
//! stock-level events), all in the batch's transaction.

use std::time::Duration;

use comptoir_events::contracts::inventory::{StockOutcome, StockResult};
use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::Topics;
use crate::domain::{ReservationStatus, reason};
use crate::repo::{self, RepoError};

/// Reservations released per transaction.
pub const BATCH: i64 = 100;

/// Sweeps every `interval` until `stop` is cancelled.
pub async fn run(pool: Pool, topics: Topics, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        match sweep(&pool, &topics).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "Lapsed reservations released"),
            Err(error) => {
                tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "Expiry sweep failed; will retry");
            }
        }
    }
}

/// Releases every reservation lapsed by now, in batches; returns how many.
pub async fn sweep(pool: &Pool, topics: &Topics) -> Result<usize, RepoError> {
    let mut total = 0;
    loop {
        let released = sweep_batch(pool, topics).await?;
        total += released;
        if (released as i64) < BATCH {
            return Ok(total);
        }
    }
}

async fn sweep_batch(pool: &Pool, topics: &Topics) -> Result<usize, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let orders = repo::lock_lapsed(&tx, BATCH).await?;
    if orders.is_empty() {
        return Ok(0);
    }
    let (products, quantities) = repo::lines_of(&tx, &orders).await?;
    repo::lock_stock(&tx, &products).await?;
    let minus: Vec<i64> = quantities.iter().map(|q| -q).collect();
    let levels = repo::move_stock(&tx, &products, &vec![0; products.len()], &minus).await?;
    repo::set_status(
        &tx,
        &orders,
        ReservationStatus::Released,
        Some(reason::EXPIRED),
    )
    .await?;
    for order in &orders {
        let outcome = StockOutcome {
            order_id: *order,
            result: StockResult::Expired,
            reason: None,
        };
        repo::record_outcome(&tx, &topics.outcomes, outcome).await?;
    }
    repo::record_levels(&tx, &topics.levels, &levels).await?;
    tx.commit().await?;
    metrics::counter!("inventory_stock_outcomes_total", "result" => "expired")
        .increment(orders.len() as u64);
    Ok(orders.len())
}
