//! Calling one upstream: a pooled hyper 1 client, a timeout per attempt, a circuit breaker,
//! and retries with jittered exponential backoff for idempotent requests only.
//!
//! The retries are `tower::retry` with a [`RetryPolicy`] (which requests, which outcomes, how
//! long to wait, within tower's retry budget); the attempt they repeat asks the [`Breaker`]
//! first, so an open circuit stops retries too. Request bodies arrive buffered (bounded by the
//! body limit), which is what makes a request replayable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower::ServiceExt as _;
use tower::retry::Retry;
use tower::retry::backoff::{
    Backoff as _, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff as _,
};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::util::rng::HasherRng;

use crate::breaker::{Breaker, Rejected};
use crate::settings::UpstreamSettings;

/// Why an upstream gave no usable response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    Timeout {
        upstream: Arc<str>,
        timeout: Duration,
    },
    #[error("cannot connect to upstream {upstream}")]
    Connect {
        upstream: Arc<str>,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("upstream {upstream}'s circuit is open")]
    CircuitOpen {
        upstream: Arc<str>,
        #[source]
        source: Rejected,
    },
    #[error("the exchange with upstream {upstream} failed")]
    Exchange {
        upstream: Arc<str>,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// One upstream: where it is and how to call it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: Arc<str>,
    base: Uri,
    client: HttpClient,
    timeout: Duration,
    breaker: Breaker,
    retries: u32,
    backoff: ExponentialBackoffMaker<HasherRng>,
    budget: Arc<TpsBudget>,
}

impl Upstream {
    pub fn new(name: &str, settings: &UpstreamSettings) -> anyhow::Result<Self> {
        let base: Uri = settings.url.parse()?;
        let name: Arc<str> = name.into();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(settings.pool_max_idle)
            .build(connector);
        let backoff = ExponentialBackoffMaker::new(
            Duration::from_millis(settings.retry_backoff_min_ms),
            Duration::from_millis(settings.retry_backoff_max_ms),
            settings.retry_jitter,
            HasherRng::default(),
        )
        .map_err(|error| anyhow::anyhow!("upstreams.{name}: {error}"))?;
        // Every request deposits; every retry withdraws. A minimum of a few retries per second
        // keeps retries possible at low traffic, where they cannot overload anything.
        let budget = TpsBudget::new(Duration::from_secs(10), 10, settings.retry_budget_ratio);
        Ok(Self {
            inner: Arc::new(Inner {
                breaker: Breaker::new(
                    Arc::clone(&name),
                    settings.breaker_failures,
                    Duration::from_millis(settings.breaker_cool_down_ms),
                ),
                name,
                base,
                client,
                timeout: settings.timeout(),
                retries: settings.retries,
                backoff,
                budget: Arc::new(budget),
            }),
        })
    }

    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    pub fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// The URI of `path_and_query` on this upstream.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let base = &self.inner.base;
        Uri::builder()
            .scheme(base.scheme_str().unwrap_or("http"))
            .authority(base.authority().map_or("", |a| a.as_str()))
            .path_and_query(path_and_query)
            .build()
    }

    /// Sends `request` (its URI already on this upstream), retrying when allowed.
    pub async fn call(&self, request: Request<Bytes>) -> Result<Response<Incoming>, UpstreamError> {
        self.inner.budget.deposit();
        let policy = RetryPolicy {
            upstream: Arc::clone(&self.inner.name),
            remaining: self.inner.retries,
            backoff: self.inner.backoff.clone().make_backoff(),
            budget: Arc::clone(&self.inner.budget),
        };
        let attempt = tower::service_fn({
            let upstream = self.clone();
            move |request| {
                let upstream = upstream.clone();
                async move { upstream.attempt(request).await }
            }
        });
        Retry::new(policy, attempt).oneshot(request).await
    }

    /// One try: breaker permit, then the exchange up to the response headers within the
    /// timeout. Records the outcome on the breaker and in the metrics.
    async fn attempt(&self, request: Request<Bytes>) -> Result<Response<Incoming>, UpstreamError> {
        let inner = &self.inner;
        let upstream = Arc::clone(&inner.name);
        let permit = match inner.breaker.acquire() {
            Ok(permit) => permit,
            Err(source) => {
                record(&upstream, "circuit_open", None);
                return Err(UpstreamError::CircuitOpen { upstream, source });
            }
        };
        let start = Instant::now();
        let outcome =
            tokio::time::timeout(inner.timeout, inner.client.request(request.map(Full::new))).await;
        let elapsed = Some(start.elapsed());
        match outcome {
            Err(_) => {
                permit.failure();
                record(&upstream, "timeout", elapsed);
                Err(UpstreamError::Timeout {
                    upstream,
                    timeout: inner.timeout,
                })
            }
            Ok(Err(source)) if source.is_connect() => {
                permit.failure();
                record(&upstream, "connect_error", elapsed);
                Err(UpstreamError::Connect { upstream, source })
            }
            Ok(Err(source)) => {
                permit.failure();
                record(&upstream, "error", elapsed);
                Err(UpstreamError::Exchange { upstream, source })
            }
            Ok(Ok(response)) => {
                if is_unavailable(response.status()) {
                    permit.failure();
                } else {
                    permit.success();
                }
                record(&upstream, response.status().as_str(), elapsed);
                Ok(response)
            }
        }
    }
}

