//! The HTTP stack every service runs: hyper 1 (through `axum::serve`), axum routing and the
//! tower middleware below, plus `/livez`, `/readyz` and `/metrics`.
//!
//! A service builds its API [`Router`], passes it to [`app`] and runs the result with
//! [`serve`] on a listener the caller bound (port 0 in tests) and a shutdown token; with
//! `http.tls` set, the same routes are served over HTTPS too ([`crate::tls`]).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, Request, StatusCode, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::config::HttpSettings;
use crate::health::{self, ReadinessCheck};
use crate::problem::{self, Problem};
use crate::tls::TlsListenerSettings;

/// Header carrying the request id, generated when the client sent none.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a service serves: its public router and, when `http.ops_listen` is set, the
/// operational routes on their own internal listener.
#[derive(Debug)]
pub struct ServiceApp {
    /// The API (and the operational routes, when they have no listener of their own).
    pub public: Router,
    /// `/livez`, `/readyz` and `/metrics`, and where to serve them.
    pub ops: Option<(std::net::SocketAddr, Router)>,
    /// The HTTPS listener serving `public` too, when `http.tls` is set.
    pub tls: Option<TlsListenerSettings>,
}

/// The operational routes: liveness, readiness (the service's checks) and Prometheus metrics.
fn ops_router(checks: Vec<ReadinessCheck>) -> Router {
    Router::new()
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .with_state(Arc::new(checks))
        .route("/metrics", get(render_metrics))
        .fallback(|| async { Problem::not_found("route") })
}

/// Wraps a service's API router with the middleware stack, and puts the health and metrics
/// routes on the internal listener (`http.ops_listen`) or, without one, beside the API.
pub fn app(
    service: &'static str,
    api: Router,
    settings: &HttpSettings,
    checks: Vec<ReadinessCheck>,
) -> ServiceApp {
    // Install the recorder before the first request so no early sample is lost.
    crate::metrics::handle();
    let ops = ops_router(checks);
    let (api, ops) = match settings.ops_listen {
        Some(address) => (api, Some((address, ops))),
        None => (api.merge(ops), None),
    };
    ServiceApp {
        public: stack(service, api, settings),
        ops,
        tls: settings.tls.clone(),
    }
}

/// The middleware stack around a service's public routes.
fn stack(service: &'static str, api: Router, settings: &HttpSettings) -> Router {
    // Each `Router::layer` call wraps everything added before it, so the layers below read
    // innermost first. Why each sits where it does:
    api
        // RED metrics are per route so the matched route template (not the raw path) is known.
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::metrics::record_red(service, req, next)
        }))
        .fallback(|| async { Problem::not_found("route") })
        // Bodies past the limit are refused before a handler buffers them (413). axum's own
        // extractor limit is set to the same value so the two never disagree.
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(settings.body_limit_bytes))
        // Past the limit, requests queue (back-pressure) instead of overloading the pool.
        .layer(ConcurrencyLimitLayer::new(settings.concurrency_limit))
        // The timeout bounds the handler and the wait for a concurrency slot.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(settings.request_timeout_ms),
        ))
        // Bare error responses from everything below (timeouts, limits, axum's rejections)
        // become problem+json, their plain-text reason read before anything encodes it.
        .layer(axum::middleware::from_fn(problem::problem_for_bare_errors))
        // Compression sits above the timeout so compressing a large body is not cut short, and
        // above the problem conversion so it compresses problems rather than what they quote.
        .layer(CompressionLayer::new())
        // A panicking handler becomes a logged 500 problem, not a dropped connection.
        .layer(CatchPanicLayer::custom(panic_to_problem))
        // The id goes back to the client, on errors from the layers below too.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        // The span opens once the id exists and covers all the work below.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(make_span)
                .on_request(())
                .on_response(on_response),
        )
        // Every request gets an id before anything logs, so every line can carry it.
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost: credentials never reach a log line or a span.
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
}

/// Serves `app` on `listener` (and its operational routes and HTTPS listener, when set, on
/// their own listeners bound here) until `shutdown` is cancelled, then stops accepting and
/// waits for requests in flight, at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: ServiceApp,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let ops = match app.ops {
        Some((address, router)) => {
            let ops_listener = TcpListener::bind(address).await?;
            tracing::info!(address = %ops_listener.local_addr()?, "Operational routes listening");
            let stop = shutdown.clone();
            Some(tokio::spawn(
                axum::serve(ops_listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .into_future(),
            ))
        }
        None => None,
    };
    let tls = match &app.tls {
        Some(settings) => Some(serve_tls(settings, app.public.clone(), &shutdown, grace).await?),
        None => None,
    };
    let served = serve_router(listener, app.public, shutdown, grace).await;
    if let Some(ops) = ops {
        // Probes and scrapes are short; the public drain above already gave them the grace.
        ops.abort();
    }
    if let Some(tls) = tls {
        // It drains in parallel with the plain listener, within the same grace.
        match tls.await {
            Ok(Err(error)) => tracing::warn!(%error, "HTTPS listener stopped with an error"),
            Err(error) => tracing::warn!(%error, "HTTPS listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    served
}

/// Binds the HTTPS listener of `settings` and serves `app` on it (axum-server with rustls)
/// until `shutdown`, then drains it within `grace`.
async fn serve_tls(
    settings: &TlsListenerSettings,
    app: Router,
    shutdown: &CancellationToken,
    grace: Duration,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let config = crate::tls::rustls_config(settings, shutdown.child_token())?;
    let listener = std::net::TcpListener::bind(settings.listen)?;
    listener.set_nonblocking(true)?;
    tracing::info!(address = %listener.local_addr()?, "HTTPS listening");
    let handle = axum_server::Handle::new();
    let stop = handle.clone();
    let token = shutdown.clone();
    tokio::spawn(async move {
        token.cancelled().await;
        stop.graceful_shutdown(Some(grace));
    });
    let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle);
    Ok(tokio::spawn(server.serve(
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )))
}

async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "Listening");
    let token = shutdown.clone();
    // The peer address is offered to handlers (`ConnectInfo<SocketAddr>`): per-client rate
    // limits need it.
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { token.cancelled().await })
    .into_future();
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => {
            tracing::info!("HTTP server drained");
            result
        }
        () = deadline => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "Requests still in flight after the grace period; dropping them");
            Ok(())
        }
    }
}

async fn render_metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
}

fn make_span(request: &Request<Body>) -> Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // The path only: a query string may one day carry something personal.
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        status = tracing::field::Empty,
    );
    crate::telemetry::attach_remote_parent(&span, request.headers());
    span
}

fn on_response<B>(response: &http::Response<B>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "Request served"
    );
}

fn panic_to_problem(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "Handler panicked");
    Problem::internal().into_response()
}
