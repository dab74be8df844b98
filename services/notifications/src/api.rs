//! HTTP routes of the notifications service and their OpenAPI description: one admin route to
//! see where an order's messages stand. Errors become problem+json in one place
//! ([`crate::error`]).

use axum::extract::{FromRequestParts, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json as AxumJson, Router};
use comptoir_platform::openapi::{ADMIN_TOKEN, Contract};
use comptoir_platform::{FieldError, Problem};
use http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Delivery, Kind, Status};
use crate::repo;

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/deliveries", get(list_deliveries))
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
            "comptoir-notifications",
        )
        .map(|()| Admin)
    }
}

/// Which deliveries to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// The order whose deliveries to list (a UUID).
    #[param(required = true, format = Uuid)]
    pub order_id: Option<String>,
}

/// An order's deliveries, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub items: Vec<Delivery>,
}

/// The deliveries of an order: which messages, where their sending stands.
#[utoipa::path(get, path = "/v1/admin/deliveries", params(DeliveryQuery), tag = "admin",
    security(("admin" = [])),
    responses((status = 200, body = DeliveryList), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 422, body = Problem)))]
#[tracing::instrument(skip_all)]
pub async fn list_deliveries(
    _: Admin,
    State(state): State<AppState>,
    Query(query): Query<DeliveryQuery>,
) -> Result<AxumJson<DeliveryList>, Problem> {
    let order_id = match query.order_id.as_deref().map(str::trim) {
        None | Some("") => {
            return Err(Problem::validation(vec![FieldError::new(
                "order_id",
                "is required",
            )]));
        }
        Some(raw) => Uuid::parse_str(raw).map_err(|_| {
            Problem::validation(vec![FieldError::new("order_id", "must be a UUID")])
        })?,
    };
    let client = state.pool.get().await.map_err(repo::RepoError::from)?;
    let items = repo::deliveries_of_order(&client, order_id).await?;
    Ok(AxumJson(DeliveryList { items }))
}

/// The service's OpenAPI 3.1 document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir notifications",
         description = "Transactional mail about orders; the delivery log holds no personal data."),
    paths(list_deliveries),
    components(schemas(Delivery, DeliveryList, Kind, Status, Problem, FieldError)),
    modifiers(&ADMIN_TOKEN, &Contract),
    tags((name = "admin", description = "Delivery log (bearer token)"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}
