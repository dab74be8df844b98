//! The orders service's SQL, in one place. Functions take any `GenericClient` (a pool's
//! client or a transaction) so callers choose the transaction boundaries.

use comptoir_events::contracts::catalog::{ProductChange, ProductChanged};
use comptoir_events::contracts::orders::{OrderLine, OrderStatus};
use comptoir_events::outbox::OutboxError;
use deadpool_postgres::{GenericClient, PoolError};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::domain::{Cart, CartLine, HistoryEntry, MAX_CART_LINES, Order, OrderLineView};

/// What can go wrong in storage, in terms a handler can act on.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("the product is unknown or no longer sold")]
    UnknownProduct,
    #[error("the cart already holds {MAX_CART_LINES} products")]
    CartFull,
    #[error("the cart is empty")]
    EmptyCart,
    #[error("the cart mixes currencies")]
    MixedCurrencies,
    #[error("the cart's total is zero")]
    NothingToPay,
    #[error("the cart holds products no longer sold")]
    Unavailable(Vec<Uuid>),
    #[error("the idempotency key was used with another request")]
    KeyReused,
    #[error("the order is {0} and cannot be {1}")]
    WrongStatus(String, &'static str),
    #[error("cannot get a database connection")]
    Pool(#[from] PoolError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot write the event to the outbox")]
    Outbox(#[from] OutboxError),
}

// ---------------------------------------------------------------------------------------------
// The product projection

/// Applies a catalog product event, unless the projection already holds that version or a
/// newer one. Returns whether anything changed.
pub async fn apply_product<C: GenericClient + Sync>(
    client: &C,
    event: &ProductChanged,
) -> Result<bool, RepoError> {
    let active = event.active && event.change != ProductChange::Deleted;
    let changed = client
        .execute(
            "INSERT INTO products (product_id, version, sku, name, price_minor, currency, active) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (product_id) DO UPDATE SET version = EXCLUDED.version, \
                 sku = EXCLUDED.sku, name = EXCLUDED.name, price_minor = EXCLUDED.price_minor, \
                 currency = EXCLUDED.currency, active = EXCLUDED.active, updated_at = now() \
             WHERE products.version < EXCLUDED.version",
            &[
                &event.product_id,
                &event.version,
                &event.sku,
                &event.name,
                &event.price_cents,
                &event.currency,
                &active,
            ],
        )
        .await?;
    Ok(changed == 1)
}

// ---------------------------------------------------------------------------------------------
// Carts

fn cart_line(row: &Row) -> CartLine {
    let quantity: i32 = row.get("quantity");
    let unit_price_minor: i64 = row.get("price_minor");
    let added_price_minor: i64 = row.get("added_price_minor");
    CartLine {
        product_id: row.get("product_id"),
        sku: row.get("sku"),
        name: row.get("name"),
        quantity,
        unit_price_minor,
        added_price_minor,
        price_changed: unit_price_minor != added_price_minor,
        available: row.get("active"),
        line_total_minor: unit_price_minor * i64::from(quantity),
        currency: row.get::<_, String>("currency").trim().to_owned(),
    }
}

/// The customer's cart at current prices.
pub async fn cart<C: GenericClient + Sync>(client: &C, customer: Uuid) -> Result<Cart, RepoError> {
    let rows = client
        .query(
            "SELECT l.product_id, l.quantity, l.added_price_minor, p.sku, p.name, p.price_minor, \
                    p.currency, p.active \
             FROM cart_lines l JOIN products p USING (product_id) \
             WHERE l.customer_id = $1 ORDER BY l.added_at, l.product_id",
            &[&customer],
        )
        .await?;
    Ok(Cart::from_lines(rows.iter().map(cart_line).collect()))
}

/// Sets how many units of a product the cart holds (adding the line if needed).
pub async fn set_cart_line<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    product: Uuid,
    quantity: i32,
) -> Result<(), RepoError> {
    // One statement: the product must be sold, and a new line must fit under the limit.
    let written = client
        .execute(
            "INSERT INTO cart_lines (customer_id, product_id, quantity, added_price_minor) \
             SELECT $1, p.product_id, $3, p.price_minor FROM products p \
             WHERE p.product_id = $2 AND p.active \
               AND (EXISTS (SELECT 1 FROM cart_lines WHERE customer_id = $1 AND product_id = $2) \
                    OR (SELECT count(*) FROM cart_lines WHERE customer_id = $1) < $4) \
             ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = EXCLUDED.quantity",
            &[&customer, &product, &quantity, &MAX_CART_LINES],
        )
        .await?;
    if written == 1 {
        return Ok(());
    }
    let sold = client
        .query_opt(
            "SELECT 1 FROM products WHERE product_id = $1 AND active",
            &[&product],
        )
        .await?
        .is_some();
    Err(if sold {
        RepoError::CartFull
    } else {
        RepoError::UnknownProduct
    })
}

/// Removes a line; `NotFound` when the cart does not hold the product.
pub async fn remove_cart_line<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    product: Uuid,
) -> Result<(), RepoError> {
    let removed = client
        .execute(
            "DELETE FROM cart_lines WHERE customer_id = $1 AND product_id = $2",
            &[&customer, &product],
        )
        .await?;
    if removed == 0 {
        return Err(RepoError::NotFound);
    }
    Ok(())
}

