//! The orders service's errors as problem+json, in one place (`impl From<RepoError> for
//! Problem`), and the `Idempotency-Key` precondition.

use comptoir_platform::{FieldError, Problem};
use http::{HeaderMap, StatusCode};

use crate::domain;
use crate::repo::RepoError;

impl From<RepoError> for Problem {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::NotFound => Problem::not_found("resource"),
            RepoError::UnknownProduct => Problem::validation(vec![FieldError::new(
                "product_id",
                "no such product, or it is no longer sold",
            )]),
            RepoError::CartFull => Problem::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "cart-full",
                "The cart is full",
            )
            .with_detail(format!(
                "A cart holds at most {} different products",
                domain::MAX_CART_LINES
            )),
            RepoError::EmptyCart => Problem::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty-cart",
                "The cart is empty",
            )
            .with_detail("Add products to the cart before checking out"),
            RepoError::MixedCurrencies => Problem::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "mixed-currencies",
                "The cart mixes currencies",
            ),
            RepoError::NothingToPay => Problem::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "nothing-to-pay",
                "The cart's total is zero",
            )
            .with_detail("Free products are ordered together with at least one priced product"),
            RepoError::Unavailable(products) => Problem::validation(
                products
                    .iter()
                    .map(|p| FieldError::new(format!("lines.{p}"), "no longer sold; remove it"))
                    .collect(),
            ),
            RepoError::KeyReused => Problem::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "This Idempotency-Key was used for another request",
            )
            .with_detail("Use a new key for a new checkout; retry with the same body to get the order it placed"),
            RepoError::WrongStatus(status, action) => Problem::typed(
                StatusCode::CONFLICT,
                "order-status",
                "The order cannot do that now",
            )
            .with_detail(format!("The order is {status} and cannot be {action}")),
            other => {
                // Logged once, here, with its cause chain; the client gets no internals.
                tracing::error!(error = %comptoir_platform::telemetry::error_chain(&other), "Orders storage failed");
                Problem::internal()
            }
        }
    }
}

/// The request's `Idempotency-Key`; missing or malformed → 400.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, Problem> {
    domain::idempotency_key(headers.get("idempotency-key")).map_err(|detail| {
        Problem::typed(
            StatusCode::BAD_REQUEST,
            "idempotency-key",
            "A valid Idempotency-Key header is required",
        )
        .with_detail(detail)
    })
}
