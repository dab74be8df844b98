//! The mailer against a real SMTP server (Mailpit) the way a remote relay runs: STARTTLS
//! required or implicit TLS, with a certificate from a fresh test CA, and authentication.
//! No platform: `Mailer::send` is called directly.
//!
//! What must hold: mail goes through with the right CA and credentials, in both TLS modes;
//! a certificate from another CA, a relay without STARTTLS, a plaintext relay behind implicit
//! TLS, a wrong password are all refused with a retryable error, and nothing arrives (no
//! fallback to plaintext, no sending without authentication).

use std::path::{Path, PathBuf};

use comptoir_notifications::domain::Rendered;
use comptoir_notifications::identity::Recipient;
use comptoir_notifications::mailer::{MailError, Mailer, MailerError};
use comptoir_notifications::settings::{SmtpSettings, SmtpTls};
use comptoir_testkit::mailpit::Mailpit;
use comptoir_testkit::tls::TestCa;
use uuid::Uuid;
use zeroize::Zeroizing;

const USER: &str = "comptoir-notifications";
const PASSWORD: &str = "relay-password-c0rrect";

/// A relay's CA and its certificate for `localhost` and `127.0.0.1`, the CA written in `dir`.
fn relay_ca(dir: &Path) -> (TestCa, comptoir_testkit::tls::Issued, PathBuf) {
    let ca = TestCa::new();
    let issued = ca.issue(&["localhost", "127.0.0.1"]);
    let ca_file = dir.join("relay-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write CA");
    (ca, issued, ca_file)
}

fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join(format!("smtp-password-{}", Uuid::new_v4()));
    comptoir_testkit::write_secret(&path, format!("{password}\n").as_bytes());
    path
}

fn settings(mailpit: &Mailpit, tls: SmtpTls) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".to_owned(),
        port: mailpit.smtp_port,
        tls,
        timeout_ms: 5_000,
        ..SmtpSettings::default()
    }
}

fn recipient() -> Recipient {
    Recipient {
        email: Zeroizing::new("ada@example.org".to_owned()),
        name: Zeroizing::new("Ada Lovelace".to_owned()),
    }
}

fn message() -> Rendered {
    Rendered {
        subject: "Your Comptoir order 0000abcd is confirmed".to_owned(),
        body: "Hello Ada,\n\nit is confirmed.\n".to_owned(),
    }
}

async fn send(settings: &SmtpSettings) -> Result<(), MailError> {
    let mailer = Mailer::new(settings).expect("mailer");
    mailer.send(Uuid::now_v7(), &recipient(), &message()).await
}

/// Nothing arrived. Called once `send` has returned its error: the SMTP session is over, and
/// Mailpit stores a message only when it accepted it, so there is nothing in flight to wait for.
async fn assert_nothing_arrived(mailpit: &Mailpit) {
    assert!(mailpit.messages().await.is_empty());
}

/// A relay in `tls` mode with its certificate from a fresh CA and our account, and settings
/// trusting that CA with the right password (the files in `dir`).
async fn relay_with_account(dir: &Path, tls: SmtpTls) -> (Mailpit, SmtpSettings) {
    let (_ca, issued, ca_file) = relay_ca(dir);
    let relay = match tls {
        SmtpTls::Starttls => Mailpit::builder().starttls(&issued),
        _ => Mailpit::builder().implicit_tls(&issued),
    };
    let mailpit = relay.auth(USER, PASSWORD).start().await;
    let mut settings = settings(&mailpit, tls);
    settings.ca_file = Some(ca_file);
    settings.username = Some(USER.to_owned());
    settings.password_file = Some(password_file(dir, PASSWORD));
    (mailpit, settings)
}

#[tokio::test]
async fn starttls_with_credentials_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mailpit, mut settings) = relay_with_account(dir.path(), SmtpTls::Starttls).await;

    send(&settings).await.expect("sent over STARTTLS");
    let mails = mailpit.wait_for_messages(1).await;
    assert_eq!(mails[0].to, ["ada@example.org"]);
    assert_eq!(
        mails[0].subject,
        "Your Comptoir order 0000abcd is confirmed"
    );

    // An IP address is verified too (the certificate names 127.0.0.1).
    settings.host = "127.0.0.1".to_owned();
    send(&settings).await.expect("sent to 127.0.0.1");
    mailpit.wait_for_messages(2).await;
}

#[tokio::test]
async fn implicit_tls_with_credentials_verified_against_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mailpit, mut settings) = relay_with_account(dir.path(), SmtpTls::Tls).await;

    send(&settings).await.expect("sent over implicit TLS");
    let mails = mailpit.wait_for_messages(1).await;
    assert_eq!(mails[0].to, ["ada@example.org"]);

    // STARTTLS against an implicit-TLS port: the greeting never comes in clear, and the
    // send does not wait for it forever.
    settings.tls = SmtpTls::Starttls;
    settings.timeout_ms = 500;
    let error = send(&settings).await.expect_err("not plaintext");
    assert!(
        matches!(error, MailError::Unreachable("timed out")),
        "{error:?}"
    );
    assert_eq!(mailpit.messages().await.len(), 1);
}

