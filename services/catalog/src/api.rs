//! HTTP routes of the catalog and their OpenAPI description. Errors become problem+json in one
//! place ([`crate::error`]).

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json as AxumJson, Router};
use comptoir_platform::etag::{IfMatch, IfNoneMatch, etag, expected_version};
use comptoir_platform::openapi::{ADMIN_TOKEN, Contract};
use comptoir_platform::{FieldError, Json, Problem};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Category, CategoryInput, Product, ProductInput};
use crate::pages::{Page, PageKey};
use crate::repo::{self, ProductFilter};

/// The catalog's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/products", get(list_products))
        .route("/v1/products/{id}", get(get_product))
        .route("/v1/categories", get(list_categories))
        .route("/v1/categories/{id}", get(get_category))
        .route(
            "/v1/admin/products",
            get(admin_list_products).post(create_product),
        )
        .route(
            "/v1/admin/products/{id}",
            get(admin_get_product)
                .put(update_product)
                .delete(delete_product),
        )
        .route("/v1/admin/categories", axum::routing::post(create_category))
        .route(
            "/v1/admin/categories/{id}",
            axum::routing::delete(delete_category),
        )
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

/// Proof that the request carries the admin bearer token.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        comptoir_platform::secret::require_bearer(
            &parts.headers,
            &state.admin_token,
            "comptoir-catalog",
        )
        .map(|()| Admin)
    }
}

fn with_etag(status: StatusCode, product: Product) -> Response {
    let tag = etag(product.version);
    (status, [(header::ETAG, tag)], AxumJson(product)).into_response()
}

/// Query of a product listing.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Free-text search over name, description and SKU (at most 200 characters).
    #[param(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub q: Option<String>,
    /// Category slug.
    #[param(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub category: Option<String>,
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    #[param(minimum = 0, maximum = 100_000)]
    pub offset: Option<i64>,
}

/// A page of products.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    /// Products matching in all.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    /// Offset of the next page, absent on the last one.
    pub next_offset: Option<i64>,
}

impl ListQuery {
    fn into_filter(self, include_inactive: bool) -> Result<ProductFilter, Problem> {
        let mut errors = Vec::new();
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            errors.push(FieldError::new("limit", "must be between 1 and 100"));
        }
        let offset = self.offset.unwrap_or(0);
        if !(0..=100_000).contains(&offset) {
            errors.push(FieldError::new("offset", "must be between 0 and 100000"));
        }
        let text = self
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty());
        if let Some(q) = &text {
            if q.chars().count() > 200 {
                errors.push(FieldError::new("q", "must be at most 200 characters"));
            }
            if q.chars().any(char::is_control) {
                errors.push(FieldError::new("q", "must not contain control characters"));
            }
        }
        if self
            .category
            .as_ref()
            .is_some_and(|c| c.chars().any(char::is_control))
        {
            errors.push(FieldError::new(
                "category",
                "must not contain control characters",
            ));
        }
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        Ok(ProductFilter {
            text,
            category: self.category.filter(|c| !c.is_empty()),
            limit,
            offset,
            include_inactive,
        })
    }
}

async fn page_of(state: &AppState, filter: &ProductFilter) -> Result<ProductPage, Problem> {
    let (items, total) = repo::list_products(&state.pool, filter).await?;
    let next = filter.offset + items.len() as i64;
    Ok(ProductPage {
        next_offset: (next < total).then_some(next),
        items,
        total,
        limit: filter.limit,
        offset: filter.offset,
    })
}

