//! Inventory's SQL. Every function takes the transaction (or client) it runs in; every write
//! that changes a stock row also writes its `stock-level-changed` event into the outbox, in
//! the same transaction ([`record_levels`]).
//!
//! Locking discipline (why no two transactions deadlock): a transaction locks at most one
//! order's reservation row first (or, for the sweep, a batch of them with `SKIP LOCKED`),
//! then the stock rows it needs, all at once, in product id order ([`lock_stock`]), and
//! waits for nothing else after that.

use comptoir_events::CloudEvent;
use comptoir_events::contracts::inventory::{StockLevelChanged, StockOutcome};
use comptoir_events::outbox::{self, OutboxError};
use deadpool_postgres::{GenericClient, Pool, PoolError};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::EVENT_SOURCE;
use crate::domain::{Adjustment, Lines, MAX_ON_HAND, ReservationStatus, Stock};

/// What can go wrong in inventory's storage, in terms a handler can act on.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: i64 },
    #[error("on_hand would fall below the {reserved} units reserved")]
    BelowReserved { reserved: i64 },
    #[error("on_hand would exceed {MAX_ON_HAND}")]
    AboveMaximum,
    /// A reserve names a product inventory has not heard of from the catalog yet: the
    /// catalog's event is behind the order's command. Retried, not refused.
    #[error("product {0} is not known yet; the catalog's event has not arrived")]
    ProductNotYetKnown(Uuid),
    #[error("reservation {0} has an unknown status {1:?}")]
    CorruptStatus(Uuid, String),
    #[error("cannot get a database connection")]
    Pool(#[from] PoolError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot write the event to the outbox")]
    Outbox(#[from] OutboxError),
}

const STOCK_COLUMNS: &str =
    "product_id, on_hand, reserved, on_hand - reserved AS available, version";

fn stock(row: &Row) -> Stock {
    Stock {
        product_id: row.get("product_id"),
        on_hand: row.get("on_hand"),
        reserved: row.get("reserved"),
        available: row.get("available"),
        version: row.get("version"),
    }
}

/// Writes one `stock-level-changed` event per row, keyed by product id.
pub async fn record_levels<C: GenericClient + Sync>(
    tx: &C,
    topic: &str,
    levels: &[Stock],
) -> Result<(), RepoError> {
    for level in levels {
        let data = StockLevelChanged {
            product_id: level.product_id,
            on_hand: level.on_hand,
            reserved: level.reserved,
            available: level.available,
            version: level.version,
        };
        let event = CloudEvent::new(EVENT_SOURCE, level.product_id.to_string(), data);
        outbox::enqueue(tx, topic, &event).await?;
    }
    Ok(())
}

/// Writes a `stock-outcome` event, keyed by order id.
pub async fn record_outcome<C: GenericClient + Sync>(
    tx: &C,
    topic: &str,
    outcome: StockOutcome,
) -> Result<(), RepoError> {
    let event = CloudEvent::new(EVENT_SOURCE, outcome.order_id.to_string(), outcome);
    outbox::enqueue(tx, topic, &event).await?;
    Ok(())
}

/// A product's stock, unlocked.
pub async fn get_stock(pool: &Pool, product: Uuid) -> Result<Stock, RepoError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {STOCK_COLUMNS} FROM stock WHERE product_id = $1"),
            &[&product],
        )
        .await?;
    row.map(|r| stock(&r)).ok_or(RepoError::NotFound)
}

/// Creates the stock row of a new product with `on_hand` units; `None` if it already exists
/// (a redelivered or repeated catalog event changes nothing).
pub async fn create_stock<C: GenericClient + Sync>(
    tx: &C,
    product: Uuid,
    on_hand: i64,
) -> Result<Option<Stock>, RepoError> {
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO stock (product_id, on_hand) VALUES ($1, $2) \
                 ON CONFLICT (product_id) DO NOTHING RETURNING {STOCK_COLUMNS}"
            ),
            &[&product, &on_hand],
        )
        .await?;
    Ok(row.map(|r| stock(&r)))
}

