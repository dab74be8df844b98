//! The service's errors as problem+json, in one place (`impl From<RepoError> for Problem`).

use comptoir_platform::Problem;

use crate::repo::RepoError;

impl From<RepoError> for Problem {
    fn from(error: RepoError) -> Self {
        // Every storage error is ours, not the client's: logged once, here, with its cause
        // chain; the client gets no internals.
        tracing::error!(error = %comptoir_platform::telemetry::error_chain(&error), "Notifications storage failed");
        Problem::internal()
    }
}
