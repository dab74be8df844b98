//! The catalog's errors as problem+json, in one place (`impl From<RepoError> for Problem`),
//! and the HTTP preconditions its routes share.

use comptoir_platform::{FieldError, Problem};
use http::{HeaderMap, StatusCode, header};

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

/// The version an `If-Match` header names. Missing → 428, not one of our ETags → 400.
pub(crate) fn expected_version(headers: &HeaderMap) -> Result<i64, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Err(Problem::status(StatusCode::PRECONDITION_REQUIRED)
            .with_detail("Send If-Match with the ETag of the version you are changing"));
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/"))
        .and_then(|v| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
        .and_then(|v| v.parse::<i64>().ok())
        .ok_or_else(|| Problem::bad_request("If-Match must be an ETag returned by this service"))
}
