//! Invalid configuration stops the binary before it binds anything, with a readable message
//! naming every problem at once.

use std::path::Path;
use std::process::{Command, Output};

fn notifications(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-notifications"));
    command.args(args);
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_NOTIFICATIONS__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run comptoir-notifications")
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

/// Token files long enough, so that only the variables under test are wrong.
fn tokens(dir: &Path) -> (String, String) {
    let admin = dir.join("admin-token");
    let identity = dir.join("identity-token");
    std::fs::write(&admin, "admin-token-for-config-tests").expect("write");
    std::fs::write(&identity, "identity-token-for-config-tests").expect("write");
    (
        admin.to_str().expect("utf-8").to_owned(),
        identity.to_str().expect("utf-8").to_owned(),
    )
}

#[test]
fn missing_token_files_are_all_reported_at_once() {
    let output = notifications(&[], &[]);
    assert_refused(
        &output,
        &[
            "comptoir-notifications:",
            "admin_token_file must be set",
            "identity.token_file must be set",
        ],
    );
}

#[test]
fn plaintext_smtp_to_a_remote_host_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, identity) = tokens(dir.path());
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            ("COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE", &identity),
            ("COMPTOIR_NOTIFICATIONS__SMTP__HOST", "smtp.example.com"),
        ],
        &[],
    );
    assert_refused(
        &output,
        &[
            "smtp.host \"smtp.example.com\" is not loopback: with smtp.tls = \"none\" mail is \
             sent in plaintext",
            "use tls = \"starttls\" or \"tls\" for a remote relay",
        ],
    );
}

#[test]
fn a_remote_relay_is_accepted_with_tls_and_credentials_are_refused_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, identity) = tokens(dir.path());
    let password = dir.path().join("smtp-password");
    std::fs::write(&password, "relay-password-for-config-tests\n").expect("write");
    let password = password.to_str().expect("utf-8");
    let missing_ca = dir.path().join("missing-ca.pem");
    // The environment-variable form of every new key; only the CA file is wrong.
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            ("COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE", &identity),
            ("COMPTOIR_NOTIFICATIONS__SMTP__HOST", "smtp.example.com"),
            ("COMPTOIR_NOTIFICATIONS__SMTP__PORT", "587"),
            ("COMPTOIR_NOTIFICATIONS__SMTP__TLS", "starttls"),
            (
                "COMPTOIR_NOTIFICATIONS__SMTP__CA_FILE",
                missing_ca.to_str().expect("utf-8"),
            ),
            ("COMPTOIR_NOTIFICATIONS__SMTP__USERNAME", "comptoir"),
            ("COMPTOIR_NOTIFICATIONS__SMTP__PASSWORD_FILE", password),
        ],
        &[],
    );
    assert_refused(&output, &["smtp.ca_file: cannot read"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("smtp.host"), "{stderr}");
    assert!(!stderr.contains("relay-password"), "{stderr}");

    // Credentials with tls = none, even to loopback; a username without its password file;
    // an unknown TLS mode.
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            ("COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE", &identity),
            ("COMPTOIR_NOTIFICATIONS__SMTP__USERNAME", "comptoir"),
            ("COMPTOIR_NOTIFICATIONS__SMTP__PASSWORD_FILE", password),
        ],
        &[],
    );
    assert_refused(
        &output,
        &["smtp.username and smtp.password_file need smtp.tls = \"starttls\" or \"tls\""],
    );
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            ("COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE", &identity),
            ("COMPTOIR_NOTIFICATIONS__SMTP__TLS", "tls"),
            ("COMPTOIR_NOTIFICATIONS__SMTP__USERNAME", "comptoir"),
        ],
        &[],
    );
    assert_refused(
        &output,
        &["smtp.password_file must be set when smtp.username is"],
    );
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            ("COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE", &identity),
            ("COMPTOIR_NOTIFICATIONS__SMTP__TLS", "ssl"),
        ],
        &[],
    );
    assert_refused(&output, &["ssl"]);
}

#[test]
fn plaintext_identity_to_a_remote_host_and_bad_values_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, identity) = tokens(dir.path());
    let missing_ca = dir.path().join("missing-ca.pem");
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            ("COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE", &identity),
            (
                "COMPTOIR_NOTIFICATIONS__IDENTITY__URL",
                "http://identity.comptoir.svc:8080",
            ),
            (
                "COMPTOIR_NOTIFICATIONS__IDENTITY__CA_FILE",
                missing_ca.to_str().expect("utf-8"),
            ),
            ("COMPTOIR_NOTIFICATIONS__SMTP__FROM", "not a mailbox"),
            ("COMPTOIR_NOTIFICATIONS__RETRY__MAX_ATTEMPTS", "0"),
            ("COMPTOIR_NOTIFICATIONS__SENDER__BATCH_SIZE", "1000"),
            ("COMPTOIR_NOTIFICATIONS__ORDERS_NAMESPACE", "no-slash"),
        ],
        &[],
    );
    assert_refused(
        &output,
        &[
            "identity.url is plain http:// to identity.comptoir.svc",
            "identity.ca_file",
            "smtp.from must be a mailbox",
            "retry.max_attempts",
            "sender.batch_size",
            "orders_namespace",
        ],
    );
}

#[test]
fn a_short_identity_token_and_an_unknown_key_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (admin, _) = tokens(dir.path());
    let short = dir.path().join("short");
    std::fs::write(&short, "letmein").expect("write");
    let output = notifications(
        &[
            ("COMPTOIR_NOTIFICATIONS__ADMIN_TOKEN_FILE", &admin),
            (
                "COMPTOIR_NOTIFICATIONS__IDENTITY__TOKEN_FILE",
                short.to_str().expect("utf-8"),
            ),
        ],
        &[],
    );
    assert_refused(
        &output,
        &["identity.token_file: the token must be at least 16 characters"],
    );
    let output = notifications(&[("COMPTOIR_NOTIFICATIONS__SMTP__HOTS", "x")], &[]);
    assert_refused(&output, &["hots"]);
}