/// Empties the cart; returns how many lines it held.
pub async fn clear_cart<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
) -> Result<u64, RepoError> {
    Ok(client
        .execute(
            "DELETE FROM cart_lines WHERE customer_id = $1",
            &[&customer],
        )
        .await?)
}

// ---------------------------------------------------------------------------------------------
// Checkout

/// Claims an idempotency key for a new order id. Returns `None` when claimed, or the order
/// the key already placed. A concurrent request with the same key waits here for the first
/// to commit (the primary key's uniqueness check), then sees its order.
pub async fn claim_key<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    key: &str,
    fingerprint: &[u8],
    order: Uuid,
) -> Result<Option<Uuid>, RepoError> {
    let claimed = client
        .execute(
            "INSERT INTO checkouts (customer_id, idempotency_key, request_hash, order_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&customer, &key, &fingerprint, &order],
        )
        .await?;
    if claimed == 1 {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT request_hash, order_id FROM checkouts \
             WHERE customer_id = $1 AND idempotency_key = $2",
            &[&customer, &key],
        )
        .await?;
    let stored: Vec<u8> = row.get(0);
    if stored != fingerprint {
        return Err(RepoError::KeyReused);
    }
    Ok(Some(row.get(1)))
}

/// A new order, ready to be written.
#[derive(Debug)]
pub struct NewOrder<'a> {
    pub id: Uuid,
    pub customer: Uuid,
    pub cart: &'a Cart,
    pub shipping_address_id: Option<Uuid>,
    pub step_timeout_secs: f64,
}

/// Writes an order from the cart (status pending) and its first history entry.
pub async fn insert_order<C: GenericClient + Sync>(
    client: &C,
    order: &NewOrder<'_>,
) -> Result<(), RepoError> {
    let cart = order.cart;
    let currency = cart.currency.clone().ok_or(RepoError::EmptyCart)?;
    if cart.lines.iter().any(|l| l.currency != currency) {
        return Err(RepoError::MixedCurrencies);
    }
    let withdrawn: Vec<Uuid> = cart
        .lines
        .iter()
        .filter(|l| !l.available)
        .map(|l| l.product_id)
        .collect();
    if !withdrawn.is_empty() {
        return Err(RepoError::Unavailable(withdrawn));
    }
    // Free products (a sample at 0) go with a priced one: a payment of nothing cannot be
    // authorised, and an order always has one.
    if cart.total_minor <= 0 {
        return Err(RepoError::NothingToPay);
    }
    client
        .execute(
            "INSERT INTO orders (order_id, customer_id, status, total_minor, currency, \
                                 shipping_address_id, step_deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
            &[
                &order.id,
                &order.customer,
                &OrderStatus::Pending.as_str(),
                &cart.total_minor,
                &currency,
                &order.shipping_address_id,
                &order.step_timeout_secs,
            ],
        )
        .await?;
    for line in &cart.lines {
        client
            .execute(
                "INSERT INTO order_lines (order_id, product_id, sku, name, quantity, \
                                          unit_price_minor) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &order.id,
                    &line.product_id,
                    &line.sku,
                    &line.name,
                    &line.quantity,
                    &line.unit_price_minor,
                ],
            )
            .await?;
    }
    client
        .execute(
            "INSERT INTO order_history (order_id, status) VALUES ($1, $2)",
            &[&order.id, &OrderStatus::Pending.as_str()],
        )
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading orders

