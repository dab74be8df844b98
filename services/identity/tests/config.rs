//! Missing or malformed keys stop the binary before it binds anything, with a message that
//! names the file and never shows its content.

mod support;

use std::process::{Command, Output};

fn identity(env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_comptoir-identity"));
    // Only this test's variables: a developer's environment must not change the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("COMPTOIR_IDENTITY__") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command.output().expect("run comptoir-identity")
}

fn assert_refused(output: &Output, needles: &[&str]) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    assert!(output.stdout.is_empty(), "nothing on stdout: {output:?}");
    stderr
}

#[test]
fn every_missing_key_is_reported_at_once() {
    let output = identity(&[]);
    assert_refused(
        &output,
        &[
            "keys.active_kek must be set",
            "keys.blind_index_key_file must be set",
            "tokens.signing_key_file must be set",
        ],
    );
}

#[test]
fn malformed_key_files_are_named_not_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = support::KeyFiles::generate(dir.path());
    let secret_looking = "s3cr3t-material-not-base64!";
    let bad_kek = dir.path().join("bad-kek");
    std::fs::write(&bad_kek, secret_looking).expect("write");
    let bad_pem = dir.path().join("bad.pem");
    std::fs::write(&bad_pem, secret_looking).expect("write");
    let short_token = dir.path().join("short-token");
    std::fs::write(&short_token, "short").expect("write");
    let output = identity(&[
        (
            "COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__ID",
            "kek-a".to_owned(),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__FILE",
            bad_kek.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__BLIND_INDEX_KEY_FILE",
            dir.path().join("missing").display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__TOKENS__SIGNING_KEY_FILE",
            bad_pem.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__INTERNAL_CLIENTS__NOTIFICATIONS__TOKEN_FILE",
            short_token.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__INTERNAL_CLIENTS__NOTIFICATIONS__PURPOSES",
            "{\"order-confirmation\" = [\"email\"]}".to_owned(),
        ),
        ("COMPTOIR_IDENTITY__ARGON2__MEMORY_KIB", "1".to_owned()),
    ]);
    let stderr = assert_refused(
        &output,
        &[
            "keys.active_kek",
            "bad-kek",
            "keys.blind_index_key_file",
            "tokens.signing_key_file",
            "bad.pem",
            "internal_clients.notifications.token_file",
            "argon2",
        ],
    );
    assert!(!stderr.contains(secret_looking), "{stderr}");
    drop(keys);
}

#[test]
fn a_retired_kek_with_the_active_id_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = support::KeyFiles::generate(dir.path());
    let output = identity(&[
        (
            "COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__ID",
            "kek-a".to_owned(),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__FILE",
            keys.kek_a.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__RETIRED_KEKS",
            format!("[{{id=\"kek-a\",file=\"{}\"}}]", keys.kek_b.display()),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__BLIND_INDEX_KEY_FILE",
            keys.blind_index.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__TOKENS__SIGNING_KEY_FILE",
            keys.signing.display().to_string(),
        ),
    ]);
    assert_refused(&output, &["keys.retired_keks", "kek-a"]);
}

#[test]
fn a_retired_signing_key_given_as_a_private_key_is_refused() {
    // A retired key only verifies old tokens: its private half must not stay deployed.
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = support::KeyFiles::generate(dir.path());
    let old_private = dir.path().join("old-signing.pem");
    support::write_secret(
        &old_private,
        comptoir_auth::Signer::generate_pem().as_bytes(),
    );
    let output = identity(&[
        (
            "COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__ID",
            "kek-a".to_owned(),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__ACTIVE_KEK__FILE",
            keys.kek_a.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__KEYS__BLIND_INDEX_KEY_FILE",
            keys.blind_index.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__TOKENS__SIGNING_KEY_FILE",
            keys.signing.display().to_string(),
        ),
        (
            "COMPTOIR_IDENTITY__TOKENS__RETIRED_SIGNING_KEYS",
            format!(
                "[{{kid=\"old-1\",public_key_file=\"{}\"}}]",
                old_private.display()
            ),
        ),
    ]);
    let stderr = assert_refused(
        &output,
        &["tokens.retired_signing_keys (old-1)", "holds a private key"],
    );
    assert!(!stderr.contains("BEGIN"), "{stderr}");
}
