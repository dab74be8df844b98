//! Sending one plain-text message over SMTP (lettre), to the loopback relay of the settings.
//!
//! No TLS yet: the settings refuse a relay that is not on this host. A relay in production
//! (a sidecar) forwards over TLS with its own credentials.
//!
//! An SMTP server's reply may quote the recipient's address (`550 <ada@...>: no such user`),
//! so errors keep only the reply code and a fixed description: [`MailError`] is safe to log
//! and to store.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use uuid::Uuid;

use crate::domain::Rendered;
use crate::identity::Recipient;
use crate::settings::SmtpSettings;

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
    /// No relay, no answer in time, or the connection broke.
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

/// Why the mailer cannot be built (the settings' `problems` name the same, earlier).
#[derive(Debug, thiserror::Error)]
#[error("smtp.from is not a mailbox")]
pub struct MailerError;

/// The SMTP client.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> Result<Self, MailerError> {
        let from = settings.from.parse::<Mailbox>().map_err(|_| MailerError)?;
        // Plaintext by construction ("dangerous" in lettre's words): the settings only accept
        // a loopback host. Without lettre's `pool` feature, each message has its connection.
        let transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .timeout(Some(Duration::from_millis(settings.timeout_ms)))
                .build();
        Ok(Self { transport, from })
    }

    /// Sends `message` to `to`. The Message-ID is derived from the delivery id, so a message
    /// sent twice (a crash between sending and recording it) can be recognised downstream.
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
        self.transport.send(email).await.map(drop).map_err(|error| {
            let code = || {
                error
                    .status()
                    .map_or_else(|| "no code".to_owned(), |c| c.to_string())
            };
            if error.is_permanent() {
                MailError::Permanent { code: code() }
            } else if error.is_transient() {
                MailError::Transient { code: code() }
            } else if error.is_timeout() {
                MailError::Unreachable("timed out")
            } else {
                MailError::Unreachable("connection failed")
            }
        })
    }
}
