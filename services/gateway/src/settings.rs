//! The gateway's settings: the routing table, its upstreams and the edge policies.
//!
//! Loaded like every service's (defaults → TOML file → `COMPTOIR_GATEWAY__*`), see
//! `comptoir_platform::config`. The defaults describe the local platform: catalog on
//! 127.0.0.1:8081, identity on :8082, orders on :8083, inventory on :8084, payments on :8085,
//! notifications on :8086, analytics on :8087.

use std::collections::BTreeMap;
use std::time::Duration;

use comptoir_auth::JwksCacheSettings;
use comptoir_platform::config::{HttpSettings, TelemetrySettings, Validate};
use http::Uri;
use serde::{Deserialize, Serialize};

/// Paths the gateway serves itself; no route may claim them.
pub const OWN_PATHS: &[&str] = &["/livez", "/readyz", "/metrics", "/openapi.json"];

/// Gateway settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub http: HttpSettings,
    pub telemetry: TelemetrySettings,
    /// Identity's JWKS and what tokens must say.
    pub auth: JwksCacheSettings,
    /// The services requests go to, by name.
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    /// Which path prefix goes to which upstream.
    pub routes: Vec<RouteSettings>,
    pub rate_limit: RateLimitSettings,
    pub cors: CorsSettings,
    pub openapi: OpenApiSettings,
    pub cache: CacheSettings,
}

/// The shared cache of public answers (`src/cache.rs`): what an upstream marks
/// `s-maxage` is answered by the gateway itself for that long.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    pub enabled: bool,
    /// Answers kept at most; past it, expired ones are dropped, then all.
    pub max_entries: usize,
    /// Answers with a larger body are not kept.
    pub max_body_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_entries: 10_000,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// One upstream service and how it is called.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    /// Base URL, scheme and authority only, e.g. `http://catalog:8080`.
    pub url: String,
    /// No response headers within this long: 504.
    pub timeout_ms: u64,
    /// Connection establishment limit (a refused or unreachable upstream fails fast).
    pub connect_timeout_ms: u64,
    /// Extra attempts for idempotent requests after a connection failure or a 502/503/504.
    pub retries: u32,
    /// First retry delay; each next one doubles, up to `retry_backoff_max_ms`.
    pub retry_backoff_min_ms: u64,
    pub retry_backoff_max_ms: u64,
    /// Random extra delay, as a fraction of the backoff (0.0 to 1.0), so retries from many
    /// requests do not arrive together.
    pub retry_jitter: f64,
    /// Retries may add at most this fraction of the request rate (tower's retry budget), so
    /// retries cannot multiply the load on an upstream that is already struggling.
    pub retry_budget_ratio: f32,
    /// Consecutive failures (connection errors, timeouts, 502/503/504) that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before one probe is let through.
    pub breaker_cool_down_ms: u64,
    /// Idle pooled connections kept per upstream.
    pub pool_max_idle: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 5_000,
            connect_timeout_ms: 500,
            retries: 2,
            retry_backoff_min_ms: 20,
            retry_backoff_max_ms: 200,
            retry_jitter: 0.5,
            retry_budget_ratio: 0.2,
            breaker_failures: 5,
            breaker_cool_down_ms: 5_000,
            pool_max_idle: 64,
        }
    }
}

impl UpstreamSettings {
    pub fn at(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            ..Self::default()
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// One entry of the routing table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    /// A literal path prefix matched segment by segment: `/v1/products` takes
    /// `/v1/products` and `/v1/products/…`, not `/v1/productsx`.
    pub prefix: String,
    /// Name of the upstream in `upstreams`.
    pub upstream: String,
    /// Whether a bearer credential on this prefix is a platform access token the gateway
    /// verifies. `false` only where the upstream takes another kind of bearer credential
    /// (the catalog's operator token on `/v1/admin`), which it checks itself.
    #[serde(default = "yes")]
    pub verify_token: bool,
}

fn yes() -> bool {
    true
}

impl RouteSettings {
    pub fn new(prefix: &str, upstream: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            upstream: upstream.to_owned(),
            verify_token: true,
        }
    }
}

/// Per-client request rates (token buckets, GCRA).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Sustained requests per second per client address (IPv6: per /64).
    pub per_ip_per_second: u32,
    /// Requests a client address may send at once above the sustained rate.
    pub per_ip_burst: u32,
    /// Sustained requests per second per authenticated subject, whatever its address.
    pub per_subject_per_second: u32,
    pub per_subject_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_ip_per_second: 50,
            per_ip_burst: 100,
            per_subject_per_second: 20,
            per_subject_burst: 40,
        }
    }
}

