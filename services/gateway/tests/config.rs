//! Invalid configuration stops the binary before it binds anything, with a readable message.

use std::process::{Command, Output};

fn gateway(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-gateway"));
    command.args(args);
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_GATEWAY__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run comptoir-gateway")
}

fn assert_refused(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(output.stdout.is_empty(), "{output:?}");
}

#[test]
fn a_route_to_internal_and_a_bad_upstream_are_both_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        r#"
[upstreams.catalog]
url = "http://127.0.0.1:8081/api"

[[routes]]
prefix = "/internal/v1/customers"
upstream = "catalog"
"#,
    )
    .expect("write config");
    let output = gateway(&[], &["--config", file.to_str().expect("utf-8 path")]);
    assert_refused(
        &output,
        &[
            "comptoir-gateway:",
            "upstreams.catalog.url",
            "routes[0].prefix \"/internal/v1/customers\" must not expose /internal",
        ],
    );
}

#[test]
fn an_unknown_key_is_named() {
    let output = gateway(&[("COMPTOIR_GATEWAY__RATE_LIMIT__PER_IP", "5")], &[]);
    assert_refused(&output, &["per_ip"]);
}

#[test]
fn a_jwks_over_plain_http_to_another_host_is_refused() {
    // Whoever answers that fetch would choose the keys every token is checked against.
    let output = gateway(
        &[(
            "COMPTOIR_GATEWAY__AUTH__URL",
            "http://identity.internal:8080/.well-known/jwks.json",
        )],
        &[],
    );
    assert_refused(&output, &["auth.url", "identity.internal", "https://"]);
}

#[test]
fn a_public_listener_without_an_internal_ops_listener_is_refused() {
    // /metrics and /readyz must not be served to the Internet with the API.
    let output = gateway(&[("COMPTOIR_GATEWAY__HTTP__LISTEN", "0.0.0.0:8000")], &[]);
    assert_refused(&output, &["http.ops_listen must be set", "0.0.0.0:8000"]);
}
