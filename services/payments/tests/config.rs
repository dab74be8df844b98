//! Invalid configuration stops the binary before it binds anything, with a readable message.

use std::process::{Command, Output};

fn payments(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-payments"));
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_PAYMENTS__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run comptoir-payments")
}

fn assert_refused(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(output.stdout.is_empty(), "nothing on stdout: {output:?}");
}

#[test]
fn provider_settings_out_of_range_are_all_reported_at_once() {
    let output = payments(&[
        ("COMPTOIR_PAYMENTS__PROVIDER_TIMEOUT_MS", "0"),
        ("COMPTOIR_PAYMENTS__SIMULATED_PROVIDER__FAILURE_RATE", "1.5"),
        ("COMPTOIR_PAYMENTS__ORDERS_NAMESPACE", "orders"),
    ]);
    assert_refused(
        &output,
        &[
            "admin_token_file must be set",
            "provider_timeout_ms must be between 1 and 60000, got 0",
            "simulated_provider.failure_rate must be between 0.0 and 1.0, got 1.5",
            "simulated_provider.latency_ms (20) must be below provider_timeout_ms (0)",
            "orders_namespace must look like tenant/namespace",
        ],
    );
}

#[test]
fn a_negative_failure_rate_and_a_latency_past_the_timeout_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "a-long-enough-admin-token").expect("write");
    let output = payments(&[
        (
            "COMPTOIR_PAYMENTS__ADMIN_TOKEN_FILE",
            token.to_str().expect("utf-8"),
        ),
        (
            "COMPTOIR_PAYMENTS__SIMULATED_PROVIDER__FAILURE_RATE",
            "-0.1",
        ),
        ("COMPTOIR_PAYMENTS__SIMULATED_PROVIDER__LATENCY_MS", "6000"),
    ]);
    assert_refused(
        &output,
        &[
            "simulated_provider.failure_rate must be between 0.0 and 1.0, got -0.1",
            "simulated_provider.latency_ms (6000) must be below provider_timeout_ms (5000)",
        ],
    );
}

#[test]
fn an_unknown_key_is_an_error_not_ignored() {
    let output = payments(&[("COMPTOIR_PAYMENTS__SIMULATED_PROVIDER__FAILURE_RAT", "0.5")]);
    assert_refused(&output, &["failure_rat"]);
}
