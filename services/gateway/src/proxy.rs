//! Forwarding one request: the routing table, header hygiene, and the mapping of every upstream
//! failure to problem+json.
//!
//! Requests keep their method, path, query and body. On the way in, hop-by-hop headers and any
//! header the gateway alone may set (`x-comptoir-*`, `forwarded`, `x-forwarded-*`,
//! `x-real-ip`) are dropped, then `x-forwarded-for` is set to the client's address and the
//! trace context to the gateway's span. `Authorization` goes through unchanged: the services
//! verify the token themselves (ADR 0011), so no header ever carries a subject someone outside
//! could have written.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use comptoir_platform::Problem;
use comptoir_platform::problem::PROBLEM_JSON;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use opentelemetry::propagation::Injector;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::cache::{Key, SharedCache};
use crate::edge::Edge;
use crate::upstream::{Upstream, UpstreamError};

/// One routing table entry, resolved.
#[derive(Debug, Clone)]
pub struct Route {
    pub prefix: Arc<str>,
    pub upstream: Upstream,
    pub verify_token: bool,
}

/// Whether `path` falls under `prefix`, segment by segment.
pub fn under(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The route the gateway takes for `path`: the longest prefix it falls under (what axum's
/// router picks too, static segments being more specific than the wildcard).
pub fn route_for<'a>(routes: &'a [Route], path: &str) -> Option<&'a Route> {
    routes
        .iter()
        .filter(|route| under(&route.prefix, path))
        .max_by_key(|route| route.prefix.len())
}

/// What the proxy handler needs.
#[derive(Debug)]
pub struct Proxy {
    pub edge: Arc<Edge>,
    pub body_limit: usize,
    /// The shared cache of public answers (`cache.enabled`).
    pub cache: Option<SharedCache>,
}

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1): the fixed list, `keep-alive`, `proxy-connection`,
/// and whatever `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(named.iter()) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// Headers only the gateway may set: a client sending them is ignored.
fn is_gateway_owned(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-comptoir-")
        || name == "forwarded"
        || name.starts_with("x-forwarded-")
        || name == "x-real-ip"
}

/// The headers an upstream gets for a client request with `inbound` headers from `peer`.
pub fn upstream_headers(mut headers: HeaderMap, peer: Option<IpAddr>) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    let owned: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_gateway_owned(name))
        .cloned()
        .collect();
    for name in owned {
        headers.remove(name);
    }
    // hyper sets Host from the upstream URI.
    headers.remove(header::HOST);
    // The client's address replaces whatever the client claimed: the gateway is the edge, so
    // no proxy in front of it is trusted.
    if let Some(value) = peer.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    inject_trace_context(&mut headers);
    headers
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The upstream's spans become children of the gateway's. Without an OpenTelemetry layer the
/// current span has no context and the client's `traceparent` is left as it came.
fn inject_trace_context(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// A request path with `.` or `..` segments, plain or percent-encoded: never forwarded, so
/// that no upstream normalising paths can be walked out of the routed prefix.
fn has_dot_segments(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    }) || path.to_ascii_lowercase().contains("%2f")
}

/// The handler of every routed prefix.
pub async fn forward(proxy: Arc<Proxy>, route: Route, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let (parts, body) = request.into_parts();
    if has_dot_segments(parts.uri.path()) {
        return Problem::bad_request("The path holds '.', '..' or encoded '/' segments")
            .into_response();
    }
    if let Err(refused) = proxy.edge.admit(peer, &parts, route.verify_token).await {
        return refused;
    }
    // Buffered, so that a retry can replay it; the body limit layer below bounds it, and a
    // body past the limit is refused here before anything reaches the upstream.
    let body = match axum::body::to_bytes(Body::new(body), proxy.body_limit).await {
        Ok(bytes) => bytes,
        Err(error) => return body_error(&error),
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string);
    // After the edge's checks (rate limits apply to cached answers too).
    let shared = proxy
        .cache
        .as_ref()
        .and_then(|cache| Some((cache, SharedCache::key(&parts, &path_and_query)?)));
    if let Some((cache, key)) = &shared
        && let Some(stored) = cache.lookup(key, &parts.headers)
    {
        return stored;
    }
    let uri = match route.upstream.uri(&path_and_query) {
        Ok(uri) => uri,
        Err(_) => return Problem::bad_request("The request target is not valid").into_response(),
    };
    let mut outbound = http::Request::new(body);
    *outbound.method_mut() = parts.method.clone();
    *outbound.uri_mut() = uri;
    *outbound.headers_mut() = upstream_headers(parts.headers, peer);
    match (route.upstream.call(outbound).await, shared) {
        (Ok(response), Some((cache, key))) => {
            relay_and_keep(cache, key, route.upstream.name(), response).await
        }
        (Ok(response), None) => relay(route.upstream.name(), response),
        (Err(error), _) => failure(&error),
    }
}

