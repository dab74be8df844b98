//! Invalid configuration stops the binary before it binds anything, with a readable message.

use std::process::{Command, Output};

fn analytics(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-analytics"));
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_ANALYTICS__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("run comptoir-analytics")
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
fn every_bad_setting_is_reported_at_once() {
    let output = analytics(&[
        ("COMPTOIR_ANALYTICS__MAX_BATCH_CLICKS", "0"),
        ("COMPTOIR_ANALYTICS__IDENTITY_NAMESPACE", "identity"),
        ("COMPTOIR_ANALYTICS__RETENTION_DAYS", "0"),
    ]);
    assert_refused(
        &output,
        &[
            "admin_token_file must be set",
            "pseudonym_keys_dir must be set",
            "max_batch_clicks must be between 1 and 10000, got 0",
            "identity_namespace must look like tenant/namespace",
            "retention_days must be between 1",
        ],
    );
}

#[test]
fn a_badly_named_or_malformed_key_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("dir");
    std::fs::write(keys.join("december.key"), "AAAA").expect("write");
    let output = analytics(&[(
        "COMPTOIR_ANALYTICS__PSEUDONYM_KEYS_DIR",
        keys.to_str().expect("utf-8"),
    )]);
    assert_refused(&output, &["december.key is not named <YYYY-MM>.key"]);

    std::fs::remove_file(keys.join("december.key")).expect("rm");
    std::fs::write(keys.join("2026-12.key"), "not base64!").expect("write");
    let output = analytics(&[(
        "COMPTOIR_ANALYTICS__PSEUDONYM_KEYS_DIR",
        keys.to_str().expect("utf-8"),
    )]);
    assert_refused(&output, &["pseudonym_keys_dir: ", "2026-12.key"]);
}
