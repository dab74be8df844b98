//! Prometheus metrics: one process-wide recorder and RED metrics per route.
//!
//! The `metrics` facade is used everywhere (`metrics::counter!` …); this module installs the
//! Prometheus recorder once per process and renders it for `/metrics`. Route labels use the
//! matched route template (`/v1/products/{id}`), never the raw path, so label cardinality stays
//! bounded whatever clients send.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Request duration histogram buckets, in seconds: fine below 100 ms where our routes live.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Event lag buckets, in seconds: from a healthy few milliseconds to a consumer that fell
/// minutes behind.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process' Prometheus handle, installing the recorder on first use. Several apps in one
/// test process share it, which is why it is global and idempotent.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_lag_seconds".to_owned()), LAG_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is already global (only possible if a caller installed one
            // outside this module); render an empty registry rather than crash.
            Err(error) => {
                tracing::error!(%error, "Cannot install the Prometheus recorder");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// Middleware recording `http_requests_total` and `http_request_duration_seconds` labelled by
/// service, method, route template and status.
pub async fn record_red(service: &'static str, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_owned()),
        ("method", method),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}
