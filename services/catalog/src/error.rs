//! The catalog's errors as problem+json, in one place (`impl From<RepoError> for Problem`),
//! (`If-Match` is read by `comptoir_platform::etag`).

use comptoir_platform::{FieldError, Problem};
use http::StatusCode;

use crate::repo::RepoError;

impl From<RepoError> for Problem {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::NotFound => Problem::not_found("resource"),
            RepoError::VersionConflict { current } => Problem::typed(
                StatusCode::CONFLICT,
                "version-conflict",
                "The resource was changed by someone else",
            )
            .with_detail(format!(
                "The current version is \"{current}\"; fetch it again and retry"
            )),
            RepoError::DuplicateSku => Problem::typed(
                StatusCode::CONFLICT,
                "duplicate-sku",
                "A product with this SKU already exists",
            ),
            RepoError::DuplicateSlug => Problem::typed(
                StatusCode::CONFLICT,
                "duplicate-slug",
                "A category with this slug already exists",
            ),
            RepoError::UnknownCategory => {
                Problem::validation(vec![FieldError::new("category_id", "no such category")])
            }
            RepoError::CategoryInUse => Problem::typed(
                StatusCode::CONFLICT,
                "category-in-use",
                "The category still has products",
            ),
            other => {
                // Logged once, here, with its cause chain; the client gets no internals.
                tracing::error!(error = %comptoir_platform::telemetry::error_chain(&other), "Catalog storage failed");
                Problem::internal()
            }
        }
    }
}
