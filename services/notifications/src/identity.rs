//! Asking identity for a recipient, at send time, through its audited internal route
//! (`POST /internal/v1/customers/{id}/pii`, services/identity/src/internal.rs).
//!
//! The service never stores an address: it asks each time it sends, for the declared purpose
//! [`PURPOSE`] and only the fields it needs, and identity writes every such read to its access
//! log (which the customer sees in their GDPR export). A customer identity no longer knows
//! (erased, or never registered) gets nothing: [`IdentityError::UnknownCustomer`].

use std::time::Duration;

use comptoir_platform::secret::Secret;
use serde::Deserialize;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::settings::{IdentitySettings, read_ca};

/// The purpose declared to identity: a transactional message about an order the customer
/// placed (GDPR Art. 6(1)(b), no consent needed). Identity must allow it `email` and `name`.
pub const PURPOSE: &str = "transactional";
/// The fields asked for: no more than a message needs (data minimisation).
pub const FIELDS: [&str; 2] = ["email", "name"];

/// Who a message goes to. Held only while one message is written and sent; wiped from memory
/// when dropped, and never printed (its `Debug` is redacted).
pub struct Recipient {
    pub email: Zeroizing<String>,
    pub name: Zeroizing<String>,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipient([redacted])")
    }
}

/// Why no recipient came back. The messages are fixed words and status codes: safe to log and
/// to store as a delivery's `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// 404: identity does not know the customer (erased, or never registered). Final.
    #[error("identity does not know the customer")]
    UnknownCustomer,
    /// The customer has no email address. Final.
    #[error("the customer has no email address")]
    NoEmail,
    /// Identity refused the request (401, 403, 422): this service's token or purpose is not
    /// configured there. Retried, since fixing the configuration fixes it.
    #[error("identity refused the request ({0}); check this client's token and purpose there")]
    Refused(u16),
    /// Identity failed (5xx).
    #[error("identity answered {0}")]
    Failed(u16),
    /// No answer in time, or no connection.
    #[error("identity is unreachable ({0})")]
    Unreachable(&'static str),
    /// An answer that is not the route's JSON.
    #[error("identity's answer could not be read")]
    BadAnswer,
}

impl IdentityError {
    /// Whether asking again later may succeed.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::UnknownCustomer | Self::NoEmail)
    }
}

/// Why the client cannot be built (the settings' `problems` name the same, earlier).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the identity client: {0}")]
pub struct IdentityClientError(String);

#[derive(Deserialize)]
struct Answer {
    email: Option<String>,
    name: Option<String>,
}

/// The client of identity's PII route.
#[derive(Debug, Clone)]
pub struct IdentityClient {
    http: reqwest::Client,
    base: url::Url,
    token: std::sync::Arc<Secret<String>>,
}

impl IdentityClient {
    pub fn new(
        settings: &IdentitySettings,
        token: Secret<String>,
    ) -> Result<Self, IdentityClientError> {
        let base =
            url::Url::parse(&settings.url).map_err(|e| IdentityClientError(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            // The route is never redirected; a redirect would carry the token elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca_file) = &settings.ca_file {
            for certificate in read_ca(ca_file).map_err(IdentityClientError)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| IdentityClientError(e.to_string()))?;
        Ok(Self {
            http,
            base,
            token: std::sync::Arc::new(token),
        })
    }

    /// The customer's address and name, for [`PURPOSE`].
    pub async fn recipient(&self, customer: Uuid) -> Result<Recipient, IdentityError> {
        let url = self
            .base
            .join(&format!("internal/v1/customers/{customer}/pii"))
            .map_err(|_| IdentityError::BadAnswer)?;
        // The sending span's trace crosses to identity (W3C traceparent).
        let mut request = self.http.post(url).bearer_auth(self.token.expose());
        for (name, value) in comptoir_events::trace::current_context_headers() {
            request = request.header(name, value);
        }
        let response = request
            .json(&serde_json::json!({ "purpose": PURPOSE, "fields": FIELDS }))
            .send()
            .await
            .map_err(|e| {
                IdentityError::Unreachable(if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                })
            })?;
        let status = response.status();
        match status.as_u16() {
            200 => {}
            404 => return Err(IdentityError::UnknownCustomer),
            code if status.is_server_error() => return Err(IdentityError::Failed(code)),
            code => return Err(IdentityError::Refused(code)),
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|_| IdentityError::BadAnswer)?;
        let email = answer
            .email
            .filter(|e| !e.trim().is_empty())
            .map(Zeroizing::new)
            .ok_or(IdentityError::NoEmail)?;
        Ok(Recipient {
            email,
            name: Zeroizing::new(answer.name.unwrap_or_default()),
        })
    }
}
