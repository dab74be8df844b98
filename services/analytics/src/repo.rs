//! Every SQL statement of analytics, as functions taking a `GenericClient` (a pool's client or
//! a transaction).

use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Funnel, MinuteCount, ProductCount, ProductSeries, TopProducts, Window, ratio};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot get a database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Whether `customer` has granted the analytics consent. No row is no: consent is opt-in.
pub async fn consent_granted<C: GenericClient>(
    client: &C,
    customer: Uuid,
) -> Result<bool, RepoError> {
    let row = client
        .query_opt(
            "SELECT granted FROM consents WHERE customer_id = $1",
            &[&customer],
        )
        .await?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// Records a consent change unless a later one is already known.
pub async fn apply_consent<C: GenericClient>(
    client: &C,
    customer: Uuid,
    granted: bool,
    changed_at: OffsetDateTime,
) -> Result<(), RepoError> {
    client
        .execute(
            "INSERT INTO consents (customer_id, granted, changed_at) VALUES ($1, $2, $3)
             ON CONFLICT (customer_id) DO UPDATE
             SET granted = EXCLUDED.granted, changed_at = EXCLUDED.changed_at
             WHERE consents.changed_at < EXCLUDED.changed_at",
            &[&customer, &granted, &changed_at],
        )
        .await?;
    Ok(())
}

/// The consent analytics holds for `customer`, if any: (granted, changed at).
pub async fn consent<C: GenericClient>(
    client: &C,
    customer: Uuid,
) -> Result<Option<(bool, OffsetDateTime)>, RepoError> {
    Ok(client
        .query_opt(
            "SELECT granted, changed_at FROM consents WHERE customer_id = $1",
            &[&customer],
        )
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// Forgets `customer`'s consent (erasure). Returns how many rows went.
pub async fn forget_consent<C: GenericClient>(
    client: &C,
    customer: Uuid,
) -> Result<u64, RepoError> {
    Ok(client
        .execute("DELETE FROM consents WHERE customer_id = $1", &[&customer])
        .await?)
}

/// A count to add to `clicks_per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClickKey {
    pub minute: OffsetDateTime,
    pub kind: &'static str,
    /// The nil uuid for clicks about no product.
    pub product_id: Uuid,
}

/// Adds `counts` (clicks, units per key) to the per-minute table in one statement. Rows are
/// written in key order, so two transactions touching the same rows lock them in the same
/// order and never deadlock.
pub async fn add_clicks<C: GenericClient>(
    client: &C,
    counts: &BTreeMap<ClickKey, (i64, i64)>,
) -> Result<(), RepoError> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut minutes = Vec::with_capacity(counts.len());
    let mut kinds = Vec::with_capacity(counts.len());
    let mut products = Vec::with_capacity(counts.len());
    let mut clicks = Vec::with_capacity(counts.len());
    let mut units = Vec::with_capacity(counts.len());
    for (key, (count, unit)) in counts {
        minutes.push(key.minute);
        kinds.push(key.kind);
        products.push(key.product_id);
        clicks.push(*count);
        units.push(*unit);
    }
    client
        .execute(
            "INSERT INTO clicks_per_minute (minute, kind, product_id, clicks, units)
             SELECT * FROM UNNEST($1::timestamptz[], $2::text[], $3::uuid[], $4::bigint[],
                                  $5::bigint[])
             ORDER BY 1, 2, 3
             ON CONFLICT (minute, kind, product_id) DO UPDATE
             SET clicks = clicks_per_minute.clicks + EXCLUDED.clicks,
                 units = clicks_per_minute.units + EXCLUDED.units",
            &[&minutes, &kinds, &products, &clicks, &units],
        )
        .await?;
    Ok(())
}

/// Counts one order at `stage` in its minute.
pub async fn add_order<C: GenericClient>(
    client: &C,
    minute: OffsetDateTime,
    stage: &str,
    currency: &str,
    amount_minor: i64,
) -> Result<(), RepoError> {
    client
        .execute(
            "INSERT INTO orders_per_minute (minute, stage, currency, orders, amount_minor)
             VALUES ($1, $2, $3, 1, $4)
             ON CONFLICT (minute, stage, currency) DO UPDATE
             SET orders = orders_per_minute.orders + 1,
                 amount_minor = orders_per_minute.amount_minor + EXCLUDED.amount_minor",
            &[&minute, &stage, &currency, &amount_minor],
        )
        .await?;
    Ok(())
}

/// The most viewed products of the last `window.minutes` minutes (a sliding window over the
/// one-minute ones; the current minute included).
pub async fn top_products<C: GenericClient>(
    client: &C,
    window: Window,
) -> Result<TopProducts, RepoError> {
    let rows = client
        .query(
            "SELECT product_id, sum(clicks)::bigint AS views FROM clicks_per_minute
             WHERE kind = 'product-view'
               AND minute >= date_trunc('minute', now()) - make_interval(mins => $1::int - 1)
             GROUP BY product_id ORDER BY views DESC, product_id LIMIT $2",
            &[&(window.minutes as i32), &window.limit],
        )
        .await?;
    Ok(TopProducts {
        minutes: window.minutes,
        products: rows
            .iter()
            .map(|row| ProductCount {
                product_id: row.get(0),
                views: row.get(1),
            })
            .collect(),
    })
}

/// A product's views and add-to-carts per minute over the window.
pub async fn product_series<C: GenericClient>(
    client: &C,
    product: Uuid,
    window: Window,
) -> Result<ProductSeries, RepoError> {
    let rows = client
        .query(
            "SELECT minute,
                    coalesce(sum(clicks) FILTER (WHERE kind = 'product-view'), 0)::bigint,
                    coalesce(sum(units) FILTER (WHERE kind = 'add-to-cart'), 0)::bigint
             FROM clicks_per_minute
             WHERE product_id = $1 AND kind IN ('product-view', 'add-to-cart')
               AND minute >= date_trunc('minute', now()) - make_interval(mins => $2::int - 1)
             GROUP BY minute ORDER BY minute",
            &[&product, &(window.minutes as i32)],
        )
        .await?;
    Ok(ProductSeries {
        product_id: product,
        minutes: window.minutes,
        series: rows
            .iter()
            .map(|row| MinuteCount {
                minute: row.get(0),
                views: row.get(1),
                added_to_cart: row.get(2),
            })
            .collect(),
    })
}

/// The funnel of the last `window.minutes` minutes.
pub async fn funnel<C: GenericClient>(client: &C, window: Window) -> Result<Funnel, RepoError> {
    let minutes = window.minutes as i32;
    let clicks = client
        .query(
            "SELECT kind, sum(clicks)::bigint FROM clicks_per_minute
             WHERE minute >= date_trunc('minute', now()) - make_interval(mins => $1::int - 1)
             GROUP BY kind",
            &[&minutes],
        )
        .await?;
    let clicks: BTreeMap<String, i64> = clicks.iter().map(|r| (r.get(0), r.get(1))).collect();
    let orders = client
        .query(
            "SELECT stage, currency, sum(orders)::bigint, sum(amount_minor)::bigint
             FROM orders_per_minute
             WHERE minute >= date_trunc('minute', now()) - make_interval(mins => $1::int - 1)
             GROUP BY stage, currency",
            &[&minutes],
        )
        .await?;
    let mut stages: BTreeMap<String, i64> = BTreeMap::new();
    let mut revenue_minor = BTreeMap::new();
    for row in &orders {
        let stage: String = row.get(0);
        if stage == "confirmed" {
            revenue_minor.insert(row.get::<_, String>(1), row.get::<_, i64>(3));
        }
        *stages.entry(stage).or_default() += row.get::<_, i64>(2);
    }
    let count = |map: &BTreeMap<String, i64>, key: &str| map.get(key).copied().unwrap_or(0);
    let product_views = count(&clicks, "product-view");
    let add_to_carts = count(&clicks, "add-to-cart");
    let checkouts = count(&stages, "checkout");
    let confirmed_orders = count(&stages, "confirmed");
    Ok(Funnel {
        minutes: window.minutes,
        page_views: count(&clicks, "page-view"),
        product_views,
        searches: count(&clicks, "search"),
        add_to_carts,
        checkouts,
        confirmed_orders,
        cancelled_orders: count(&stages, "cancelled"),
        view_to_cart: ratio(add_to_carts, product_views),
        cart_to_checkout: ratio(checkouts, add_to_carts),
        checkout_to_order: ratio(confirmed_orders, checkouts),
        conversion: ratio(confirmed_orders, product_views),
        revenue_minor,
    })
}

/// What one retention run removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub aggregates: u64,
    pub inbox: u64,
}

/// Deletes aggregates older than `retention_days` and inbox rows older than `inbox_secs`.
pub async fn prune<C: GenericClient>(
    client: &C,
    retention_days: u32,
    inbox_secs: u64,
) -> Result<Pruned, RepoError> {
    let days = retention_days as i32;
    let clicks = client
        .execute(
            "DELETE FROM clicks_per_minute WHERE minute < now() - make_interval(days => $1)",
            &[&days],
        )
        .await?;
    let orders = client
        .execute(
            "DELETE FROM orders_per_minute WHERE minute < now() - make_interval(days => $1)",
            &[&days],
        )
        .await?;
    let inbox = client
        .execute(
            "DELETE FROM inbox WHERE processed_at < now() - make_interval(secs => $1)",
            &[&(inbox_secs as f64)],
        )
        .await?;
    Ok(Pruned {
        aggregates: clicks + orders,
        inbox,
    })
}
