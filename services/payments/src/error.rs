//! Payments' errors as problem+json, in one place (`impl From<RepoError> for Problem`).

use comptoir_platform::Problem;

use crate::repo::RepoError;

impl From<RepoError> for Problem {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::NotFound => Problem::not_found("payment"),
            other => {
                // Logged once, here, with its cause chain; the client gets no internals.
                tracing::error!(error = %comptoir_platform::telemetry::error_chain(&other), "Payments storage failed");
                Problem::internal()
            }
        }
    }
}
