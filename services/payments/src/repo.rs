//! Payments' SQL: the `payments` state, the append-only `payment_operations`, and the per-order
//! lock commands are handled under. Functions take a `GenericClient`: the consumer's
//! transaction for writes, a pool's client for reads.

use deadpool_postgres::{GenericClient, PoolError};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{Money, Operation, Payment, PaymentStatus};

/// What can go wrong in payments' storage.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("cannot get a database connection")]
    Pool(#[from] PoolError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("unknown payment status {0:?} in the database")]
    UnknownStatus(String),
}

/// First key of payments' advisory locks (the two-key form never collides with the one-key
/// locks the outbox relay takes): "pay" in ASCII.
const ORDER_LOCK_CLASS: i32 = 0x0070_6179;

/// Serialises the handling of one order's commands until the transaction ends, so two
/// consumers (a rebalance, a redelivery) never both decide for the same order, even before
/// its `payments` row exists. Key_Shared delivery already makes this rare.
pub async fn lock_order<C: GenericClient + Sync>(client: &C, order: Uuid) -> Result<(), RepoError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::uuid::text))",
            &[&ORDER_LOCK_CLASS, &order],
        )
        .await?;
    Ok(())
}

fn payment(row: &Row) -> Result<Payment, RepoError> {
    let status: String = row.get("status");
    Ok(Payment {
        order_id: row.get("order_id"),
        status: PaymentStatus::parse(&status).ok_or(RepoError::UnknownStatus(status))?,
        amount_minor: row.get("amount_minor"),
        currency: row.get("currency"),
        provider_reference: row.get("provider_reference"),
        reason: row.get("reason"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

const PAYMENT_COLUMNS: &str = "order_id, status, amount_minor, currency, provider_reference, \
                               reason, created_at, updated_at";

/// The order's payment, if any.
pub async fn find<C: GenericClient + Sync>(
    client: &C,
    order: Uuid,
) -> Result<Option<Payment>, RepoError> {
    client
        .query_opt(
            &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"),
            &[&order],
        )
        .await?
        .as_ref()
        .map(payment)
        .transpose()
}

/// Records the order's payment, the first time a command decides its state.
pub async fn insert<C: GenericClient + Sync>(
    client: &C,
    order: Uuid,
    status: PaymentStatus,
    money: &Money,
    reference: Option<&str>,
    reason: Option<&str>,
) -> Result<(), RepoError> {
    client
        .execute(
            "INSERT INTO payments (order_id, status, amount_minor, currency, provider_reference, reason) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &order,
                &status.as_str(),
                &money.amount_minor,
                &money.currency,
                &reference,
                &reason,
            ],
        )
        .await?;
    Ok(())
}

/// Moves the payment to `status`; `reason` replaces the stored one when given.
pub async fn set_status<C: GenericClient + Sync>(
    client: &C,
    order: Uuid,
    status: PaymentStatus,
    reason: Option<&str>,
) -> Result<(), RepoError> {
    client
        .execute(
            "UPDATE payments SET status = $2, reason = coalesce($3, reason), updated_at = now() \
             WHERE order_id = $1",
            &[&order, &status.as_str(), &reason],
        )
        .await?;
    Ok(())
}

/// Appends one line to the order's operations.
pub async fn record_operation<C: GenericClient + Sync>(
    client: &C,
    order: Uuid,
    action: &str,
    result: &str,
    reason: Option<&str>,
) -> Result<(), RepoError> {
    client
        .execute(
            "INSERT INTO payment_operations (order_id, action, result, reason) \
             VALUES ($1, $2, $3, $4)",
            &[&order, &action, &result, &reason],
        )
        .await?;
    Ok(())
}

/// The order's payment and its operations in the order they happened.
pub async fn payment_with_operations<C: GenericClient + Sync>(
    client: &C,
    order: Uuid,
) -> Result<(Payment, Vec<Operation>), RepoError> {
    let payment = find(client, order).await?.ok_or(RepoError::NotFound)?;
    let operations = client
        .query(
            "SELECT action, result, reason, at FROM payment_operations \
             WHERE order_id = $1 ORDER BY id",
            &[&order],
        )
        .await?
        .iter()
        .map(|row| Operation {
            action: row.get("action"),
            result: row.get("result"),
            reason: row.get("reason"),
            at: row.get("at"),
        })
        .collect();
    Ok((payment, operations))
}