/// Cross-origin requests from browsers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Exact origins allowed (`https://shop.example`); empty allows none.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age_secs: u64,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["http://localhost:3000".to_owned()],
            max_age_secs: 600,
        }
    }
}

/// The merged OpenAPI document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenApiSettings {
    /// An upstream's document is fetched again after this long.
    pub cache_ttl_ms: u64,
    /// Timeout of one upstream document fetch.
    pub fetch_timeout_ms: u64,
}

impl Default for OpenApiSettings {
    fn default() -> Self {
        Self {
            cache_ttl_ms: 60_000,
            fetch_timeout_ms: 2_000,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let http = HttpSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8000)),
            // Above every upstream timeout, so a slow upstream is a 504 from the proxy rather
            // than a 408 from the server's own timeout.
            request_timeout_ms: 15_000,
            ..HttpSettings::default()
        };
        let upstreams = BTreeMap::from([
            (
                "catalog".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8081"),
            ),
            (
                "identity".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8082"),
            ),
            (
                "orders".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8083"),
            ),
            (
                "inventory".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8084"),
            ),
            (
                "payments".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8085"),
            ),
            (
                "notifications".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8086"),
            ),
            (
                "analytics".to_owned(),
                UpstreamSettings::at("http://127.0.0.1:8087"),
            ),
        ]);
        // Operator routes take the service's own admin token, which the service checks.
        let admin = |prefix: &str, upstream: &str| RouteSettings {
            verify_token: false,
            ..RouteSettings::new(prefix, upstream)
        };
        let routes = vec![
            RouteSettings::new("/v1/products", "catalog"),
            RouteSettings::new("/v1/categories", "catalog"),
            admin("/v1/admin", "catalog"),
            RouteSettings::new("/v1/customers", "identity"),
            RouteSettings::new("/v1/sessions", "identity"),
            RouteSettings::new("/v1/me", "identity"),
            // Erasure status: the erased customer can no longer sign in, so the unguessable
            // request id is the capability (no token needed, none accepted as proof).
            RouteSettings::new("/v1/erasures", "identity"),
            RouteSettings::new("/.well-known/jwks.json", "identity"),
            RouteSettings::new("/v1/cart", "orders"),
            RouteSettings::new("/v1/orders", "orders"),
            RouteSettings::new("/v1/stock", "inventory"),
            admin("/v1/admin/stock", "inventory"),
            admin("/v1/admin/payments", "payments"),
            admin("/v1/admin/deliveries", "notifications"),
            // The click stream: anonymous, or with the shopper's access token.
            RouteSettings::new("/v1/events", "analytics"),
            admin("/v1/admin/kpis", "analytics"),
        ];
        Self {
            http,
            telemetry: TelemetrySettings::default(),
            auth: JwksCacheSettings::default(),
            upstreams,
            routes,
            rate_limit: RateLimitSettings::default(),
            cors: CorsSettings::default(),
            openapi: OpenApiSettings::default(),
            cache: CacheSettings::default(),
        }
    }
}

/// Whether `prefix` is a literal absolute path the router can take as a prefix.
fn prefix_problem(prefix: &str) -> Option<&'static str> {
    let first = prefix.trim_start_matches('/').split('/').next();
    if !prefix.starts_with('/') || prefix.len() < 2 {
        Some("must start with '/' and name at least one segment")
    } else if prefix.ends_with('/') || prefix.contains("//") {
        Some("must not end with '/' or hold an empty segment")
    } else if prefix
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        Some("must not hold '.' or '..' segments")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
    {
        Some("may hold only letters, digits, '/', '-', '.', '_' and '~'")
    } else if first.is_some_and(|s| s.eq_ignore_ascii_case("internal")) {
        Some("must not expose /internal: those routes are for services only")
    } else if OWN_PATHS.contains(&prefix) {
        Some("is served by the gateway itself")
    } else {
        None
    }
}

impl comptoir_platform::service::ServiceSettings for Settings {
    fn http(&self) -> &HttpSettings {
        &self.http
    }

    fn telemetry(&self) -> &TelemetrySettings {
        &self.telemetry
    }
}

