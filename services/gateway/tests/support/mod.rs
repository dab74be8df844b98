//! `spawn_gateway()`: a gateway on port 0 in front of upstreams the test controls.
//!
//! - [`Stub`]: a small axum app that counts hits per path and can be told to fail, hang or
//!   withhold its keys. As `identity` it serves a JWKS from a fresh
//!   `comptoir_auth::Signer::generate` key and an OpenAPI document: it stands in for the
//!   identity service until the end-to-end tests drive the real one.
//! - [`Catalog`]: the real catalog service (its `run`), on a fresh database and Pulsar
//!   namespace, as its own tests spawn it.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use comptoir_auth::{Claims, Jwks, Signer};
use comptoir_gateway::Settings;
use comptoir_gateway::settings::{RouteSettings, UpstreamSettings};
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::assert_problem;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// What a stub upstream does and has seen.
#[derive(Clone, Default)]
pub struct StubState {
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// `/v1/flaky` answers 503 while this is set...
    pub always_fail: Arc<AtomicBool>,
    /// ...and for this many more calls.
    pub fail_next: Arc<AtomicUsize>,
    /// The JWKS answers 503 while this is set.
    pub keys_down: Arc<AtomicBool>,
    jwks: Arc<Mutex<Option<Jwks>>>,
}

impl StubState {
    fn hit(&self, path: &str) {
        *self
            .hits
            .lock()
            .expect("lock")
            .entry(path.to_owned())
            .or_default() += 1;
    }
}

/// A stub upstream on a free port.
pub struct Stub {
    pub base: String,
    pub state: StubState,
    pub signer: Arc<Signer>,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Stub {
    pub async fn spawn() -> Self {
        let signer = Arc::new(Signer::generate("stub-key").expect("key"));
        let state = StubState::default();
        *state.jwks.lock().expect("lock") = Some(Jwks::new(vec![signer.jwk()]));
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/openapi.json", get(openapi))
            .route("/v1/me", any(echo))
            .route("/v1/echo", any(echo))
            .route("/v1/echo/{*rest}", any(echo))
            .route("/v1/flaky", any(flaky))
            .route("/v1/slow", any(slow))
            .route("/v1/boom", any(boom))
            .route("/v1/conflict", any(conflict))
            .route("/v1/problem503", any(problem_503))
            .route("/internal/v1/customers/{id}/pii", any(echo))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Self {
            base,
            state,
            signer,
            shutdown,
            server: Some(server),
        }
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    /// A valid access token for `subject`, signed by this stub's key.
    pub fn token(&self, subject: Uuid) -> String {
        self.signer.issue(&claims(subject)).expect("sign")
    }

    /// Stops serving and returns once the server is gone: the listener closed and every
    /// connection, the gateway's idle pooled ones included, shut. (Returning at the mere
    /// cancellation let a pooled connection answer one more request.)
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), server)
                .await
                .expect("the stub stops within 10 s")
                .expect("join")
                .expect("clean stop");
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn claims(subject: Uuid) -> Claims {
    Claims::new(
        comptoir_auth::DEFAULT_ISSUER,
        comptoir_auth::DEFAULT_AUDIENCE,
        subject,
        "customer",
        Duration::from_secs(300),
        None,
    )
}

async fn jwks(State(state): State<StubState>) -> Response {
    state.hit("/.well-known/jwks.json");
    if state.keys_down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(state.jwks.lock().expect("lock").clone()).into_response()
}

/// An identity-like document: a routed path, an internal one, and a `Product` schema that
/// collides with the catalog's.
async fn openapi(State(state): State<StubState>) -> Response {
    state.hit("/openapi.json");
    axum::Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "stub", "version": "0"},
        "paths": {
            "/v1/me": {"get": {"responses": {"200": {"description": "me", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Product"}}}}}}},
            "/internal/v1/customers/{id}/pii": {"post": {"responses": {"200": {"description": "pii"}}}},
        },
        "components": {"schemas": {"Product": {"type": "object", "properties": {"stub": {"type": "boolean"}}}}},
    }))
    .into_response()
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        map.insert(name.as_str().to_owned(), Value::Array(values));
    }
    Value::Object(map)
}

async fn echo(State(state): State<StubState>, request: Request) -> Response {
    state.hit(request.uri().path());
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
    axum::Json(json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers_json(&parts.headers),
        "body_len": body.len(),
    }))
    .into_response()
}

async fn flaky(State(state): State<StubState>) -> Response {
    state.hit("/v1/flaky");
    let failing = state.always_fail.load(Ordering::SeqCst)
        || state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if failing {
        (StatusCode::SERVICE_UNAVAILABLE, "stub unavailable").into_response()
    } else {
        axum::Json(json!({"ok": true})).into_response()
    }
}

async fn slow(State(state): State<StubState>) -> Response {
    state.hit("/v1/slow");
    // Never answers: the gateway's timeout is what ends the exchange.
    std::future::pending::<Response>().await
}

async fn boom(State(state): State<StubState>) -> Response {
    state.hit("/v1/boom");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "panic at src/secret.rs:42 while talking to db-7",
    )
        .into_response()
}

