//! Identity's error type and its one mapping to problem+json, and the HTTP answers the
//! routes share (the 401 of a failed sign-in, the 429 of a limit, the client's address).

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::Response;
use comptoir_platform::Problem;
use http::{HeaderMap, StatusCode};

use crate::AppState;
use crate::repo::RepoError;
use crate::vault::VaultError;

/// Failures of the handlers, mapped to problems in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Hash(#[from] crate::password::HashError),
    #[error("cannot sign the access token")]
    Sign(#[from] comptoir_auth::KeyError),
    #[error(transparent)]
    Gdpr(#[from] crate::gdpr::GdprError),
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Repo(RepoError::NotFound) => Problem::not_found("customer"),
            // Load shedding, not a failure: every argon2 slot stayed busy for the queue wait.
            ApiError::Hash(crate::password::HashError::Busy) => {
                metrics::counter!("identity_requests_shed_total", "reason" => "hashing")
                    .increment(1);
                Problem::typed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "Too many password checks at once",
                )
                .with_detail("Retry shortly")
                .with_retry_after(Duration::from_secs(1))
            }
            other => {
                // Logged once, here, with its cause chain; no cause carries personal data.
                tracing::error!(error = %comptoir_platform::telemetry::error_chain(&other), "Identity request failed");
                Problem::internal()
            }
        }
    }
}

pub(crate) fn problem(error: impl Into<ApiError>) -> Problem {
    Problem::from(error.into())
}

/// The 401 every failed sign-in gets, whether the email exists or not.
pub(crate) fn invalid_credentials() -> Problem {
    Problem::typed(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "The email or password is incorrect",
    )
}

/// 429 with `Retry-After`. The same for a locked email, a known one or not.
pub(crate) fn too_many(kind: &str, title: &str, wait: Duration) -> Response {
    Problem::typed(StatusCode::TOO_MANY_REQUESTS, kind, title)
        .with_detail("Try again later")
        .retry_after(wait)
}

pub(crate) fn client_ip(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> std::net::IpAddr {
    state.login.trusted_proxies.client_addr(peer.ip(), headers)
}
