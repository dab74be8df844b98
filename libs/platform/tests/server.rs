//! The platform's HTTP stack, exercised over real sockets.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use comptoir_platform::config::HttpSettings;
use comptoir_platform::health::ReadinessCheck;
use comptoir_platform::http::{app, serve};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

struct Running {
    base: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(api: Router, settings: HttpSettings, checks: Vec<ReadinessCheck>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let router = app("platform-test", api, &settings, checks);
    let server = tokio::spawn(serve(
        listener,
        router,
        shutdown.clone(),
        Duration::from_secs(10),
    ));
    Running {
        base,
        shutdown,
        server,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish_then_stops_accepting() {
    let entered = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (e, r) = (entered.clone(), release.clone());
    let api = Router::new().route(
        "/slow",
        get(move || {
            let (e, r) = (e.clone(), r.clone());
            async move {
                e.notify_one();
                r.notified().await;
                "done"
            }
        }),
    );
    let running = start(api, HttpSettings::default(), Vec::new()).await;
    let url = format!("{}/slow", running.base);
    let in_flight = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    entered.notified().await;

    running.shutdown.cancel();
    // The server must not have returned while the request is still being served.
    tokio::task::yield_now().await;
    assert!(!running.server.is_finished());
    release.notify_one();

    assert_eq!(in_flight.await.expect("join").expect("response"), "done");
    running.server.await.expect("join").expect("clean stop");
    let refused = reqwest::get(format!("{}/livez", running.base)).await;
    assert!(refused.is_err(), "a stopped server must refuse connections");
}

#[tokio::test]
async fn middleware_errors_are_problem_json_with_a_request_id() {
    let settings = HttpSettings {
        request_timeout_ms: 200,
        body_limit_bytes: 1024,
        ..HttpSettings::default()
    };
    let api = Router::new()
        .route(
            "/sleep",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/items/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<u64>| async move { id.to_string() }),
        )
        .route(
            "/panic",
            get(|| async { if true { panic!("boom") } else { "unreachable" } }),
        );
    let running = start(api, settings, Vec::new()).await;
    let client = reqwest::Client::new();

    let cases = [
        (client.get(format!("{}/sleep", running.base)), 408),
        (
            client
                .post(format!("{}/echo", running.base))
                .body(vec![b'x'; 4096]),
            413,
        ),
        (client.get(format!("{}/panic", running.base)), 500),
        (client.get(format!("{}/missing", running.base)), 404),
        (client.delete(format!("{}/echo", running.base)), 405),
    ];
    for (request, status) in cases {
        let response = request.send().await.expect("response");
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(response.headers().contains_key("x-request-id"));
        if status == 413 {
            // The unread rest of the body makes the connection unusable: say so.
            assert_eq!(response.headers()["connection"], "close");
        }
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["status"], status);
        assert!(
            !body.to_string().contains("boom"),
            "panic text must not reach clients"
        );
    }

    // A client that takes gzip gets the problem compressed as a whole: the reason axum gave in
    // plain text is quoted before compression, never the compressed bytes of it.
    let rejected = client
        .get(format!("{}/items/not-a-number", running.base))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("response");
    assert_eq!(rejected.status().as_u16(), 400);
    assert_eq!(
        rejected.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(rejected.headers()["content-encoding"], "gzip");
    let bytes = rejected.bytes().await.expect("body");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "a gzip stream");

    // A request id sent by the client is kept.
    let response = client
        .get(format!("{}/livez", running.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("response");
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn readiness_names_the_failing_dependency() {
    let checks = vec![
        ReadinessCheck::new("database", || async { Ok(()) }),
        ReadinessCheck::new("broker", || async { Err("connection refused".to_owned()) }),
    ];
    let running = start(Router::new(), HttpSettings::default(), checks).await;
    let response = reqwest::get(format!("{}/readyz", running.base))
        .await
        .expect("response");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["errors"].as_array().expect("errors").len(), 1);
    assert_eq!(body["errors"][0]["field"], "broker");
    // The reason (an address, a driver error) stays in the log.
    assert!(!body.to_string().contains("connection refused"), "{body}");
    let live = reqwest::get(format!("{}/livez", running.base))
        .await
        .expect("response");
    assert_eq!(live.status(), 200);
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test]
async fn operational_routes_move_to_the_internal_listener_when_one_is_set() {
    let ops_port = free_port();
    let settings = HttpSettings {
        ops_listen: Some(([127, 0, 0, 1], ops_port).into()),
        ..HttpSettings::default()
    };
    let api = Router::new().route("/v1/hello", get(|| async { "hello" }));
    let checks = vec![ReadinessCheck::new("database", || async { Ok(()) })];
    let running = start(api, settings, checks).await;
    let ops = format!("http://127.0.0.1:{ops_port}");
    let client = reqwest::Client::new();
    let status = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    };
    // The listener is bound once `serve` runs: wait for it rather than sleep.
    wait_until_answering(|| status(format!("{ops}/livez"))).await;
    assert_eq!(
        status(format!("{}/v1/hello", running.base)).await.ok(),
        Some(200)
    );
    for path in ["/livez", "/readyz", "/metrics"] {
        assert_eq!(
            status(format!("{}{path}", running.base)).await.ok(),
            Some(404),
            "public {path}"
        );
        assert_eq!(
            status(format!("{ops}{path}")).await.ok(),
            Some(200),
            "internal {path}"
        );
    }
    assert_eq!(
        status(format!("{ops}/v1/hello")).await.ok(),
        Some(404),
        "no API on ops"
    );
    running.shutdown.cancel();
    running.server.await.expect("join").expect("clean stop");
}

/// Polls until `probe` answers, for at most 10 s.
async fn wait_until_answering<F, Fut>(probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u16, reqwest::Error>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while probe().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ops listener never answered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_public_listener_without_an_internal_one_is_refused() {
    use comptoir_platform::config::Validate as _;
    let public = HttpSettings {
        listen: ([0, 0, 0, 0], 8080).into(),
        ..HttpSettings::default()
    };
    let problems = public.validate();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("http.ops_listen must be set")),
        "{problems:?}"
    );
    let separated = HttpSettings {
        ops_listen: Some(([0, 0, 0, 0], 9090).into()),
        ..public.clone()
    };
    assert!(separated.validate().is_empty());
    assert!(
        HttpSettings::default().validate().is_empty(),
        "loopback alone is fine"
    );
}