/// List and search active products. Served from memory, with an ETag: send it back in
/// `If-None-Match` to get `304` while the catalogue has not changed.
#[utoipa::path(get, path = "/v1/products", params(ListQuery, IfNoneMatch), tag = "shopper",
    responses((status = 200, body = ProductPage, headers(("etag" = String), ("cache-control" = String))),
              (status = 304, description = "The page named by If-None-Match is current", headers(("etag" = String))),
              (status = 400, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn list_products(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, Problem> {
    let filter = query.into_filter(false)?;
    let page = state
        .pages
        .page(PageKey::Products(filter.clone()), async {
            Page::of(&page_of(&state, &filter).await?)
        })
        .await?;
    Ok(page.respond(&headers))
}

/// One active product.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "shopper",
    responses((status = 200, body = Product, headers(("etag" = String))), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    let product = repo::get_product(&state.pool, id, false).await?;
    Ok(with_etag(StatusCode::OK, product))
}

/// Every category. Served from memory, with an ETag, like the listings.
#[utoipa::path(get, path = "/v1/categories", params(IfNoneMatch), tag = "shopper",
    responses((status = 200, body = Vec<Category>, headers(("etag" = String), ("cache-control" = String))),
              (status = 304, description = "The list named by If-None-Match is current", headers(("etag" = String)))))]
#[tracing::instrument(skip_all)]
pub async fn list_categories(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let page = state
        .pages
        .page(PageKey::Categories, async {
            Page::of(&repo::list_categories(&state.pool).await?)
        })
        .await?;
    Ok(page.respond(&headers))
}

/// One category.
#[utoipa::path(get, path = "/v1/categories/{id}", tag = "shopper",
    responses((status = 200, body = Category), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
pub async fn get_category(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<AxumJson<Category>, Problem> {
    Ok(AxumJson(repo::get_category(&state.pool, id).await?))
}

/// List and search all products, inactive ones included.
#[utoipa::path(get, path = "/v1/admin/products", params(ListQuery), tag = "admin", security(("admin" = [])),
    responses((status = 200, body = ProductPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn admin_list_products(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<AxumJson<ProductPage>, Problem> {
    let filter = query.into_filter(true)?;
    page_of(&state, &filter).await.map(AxumJson)
}

/// One product, inactive or not.
#[utoipa::path(get, path = "/v1/admin/products/{id}", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = Product), (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn admin_get_product(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Response, Problem> {
    let product = repo::get_product(&state.pool, id, true).await?;
    Ok(with_etag(StatusCode::OK, product))
}

/// Create a product.
#[utoipa::path(post, path = "/v1/admin/products", tag = "admin", security(("admin" = [])), request_body = ProductInput,
    responses((status = 201, body = Product), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 409, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn create_product(
    _: Admin,
    State(state): State<AppState>,
    Json(input): Json<ProductInput>,
) -> Result<Response, Problem> {
    let new = input.parse().map_err(Problem::validation)?;
    let product = repo::create_product(&state.pool, &state.topic, &new).await?;
    state.relay_wake.notify_one();
    tracing::info!(product_id = %product.id, "Product created");
    let mut response = with_etag(StatusCode::CREATED, product.clone());
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/products/{}", product.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Replace a product. Needs `If-Match` with the current ETag.
#[utoipa::path(put, path = "/v1/admin/products/{id}", tag = "admin", security(("admin" = [])), request_body = ProductInput,
    params(IfMatch),
    responses((status = 200, body = Product), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem), (status = 428, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn update_product(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(input): Json<ProductInput>,
) -> Result<Response, Problem> {
    let version = expected_version(&headers)?;
    let new = input.parse().map_err(Problem::validation)?;
    let product = repo::update_product(&state.pool, &state.topic, id, version, &new).await?;
    state.relay_wake.notify_one();
    tracing::info!(version = product.version, "Product updated");
    Ok(with_etag(StatusCode::OK, product))
}

/// Delete a product. Needs `If-Match` with the current ETag.
#[utoipa::path(delete, path = "/v1/admin/products/{id}", tag = "admin", security(("admin" = [])),
    params(IfMatch),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem), (status = 428, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn delete_product(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<StatusCode, Problem> {
    let version = expected_version(&headers)?;
    repo::delete_product(&state.pool, &state.topic, id, version).await?;
    state.relay_wake.notify_one();
    tracing::info!("Product deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Create a category.
#[utoipa::path(post, path = "/v1/admin/categories", tag = "admin", security(("admin" = [])), request_body = CategoryInput,
    responses((status = 201, body = Category), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn create_category(
    _: Admin,
    State(state): State<AppState>,
    Json(input): Json<CategoryInput>,
) -> Result<(StatusCode, AxumJson<Category>), Problem> {
    let new = input.parse().map_err(Problem::validation)?;
    let category = repo::create_category(&state.pool, &new).await?;
    Ok((StatusCode::CREATED, AxumJson(category)))
}

/// Delete a category that has no products.
#[utoipa::path(delete, path = "/v1/admin/categories/{id}", tag = "admin", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
pub async fn delete_category(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    repo::delete_category(&state.pool, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The catalog's OpenAPI 3.1 document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir catalog", description = "Products, categories and prices."),
    paths(list_products, get_product, list_categories, get_category, admin_list_products,
          admin_get_product, create_product, update_product, delete_product, create_category,
          delete_category),
    components(schemas(Product, ProductInput, ProductPage, Category, CategoryInput, Problem, FieldError)),
    modifiers(&ADMIN_TOKEN, &Contract),
    tags((name = "shopper", description = "Public catalogue reads"),
         (name = "admin", description = "Catalogue management (bearer token)"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}