impl Validate for Settings {
    fn validate(&self) -> Vec<String> {
        let mut problems = self.http.validate();
        problems.extend(self.telemetry.validate());
        problems.extend(self.auth.problems("auth"));
        if !(1..=1_000_000).contains(&self.cache.max_entries) {
            problems.push("cache.max_entries must be between 1 and 1000000".to_owned());
        }
        if !(1..=64 * 1024 * 1024).contains(&self.cache.max_body_bytes) {
            problems.push("cache.max_body_bytes must be between 1 and 67108864".to_owned());
        }
        for (name, upstream) in &self.upstreams {
            let key = format!("upstreams.{name}");
            match upstream.url.parse::<Uri>() {
                Ok(uri)
                    if uri.scheme_str() == Some("http")
                        && uri.authority().is_some()
                        && matches!(uri.path(), "" | "/")
                        && uri.query().is_none() => {}
                _ => problems.push(format!(
                    "{key}.url must be an http URL with a host and no path, got {:?}",
                    upstream.url
                )),
            }
            if upstream.timeout_ms == 0 || upstream.connect_timeout_ms == 0 {
                problems.push(format!(
                    "{key}.timeout_ms and connect_timeout_ms must be greater than 0"
                ));
            }
            if upstream.timeout_ms >= self.http.request_timeout_ms {
                problems.push(format!(
                    "{key}.timeout_ms must be below http.request_timeout_ms, so a slow upstream \
                     is answered 504 by the proxy"
                ));
            }
            if upstream.retry_backoff_min_ms == 0
                || upstream.retry_backoff_min_ms > upstream.retry_backoff_max_ms
            {
                problems.push(format!(
                    "{key}.retry_backoff_min_ms must be greater than 0 and at most retry_backoff_max_ms"
                ));
            }
            if !(0.0..=1.0).contains(&upstream.retry_jitter) {
                problems.push(format!("{key}.retry_jitter must be between 0.0 and 1.0"));
            }
            if !(0.0..=1000.0).contains(&upstream.retry_budget_ratio) {
                problems.push(format!(
                    "{key}.retry_budget_ratio must be between 0.0 and 1000.0"
                ));
            }
            if upstream.breaker_failures == 0 || upstream.breaker_cool_down_ms == 0 {
                problems.push(format!(
                    "{key}.breaker_failures and breaker_cool_down_ms must be greater than 0"
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (index, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{index}]");
            if let Some(problem) = prefix_problem(&route.prefix) {
                problems.push(format!("{key}.prefix {:?} {problem}", route.prefix));
            }
            if !seen.insert(route.prefix.as_str()) {
                problems.push(format!("{key}.prefix {:?} is routed twice", route.prefix));
            }
            if !self.upstreams.contains_key(&route.upstream) {
                problems.push(format!(
                    "{key}.upstream {:?} is not in upstreams",
                    route.upstream
                ));
            }
        }
        let limits = &self.rate_limit;
        if limits.per_ip_per_second == 0
            || limits.per_ip_burst == 0
            || limits.per_subject_per_second == 0
            || limits.per_subject_burst == 0
        {
            problems.push("rate_limit rates and bursts must be greater than 0".to_owned());
        }
        for origin in &self.cors.allowed_origins {
            let valid = origin.parse::<Uri>().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.path() == "/"
                    && !origin.ends_with('/')
            });
            if !valid {
                problems.push(format!(
                    "cors.allowed_origins: {origin:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        if self.openapi.fetch_timeout_ms == 0 {
            problems.push("openapi.fetch_timeout_ms must be greater than 0".to_owned());
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Vec::<String>::new());
    }

    #[test]
    fn internal_and_malformed_prefixes_are_refused() {
        for prefix in [
            "/internal",
            "/internal/v1/customers",
            "/Internal",
            "v1/products",
            "/",
            "/v1/products/",
            "/v1//x",
            "/v1/{id}",
            "/v1/*rest",
            "/v1/../internal",
            "/metrics",
        ] {
            let settings = Settings {
                routes: vec![RouteSettings::new(prefix, "catalog")],
                ..Settings::default()
            };
            let problems = settings.validate();
            assert_eq!(problems.len(), 1, "{prefix}: {problems:?}");
            assert!(problems[0].contains("routes[0].prefix"), "{problems:?}");
        }
    }

    #[test]
    fn routes_must_name_known_upstreams_once() {
        let mut settings = Settings::default();
        settings
            .routes
            .push(RouteSettings::new("/v1/shipments", "shipping"));
        settings
            .routes
            .push(RouteSettings::new("/v1/me", "identity"));
        let problems = settings.validate().join("\n");
        assert!(
            problems.contains("\"shipping\" is not in upstreams"),
            "{problems}"
        );
        assert!(
            problems.contains("\"/v1/me\" is routed twice"),
            "{problems}"
        );
    }

    #[test]
    fn upstream_urls_and_origins_are_checked() {
        let mut settings = Settings::default();
        settings
            .upstreams
            .insert("x".to_owned(), UpstreamSettings::at("https://x/api"));
        settings.cors.allowed_origins = vec!["https://shop.example/".to_owned()];
        let problems = settings.validate().join("\n");
        assert!(problems.contains("upstreams.x.url"), "{problems}");
        assert!(problems.contains("cors.allowed_origins"), "{problems}");
    }
}
