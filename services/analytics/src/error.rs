//! Analytics' errors as problem+json, in one place.

use std::time::Duration;

use comptoir_platform::Problem;
use http::StatusCode;

use crate::ingest::IngestError;
use crate::repo::RepoError;

impl From<RepoError> for Problem {
    fn from(error: RepoError) -> Self {
        // Logged once, here, with its cause chain; the client gets no internals.
        tracing::error!(error = %comptoir_platform::telemetry::error_chain(&error), "Analytics storage failed");
        Problem::internal()
    }
}

impl From<IngestError> for Problem {
    fn from(error: IngestError) -> Self {
        tracing::error!(error = %comptoir_platform::telemetry::error_chain(&error), "Click batch not ingested");
        match error {
            // The broker or the keys will be back: the storefront keeps the batch and retries.
            IngestError::Broker(_) | IngestError::NoKey(_) => {
                Problem::status(StatusCode::SERVICE_UNAVAILABLE)
                    .with_detail("The click stream cannot take events right now; retry shortly")
                    .with_retry_after(Duration::from_secs(1))
            }
            IngestError::Encode(_) => Problem::internal(),
        }
    }
}
