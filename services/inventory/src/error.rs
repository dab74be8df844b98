//! Inventory's errors as problem+json, in one place (`impl From<RepoError> for Problem`)
//! (`If-Match` is read by `comptoir_platform::etag`).

use comptoir_platform::Problem;
use http::StatusCode;

use crate::domain::MAX_ON_HAND;
use crate::repo::RepoError;

impl From<RepoError> for Problem {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::NotFound => Problem::not_found("product"),
            RepoError::VersionConflict { current } => Problem::typed(
                StatusCode::CONFLICT,
                "version-conflict",
                "The resource was changed by someone else",
            )
            .with_detail(format!(
                "The current version is \"{current}\"; fetch it again and retry"
            )),
            RepoError::BelowReserved { reserved } => Problem::typed(
                StatusCode::CONFLICT,
                "below-reserved",
                "On hand cannot fall below what is reserved",
            )
            .with_detail(format!(
                "{reserved} units are reserved for orders; on_hand must stay at least that"
            )),
            RepoError::AboveMaximum => Problem::typed(
                StatusCode::CONFLICT,
                "above-maximum",
                "On hand cannot exceed the maximum",
            )
            .with_detail(format!("on_hand must stay at most {MAX_ON_HAND}")),
            other => {
                // Logged once, here, with its cause chain; the client gets no internals.
                tracing::error!(error = %comptoir_platform::telemetry::error_chain(&other), "Inventory storage failed");
                Problem::internal()
            }
        }
    }
}
