//! HTTP routes of payments and their OpenAPI description: one admin read of an order's payment.
//! The saga itself runs over Pulsar ([`crate::commands`]); there is no public route.

use axum::extract::{FromRequestParts, Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json as AxumJson, Router};
use comptoir_platform::openapi::{ADMIN_TOKEN, Contract};
use comptoir_platform::{FieldError, Problem};
use http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::domain::{Operation, Payment, PaymentStatus};
use crate::repo;

/// Payments' routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/payments/{order_id}", get(get_payment))
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
            "comptoir-payments",
        )
        .map(|()| Admin)
    }
}

/// An order's payment and everything done about it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    #[serde(flatten)]
    pub payment: Payment,
    /// Provider calls and state changes, oldest first.
    pub operations: Vec<Operation>,
}

/// An order's payment, with its operations.
#[utoipa::path(get, path = "/v1/admin/payments/{order_id}", tag = "admin", security(("admin" = [])),
    params(("order_id" = Uuid, Path, description = "The order's id")),
    responses((status = 200, body = PaymentView), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 404, body = Problem)))]
#[tracing::instrument(skip_all, fields(order_id = %order_id))]
pub async fn get_payment(
    _: Admin,
    State(state): State<AppState>,
    Path(order_id): Path<Uuid>,
) -> Result<AxumJson<PaymentView>, Problem> {
    let client = state.pool.get().await.map_err(repo::RepoError::from)?;
    let (payment, operations) = repo::payment_with_operations(&client, order_id).await?;
    Ok(AxumJson(PaymentView {
        payment,
        operations,
    }))
}

/// Payments' OpenAPI 3.1 document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Comptoir payments", description = "Payments of orders, through a payment provider (simulated in this repository)."),
    paths(get_payment),
    components(schemas(PaymentView, Payment, PaymentStatus, Operation, Problem, FieldError)),
    modifiers(&ADMIN_TOKEN, &Contract),
    tags((name = "admin", description = "Payment inspection (bearer token)"))
)]
#[derive(Debug)]
pub struct ApiDoc;

async fn openapi() -> AxumJson<utoipa::openapi::OpenApi> {
    AxumJson(ApiDoc::openapi())
}