const ORDER_COLUMNS: &str = "order_id, status, reason, total_minor, currency, \
                             shipping_address_id, created_at, updated_at";

fn order_from(row: &Row, lines: Vec<OrderLineView>, history: Vec<HistoryEntry>) -> Order {
    Order {
        id: row.get("order_id"),
        status: row.get("status"),
        reason: row.get("reason"),
        total_minor: row.get("total_minor"),
        currency: row.get::<_, String>("currency").trim().to_owned(),
        shipping_address_id: row.get("shipping_address_id"),
        lines,
        history,
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// The lines of `orders`, by order, in one query.
async fn lines_of<C: GenericClient + Sync>(
    client: &C,
    orders: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<OrderLineView>>, RepoError> {
    let rows = client
        .query(
            "SELECT order_id, product_id, sku, name, quantity, unit_price_minor FROM order_lines \
             WHERE order_id = ANY($1) ORDER BY order_id, product_id",
            &[&orders],
        )
        .await?;
    let mut lines: std::collections::HashMap<Uuid, Vec<OrderLineView>> = Default::default();
    for r in &rows {
        lines.entry(r.get(0)).or_default().push(OrderLineView {
            product_id: r.get(1),
            sku: r.get(2),
            name: r.get(3),
            quantity: r.get(4),
            unit_price_minor: r.get(5),
        });
    }
    Ok(lines)
}

/// The version of one order of this customer (its ETag); `NotFound` as for [`order`].
pub async fn order_version<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    id: Uuid,
) -> Result<i64, RepoError> {
    Ok(client
        .query_opt(
            "SELECT version FROM orders WHERE order_id = $1 AND customer_id = $2",
            &[&id, &customer],
        )
        .await?
        .ok_or(RepoError::NotFound)?
        .get(0))
}

/// One order of this customer, with its lines and history. Another customer's order is
/// `NotFound`, exactly like one that does not exist.
pub async fn order<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    id: Uuid,
) -> Result<Order, RepoError> {
    Ok(order_tagged(client, customer, id).await?.0)
}

/// [`order`] and the version it was read at.
pub async fn order_tagged<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    id: Uuid,
) -> Result<(Order, i64), RepoError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {ORDER_COLUMNS}, version FROM orders WHERE order_id = $1 AND customer_id = $2"
            ),
            &[&id, &customer],
        )
        .await?
        .ok_or(RepoError::NotFound)?;
    let history = client
        .query(
            "SELECT status, reason, at FROM order_history WHERE order_id = $1 ORDER BY at",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| HistoryEntry {
            status: r.get(0),
            reason: r.get(1),
            at: r.get(2),
        })
        .collect();
    let lines = lines_of(client, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok((order_from(&row, lines, history), row.get("version")))
}

