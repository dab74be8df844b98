//! How the gateway behaves when upstreams fail: retries (GET only), timeouts, refused
//! connections, the circuit breaker, the mapping of upstream errors to problem+json, and
//! readiness that follows identity's keys rather than every upstream.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use comptoir_testkit::wait_for;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::{Stub, assert_problem, dead_url, sample, settings, spawn_gateway, upstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_is_retried_on_503_but_post_never_is() {
    let stub = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&stub, &dead_url())).await;
    stub.state.always_fail.store(true, Ordering::SeqCst);

    let response = gateway.get("/v1/flaky").await;
    let body = assert_problem(response, StatusCode::BAD_GATEWAY).await;
    assert_eq!(body["type"], "https://comptoir.dev/problems/upstream-error");
    assert_eq!(stub.hits("/v1/flaky"), 3, "one try and two retries");

    let response = gateway
        .request(Method::POST, "/v1/flaky")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::BAD_GATEWAY).await;
    assert_eq!(stub.hits("/v1/flaky"), 4, "a POST is sent once");

    // A transient failure is absorbed by a retry.
    stub.state.always_fail.store(false, Ordering::SeqCst);
    stub.state.fail_next.store(1, Ordering::SeqCst);
    let response = gateway.get("/v1/flaky").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(stub.hits("/v1/flaky"), 6);

    let metrics = gateway.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "gateway_upstream_retries_total",
            &["upstream=\"test\""]
        ),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "gateway_upstream_requests_total",
            &["upstream=\"test\"", "outcome=\"503\""]
        ),
        Some(5.0),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_upstream_request_duration_seconds_bucket{upstream=\"test\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_503_with_retry_after_and_a_slow_upstream_is_504() {
    let stub = Stub::spawn().await;
    let mut config = settings(&stub, &dead_url());
    config.upstreams.get_mut("test").expect("test").timeout_ms = 300;
    let gateway = spawn_gateway(config).await;

    let response = gateway.get("/v1/down").await;
    assert!(
        response.headers().contains_key("retry-after"),
        "{response:?}"
    );
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/upstream-unavailable"
    );

    // Refused connections are retried for the GET (twice), never for a POST.
    let response = gateway
        .request(Method::POST, "/v1/down")
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    let metrics = gateway.metrics().await;
    let down = |metric: &str, outcome: &str| {
        let mut labels = vec!["upstream=\"down\""];
        if !outcome.is_empty() {
            labels.push(outcome);
        }
        sample(&metrics, metric, &labels)
    };
    assert_eq!(
        down(
            "gateway_upstream_requests_total",
            "outcome=\"connect_error\""
        ),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(down("gateway_upstream_retries_total", ""), Some(2.0));

    let started = Instant::now();
    let response = gateway.get("/v1/slow").await;
    let body = assert_problem(response, StatusCode::GATEWAY_TIMEOUT).await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/upstream-timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stub.hits("/v1/slow"), 1, "a timeout is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_become_problems_and_upstream_problems_pass_through() {
    let stub = Stub::spawn().await;
    let gateway = spawn_gateway(settings(&stub, &dead_url())).await;

    let response = gateway.get("/v1/boom").await;
    let body = assert_problem(response, StatusCode::BAD_GATEWAY).await;
    let text = body.to_string();
    assert!(
        !text.contains("secret.rs") && !text.contains("db-7"),
        "{text}"
    );

    for (path, status) in [
        ("/v1/conflict", StatusCode::CONFLICT),
        ("/v1/problem503", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let response = gateway
            .request(Method::POST, path)
            .send()
            .await
            .expect("request");
        let body = assert_problem(response, status).await;
        assert_eq!(body["type"], "https://comptoir.dev/problems/stub", "{path}");
        assert_eq!(body["title"], "Stub problem");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_consecutive_failures_and_probes_after_the_cool_down() {
    const COOL_DOWN: Duration = Duration::from_millis(600);
    let stub = Stub::spawn().await;
    let mut config = settings(&stub, &dead_url());
    let test = config.upstreams.get_mut("test").expect("test");
    *test = comptoir_gateway::settings::UpstreamSettings {
        retries: 0,
        breaker_failures: 3,
        breaker_cool_down_ms: COOL_DOWN.as_millis() as u64,
        ..upstream(&stub.base)
    };
    let gateway = spawn_gateway(config).await;
    let state_gauge = |metrics: &str| {
        sample(
            metrics,
            "gateway_upstream_circuit_state",
            &["upstream=\"test\""],
        )
    };
    assert_eq!(state_gauge(&gateway.metrics().await), Some(0.0), "closed");

    stub.state.always_fail.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_problem(gateway.get("/v1/flaky").await, StatusCode::BAD_GATEWAY).await;
    }
    assert_eq!(stub.hits("/v1/flaky"), 3);

    // Open: refused at the gateway, with the rest of the cool-down as Retry-After.
    let opened_at = Instant::now();
    let response = gateway.get("/v1/flaky").await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert_eq!(retry_after, 1);
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(
        body["type"],
        "https://comptoir.dev/problems/upstream-unavailable"
    );
    assert_eq!(stub.hits("/v1/flaky"), 3, "nothing reached the upstream");
    assert_eq!(state_gauge(&gateway.metrics().await), Some(1.0), "open");

    // After the cool-down one probe goes through; it fails, so the circuit opens again.
    wait_for("the half-open probe", COOL_DOWN * 10, || {
        let request = gateway.get("/v1/flaky");
        let stub = &stub;
        async move {
            let status = request.await.status();
            (stub.hits("/v1/flaky") == 4).then_some(status)
        }
    })
    .await
    .expect("probe");
    assert!(opened_at.elapsed() >= COOL_DOWN);
    assert_problem(
        gateway.get("/v1/flaky").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(stub.hits("/v1/flaky"), 4, "reopened after the failed probe");

    // The upstream recovers: the next probe succeeds and the circuit closes.
    stub.state.always_fail.store(false, Ordering::SeqCst);
    wait_for("the circuit to close", COOL_DOWN * 10, || {
        let request = gateway.get("/v1/flaky");
        async move { (request.await.status() == StatusCode::OK).then_some(()) }
    })
    .await
    .expect("closed");
    assert_eq!(gateway.get("/v1/flaky").await.status(), StatusCode::OK);
    let metrics = gateway.metrics().await;
    assert_eq!(state_gauge(&metrics), Some(0.0), "closed again");
    assert_eq!(
        sample(
            &metrics,
            "gateway_upstream_circuit_opened_total",
            &["upstream=\"test\""]
        ),
        Some(2.0)
    );
    // The other upstreams' circuits were never involved.
    assert_eq!(
        sample(
            &metrics,
            "gateway_upstream_circuit_state",
            &["upstream=\"identity\""]
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_identitys_keys_not_the_upstreams() {
    let stub = Stub::spawn().await;
    stub.state.keys_down.store(true, Ordering::SeqCst);
    // The catalog upstream is down for the whole test: it does not make the gateway unready.
    let gateway = spawn_gateway(settings(&stub, &dead_url())).await;

    let response = gateway.get("/readyz").await;
    let body = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["errors"][0]["field"], "jwks");
    // Tokens cannot be checked yet: a request with one is refused, 503, not let through.
    let response = gateway
        .request(Method::GET, "/v1/me")
        .bearer_auth(stub.token(uuid::Uuid::new_v4()))
        .send()
        .await
        .expect("request");
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;

    stub.state.keys_down.store(false, Ordering::SeqCst);
    wait_for("the gateway to be ready", Duration::from_secs(10), || {
        let request = gateway.get("/readyz");
        async move { (request.await.status() == StatusCode::OK).then_some(()) }
    })
    .await
    .expect("ready");
    let ready: Value = gateway.get("/readyz").await.json().await.expect("json");
    assert_eq!(ready["status"], "ready");
    assert_problem(
        gateway.get("/v1/products").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert_eq!(gateway.get("/readyz").await.status(), StatusCode::OK);
    gateway.stop().await;
}
