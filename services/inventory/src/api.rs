//! HTTP routes of inventory and their OpenAPI description. Errors become problem+json in one
//! place ([`crate::error`]). The saga itself runs over Pulsar ([`crate::commands`]).

use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json as AxumJson, Router};
use comptoir_platform::etag::{IfMatch, etag, expected_version};
use comptoir_platform::openapi::{ADMIN_TOKEN, Contract};
use comptoir_platform::{FieldError, Json, Problem};
use http::request::Parts;
use http::{HeaderMap, StatusCode, header};
use utoipa::OpenApi;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{AdjustmentInput, Availability, SetStockInput, Stock};
use crate::repo;

/// Inventory's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/stock/{product_id}", get(get_availability))
        .route(
            "/v1/admin/stock/{product_id}",
            get(admin_get_stock).put(set_stock),
        )
        .route(
            "/v1/admin/stock/{product_id}/adjustments",
            post(adjust_stock),
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
            "comptoir-inventory",
        )
        .map(|()| Admin)
    }
}

fn with_etag(stock: Stock) -> Response {
    let tag = etag(stock.version);
    (StatusCode::OK, [(header::ETAG, tag)], AxumJson(stock)).into_response()
}

/// How many units of a product can be ordered.
#[utoipa::path(get, path = "/v1/stock/{product_id}", tag = "shopper",
    params(("product_id" = Uuid, Path, description = "The catalog's product id")),
    responses((status = 200, body = Availability), (status = 400, body = Problem),
              (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %product_id))]
pub async fn get_availability(
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
) -> Result<AxumJson<Availability>, Problem> {
    let stock = repo::get_stock(&state.pool, product_id).await?;
    Ok(AxumJson(Availability::from(&stock)))
}

/// A product's stock: on hand, reserved, available, with its version as ETag.
#[utoipa::path(get, path = "/v1/admin/stock/{product_id}", tag = "admin", security(("admin" = [])),
    params(("product_id" = Uuid, Path, description = "The catalog's product id")),
    responses((status = 200, body = Stock, headers(("etag" = String))), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %product_id))]
pub async fn admin_get_stock(
    _: Admin,
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
) -> Result<Response, Problem> {
    Ok(with_etag(repo::get_stock(&state.pool, product_id).await?))
}

/// Set a product's units on hand (a stock count). Needs `If-Match` with the current ETag.
#[utoipa::path(put, path = "/v1/admin/stock/{product_id}", tag = "admin", security(("admin" = [])),
    request_body = SetStockInput,
    params(("product_id" = Uuid, Path, description = "The catalog's product id"),
           IfMatch),
    responses((status = 200, body = Stock, headers(("etag" = String))), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "version-conflict, below-reserved"),
              (status = 422, body = Problem), (status = 428, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %product_id))]
pub async fn set_stock(
    _: Admin,
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
    headers: HeaderMap,
    Json(input): Json<SetStockInput>,
) -> Result<Response, Problem> {
    let version = expected_version(&headers)?;
    let on_hand = input.parse().map_err(Problem::validation)?;
    let stock = repo::set_on_hand(
        &state.pool,
        &state.topics.levels,
        product_id,
        version,
        on_hand,
    )
    .await?;
    state.relay_wake.notify_one();
    tracing::info!(
        on_hand = stock.on_hand,
        version = stock.version,
        "Stock set"
    );
    Ok(with_etag(stock))
}

/// Add units (a delivery) or remove them (breakage, loss). No `If-Match`: deltas commute.
#[utoipa::path(post, path = "/v1/admin/stock/{product_id}/adjustments", tag = "admin",
    security(("admin" = [])), request_body = AdjustmentInput,
    params(("product_id" = Uuid, Path, description = "The catalog's product id")),
    responses((status = 200, body = Stock, headers(("etag" = String))), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, body = Problem, description = "below-reserved, above-maximum"),
              (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %product_id))]
pub async fn adjust_stock(
    _: Admin,
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
    Json(input): Json<AdjustmentInput>,
) -> Result<Response, Problem> {
    let adjustment = input.parse().map_err(Problem::validation)?;
    let stock = repo::adjust(&state.pool, &state.topics.levels, product_id, &adjustment).await?;
    state.relay_wake.notify_one();
    tracing::info!(
        delta = adjustment.delta,
        on_hand = stock.on_hand,
        "Stock adjusted"
    );
    Ok(with_etag(stock))
}

/// Inventory's OpenAPI 3.1 document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir inventory", description = "Stock per product; reservations per order run over Pulsar."),
    paths(get_availability, admin_get_stock, set_stock, adjust_stock),
    components(schemas(Availability, Stock, SetStockInput, AdjustmentInput, Problem, FieldError)),
    modifiers(&ADMIN_TOKEN, &Contract),
    tags((name = "shopper", description = "Public availability"),
         (name = "admin", description = "Stock management (bearer token)"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}