/// [`relay`], keeping the answer in the shared cache when it says a shared cache may, and its
/// declared length fits the cache's limit.
async fn relay_and_keep(
    cache: &SharedCache,
    key: Key,
    upstream: &Arc<str>,
    response: http::Response<hyper::body::Incoming>,
) -> Response {
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let lifetime = SharedCache::lifetime(response.status(), response.headers())
        .filter(|_| declared.is_some_and(|length| length <= cache.max_body_bytes()));
    let Some(lifetime) = lifetime else {
        return relay(upstream, response);
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    match axum::body::to_bytes(Body::new(body), cache.max_body_bytes()).await {
        Ok(bytes) => {
            cache.store(key, &parts.headers, bytes.clone(), lifetime);
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(error) => {
            tracing::warn!(upstream = %upstream, %error, "Upstream body failed mid-way");
            Problem::typed(
                StatusCode::BAD_GATEWAY,
                "upstream-error",
                "An upstream service failed",
            )
            .with_detail(format!("The {upstream} service failed; retry later"))
            .into_response()
        }
    }
}

fn body_error(error: &axum::Error) -> Response {
    let too_large = std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .any(|e| e.is::<http_body_util::LengthLimitError>());
    if too_large {
        Problem::status(StatusCode::PAYLOAD_TOO_LARGE)
            .with_detail("The request body is too large")
            .into_response()
    } else {
        Problem::bad_request("The request body could not be read").into_response()
    }
}

/// The upstream's response for the client: streamed through with hop-by-hop headers removed;
/// a 5xx that is not problem+json becomes a 502 problem (its body may say too much about the
/// upstream's internals).
fn relay(upstream: &Arc<str>, response: http::Response<hyper::body::Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    let is_problem = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if parts.status.is_server_error() && !is_problem {
        tracing::warn!(upstream = %upstream, status = parts.status.as_u16(), "Upstream failed without a problem document");
        return Problem::typed(
            StatusCode::BAD_GATEWAY,
            "upstream-error",
            "An upstream service failed",
        )
        .with_detail(format!("The {upstream} service failed; retry later"))
        .into_response();
    }
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(body))
}

/// problem+json for an upstream that gave no response, logged once here.
pub fn failure(error: &UpstreamError) -> Response {
    let cause = comptoir_platform::telemetry::error_chain(error);
    let (status, kind, title, retry_after) = match error {
        UpstreamError::Timeout { .. } => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream-timeout",
            "An upstream service did not answer in time",
            None,
        ),
        UpstreamError::Connect { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream-unavailable",
            "An upstream service is unavailable",
            Some(1),
        ),
        UpstreamError::CircuitOpen { source, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream-unavailable",
            "An upstream service is unavailable",
            Some(source.retry_after.as_secs() + u64::from(source.retry_after.subsec_nanos() > 0)),
        ),
        UpstreamError::Exchange { .. } => (
            StatusCode::BAD_GATEWAY,
            "upstream-error",
            "An upstream service failed",
            None,
        ),
    };
    tracing::warn!(error = %cause, status = status.as_u16(), "Upstream call failed");
    let upstream = match error {
        UpstreamError::Timeout { upstream, .. }
        | UpstreamError::Connect { upstream, .. }
        | UpstreamError::CircuitOpen { upstream, .. }
        | UpstreamError::Exchange { upstream, .. } => upstream,
    };
    let mut response = Problem::typed(status, kind, title)
        .with_detail(format!(
            "The {upstream} service could not serve the request"
        ))
        .into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/v1/products", "/v1/products"));
        assert!(under("/v1/products", "/v1/products/42"));
        assert!(!under("/v1/products", "/v1/productsx"));
        assert!(!under("/v1/products", "/v1/product"));
    }

    #[test]
    fn dot_segments_and_encoded_slashes_are_caught() {
        for path in [
            "/v1/products/../../internal/x",
            "/v1/products/./x",
            "/v1/products/%2e%2E/internal",
            "/v1/products/..%2Finternal",
        ] {
            assert!(has_dot_segments(path), "{path}");
        }
        assert!(!has_dot_segments("/v1/products/a.b..c"));
    }

    #[test]
    fn client_set_gateway_headers_and_hop_by_hop_headers_are_dropped() {
        let mut inbound = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer abc"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("host", "gateway.example"),
            ("x-comptoir-subject", "someone-else"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("x-request-id", "abc"),
            ("accept", "application/json"),
        ] {
            inbound.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let out = upstream_headers(inbound, Some("192.0.2.9".parse().expect("ip")));
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["accept", "authorization", "x-forwarded-for", "x-request-id"]
        );
        assert_eq!(out["authorization"], "Bearer abc");
        assert_eq!(out["x-forwarded-for"], "192.0.2.9");
    }
}
