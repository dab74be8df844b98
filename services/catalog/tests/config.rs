//! Invalid configuration stops the binary before it binds anything, with a readable message.

use std::process::{Command, Output};

fn catalog(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-catalog"));
    command.args(args);
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_CATALOG__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run comptoir-catalog")
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
    // Port 1 would need root to bind; the process must fail on config before trying.
    let output = catalog(
        &[("COMPTOIR_CATALOG__HTTP__LISTEN", "127.0.0.1:not-a-port")],
        &[],
    );
    assert_refused(&output, &["comptoir-catalog:", "listen"]);
}

#[test]
fn a_missing_admin_token_and_bad_urls_are_all_reported_at_once() {
    let output = catalog(
        &[
            ("COMPTOIR_CATALOG__PULSAR__URL", "http://127.0.0.1:6650"),
            (
                "COMPTOIR_CATALOG__DATABASE__PASSWORD_FILE",
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
        ],
    );
}

#[test]
fn an_unknown_key_is_an_error_not_ignored() {
    let output = catalog(&[("COMPTOIR_CATALOG__HTTP__LISTN", "127.0.0.1:9")], &[]);
    assert_refused(&output, &["listn"]);
}

#[test]
fn a_missing_config_file_or_bad_arguments_are_refused() {
    let output = catalog(&[], &["--config", "/nonexistent/catalog.toml"]);
    assert_refused(&output, &["/nonexistent/catalog.toml"]);
    let output = catalog(&[], &["--bogus"]);
    assert_refused(&output, &["unexpected argument", "usage:"]);
}

#[test]
fn a_config_file_with_bad_values_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("catalog.toml");
    std::fs::write(
        &file,
        "[http]\nconcurrency_limit = 0\n[database]\npool_size = 0\n",
    )
    .expect("write");
    let output = catalog(&[], &["--config", file.to_str().expect("utf-8")]);
    assert_refused(&output, &["http.concurrency_limit", "database.pool_size"]);
}

#[test]
fn a_short_admin_token_and_plaintext_to_a_remote_database_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "letmein").expect("write token");
    let output = catalog(
        &[
            (
                "COMPTOIR_CATALOG__ADMIN_TOKEN_FILE",
                token.to_str().expect("utf-8"),
            ),
            ("COMPTOIR_CATALOG__DATABASE__HOST", "db.internal"),
            ("COMPTOIR_CATALOG__DATABASE__TLS", "disable"),
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
