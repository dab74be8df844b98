//! Sending one plain-text message over SMTP (lettre) to the relay of the settings.
//!
//! How the connection is protected is `smtp.tls`:
//! - `none`: plaintext, which the settings only allow to a loopback host (the dev platform's
//!   Mailpit, a sidecar relay) and never with credentials;
//! - `starttls`: plaintext greeting, then `STARTTLS` before anything else. It is required, not
//!   opportunistic: a relay that does not offer it is not used, there is no fallback to
//!   plaintext;
//! - `tls`: TLS from the first byte (implicit TLS, port 465 style).
//!
//! With TLS the relay's certificate must verify for `smtp.host` against `smtp.ca_file` (only
//! those CAs), or against the webpki roots (Mozilla's list, compiled in) for a public relay.
//! rustls with ring, the provider every other TLS client of the platform uses. Credentials
//! (`smtp.username`, the password read once at start-up from `smtp.password_file`) are only
//! sent over TLS, with AUTH PLAIN or LOGIN.
//!
//! An SMTP server's reply may quote the recipient's address (`550 <ada@...>: no such user`),
//! so errors keep only the reply code and a fixed description: [`MailError`] is safe to log
//! and to store. Neither lettre's error text nor the TLS library's is ever kept.
//!
//! Which failures are final:
//! - the relay refusing the message for good (5xx), an address SMTP cannot carry: `failed`
//!   at once, sending again cannot help;
//! - a 4xx reply, no relay, a timeout, a broken connection, a TLS failure (handshake, a
//!   certificate that does not verify), a relay that does not offer STARTTLS: retried;
//! - the relay refusing to authenticate us: 530 (authentication required), 534 (mechanism
//!   too weak), 535 (credentials invalid), 538 (encryption required), RFC 4954. These are
//!   5xx, but about our session, not about the message: a wrong or rotated password, a relay
//!   whose policy changed. Failing every delivery for good would lose mail that fixing the
//!   configuration delivers, so they are retried like an unreachable relay (backoff, up to
//!   `retry.max_attempts`), as [`MailError::Credentials`]: `the mail relay refused our
//!   credentials (535)` in `last_error` and in the warning logged at each attempt.

use std::time::Duration;

use comptoir_platform::secret::read_secret_file;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use uuid::Uuid;

use crate::domain::Rendered;
use crate::identity::Recipient;
use crate::settings::{SmtpSettings, SmtpTls};

/// Why a message was not accepted by the relay. Fixed words and reply codes only.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Identity's address is not one SMTP can carry. Final.
    #[error("the recipient's address is not valid for SMTP")]
    BadAddress,
    /// The message could not be built. Final.
    #[error("the message could not be built")]
    Build,
    /// The relay refused for good (5xx). Final.
    #[error("the mail relay refused the message ({code})")]
    Permanent { code: String },
    /// The relay refused for now (4xx).
    #[error("the mail relay deferred the message ({code})")]
    Transient { code: String },
    /// The relay refused to authenticate us (530, 534, 535, 538): a configuration to fix,
    /// retried (see the module's documentation).
    #[error("the mail relay refused our credentials ({code})")]
    Credentials { code: String },
    /// The relay answers but cannot be used as configured: it offers no STARTTLS, or no
    /// authentication mechanism we support. A configuration to fix, retried.
    #[error("the mail relay cannot be used ({0})")]
    Unusable(&'static str),
    /// No relay, no answer in time, the connection broke, or TLS failed.
    #[error("the mail relay is unreachable ({0})")]
    Unreachable(&'static str),
}

impl MailError {
    /// Whether sending again later may succeed.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::BadAddress | Self::Build | Self::Permanent { .. }
        )
    }
}

