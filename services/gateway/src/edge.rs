//! What every proxied request must pass before it is forwarded: the per-address rate limit,
//! the access token check when it carries one, then the per-subject rate limit.
//!
//! The order is deliberate: the address limit is the cheapest check and protects the token
//! verification (a signature check, maybe a JWKS fetch) from floods; the subject limit needs
//! the verified subject. Rate limits are GCRA token buckets from `governor`, keyed by client
//! address (the platform's `rate_limit_key`, shared with identity: IPv6 by /64, which one
//! client usually holds whole) and by token subject.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use comptoir_auth::{Authenticator, VerifyError};
use comptoir_platform::Problem;
use comptoir_platform::client::rate_limit_key;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::settings::RateLimitSettings;

/// The edge checks, shared by every route.
#[derive(Debug)]
pub struct Edge {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_subject: DefaultKeyedRateLimiter<Uuid>,
    clock: DefaultClock,
    authenticator: Authenticator,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst))
}

impl Edge {
    pub fn new(limits: &RateLimitSettings, authenticator: Authenticator) -> Self {
        Self {
            per_ip: DefaultKeyedRateLimiter::keyed(quota(
                limits.per_ip_per_second,
                limits.per_ip_burst,
            )),
            per_subject: DefaultKeyedRateLimiter::keyed(quota(
                limits.per_subject_per_second,
                limits.per_subject_burst,
            )),
            clock: DefaultClock::default(),
            authenticator,
        }
    }

    /// The address limit alone (for the gateway's own public routes).
    pub fn admit_address(&self, peer: Option<IpAddr>) -> Result<(), Response> {
        let Some(peer) = peer else {
            // Only when the server was not started with connect info (never in `run`).
            return Ok(());
        };
        self.per_ip
            .check_key(&rate_limit_key(peer))
            .map_err(|not_until| too_many("address", not_until.wait_time_from(self.clock.now())))
    }

    /// Every edge check for a proxied request. `verify_token` is the route's setting.
    pub async fn admit(
        &self,
        peer: Option<IpAddr>,
        parts: &Parts,
        verify_token: bool,
    ) -> Result<(), Response> {
        self.admit_address(peer)?;
        if !verify_token {
            return Ok(());
        }
        let Some(token) = comptoir_auth::extract::bearer_token(parts) else {
            // No token: the upstream decides whether the route needs one.
            return Ok(());
        };
        match self.authenticator.verify(token).await {
            Ok(claims) => self
                .per_subject
                .check_key(&claims.sub)
                .map_err(|not_until| {
                    too_many("subject", not_until.wait_time_from(self.clock.now()))
                }),
            Err(VerifyError::KeysUnavailable(reason)) => {
                tracing::error!(%reason, "Cannot verify access tokens: no keys");
                metrics::counter!("gateway_token_rejections_total", "reason" => "keys_unavailable")
                    .increment(1);
                let mut response = Problem::typed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "keys-unavailable",
                    "Access tokens cannot be verified right now",
                )
                .with_detail("Retry shortly")
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Err(response)
            }
            Err(error) => {
                metrics::counter!("gateway_token_rejections_total", "reason" => rejection_reason(&error))
                    .increment(1);
                Err(comptoir_auth::extract::unauthorized(Some(&error)))
            }
        }
    }

    /// Forgets clients idle long enough to have a full bucket again, every `period`, so the
    /// key maps do not grow with every address ever seen.
    pub async fn run_housekeeping(self: Arc<Self>, period: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            self.per_ip.retain_recent();
            self.per_ip.shrink_to_fit();
            self.per_subject.retain_recent();
            self.per_subject.shrink_to_fit();
        }
    }
}

fn rejection_reason(error: &VerifyError) -> &'static str {
    match error {
        VerifyError::Expired => "expired",
        VerifyError::UnsupportedAlgorithm => "algorithm",
        VerifyError::InvalidSignature => "signature",
        VerifyError::UnknownKid(_) | VerifyError::MissingKid => "kid",
        VerifyError::WrongAudience | VerifyError::WrongIssuer | VerifyError::InvalidClaims(_) => {
            "claims"
        }
        VerifyError::Malformed | VerifyError::KeysUnavailable(_) => "malformed",
    }
}

/// 429 problem+json with `Retry-After` (the platform's rule: whole seconds, rounded up).
fn too_many(by: &'static str, wait: Duration) -> Response {
    metrics::counter!("gateway_rate_limited_total", "by" => by).increment(1);
    Problem::typed(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too many requests",
    )
    .with_detail(format!(
        "The request rate per {by} is exceeded; retry in {} s",
        comptoir_platform::problem::retry_after_secs(wait)
    ))
    .retry_after(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_burst_is_told_when_to_come_back() {
        let settings = RateLimitSettings {
            per_ip_per_second: 1,
            per_ip_burst: 2,
            ..RateLimitSettings::default()
        };
        let edge = Edge::new(
            &settings,
            Authenticator::Local(Arc::new(comptoir_auth::Verifier::new(
                &comptoir_auth::Jwks::new(vec![]),
                "iss",
                "aud",
            ))),
        );
        let peer = Some("192.0.2.1".parse().expect("ip"));
        assert!(edge.admit_address(peer).is_ok());
        assert!(edge.admit_address(peer).is_ok());
        let refused = edge.admit_address(peer).expect_err("past the burst");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        assert!(
            edge.admit_address(Some("192.0.2.2".parse().expect("ip")))
                .is_ok(),
            "another address has its own bucket"
        );
    }
}
