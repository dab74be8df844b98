//! The catalog's SQL. Every write that changes a product also writes its event into the
//! outbox, in the same transaction.

use comptoir_events::CloudEvent;
use comptoir_events::contracts::catalog::{ProductChange, ProductChanged};
use comptoir_events::outbox::{self, OutboxError};
use deadpool_postgres::{GenericClient, Pool, PoolError};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::EVENT_SOURCE;
use crate::domain::{Category, NewCategory, NewProduct, Product};

/// What can go wrong in the catalog's storage, in terms a handler can act on.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("version conflict: the current version is {current}")]
    VersionConflict { current: i64 },
    #[error("a product with this SKU already exists")]
    DuplicateSku,
    #[error("a category with this slug already exists")]
    DuplicateSlug,
    #[error("the category does not exist")]
    UnknownCategory,
    #[error("the category still has products")]
    CategoryInUse,
    #[error("cannot get a database connection")]
    Pool(#[from] PoolError),
    #[error("database error")]
    Postgres(#[source] tokio_postgres::Error),
    #[error("cannot write the event to the outbox")]
    Outbox(#[from] OutboxError),
}

impl From<tokio_postgres::Error> for RepoError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return Self::Postgres(error);
        };
        let constraint = db.constraint().unwrap_or_default();
        match (db.code(), constraint) {
            (c, "products_sku_key") if *c == SqlState::UNIQUE_VIOLATION => Self::DuplicateSku,
            (c, "categories_slug_key") if *c == SqlState::UNIQUE_VIOLATION => Self::DuplicateSlug,
            // A product naming a category that does not exist; deleting a category that
            // products still name breaks the same constraint (delete_category says so).
            (c, "products_category_id_fkey") if *c == SqlState::FOREIGN_KEY_VIOLATION => {
                Self::UnknownCategory
            }
            _ => Self::Postgres(error),
        }
    }
}

const PRODUCT_COLUMNS: &str = "id, sku, name, description, category_id, price_cents, currency, \
                               active, version, created_at, updated_at";

fn product(row: &Row) -> Product {
    Product {
        id: row.get("id"),
        sku: row.get("sku"),
        name: row.get("name"),
        description: row.get("description"),
        category_id: row.get("category_id"),
        price_cents: row.get("price_cents"),
        currency: row.get("currency"),
        active: row.get("active"),
        version: row.get("version"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

fn category(row: &Row) -> Category {
    Category {
        id: row.get("id"),
        slug: row.get("slug"),
        name: row.get("name"),
    }
}

async fn record_event<C: GenericClient + Sync>(
    tx: &C,
    topic: &str,
    product: &Product,
    change: ProductChange,
) -> Result<(), RepoError> {
    let data = ProductChanged {
        product_id: product.id,
        change,
        version: product.version,
        sku: product.sku.clone(),
        name: product.name.clone(),
        category_id: product.category_id,
        price_cents: product.price_cents,
        currency: product.currency.clone(),
        active: product.active && change != ProductChange::Deleted,
    };
    let event = CloudEvent::new(EVENT_SOURCE, product.id.to_string(), data);
    outbox::enqueue(tx, topic, &event).await?;
    Ok(())
}

/// Inserts a product and its `created` event.
pub async fn create_product(
    pool: &Pool,
    topic: &str,
    p: &NewProduct,
) -> Result<Product, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO products (id, sku, name, description, category_id, price_cents, \
                 currency, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 RETURNING {PRODUCT_COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &p.sku,
                &p.name,
                &p.description,
                &p.category_id,
                &p.price_cents,
                &p.currency,
                &p.active,
            ],
        )
        .await?;
    let created = product(&row);
    record_event(&tx, topic, &created, ProductChange::Created).await?;
    tx.commit().await?;
    Ok(created)
}

/// Replaces a product if its version is still `expected_version` (`None`: whatever it is).
pub async fn update_product(
    pool: &Pool,
    topic: &str,
    id: Uuid,
    expected_version: Option<i64>,
    p: &NewProduct,
) -> Result<Product, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE products SET sku = $3, name = $4, description = $5, category_id = $6, \
                 price_cents = $7, currency = $8, active = $9, version = version + 1, \
                 updated_at = now() WHERE id = $1 AND ($2::bigint IS NULL OR version = $2) \
                 RETURNING {PRODUCT_COLUMNS}"
            ),
            &[
                &id,
                &expected_version,
                &p.sku,
                &p.name,
                &p.description,
                &p.category_id,
                &p.price_cents,
                &p.currency,
                &p.active,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(missing_or_conflict(&tx, id).await);
    };
    let updated = product(&row);
    record_event(&tx, topic, &updated, ProductChange::Updated).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Deletes a product if its version is still `expected_version` (`None`: whatever it is).
pub async fn delete_product(
    pool: &Pool,
    topic: &str,
    id: Uuid,
    expected_version: Option<i64>,
) -> Result<(), RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "DELETE FROM products WHERE id = $1 AND ($2::bigint IS NULL OR version = $2) \
                 RETURNING {PRODUCT_COLUMNS}"
            ),
            &[&id, &expected_version],
        )
        .await?;
    let Some(row) = row else {
        return Err(missing_or_conflict(&tx, id).await);
    };
    let mut deleted = product(&row);
    deleted.version += 1;
    record_event(&tx, topic, &deleted, ProductChange::Deleted).await?;
    tx.commit().await?;
    Ok(())
}