/// Why the mailer cannot be built. The settings' `problems` name the same, earlier; these
/// name files and keys, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("invalid SMTP settings: {}", .0.join("; "))]
    Settings(Vec<String>),
    #[error("smtp.ca_file: {0}")]
    CaFile(String),
    #[error("smtp.password_file")]
    PasswordFile(#[source] comptoir_platform::secret::SecretFileError),
    #[error("the TLS parameters of the SMTP client cannot be built")]
    Tls(#[source] lettre::transport::smtp::Error),
}

/// The SMTP client.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    tls: SmtpTls,
    /// The most a whole send may take (see [`Mailer::send`]).
    deadline: Duration,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Replies refusing to authenticate us (RFC 4954): about the session, not the message.
const AUTHENTICATION_REFUSED: [&str; 4] = ["530", "534", "535", "538"];

/// lettre's words for two client-side refusals that are configuration problems (it has no
/// kind for them); any other client error stays "connection failed".
const NO_STARTTLS: &str = "STARTTLS is not supported on this server";
const NO_AUTH_MECHANISM: &str = "No compatible authentication mechanism was found";

impl Mailer {
    /// The client of `settings`, refused when its `problems` are not empty (plaintext to a
    /// remote host, credentials without TLS...). Reads the CA and password files.
    pub fn new(settings: &SmtpSettings) -> Result<Self, MailerError> {
        let problems = settings.problems("smtp");
        if !problems.is_empty() {
            return Err(MailerError::Settings(problems));
        }
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|_| MailerError::Settings(vec!["smtp.from is not a mailbox".to_owned()]))?;
        // lettre's "dangerous" builder is the one that takes the TLS mode explicitly: plaintext
        // only for `none` (loopback, checked above), otherwise TLS is required. Without
        // lettre's `pool` feature, each message has its connection.
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .timeout(Some(Duration::from_millis(settings.timeout_ms)));
        builder = match settings.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls_parameters(settings)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_parameters(settings)?)),
        };
        if let (Some(username), Some(password_file)) = (&settings.username, &settings.password_file)
        {
            let password = read_secret_file(password_file).map_err(MailerError::PasswordFile)?;
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().clone(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            tls: settings.tls,
            deadline: Duration::from_millis(settings.timeout_ms.saturating_mul(2)),
        })
    }

    /// Sends `message` to `to`. The Message-ID is derived from the delivery id, so a message
    /// sent twice (a crash between sending and recording it) can be recognised downstream.
    ///
    /// lettre's tokio transport bounds only the TCP connection by `smtp.timeout_ms`; a relay
    /// that accepts it and then says nothing (a STARTTLS client on an implicit-TLS port waits
    /// for a greeting that never comes) would hold the send forever. So the whole send
    /// (greeting, TLS handshake, authentication, the message) gets twice `smtp.timeout_ms`,
    /// the SMTP share of the sender's budget, then fails as `timed out`.
    pub async fn send(
        &self,
        delivery: Uuid,
        to: &Recipient,
        message: &Rendered,
    ) -> Result<(), MailError> {
        let address: Address = to.email.parse().map_err(|_| MailError::BadAddress)?;
        let name = Some(to.name.trim().to_owned()).filter(|n| !n.is_empty());
        let domain = self.from.email.domain();
        let email = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(name, address))
            .subject(message.subject.clone())
            .message_id(Some(format!("<{delivery}@{domain}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.clone())
            .map_err(|_| MailError::Build)?;
        match tokio::time::timeout(self.deadline, self.transport.send(email)).await {
            Ok(sent) => sent.map(drop).map_err(|error| classify(&error)),
            Err(_) => Err(MailError::Unreachable("timed out")),
        }
    }
}

/// The TLS parameters for `smtp.host`: the roots of `smtp.ca_file` only, or the webpki roots.
fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, MailerError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(path) = &settings.ca_file {
        // `problems` (above, in `new`) checked that the bundle holds certificates; lettre's
        // rustls backend reads every certificate of it into one `Certificate`.
        let pem = std::fs::read(path)
            .map_err(|e| MailerError::CaFile(format!("cannot read {}: {e}", path.display())))?;
        let roots = Certificate::from_pem(&pem).map_err(|_| {
            MailerError::CaFile(format!("{} is not PEM certificates", path.display()))
        })?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(roots);
    }
    builder.build_rustls().map_err(MailerError::Tls)
}

/// Fixed words and reply codes for a failed send; nothing of the relay's reply text.
fn classify(error: &lettre::transport::smtp::Error) -> MailError {
    if let Some(code) = error.status() {
        let code = code.to_string();
        return if AUTHENTICATION_REFUSED.contains(&code.as_str()) {
            MailError::Credentials { code }
        } else if error.is_permanent() {
            MailError::Permanent { code }
        } else {
            MailError::Transient { code }
        };
    }
    if error.is_tls() || caused_by_tls(error) {
        MailError::Unreachable("TLS handshake failed")
    } else if error.is_timeout() {
        MailError::Unreachable("timed out")
    } else if error.is_client() && source_is(error, NO_STARTTLS) {
        MailError::Unusable("no STARTTLS offered")
    } else if error.is_client() && source_is(error, NO_AUTH_MECHANISM) {
        MailError::Unusable("no supported authentication mechanism offered")
    } else {
        MailError::Unreachable("connection failed")
    }
}

/// Whether a rustls error is in the chain of `error`: lettre reports a failed handshake (a
/// certificate that does not verify, a plaintext answer to TLS) as a connection error whose
/// source is the `io::Error` tokio-rustls wraps it in.
fn caused_by_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.is::<rustls::Error>()
            || e.downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .is_some_and(|inner| inner.is::<rustls::Error>())
    })
}

fn source_is(error: &lettre::transport::smtp::Error, words: &str) -> bool {
    std::error::Error::source(error).is_some_and(|source| source.to_string() == words)
}