#[tokio::test]
async fn a_relay_certified_by_another_ca_is_not_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_ca, issued, _) = relay_ca(dir.path());
    // What the client trusts: a CA that did not sign the relay's certificate.
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, TestCa::new().pem()).expect("write");
    for tls in [SmtpTls::Starttls, SmtpTls::Tls] {
        let builder = Mailpit::builder().auth(USER, PASSWORD);
        let mailpit = match tls {
            SmtpTls::Starttls => builder.starttls(&issued),
            _ => builder.implicit_tls(&issued),
        }
        .start()
        .await;
        let mut settings = settings(&mailpit, tls);
        settings.ca_file = Some(other_ca.clone());
        settings.username = Some(USER.to_owned());
        settings.password_file = Some(password_file(dir.path(), PASSWORD));

        let error = send(&settings)
            .await
            .expect_err("the certificate must not verify");
        assert!(
            matches!(error, MailError::Unreachable("TLS handshake failed")),
            "{tls:?}: {error:?}"
        );
        assert!(!error.is_final());
        assert_eq!(
            error.to_string(),
            "the mail relay is unreachable (TLS handshake failed)"
        );

        // Without a CA file the webpki roots are used: a private CA is not among them.
        settings.ca_file = None;
        let error = send(&settings).await.expect_err("not a public CA");
        assert!(
            matches!(error, MailError::Unreachable("TLS handshake failed")),
            "{tls:?}: {error:?}"
        );
        assert_nothing_arrived(&mailpit).await;
    }
}

#[tokio::test]
async fn no_plaintext_fallback_when_the_relay_offers_no_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_ca, _, ca_file) = relay_ca(dir.path());
    // A plaintext relay (the dev platform's Mailpit), reached as if it were a TLS one.
    let mailpit = Mailpit::start().await;
    let mut settings = settings(&mailpit, SmtpTls::Starttls);
    settings.ca_file = Some(ca_file);

    let error = send(&settings).await.expect_err("no STARTTLS offered");
    assert!(
        matches!(error, MailError::Unusable("no STARTTLS offered")),
        "{error:?}"
    );
    assert!(!error.is_final());

    settings.tls = SmtpTls::Tls;
    let error = send(&settings)
        .await
        .expect_err("a plaintext greeting is not TLS");
    assert!(
        matches!(error, MailError::Unreachable("TLS handshake failed")),
        "{error:?}"
    );
    assert_nothing_arrived(&mailpit).await;
}

#[tokio::test]
async fn refused_credentials_are_a_retryable_error_and_nothing_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_ca, issued, ca_file) = relay_ca(dir.path());
    let mailpit = Mailpit::builder()
        .starttls(&issued)
        .auth(USER, PASSWORD)
        .start()
        .await;
    let mut settings = settings(&mailpit, SmtpTls::Starttls);
    settings.ca_file = Some(ca_file);
    settings.username = Some(USER.to_owned());
    let wrong = "relay-password-wr0ng";
    settings.password_file = Some(password_file(dir.path(), wrong));

    let error = send(&settings).await.expect_err("wrong password");
    assert!(
        matches!(&error, MailError::Credentials { code } if code == "535"),
        "{error:?}"
    );
    assert!(!error.is_final());
    let text = format!("{error} {error:?}");
    assert_eq!(
        error.to_string(),
        "the mail relay refused our credentials (535)"
    );
    assert!(!text.contains(wrong) && !text.contains(USER), "{text}");

    // No credentials at all, to a relay that requires them: refused the same way (530).
    settings.username = None;
    settings.password_file = None;
    let error = send(&settings).await.expect_err("no credentials");
    assert!(
        matches!(&error, MailError::Credentials { code } if code == "530"),
        "{error:?}"
    );
    assert!(!error.is_final());
    assert_nothing_arrived(&mailpit).await;

    // The mailer's Debug shows neither the user nor the password.
    settings.username = Some(USER.to_owned());
    settings.password_file = Some(password_file(dir.path(), wrong));
    let debug = format!("{:?}", Mailer::new(&settings).expect("mailer"));
    assert!(!debug.contains(wrong) && !debug.contains(USER), "{debug}");
}

#[tokio::test]
async fn credentials_to_a_relay_that_offers_no_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_ca, issued, ca_file) = relay_ca(dir.path());
    let mailpit = Mailpit::builder().starttls(&issued).start().await;
    let mut settings = settings(&mailpit, SmtpTls::Starttls);
    settings.ca_file = Some(ca_file);
    settings.username = Some(USER.to_owned());
    settings.password_file = Some(password_file(dir.path(), PASSWORD));

    let error = send(&settings).await.expect_err("no AUTH offered");
    assert!(
        matches!(
            error,
            MailError::Unusable("no supported authentication mechanism offered")
        ),
        "{error:?}"
    );
    assert!(!error.is_final());
    assert_nothing_arrived(&mailpit).await;
}

#[test]
fn the_mailer_refuses_what_the_settings_refuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let remote_plaintext = SmtpSettings {
        host: "smtp.example.com".to_owned(),
        ..SmtpSettings::default()
    };
    let Err(MailerError::Settings(problems)) = Mailer::new(&remote_plaintext) else {
        panic!("plaintext to a remote relay must be refused");
    };
    assert!(problems[0].starts_with("smtp.host"), "{problems:?}");

    let credentials_in_clear = SmtpSettings {
        username: Some(USER.to_owned()),
        password_file: Some(password_file(dir.path(), PASSWORD)),
        ..SmtpSettings::default()
    };
    let Err(MailerError::Settings(problems)) = Mailer::new(&credentials_in_clear) else {
        panic!("credentials without TLS must be refused");
    };
    assert!(problems[0].contains("never sent in clear"), "{problems:?}");
}