/// Locks the stock rows of `products` (ascending ids, see the module doc) and returns the
/// ones that exist, in the same order. PostgreSQL locks the rows as the sorted result is
/// produced, so the locks are taken in product id order; and after waiting for a lock it
/// re-reads the row, so the values returned are the latest committed ones.
pub async fn lock_stock<C: GenericClient + Sync>(
    tx: &C,
    products: &[Uuid],
) -> Result<Vec<Stock>, RepoError> {
    let rows = tx
        .query(
            &format!(
                "SELECT {STOCK_COLUMNS} FROM stock WHERE product_id = ANY($1) \
                 ORDER BY product_id FOR UPDATE"
            ),
            &[&products],
        )
        .await?;
    Ok(rows.iter().map(stock).collect())
}

/// Adds `on_hand[i]` and `reserved[i]` to the (already locked) row of `products[i]` and bumps
/// its version; returns the new rows. The table's CHECKs refuse anything that would hold more
/// than is on hand or go negative: the statement fails rather than oversell.
pub async fn move_stock<C: GenericClient + Sync>(
    tx: &C,
    products: &[Uuid],
    on_hand: &[i64],
    reserved: &[i64],
) -> Result<Vec<Stock>, RepoError> {
    let rows = tx
        .query(
            &format!(
                "UPDATE stock SET on_hand = on_hand + d.on_hand_delta, \
                     reserved = reserved + d.reserved_delta, \
                     version = version + 1, updated_at = now() \
                 FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) \
                     AS d (id, on_hand_delta, reserved_delta) \
                 WHERE product_id = d.id RETURNING {STOCK_COLUMNS}"
            ),
            &[&products, &on_hand, &reserved],
        )
        .await?;
    let mut levels: Vec<Stock> = rows.iter().map(stock).collect();
    levels.sort_by_key(|s| s.product_id);
    Ok(levels)
}

/// Locks one product's stock row, or says it does not exist.
async fn lock_one<C: GenericClient + Sync>(tx: &C, product: Uuid) -> Result<Stock, RepoError> {
    lock_stock(tx, &[product])
        .await?
        .pop()
        .ok_or(RepoError::NotFound)
}

/// Writes a new `on_hand` (and its log line and event) to a locked row, after the checks.
async fn write_on_hand<C: GenericClient + Sync>(
    tx: &C,
    topic: &str,
    current: &Stock,
    on_hand: i64,
    reason: &str,
) -> Result<Stock, RepoError> {
    if on_hand > MAX_ON_HAND {
        return Err(RepoError::AboveMaximum);
    }
    if on_hand < current.reserved {
        return Err(RepoError::BelowReserved {
            reserved: current.reserved,
        });
    }
    let delta = on_hand - current.on_hand;
    let level = move_stock(tx, &[current.product_id], &[delta], &[0])
        .await?
        .pop()
        .ok_or(RepoError::NotFound)?;
    tx.execute(
        "INSERT INTO stock_adjustments (product_id, delta, reason, on_hand_after) \
         VALUES ($1, $2, $3, $4)",
        &[&current.product_id, &delta, &reason, &level.on_hand],
    )
    .await?;
    record_levels(tx, topic, std::slice::from_ref(&level)).await?;
    Ok(level)
}

/// Sets a product's `on_hand` (a stock count) if its version is still `expected_version`
/// (`None`: whatever it is).
pub async fn set_on_hand(
    pool: &Pool,
    topic: &str,
    product: Uuid,
    expected_version: Option<i64>,
    on_hand: i64,
) -> Result<Stock, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let current = lock_one(&tx, product).await?;
    if expected_version.is_some_and(|version| version != current.version) {
        return Err(RepoError::VersionConflict {
            current: current.version,
        });
    }
    let level = write_on_hand(&tx, topic, &current, on_hand, "count").await?;
    tx.commit().await?;
    Ok(level)
}

