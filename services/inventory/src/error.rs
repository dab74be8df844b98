//! Inventory's errors as problem+json, in one place (`impl From<RepoError> for Problem`), and
//! the HTTP preconditions its routes share.

use comptoir_platform::Problem;
use http::{HeaderMap, StatusCode, header};

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
