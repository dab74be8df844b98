//! Invalid configuration stops the binary before it binds anything, with a readable message.

use std::process::{Command, Output};

fn inventory(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-inventory"));
    command.args(args);
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_INVENTORY__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run comptoir-inventory")
}

fn assert_refused(output: &Output, needles: &[&str]) {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lower = stderr.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "{needle:?} not in:\n{stderr}"
        );
    }
    assert!(
        output.stdout.is_empty(),
        "nothing should be printed on stdout: {output:?}"
    );
}

#[test]
fn a_wrongly_typed_value_is_named() {
    let output = inventory(
        &[(
            "COMPTOIR_INVENTORY__RESERVATION_TTL_SECS",
            "fifteen minutes",
        )],
        &[],
    );
    assert_refused(&output, &["comptoir-inventory:", "reservation_ttl_secs"]);
}

#[test]
fn every_bad_setting_is_reported_at_once() {
    let output = inventory(
        &[
            ("COMPTOIR_INVENTORY__PULSAR__URL", "http://127.0.0.1:6650"),
            ("COMPTOIR_INVENTORY__ORDERS_NAMESPACE", "orders"),
            ("COMPTOIR_INVENTORY__CATALOG_NAMESPACE", "a/b/c"),
            ("COMPTOIR_INVENTORY__DEMO_STOCK_PER_PRODUCT", "-5"),
            ("COMPTOIR_INVENTORY__RESERVATION_TTL_SECS", "0"),
            ("COMPTOIR_INVENTORY__SWEEP_INTERVAL_MS", "0"),
            (
                "COMPTOIR_INVENTORY__DATABASE__PASSWORD_FILE",
                "/nonexistent/db-password",
            ),
        ],
        &[],
    );
    assert_refused(
        &output,
        &[
            "admin_token_file must be set",
            "pulsar.url",
            "database.password_file",
            "orders_namespace",
            "catalog_namespace",
            "demo_stock_per_product must be between 0 and 1000000000, got -5",
            "reservation_ttl_secs must be between 1",
            "sweep_interval_ms must be between 10",
        ],
    );
}

#[test]
fn an_unknown_key_is_an_error_not_ignored() {
    let output = inventory(&[("COMPTOIR_INVENTORY__RESERVATION_TTL", "60")], &[]);
    assert_refused(&output, &["reservation_ttl"]);
}

#[test]
fn a_missing_config_file_or_bad_arguments_are_refused() {
    let output = inventory(&[], &["--config", "/nonexistent/inventory.toml"]);
    assert_refused(&output, &["/nonexistent/inventory.toml"]);
    let output = inventory(&[], &["--bogus"]);
    assert_refused(&output, &["unexpected argument", "usage:"]);
}

#[test]
fn a_short_admin_token_and_plaintext_to_a_remote_database_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "letmein").expect("write token");
    let output = inventory(
        &[
            (
                "COMPTOIR_INVENTORY__ADMIN_TOKEN_FILE",
                token.to_str().expect("utf-8"),
            ),
            ("COMPTOIR_INVENTORY__DATABASE__HOST", "db.internal"),
            ("COMPTOIR_INVENTORY__DATABASE__TLS", "disable"),
        ],
        &[],
    );
    assert_refused(
        &output,
        &[
            "admin_token_file: the token must be at least 16 characters",
            "database.tls is disable but database.host \"db.internal\" is not loopback",
        ],
    );
}

#[test]
fn check_config_validates_without_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "an-operator-token-long-enough-to-pass").expect("write token");
    let token = token.to_str().expect("utf-8");
    // Valid settings for a cluster (a host list, TLS): it says so and exits 0 at once,
    // connecting to nothing — the hosts below do not exist.
    let output = inventory(
        &[
            ("COMPTOIR_INVENTORY__ADMIN_TOKEN_FILE", token),
            ("COMPTOIR_INVENTORY__DATABASE__HOST", "10.9.9.1,10.9.9.2"),
            ("COMPTOIR_INVENTORY__DATABASE__TLS", "verify-full"),
            ("COMPTOIR_INVENTORY__HTTP__LISTEN", "0.0.0.0:8080"),
            ("COMPTOIR_INVENTORY__HTTP__OPS_LISTEN", "0.0.0.0:9000"),
        ],
        &["--check-config"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("configuration is valid"),
        "{output:?}"
    );
    // The same check refuses what the service would refuse.
    let output = inventory(
        &[
            ("COMPTOIR_INVENTORY__ADMIN_TOKEN_FILE", token),
            ("COMPTOIR_INVENTORY__DATABASE__HOST", "10.9.9.1,,10.9.9.2"),
            ("COMPTOIR_INVENTORY__DATABASE__TLS", "disable"),
        ],
        &["--check-config"],
    );
    assert_refused(&output, &["empty entry", "tls is disable"]);
}