/// A page of the customer's orders, newest first, and how many there are in all.
pub async fn orders<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Order>, i64), RepoError> {
    let total: i64 = client
        .query_one(
            "SELECT count(*) FROM orders WHERE customer_id = $1",
            &[&customer],
        )
        .await?
        .get(0);
    let rows = client
        .query(
            &format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE customer_id = $1 \
                 ORDER BY created_at DESC, order_id LIMIT $2 OFFSET $3"
            ),
            &[&customer, &limit, &offset],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get("order_id")).collect();
    let mut lines = lines_of(client, &ids).await?;
    let orders = rows
        .iter()
        .map(|row| {
            let id: Uuid = row.get("order_id");
            order_from(row, lines.remove(&id).unwrap_or_default(), Vec::new())
        })
        .collect();
    Ok((orders, total))
}

// ---------------------------------------------------------------------------------------------
// The saga's view of an order

/// An order as the saga handles it, locked for the transaction.
#[derive(Debug, Clone)]
pub struct SagaOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub reason: Option<String>,
    pub total_minor: i64,
    pub currency: String,
    /// The card token of an order placed before the authorise left with the reserve
    /// (migration V4); `None` for every order placed since.
    pub payment_token: Option<String>,
    /// Payments authorised the amount while the stock was still awaited.
    pub authorised: bool,
    pub version: i64,
    pub lines: Vec<OrderLine>,
}

/// Locks an order (`FOR UPDATE`) for a saga step; `None` if there is no such order.
/// `customer`: only that customer's order (the API's cancellation), or any (the saga).
pub async fn lock_order<C: GenericClient + Sync>(
    client: &C,
    id: Uuid,
    customer: Option<Uuid>,
) -> Result<Option<SagaOrder>, RepoError> {
    let Some(row) = client
        .query_opt(
            "SELECT customer_id, status, reason, total_minor, currency, payment_token, version, \
                    payment_authorised \
             FROM orders WHERE order_id = $1 AND ($2::uuid IS NULL OR customer_id = $2) \
             FOR UPDATE",
            &[&id, &customer],
        )
        .await?
    else {
        return Ok(None);
    };
    let status: String = row.get(1);
    let status = OrderStatus::parse(&status).ok_or(RepoError::WrongStatus(status, "read"))?;
    let lines = client
        .query(
            "SELECT product_id, quantity, unit_price_minor FROM order_lines WHERE order_id = $1 \
             ORDER BY product_id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| OrderLine {
            product_id: r.get(0),
            quantity: r.get(1),
            unit_price_minor: r.get(2),
        })
        .collect();
    Ok(Some(SagaOrder {
        id,
        customer_id: row.get(0),
        status,
        reason: row.get(2),
        total_minor: row.get(3),
        currency: row.get::<_, String>(4).trim().to_owned(),
        payment_token: row.get(5),
        authorised: row.get(7),
        version: row.get(6),
        lines,
    }))
}

/// What a status change came to: the new version and the order's age in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Moved {
    pub version: i64,
    pub age_secs: f64,
}

/// Moves a locked order to `status`, records it in the history, and sets the deadline of the
/// next step (`None`: nothing awaited). The payment token is dropped once it is no longer
/// needed (`keep_token` false).
pub async fn move_order<C: GenericClient + Sync>(
    client: &C,
    id: Uuid,
    status: OrderStatus,
    reason: Option<&str>,
    deadline_secs: Option<f64>,
    keep_token: bool,
) -> Result<Moved, RepoError> {
    let row = client
        .query_one(
            "UPDATE orders SET status = $2, reason = coalesce($3, reason), \
                 step_deadline = now() + make_interval(secs => $4), \
                 payment_token = CASE WHEN $5 THEN payment_token END, \
                 version = version + 1, updated_at = now() \
             WHERE order_id = $1 \
             RETURNING version, extract(epoch FROM now() - created_at)::float8",
            &[&id, &status.as_str(), &reason, &deadline_secs, &keep_token],
        )
        .await?;
    client
        .execute(
            "INSERT INTO order_history (order_id, status, reason) VALUES ($1, $2, $3)",
            &[&id, &status.as_str(), &reason],
        )
        .await?;
    Ok(Moved {
        version: row.get(0),
        age_secs: row.get(1),
    })
}