async fn missing_or_conflict<C: GenericClient + Sync>(tx: &C, id: Uuid) -> RepoError {
    match tx
        .query_opt("SELECT version FROM products WHERE id = $1", &[&id])
        .await
    {
        Ok(Some(row)) => RepoError::VersionConflict {
            current: row.get(0),
        },
        Ok(None) => RepoError::NotFound,
        Err(error) => error.into(),
    }
}

/// One product; inactive ones only when `include_inactive`.
pub async fn get_product(
    pool: &Pool,
    id: Uuid,
    include_inactive: bool,
) -> Result<Product, RepoError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 AND (active OR $2)"),
            &[&id, &include_inactive],
        )
        .await?;
    row.map(|r| product(&r)).ok_or(RepoError::NotFound)
}

/// Filters of a product listing (also the key of its page in memory, `src/pages.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ProductFilter {
    /// Free text, matched against name, description and SKU.
    pub text: Option<String>,
    /// Category slug.
    pub category: Option<String>,
    pub limit: i64,
    pub offset: i64,
    pub include_inactive: bool,
}

/// A page of products and the number matching in all.
pub async fn list_products(
    pool: &Pool,
    filter: &ProductFilter,
) -> Result<(Vec<Product>, i64), RepoError> {
    let client = pool.get().await?;
    // Substring match complements full-text search for partial words ("yirga").
    let like = filter.text.as_deref().map(|t| {
        format!(
            "%{}%",
            t.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let order = if filter.text.is_some() {
        "ts_rank(search, websearch_to_tsquery('simple', $1)) DESC, name, id"
    } else {
        "name, id"
    };
    // One filter for the page and for the count past its end: $1 text, $2 LIKE pattern,
    // $3 category slug, $4 include inactive.
    const MATCHING: &str = "FROM products WHERE (active OR $4) \
         AND ($1::text IS NULL OR search @@ websearch_to_tsquery('simple', $1) \
              OR name ILIKE $2 OR sku ILIKE $2) \
         AND ($3::text IS NULL OR category_id = (SELECT id FROM categories WHERE slug = $3))";
    let filters: [&(dyn tokio_postgres::types::ToSql + Sync); 4] = [
        &filter.text,
        &like,
        &filter.category,
        &filter.include_inactive,
    ];
    let rows = client
        .query(
            &format!(
                "SELECT {PRODUCT_COLUMNS}, count(*) OVER () AS total {MATCHING} \
                 ORDER BY {order} LIMIT $5 OFFSET $6"
            ),
            &[&filters[..], &[&filter.limit, &filter.offset]].concat(),
        )
        .await?;
    // Past the last page the window is empty; count separately so `total` stays true.
    let total = match rows.first() {
        Some(row) => row.get::<_, i64>("total"),
        None if filter.offset > 0 => client
            .query_one(&format!("SELECT count(*) {MATCHING}"), &filters)
            .await?
            .get(0),
        None => 0,
    };
    Ok((rows.iter().map(product).collect(), total))
}

pub async fn create_category(pool: &Pool, c: &NewCategory) -> Result<Category, RepoError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO categories (id, slug, name) VALUES ($1, $2, $3) RETURNING id, slug, name",
            &[&Uuid::now_v7(), &c.slug, &c.name],
        )
        .await?;
    Ok(category(&row))
}

pub async fn list_categories(pool: &Pool) -> Result<Vec<Category>, RepoError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, slug, name FROM categories ORDER BY name, id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(category).collect())
}

pub async fn get_category(pool: &Pool, id: Uuid) -> Result<Category, RepoError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, slug, name FROM categories WHERE id = $1",
            &[&id],
        )
        .await?;
    row.map(|r| category(&r)).ok_or(RepoError::NotFound)
}

pub async fn delete_category(pool: &Pool, id: Uuid) -> Result<(), RepoError> {
    let client = pool.get().await?;
    let deleted = client
        .execute("DELETE FROM categories WHERE id = $1", &[&id])
        .await
        .map_err(|error| match RepoError::from(error) {
            RepoError::UnknownCategory => RepoError::CategoryInUse,
            other => other,
        })?;
    if deleted == 0 {
        Err(RepoError::NotFound)
    } else {
        Ok(())
    }
}