fn problem(status: StatusCode, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, PROBLEM_JSON)],
        json!({"type": "https://comptoir.dev/problems/stub", "title": "Stub problem", "status": status.as_u16(), "detail": detail}).to_string(),
    )
        .into_response()
}

async fn conflict(State(state): State<StubState>) -> Response {
    state.hit("/v1/conflict");
    problem(StatusCode::CONFLICT, "the stub says conflict")
}

async fn problem_503(State(state): State<StubState>) -> Response {
    state.hit("/v1/problem503");
    problem(StatusCode::SERVICE_UNAVAILABLE, "the stub is draining")
}

/// An address where nothing listens: connections are refused.
pub fn dead_url() -> String {
    format!("http://127.0.0.1:{}", comptoir_testkit::free_port())
}

/// Test upstream settings: quick backoffs, a breaker that stays out of the way unless a test
/// tightens it.
pub fn upstream(url: &str) -> UpstreamSettings {
    UpstreamSettings {
        timeout_ms: 2_000,
        retry_backoff_min_ms: 5,
        retry_backoff_max_ms: 20,
        breaker_failures: 1_000,
        ..UpstreamSettings::at(url)
    }
}

/// Gateway settings: `identity` (the stub, also the JWKS), `test` (the same stub, for the
/// failure routes), `down` (nothing listening) and `catalog` at `catalog_url`.
pub fn settings(identity: &Stub, catalog_url: &str) -> Settings {
    let mut settings = Settings::default();
    settings.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.http.shutdown_grace_ms = 2_000;
    settings.auth.url = identity.jwks_url();
    settings.upstreams = [
        ("catalog", upstream(catalog_url)),
        ("identity", upstream(&identity.base)),
        ("test", upstream(&identity.base)),
        ("down", upstream(&dead_url())),
    ]
    .into_iter()
    .map(|(name, upstream)| (name.to_owned(), upstream))
    .collect();
    let mut routes = vec![
        RouteSettings::new("/v1/products", "catalog"),
        RouteSettings::new("/v1/categories", "catalog"),
        RouteSettings {
            verify_token: false,
            ..RouteSettings::new("/v1/admin", "catalog")
        },
        RouteSettings::new("/v1/me", "identity"),
        RouteSettings::new("/.well-known/jwks.json", "identity"),
        RouteSettings::new("/v1/down", "down"),
    ];
    for prefix in [
        "/v1/echo",
        "/v1/flaky",
        "/v1/slow",
        "/v1/boom",
        "/v1/conflict",
        "/v1/problem503",
    ] {
        routes.push(RouteSettings::new(prefix, "test"));
    }
    settings.routes = routes;
    // Generous unless a test is about rate limits.
    settings.rate_limit.per_ip_per_second = 10_000;
    settings.rate_limit.per_ip_burst = 10_000;
    settings.rate_limit.per_subject_per_second = 10_000;
    settings.rate_limit.per_subject_burst = 10_000;
    settings.openapi.cache_ttl_ms = 0;
    settings
}

pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Spawns a gateway and waits until it is alive (not ready: some tests keep identity's keys
/// away on purpose).
pub async fn spawn_gateway(settings: Settings) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_gateway::run(listener, settings, shutdown.clone()));
    let http = reqwest::Client::new();
    let probe = http.clone();
    let url = format!("{base}/livez");
    wait_for("the gateway to be alive", Duration::from_secs(30), || {
        let request = probe.get(&url).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
    })
    .await
    .expect("gateway alive");
    Gateway {
        base,
        http,
        shutdown,
        handle: Some(handle),
    }
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("metrics")
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The value of the sample of `metric` whose labels hold every one of `labels`.
pub fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with(metric)
                && line[metric.len()..].starts_with(['{', ' '])
                && labels.iter().all(|l| line.contains(l))
        })
        .find_map(|line| line.rsplit(' ').next()?.parse().ok())
}

/// The real catalog on a fresh database and Pulsar namespace.
pub struct Catalog {
    pub base: String,
    pub admin_token: String,
    _db: TestDatabase,
    _namespace: TestNamespace,
    shutdown: CancellationToken,
}

impl Catalog {
    pub async fn spawn() -> Self {
        let db = TestDatabase::create("gateway_catalog")
            .await
            .expect("test database");
        let namespace = TestNamespace::create().await.expect("test namespace");
        let admin_token = Uuid::new_v4().to_string();
        let token_file = db.scratch_dir().join("admin-token");
        std::fs::write(&token_file, &admin_token).expect("write token");
        let mut settings = comptoir_catalog::Settings::default();
        settings.database = comptoir_store::DatabaseSettings {
            pool_size: 4,
            ..db.settings()
        };
        settings.pulsar.url = pulsar_url();
        settings.pulsar.namespace = namespace.name.clone();
        settings.admin_token_file = Some(token_file);
        settings.http.shutdown_grace_ms = 2_000;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        tokio::spawn(comptoir_catalog::run(listener, settings, shutdown.clone()));
        let http = reqwest::Client::new();
        let url = format!("{base}/readyz");
        wait_for("the catalog to be ready", Duration::from_secs(60), || {
            let request = http.get(&url).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
        })
        .await
        .expect("catalog ready");
        Self {
            base,
            admin_token,
            _db: db,
            _namespace: namespace,
            shutdown,
        }
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
