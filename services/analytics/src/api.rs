//! HTTP routes of analytics and their OpenAPI description: the click stream in
//! (`POST /v1/events`, anonymous or signed in) and the KPIs out (`/v1/admin/kpis/...`, admin token).
//! Errors become problem+json in one place ([`crate::error`]).

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json as AxumJson, Router};
use comptoir_auth::Subject;
use comptoir_platform::openapi::{ADMIN_TOKEN, BearerScheme, Contract};
use comptoir_platform::{FieldError, Json, Problem};
use http::StatusCode;
use http::request::Parts;
use time::OffsetDateTime;
use utoipa::OpenApi;
use uuid::Uuid;

use crate::AppState;
use crate::domain::{
    Accepted, BatchInput, ClickInput, ClickType, Funnel, MinuteCount, PageKind, ProductCount,
    ProductSeries, TopProducts, Visitor, WindowQuery,
};
use crate::repo;

/// Analytics' routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/v1/admin/kpis/top-products", get(top_products))
        .route("/v1/admin/kpis/funnel", get(funnel))
        .route("/v1/admin/kpis/products/{product_id}", get(product_series))
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
            "comptoir-analytics",
        )
        .map(|()| Admin)
    }
}

/// A signed-in customer (a valid access token), or nobody (no `Authorization` header). A token
/// that does not verify is refused, never taken for an anonymous visit.
#[derive(Debug)]
pub struct MaybeCustomer(Option<Uuid>);

impl FromRequestParts<AppState> for MaybeCustomer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if !parts.headers.contains_key(http::header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        let subject = Subject::from_request_parts(parts, state).await?;
        Ok(Self(Some(subject.customer_id)))
    }
}

/// Add a batch of clicks to the click stream. Anonymous (with a `session`) or signed in (the
/// customer is the visitor, and their clicks are dropped unless they granted the analytics
/// consent). Every id is pseudonymised before the batch leaves the service. Answers once the
/// broker holds the batch.
#[utoipa::path(post, path = "/v1/events", tag = "shopper", request_body = BatchInput,
    security((), ("customer" = [])),
    responses((status = 202, body = Accepted, description = "On the click stream (or dropped without consent)"),
              (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 413, body = Problem), (status = 415, body = Problem),
              (status = 422, body = Problem),
              (status = 503, body = Problem, description = "The click stream cannot take events; retry after Retry-After")))]
// No field: the customer id must not reach the logs or the traces.
#[tracing::instrument(skip_all)]
pub async fn ingest(
    State(state): State<AppState>,
    MaybeCustomer(customer): MaybeCustomer,
    Json(input): Json<BatchInput>,
) -> Result<(StatusCode, AxumJson<Accepted>), Problem> {
    let now = OffsetDateTime::now_utc();
    let (visitor, clicks) = input
        .parse(customer, now, state.limits)
        .map_err(Problem::validation)?;
    let count = clicks.len();
    if let Visitor::Customer(customer) = visitor {
        let client = state.pool.get().await.map_err(repo::RepoError::from)?;
        if !repo::consent_granted(&client, customer).await? {
            metrics::counter!("analytics_clicks_total", "result" => "dropped-no-consent")
                .increment(count as u64);
            return Ok((
                StatusCode::ACCEPTED,
                AxumJson(Accepted {
                    accepted: 0,
                    dropped: count,
                }),
            ));
        }
    }
    state.ingest.publish(&visitor, clicks, now).await?;
    metrics::counter!("analytics_clicks_total", "result" => "accepted").increment(count as u64);
    Ok((
        StatusCode::ACCEPTED,
        AxumJson(Accepted {
            accepted: count,
            dropped: 0,
        }),
    ))
}

/// The most viewed products of the last `minutes` minutes.
#[utoipa::path(get, path = "/v1/admin/kpis/top-products", tag = "kpis", security(("admin" = [])),
    params(WindowQuery),
    responses((status = 200, body = TopProducts), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn top_products(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<WindowQuery>,
) -> Result<AxumJson<TopProducts>, Problem> {
    let window = query.parse().map_err(Problem::validation)?;
    let client = state.pool.get().await.map_err(repo::RepoError::from)?;
    Ok(AxumJson(repo::top_products(&client, window).await?))
}

/// The funnel of the last `minutes` minutes: product views → add to cart → checkout →
/// confirmed order, the ratios between the steps, and the revenue.
#[utoipa::path(get, path = "/v1/admin/kpis/funnel", tag = "kpis", security(("admin" = [])),
    params(WindowQuery),
    responses((status = 200, body = Funnel), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn funnel(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<WindowQuery>,
) -> Result<AxumJson<Funnel>, Problem> {
    let window = query.parse().map_err(Problem::validation)?;
    let client = state.pool.get().await.map_err(repo::RepoError::from)?;
    Ok(AxumJson(repo::funnel(&client, window).await?))
}

/// A product's views and add-to-carts per minute over the last `minutes` minutes.
#[utoipa::path(get, path = "/v1/admin/kpis/products/{product_id}", tag = "kpis", security(("admin" = [])),
    params(("product_id" = Uuid, Path, description = "The catalog's product id"), WindowQuery),
    responses((status = 200, body = ProductSeries), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all, fields(product_id = %product_id))]
pub async fn product_series(
    _: Admin,
    State(state): State<AppState>,
    Path(product_id): Path<Uuid>,
    Query(query): Query<WindowQuery>,
) -> Result<AxumJson<ProductSeries>, Problem> {
    let window = query.parse().map_err(Problem::validation)?;
    let client = state.pool.get().await.map_err(repo::RepoError::from)?;
    Ok(AxumJson(
        repo::product_series(&client, product_id, window).await?,
    ))
}

const CUSTOMER_TOKEN: BearerScheme = BearerScheme {
    name: "customer",
    format: Some("JWT"),
};

/// Analytics' OpenAPI 3.1 document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir analytics", description = "The click stream in (consent-aware, pseudonymised); real-time KPIs out."),
    paths(ingest, top_products, funnel, product_series),
    components(schemas(BatchInput, ClickInput, ClickType, PageKind, Accepted, TopProducts, ProductCount, Funnel,
                       ProductSeries, MinuteCount, Problem, FieldError)),
    modifiers(&CUSTOMER_TOKEN, &ADMIN_TOKEN, &Contract),
    tags((name = "shopper", description = "The storefront's click stream"),
         (name = "kpis", description = "Aggregates (admin bearer token)"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}
