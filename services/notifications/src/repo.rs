//! The notifications service's SQL: the delivery log, written by the order-events consumer,
//! claimed and updated by the sender, read by the admin route and the GDPR participant.

use std::time::Duration;

use deadpool_postgres::{GenericClient, PoolError};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{Delivery, Kind, NewDelivery, OrderFacts, Status};

/// What can go wrong in the service's storage.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot get a database connection")]
    Pool(#[from] PoolError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("unexpected value {value:?} in deliveries.{column}")]
    Corrupt { column: &'static str, value: String },
}

const DELIVERY_COLUMNS: &str = "id, order_id, customer_id, kind, status, attempts, \
                                next_attempt_at, last_error, created_at, sent_at";

fn delivery(row: &Row) -> Result<Delivery, RepoError> {
    let kind: String = row.get("kind");
    let status: String = row.get("status");
    Ok(Delivery {
        id: row.get("id"),
        order_id: row.get("order_id"),
        customer_id: row.get("customer_id"),
        kind: Kind::parse(&kind).ok_or(RepoError::Corrupt {
            column: "kind",
            value: kind,
        })?,
        status: Status::parse(&status).ok_or(RepoError::Corrupt {
            column: "status",
            value: status,
        })?,
        attempts: row.get("attempts"),
        next_attempt_at: row.get("next_attempt_at"),
        last_error: row.get("last_error"),
        created_at: row.get("created_at"),
        sent_at: row.get("sent_at"),
    })
}

/// Records a delivery unless one of the same kind exists for the order, with the trace it is
/// recorded in (the order event's). Returns whether it was new.
pub async fn insert_delivery(
    client: &impl GenericClient,
    new: &NewDelivery,
) -> Result<bool, RepoError> {
    let inserted = client
        .execute(
            "INSERT INTO deliveries (id, order_id, customer_id, kind, item_count, total_minor, \
             currency, reason, trace_context) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (order_id, kind) DO NOTHING",
            &[
                &Uuid::now_v7(),
                &new.order_id,
                &new.customer_id,
                &new.kind.as_str(),
                &new.facts.items,
                &new.facts.total_minor,
                &new.facts.currency,
                &new.facts.reason,
                &serde_json::to_value(comptoir_events::trace::current_context_headers())
                    .unwrap_or_default(),
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// A delivery the sender has claimed: what it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub kind: Kind,
    /// Attempts made before this one.
    pub attempts: i32,
    pub facts: OrderFacts,
    /// The trace the delivery was recorded in (`traceparent`...), to continue when sending.
    pub trace_context: std::collections::HashMap<String, String>,
}

/// Claims up to `limit` due pending deliveries for `lease`: their next attempt is pushed past
/// the lease, so another sender (another replica, or this one's next round) skips them while
/// this one works, and picks them up again should this one die mid-send. Rows another sender
/// is claiming at the same moment are skipped, not waited for (`SKIP LOCKED`).
pub async fn claim_due(
    client: &impl GenericClient,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Claimed>, RepoError> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "UPDATE deliveries SET next_attempt_at = now() + $2::float8 * interval '1 millisecond' \
             WHERE id IN (SELECT id FROM deliveries \
                          WHERE status = 'pending' AND next_attempt_at <= now() \
                          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, order_id, customer_id, kind, attempts, item_count, total_minor, \
                       currency, reason, trace_context",
            &[&limit, &(lease_ms as f64)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let kind: String = row.get("kind");
            Ok(Claimed {
                id: row.get("id"),
                customer_id: row.get("customer_id"),
                kind: Kind::parse(&kind).ok_or(RepoError::Corrupt {
                    column: "kind",
                    value: kind,
                })?,
                attempts: row.get("attempts"),
                facts: OrderFacts {
                    order_id: row.get("order_id"),
                    items: row.get("item_count"),
                    total_minor: row.get("total_minor"),
                    currency: row.get("currency"),
                    reason: row.get("reason"),
                },
                trace_context: serde_json::from_value(row.get("trace_context")).unwrap_or_default(),
            })
        })
        .collect()
}

/// How an attempt ended, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    /// Nothing to send (and nothing to retry), with why.
    Skipped(&'static str),
    /// Failed; retried after `Some(wait)`, given up on `None`.
    Failed {
        error: String,
        retry_in: Option<Duration>,
    },
}

/// Records the attempt on a claimed delivery. A delivery erased meanwhile is left erased.
pub async fn record_attempt(
    client: &impl GenericClient,
    id: Uuid,
    attempt: &Attempt,
) -> Result<(), RepoError> {
    match attempt {
        Attempt::Sent => {
            client
                .execute(
                    "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, \
                     sent_at = now(), last_error = NULL WHERE id = $1 AND status = 'pending'",
                    &[&id],
                )
                .await?
        }
        Attempt::Skipped(why) => {
            client
                .execute(
                    "UPDATE deliveries SET status = 'skipped', attempts = attempts + 1, \
                     last_error = $2 WHERE id = $1 AND status = 'pending'",
                    &[&id, why],
                )
                .await?
        }
        Attempt::Failed { error, retry_in } => {
            let (status, wait_ms) = match retry_in {
                Some(wait) => ("pending", wait.as_millis() as f64),
                None => ("failed", 0.0),
            };
            client
                .execute(
                    "UPDATE deliveries SET status = $2, attempts = attempts + 1, last_error = $3, \
                     next_attempt_at = now() + $4::float8 * interval '1 millisecond' \
                     WHERE id = $1 AND status = 'pending'",
                    &[&id, &status, error, &wait_ms],
                )
                .await?
        }
    };
    Ok(())
}

/// The deliveries of an order, oldest first.
pub async fn deliveries_of_order(
    client: &impl GenericClient,
    order_id: Uuid,
) -> Result<Vec<Delivery>, RepoError> {
    client
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE order_id = $1 \
                 ORDER BY created_at, id"
            ),
            &[&order_id],
        )
        .await?
        .iter()
        .map(delivery)
        .collect()
}

/// The deliveries of a customer, oldest first.
pub async fn deliveries_of_customer(
    client: &impl GenericClient,
    customer_id: Uuid,
) -> Result<Vec<Delivery>, RepoError> {
    client
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE customer_id = $1 \
                 ORDER BY created_at, id"
            ),
            &[&customer_id],
        )
        .await?
        .iter()
        .map(delivery)
        .collect()
}

/// Deletes the deliveries of a customer; returns how many.
pub async fn delete_customer_deliveries(
    client: &impl GenericClient,
    customer_id: Uuid,
) -> Result<u64, RepoError> {
    Ok(client
        .execute(
            "DELETE FROM deliveries WHERE customer_id = $1",
            &[&customer_id],
        )
        .await?)
}