/// Records that payments authorised a locked order still waiting for its stock. Not a status
/// change: the order stays `pending`, its version (what a shopper's read sees) unchanged.
pub async fn mark_authorised<C: GenericClient + Sync>(
    client: &C,
    id: Uuid,
) -> Result<(), RepoError> {
    client
        .execute(
            "UPDATE orders SET payment_authorised = true WHERE order_id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Orders whose current step is past its deadline (at most `limit`), skipping those another
/// transaction holds.
pub async fn overdue_orders<C: GenericClient + Sync>(
    client: &C,
    limit: i64,
) -> Result<Vec<Uuid>, RepoError> {
    Ok(client
        .query(
            "SELECT order_id FROM orders WHERE step_deadline < now() \
             ORDER BY step_deadline LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// KPIs

/// What the KPI gauges show ([`crate::kpis`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiSnapshot {
    /// Shoppers with a cart line added within the last hour.
    pub active_carts: i64,
    /// Orders whose saga has not finished, per status (only the statuses that have some).
    pub in_flight: Vec<(String, i64)>,
}

/// Reads the KPI gauges' values. The in-flight count walks the partial index
/// `orders_in_flight` (migration V2), so it costs the saga's backlog, not the order history.
pub async fn kpi_snapshot<C: GenericClient + Sync>(client: &C) -> Result<KpiSnapshot, RepoError> {
    let active_carts = client
        .query_one(
            "SELECT count(DISTINCT customer_id) FROM cart_lines \
             WHERE added_at > now() - interval '1 hour'",
            &[],
        )
        .await?
        .get(0);
    let in_flight = client
        .query(
            "SELECT status, count(*) FROM orders \
             WHERE status NOT IN ('confirmed', 'cancelled', 'refunded') GROUP BY status",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(KpiSnapshot {
        active_carts,
        in_flight,
    })
}

// ---------------------------------------------------------------------------------------------
// GDPR

/// Everything orders holds about a customer: their orders (with lines and history) and cart.
pub async fn customer_data<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
) -> Result<(Vec<Order>, Cart), RepoError> {
    let ids: Vec<Uuid> = client
        .query(
            "SELECT order_id FROM orders WHERE customer_id = $1 ORDER BY created_at",
            &[&customer],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        orders.push(order(client, customer, id).await?);
    }
    Ok((orders, cart(client, customer).await?))
}

/// What an erasure did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Erased {
    pub cart_lines: u64,
    pub idempotency_keys: u64,
    /// Cancelled orders: never invoiced, so nothing requires keeping them.
    pub orders_deleted: u64,
    pub orders_pseudonymised: u64,
}

/// Erases a customer from orders: the cart, the idempotency keys and the cancelled orders (never
/// invoiced) go. The other orders are invoices (or may become one), kept for the legal retention
/// period (docs/gdpr/retention-exceptions.md), so they are detached from the customer instead:
/// their customer id becomes `pseudonym`, a fresh random id recorded nowhere else, so nothing
/// links them back. Payment tokens and shipping address ids still held are dropped.
pub async fn erase_customer<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
    pseudonym: Uuid,
) -> Result<Erased, RepoError> {
    let cart_lines = clear_cart(client, customer).await?;
    let idempotency_keys = client
        .execute("DELETE FROM checkouts WHERE customer_id = $1", &[&customer])
        .await?;
    let orders_deleted = client
        .execute(
            "DELETE FROM orders WHERE customer_id = $1 AND status = $2",
            &[&customer, &OrderStatus::Cancelled.as_str()],
        )
        .await?;
    let orders_pseudonymised = client
        .execute(
            "UPDATE orders SET customer_id = $2, payment_token = NULL, \
                 shipping_address_id = NULL, updated_at = now() WHERE customer_id = $1",
            &[&customer, &pseudonym],
        )
        .await?;
    Ok(Erased {
        cart_lines,
        idempotency_keys,
        orders_deleted,
        orders_pseudonymised,
    })
}