/// Statuses that say the upstream, not the request, is the problem: worth a retry and counted
/// by the breaker. A 500 is the request's own failure and is neither.
fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

/// Methods that change nothing (RFC 9110 §9.2.1), so repeating them is always harmless. PUT
/// and DELETE are idempotent too but not retried (ADR 0013): a PUT that reached the upstream
/// before the connection broke would be retried into a 412 by the ETag check, telling the
/// client its change failed when it was made.
fn is_retryable_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn record(upstream: &Arc<str>, outcome: &str, elapsed: Option<Duration>) {
    let upstream = upstream.to_string();
    metrics::counter!(
        "gateway_upstream_requests_total",
        "upstream" => upstream.clone(),
        "outcome" => outcome.to_owned()
    )
    .increment(1);
    if let Some(elapsed) = elapsed {
        metrics::histogram!("gateway_upstream_request_duration_seconds", "upstream" => upstream)
            .record(elapsed.as_secs_f64());
    }
}

/// When `tower::retry` may try again: idempotent methods only, after a connection failure or
/// a 502/503/504, while attempts and the retry budget last, after a jittered backoff.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    upstream: Arc<str>,
    remaining: u32,
    backoff: ExponentialBackoff<HasherRng>,
    budget: Arc<TpsBudget>,
}

impl tower::retry::Policy<Request<Bytes>, Response<Incoming>, UpstreamError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        request: &mut Request<Bytes>,
        result: &mut Result<Response<Incoming>, UpstreamError>,
    ) -> Option<Self::Future> {
        let worth_it = match result {
            Ok(response) => is_unavailable(response.status()),
            // A timeout is not retried: the upstream is slow, and another attempt would only
            // add load and make the client wait twice as long.
            Err(UpstreamError::Connect { .. }) => true,
            Err(_) => false,
        };
        if !worth_it || !is_retryable_method(request.method()) || self.remaining == 0 {
            return None;
        }
        if !self.budget.withdraw() {
            metrics::counter!("gateway_upstream_retries_exhausted_total", "upstream" => self.upstream.to_string())
                .increment(1);
            return None;
        }
        self.remaining -= 1;
        metrics::counter!("gateway_upstream_retries_total", "upstream" => self.upstream.to_string())
            .increment(1);
        Some(self.backoff.next_backoff())
    }

    fn clone_request(&mut self, request: &Request<Bytes>) -> Option<Request<Bytes>> {
        if !is_retryable_method(request.method()) {
            return None;
        }
        let mut clone = Request::new(request.body().clone());
        *clone.method_mut() = request.method().clone();
        *clone.uri_mut() = request.uri().clone();
        *clone.version_mut() = request.version();
        *clone.headers_mut() = request.headers().clone();
        Some(clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_methods_are_retried() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(is_retryable_method(&method), "{method}");
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!is_retryable_method(&method), "{method}");
        }
    }

    #[test]
    fn only_unavailability_statuses_count_against_the_upstream() {
        for status in [502, 503, 504] {
            assert!(is_unavailable(
                StatusCode::from_u16(status).expect("status")
            ));
        }
        for status in [200, 404, 412, 429, 500, 501] {
            assert!(!is_unavailable(
                StatusCode::from_u16(status).expect("status")
            ));
        }
    }

    #[test]
    fn upstream_uris_keep_the_path_and_query() {
        let upstream = Upstream::new("catalog", &UpstreamSettings::at("http://127.0.0.1:8081"))
            .expect("upstream");
        assert_eq!(
            upstream
                .uri("/v1/products?limit=2")
                .expect("uri")
                .to_string(),
            "http://127.0.0.1:8081/v1/products?limit=2"
        );
    }
}