/// Adds `adjustment.delta` to a product's `on_hand` (deltas commute: no version needed).
pub async fn adjust(
    pool: &Pool,
    topic: &str,
    product: Uuid,
    adjustment: &Adjustment,
) -> Result<Stock, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let current = lock_one(&tx, product).await?;
    let on_hand = current.on_hand + adjustment.delta;
    let level = write_on_hand(&tx, topic, &current, on_hand, &adjustment.reason).await?;
    tx.commit().await?;
    Ok(level)
}

/// An order's reservation as the saga handler needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub status: ReservationStatus,
    pub reason: Option<String>,
    /// Still `reserved` but past `expires_at`: waiting for the sweep.
    pub lapsed: bool,
}

/// Locks an order's reservation row, if there is one.
pub async fn lock_reservation<C: GenericClient + Sync>(
    tx: &C,
    order: Uuid,
) -> Result<Option<Reservation>, RepoError> {
    let row = tx
        .query_opt(
            "SELECT status, reason, (status = 'reserved' AND expires_at <= now()) AS lapsed \
             FROM reservations WHERE order_id = $1 FOR UPDATE",
            &[&order],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.get("status");
    Ok(Some(Reservation {
        status: ReservationStatus::parse(&status).ok_or(RepoError::CorruptStatus(order, status))?,
        reason: row.get("reason"),
        lapsed: row.get("lapsed"),
    }))
}

/// Records an order's reservation; `ttl_secs` only for a `reserved` one.
pub async fn insert_reservation<C: GenericClient + Sync>(
    tx: &C,
    order: Uuid,
    status: ReservationStatus,
    reason: Option<&str>,
    ttl_secs: Option<i64>,
) -> Result<(), RepoError> {
    tx.execute(
        "INSERT INTO reservations (order_id, status, reason, expires_at) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4::bigint))",
        &[&order, &status.as_str(), &reason, &ttl_secs],
    )
    .await?;
    Ok(())
}

/// Records the lines a reservation holds.
pub async fn insert_lines<C: GenericClient + Sync>(
    tx: &C,
    order: Uuid,
    lines: &Lines,
) -> Result<(), RepoError> {
    tx.execute(
        "INSERT INTO reservation_lines (order_id, product_id, quantity) \
         SELECT $1, * FROM unnest($2::uuid[], $3::int[])",
        &[&order, &lines.products(), &lines.quantities()],
    )
    .await?;
    Ok(())
}

/// Units per product held by `orders`, summed, in product id order.
pub async fn lines_of<C: GenericClient + Sync>(
    tx: &C,
    orders: &[Uuid],
) -> Result<(Vec<Uuid>, Vec<i64>), RepoError> {
    let rows = tx
        .query(
            "SELECT product_id, sum(quantity)::bigint FROM reservation_lines \
             WHERE order_id = ANY($1) GROUP BY product_id ORDER BY product_id",
            &[&orders],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get::<_, Uuid>(0), r.get::<_, i64>(1)))
        .unzip())
}

/// Moves reservations to a new status (and reason).
pub async fn set_status<C: GenericClient + Sync>(
    tx: &C,
    orders: &[Uuid],
    status: ReservationStatus,
    reason: Option<&str>,
) -> Result<(), RepoError> {
    tx.execute(
        "UPDATE reservations SET status = $2, reason = $3, updated_at = now() \
         WHERE order_id = ANY($1)",
        &[&orders, &status.as_str(), &reason],
    )
    .await?;
    Ok(())
}

/// Locks up to `limit` reservations still held past their expiry, oldest first, skipping
/// those another transaction holds (a commit or release in progress decides them itself).
pub async fn lock_lapsed<C: GenericClient + Sync>(
    tx: &C,
    limit: i64,
) -> Result<Vec<Uuid>, RepoError> {
    let rows = tx
        .query(
            "SELECT order_id FROM reservations \
             WHERE status = 'reserved' AND expires_at < now() \
             ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
