//! The real binary: JSON logs with request ids, OpenTelemetry traces exported over OTLP/HTTP
//! with the caller's trace context, and a clean exit on SIGTERM.
//!
//! The OTLP receiver here is a stand-in for an OpenTelemetry collector (an outside party): it
//! only records what it is sent.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use comptoir_testkit::{TestDatabase, TestNamespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_exports_traces_and_stops_on_sigterm() {
    let received: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let sink = received.clone();
    let collector = axum::Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(body);
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, collector).await });

    let db = TestDatabase::create("catalog_test").await.expect("db");
    let namespace = TestNamespace::create().await.expect("namespace");
    let endpoint = format!("http://{collector_addr}/v1/traces");
    let (child, base) = support::spawn_binary(
        &db,
        &namespace,
        &[("COMPTOIR_CATALOG__TELEMETRY__OTLP_ENDPOINT", endpoint)],
    )
    .await;
    let http = reqwest::Client::new();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http
        .get(format!("{base}/v1/products?limit=1"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-telemetry-test")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("output");
    assert!(
        output.status.success(),
        "exit after SIGTERM: {:?}",
        output.status
    );

    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["span"]["request_id"] == "req-telemetry-test"
                && l["message"] == "Request served"),
        "no access log line with the request id in:\n{stdout}"
    );

    // Spans are flushed at shutdown; they carry the caller's trace id (16 raw bytes in OTLP
    // protobuf) and the service name.
    let bodies = received.lock().expect("lock").clone();
    assert!(!bodies.is_empty(), "no OTLP export received");
    let all: Vec<u8> = bodies.iter().flat_map(|b| b.iter().copied()).collect();
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    assert!(
        all.windows(16).any(|w| w == trace_bytes.as_slice()),
        "trace context not propagated"
    );
    assert!(
        all.windows(7).any(|w| w == b"catalog"),
        "service name missing"
    );
}
