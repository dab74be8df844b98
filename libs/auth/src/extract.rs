//! The axum side: [`Subject`], the verified customer behind a request.
//!
//! A handler that takes a [`Subject`] runs only for a request carrying
//! `Authorization: Bearer <access token>` whose token verifies; every other request gets a
//! 401 problem+json with a `WWW-Authenticate` challenge (RFC 6750). The router's state must
//! give an [`Authenticator`] (`FromRef`).

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponse, Response};
use comptoir_platform::Problem;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use uuid::Uuid;

use crate::claims::CUSTOMER_SCOPE;
use crate::{Claims, JwksCache, Verifier, VerifyError};

/// Where a service's token keys come from.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// Keys known in-process: identity verifying its own tokens.
    Local(Arc<Verifier>),
    /// Identity's JWKS over HTTP: every other service (and the gateway).
    Remote(Arc<JwksCache>),
}

impl Authenticator {
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        match self {
            Self::Local(verifier) => verifier.verify(token),
            Self::Remote(cache) => cache.verify(token).await,
        }
    }
}

/// The customer a request acts for, proven by a verified access token.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The customer id (the token's `sub`).
    pub customer_id: Uuid,
    /// Every claim of the token.
    pub claims: Claims,
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl<S> FromRequestParts<S> for Subject
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer_token(parts) else {
            return Err(unauthorized(None));
        };
        let authenticator = Authenticator::from_ref(state);
        match authenticator.verify(token).await {
            Ok(claims) if claims.has_scope(CUSTOMER_SCOPE) => Ok(Self {
                customer_id: claims.sub,
                claims,
            }),
            Ok(_) => Err(unauthorized(Some(&VerifyError::InvalidClaims(
                "missing scope".to_owned(),
            )))),
            Err(VerifyError::KeysUnavailable(reason)) => {
                tracing::error!(%reason, "Cannot verify access tokens: no keys");
                Err(Problem::status(StatusCode::SERVICE_UNAVAILABLE)
                    .with_detail("Access tokens cannot be verified right now; retry shortly")
                    .into_response())
            }
            Err(error) => Err(unauthorized(Some(&error))),
        }
    }
}

/// 401 problem+json with an RFC 6750 challenge. The detail says what a client can act on
/// (expired: refresh) and nothing about which other check failed. Public so that the gateway
/// refuses tokens at the edge with the very answer a service would give.
pub fn unauthorized(error: Option<&VerifyError>) -> Response {
    let (detail, challenge) = match error {
        None => (
            "This route needs `Authorization: Bearer <access token>`",
            "Bearer realm=\"comptoir\"",
        ),
        Some(VerifyError::Expired) => (
            "The access token has expired; refresh it",
            "Bearer realm=\"comptoir\", error=\"invalid_token\", error_description=\"expired\"",
        ),
        Some(error) => {
            tracing::debug!(%error, "Access token refused");
            (
                "The access token is not valid",
                "Bearer realm=\"comptoir\", error=\"invalid_token\"",
            )
        }
    };
    let mut response = Problem::typed(
        StatusCode::UNAUTHORIZED,
        "invalid-token",
        "Authentication required",
    )
    .with_detail(detail)
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}
