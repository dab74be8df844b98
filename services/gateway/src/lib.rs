//! The gateway: the platform's only public entry.
//!
//! It routes `/v1/...` to the services by path prefix (a routing table in its settings; never
//! `/internal/...`), verifies access tokens at the edge when a request carries one (and
//! forwards the `Authorization` header unchanged, for the service to verify again), limits
//! request rates per client address and per token subject, answers CORS preflights, and
//! turns every failure, its own or an upstream's, into problem+json. It serves the platform's
//! merged OpenAPI document at `/openapi.json`. It keeps nothing persistent.
//!
//! Layout: [`settings`] holds the routing table and policies; [`edge`] the token check and the
//! rate limits; [`upstream`] the pooled hyper client with its timeout, retries and
//! [`breaker`]; [`proxy`] the forwarding itself, header hygiene and error mapping;
//! [`openapi`] the merged document. [`run`] puts them together under the platform's HTTP
//! stack. The choices are argued in `docs/adr/0013-gateway-resilience.md`.
#![forbid(unsafe_code)]

pub mod breaker;
pub mod cache;
pub mod edge;
pub mod openapi;
pub mod proxy;
pub mod settings;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::routing::{any, get};
use comptoir_auth::{Authenticator, JwksCache};
use comptoir_platform::http::REQUEST_ID;
use comptoir_platform::shutdown::Stages;
use http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use settings::Settings;

use crate::edge::Edge;
use crate::openapi::OpenApi;
use crate::proxy::{Proxy, Route};
use crate::upstream::Upstream;

/// How often idle clients are forgotten by the rate limiters.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Runs the gateway on `listener` until `shutdown` is cancelled, then drains requests in
/// flight. Identity being down at start is not an error: the gateway serves, and is ready
/// once it has identity's keys.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // The recorder first, so the breakers' initial state gauges are not lost.
    comptoir_platform::metrics::handle();
    let upstreams: BTreeMap<String, Upstream> = settings
        .upstreams
        .iter()
        .map(|(name, upstream)| {
            Upstream::new(name, upstream)
                .with_context(|| format!("upstream {name}"))
                .map(|built| (name.clone(), built))
        })
        .collect::<anyhow::Result<_>>()?;
    let routes: Vec<Route> = settings
        .routes
        .iter()
        .map(|route| {
            let upstream = upstreams
                .get(&route.upstream)
                .with_context(|| format!("route {} names no upstream", route.prefix))?;
            Ok(Route {
                prefix: route.prefix.as_str().into(),
                upstream: upstream.clone(),
                verify_token: route.verify_token,
            })
        })
        .collect::<anyhow::Result<_>>()?;

    let keys = Arc::new(JwksCache::new(settings.auth.clone())?);
    if let Err(error) = keys.refresh().await {
        tracing::warn!(%error, url = %settings.auth.url, "Cannot fetch identity's keys yet; not ready until then");
    }
    // Background tasks, stopped (and awaited) once the last request has drained.
    let mut stages = Stages::new(["background"]);
    stages.spawn("background", |stop| {
        Arc::clone(&keys).run_periodic_refresh(stop)
    });

    let edge = Arc::new(Edge::new(
        &settings.rate_limit,
        Authenticator::Remote(Arc::clone(&keys)),
    ));
    stages.spawn("background", |stop| {
        Arc::clone(&edge).run_housekeeping(LIMITER_HOUSEKEEPING, stop)
    });

    let openapi = Arc::new(OpenApi::new(
        upstreams.values().cloned(),
        routes.clone(),
        Duration::from_millis(settings.openapi.cache_ttl_ms),
        Duration::from_millis(settings.openapi.fetch_timeout_ms),
    ));
    let proxy = Arc::new(Proxy {
        edge,
        body_limit: settings.http.body_limit_bytes,
        cache: settings.cache.enabled.then(|| {
            cache::SharedCache::new(settings.cache.max_entries, settings.cache.max_body_bytes)
        }),
    });
    let api = router(&routes, &proxy, openapi);
    let checks = vec![keys.readiness_check()];
    let mut app = comptoir_platform::http::app("gateway", api, &settings.http, checks);
    app.public = app
        .public
        // Outside the platform stack, so that its own error answers (404, 408, 413) carry the
        // CORS headers a browser needs to read them. Preflights are answered here.
        .layer(cors(&settings.cors))
        // Outermost: an unusable request id from the client is dropped before the platform's
        // request id layer keeps it, so that one is generated instead.
        .layer(axum::middleware::map_request(drop_invalid_request_id));
    let served = comptoir_platform::http::serve(
        listener,
        app,
        shutdown,
        Duration::from_millis(settings.http.shutdown_grace_ms),
    )
    .await;
    stages.stop().await;
    served.context("HTTP server failed")
}

/// The API router: one route per routing-table prefix (the prefix itself and everything under
/// it), so that axum does the matching and the RED metrics carry the route template. Whatever
/// matches no prefix, `/internal/...` included, falls to the platform's 404 problem.
pub fn router(routes: &[Route], proxy: &Arc<Proxy>, openapi: Arc<OpenApi>) -> Router {
    let mut router = Router::new();
    for route in routes {
        let handler = {
            let proxy = Arc::clone(proxy);
            let route = route.clone();
            move |request: Request| proxy::forward(Arc::clone(&proxy), route.clone(), request)
        };
        router = router
            .route(&route.prefix, any(handler.clone()))
            .route(&format!("{}/{{*rest}}", route.prefix), any(handler));
    }
    let edge = Arc::clone(&proxy.edge);
    router.route(
        "/openapi.json",
        get(move |request: Request| async move {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip());
            if let Err(refused) = edge.admit_address(peer) {
                return refused;
            }
            openapi::respond(openapi.document().await)
        }),
    )
}

/// Ready once identity's keys are held: without them no token can be verified. Upstreams
/// are deliberately not checked (ADR 0013): one service down must not take every gateway out
/// of the load balancer, which would fail the routes of the services that are up; the
/// breaker and the 503 problems deal with it per route.
fn cors(settings: &settings::CorsSettings) -> CorsLayer {
    let origins: Vec<HeaderValue> = settings
        .allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            REQUEST_ID,
            HeaderName::from_static("idempotency-key"),
            // `Prefer: wait=N`: a storefront waiting for its order to change.
            HeaderName::from_static("prefer"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("preference-applied"),
            REQUEST_ID,
        ])
        .max_age(Duration::from_secs(settings.max_age_secs))
}

/// Whether a client's request id is worth keeping: 1 to 128 characters of letters, digits and
/// `-_.:`. Anything else (long, or carrying characters a log line would choke on) is replaced.
pub fn is_valid_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

async fn drop_invalid_request_id(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let keep = {
        let mut values = headers.get_all(&REQUEST_ID).iter();
        matches!((values.next(), values.next()), (Some(v), None) if is_valid_request_id(v))
    };
    if !keep {
        headers.remove(&REQUEST_ID);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_tame() {
        for good in [
            "abc",
            "0b6c3e4e-1d3a-4f7a-9a53-0f6e0f1a2b3c",
            "client:42.7_x",
        ] {
            assert!(
                is_valid_request_id(&HeaderValue::from_static(good)),
                "{good}"
            );
        }
        let long = "a".repeat(129);
        for bad in ["", "has space", "semi;colon", "quote\"", long.as_str()] {
            assert!(
                !HeaderValue::from_str(bad).is_ok_and(|v| is_valid_request_id(&v)),
                "{bad}"
            );
        }
    }
}
