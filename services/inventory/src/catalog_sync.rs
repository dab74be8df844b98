//! The catalog's `ProductChanged` events in: a product the catalog announces gets a stock row.
//!
//! A `created` event (or an `updated` one for a product inventory has not seen, if the
//! `created` one was lost to retention before inventory first subscribed) inserts the row
//! with `demo_stock_per_product` units (0 unless configured) and publishes its stock level.
//! The insert is `ON CONFLICT DO NOTHING`: a repeated event changes nothing. A `deleted`
//! product keeps its row: orders in flight may still commit or release units of it, and the
//! catalog no longer offers it, so nobody reserves more.

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::catalog::{ProductChange, ProductChanged};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;

use crate::repo::{self, RepoError};

/// Handles the catalog's product events (subscription `inventory-catalog-sync`).
#[derive(Debug, Clone)]
pub struct CatalogSync {
    /// Full name of the `stock-levels` topic.
    levels_topic: String,
    /// Units a new product starts with.
    initial_stock: i64,
}

impl CatalogSync {
    pub fn new(levels_topic: String, initial_stock: i64) -> Self {
        Self {
            levels_topic,
            initial_stock,
        }
    }

    pub async fn apply(
        &self,
        tx: &Transaction<'_>,
        product: &ProductChanged,
    ) -> Result<(), RepoError> {
        if product.change == ProductChange::Deleted {
            return Ok(());
        }
        if let Some(level) = repo::create_stock(tx, product.product_id, self.initial_stock).await? {
            tracing::info!(product_id = %product.product_id, on_hand = level.on_hand, "Stock row created");
            repo::record_levels(tx, &self.levels_topic, &[level]).await?;
        }
        Ok(())
    }
}

impl Handler<ProductChanged> for CatalogSync {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.apply(tx, &event.data).await.map_err(Into::into) })
    }
}
