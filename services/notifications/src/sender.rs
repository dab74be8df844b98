//! The sender: a background task that sends due deliveries.
//!
//! Each round claims up to `sender.batch_size` due pending deliveries (`FOR UPDATE SKIP
//! LOCKED`, with a lease: see [`repo::claim_due`]) and sends them concurrently. For each one it
//! asks identity for the recipient, writes the message, hands it to the SMTP relay, and drops
//! the recipient. The outcome is recorded: `sent`; `skipped` when identity no longer knows the
//! customer; a retry after an exponential backoff when identity or the relay is unavailable;
//! `failed` after `retry.max_attempts` attempts or a permanent refusal.
//!
//! Delivery is at least once: the relay accepting a message and the row being updated are two
//! systems, so a crash between the two sends the message again when the lease expires (with
//! the same Message-ID). Logs name the delivery, the order and the customer by id, never by
//! address or name.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::domain::render;
use crate::identity::{IdentityClient, IdentityError};
use crate::mailer::{MailError, Mailer};
use crate::repo::{self, Attempt, Claimed, RepoError};
use crate::settings::Settings;

/// Why an attempt did not send. Its `Display` is safe to store and log.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("the attempt took longer than {0} ms")]
    TimedOut(u128),
}

/// Sends the due deliveries until stopped.
#[derive(Debug, Clone)]
pub struct Sender {
    pool: Pool,
    identity: IdentityClient,
    mailer: Mailer,
    retry: crate::settings::RetrySettings,
    batch_size: i64,
    poll_interval: Duration,
    /// The most one attempt may take: identity's timeout plus a few SMTP commands' worth.
    budget: Duration,
    /// How long a claimed delivery is left to this sender: longer than any attempt.
    lease: Duration,
}

impl Sender {
    pub fn new(pool: Pool, identity: IdentityClient, mailer: Mailer, settings: &Settings) -> Self {
        let budget = Duration::from_millis(
            settings
                .identity
                .timeout_ms
                .saturating_add(settings.smtp.timeout_ms.saturating_mul(2)),
        );
        Self {
            pool,
            identity,
            mailer,
            retry: settings.retry.clone(),
            batch_size: i64::from(settings.sender.batch_size),
            poll_interval: Duration::from_millis(settings.sender.poll_interval_ms),
            budget,
            lease: budget.saturating_mul(2) + Duration::from_secs(10),
        }
    }

    /// Rounds until `stop` is cancelled; a round in progress is finished first (each attempt
    /// is bounded by the budget), so nothing is left half-recorded.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!("Sender started");
        loop {
            let full = match self.round().await {
                Ok(count) => count as i64 >= self.batch_size,
                Err(error) => {
                    tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "Cannot claim deliveries; will retry");
                    false
                }
            };
            if stop.is_cancelled() {
                break;
            }
            // A full batch suggests more are due: go again at once.
            if !full {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        }
        tracing::info!("Sender stopped");
    }

    /// One round: claims due deliveries and attempts each. Returns how many were claimed.
    pub async fn round(&self) -> Result<usize, RepoError> {
        let claimed = {
            let client = self.pool.get().await?;
            repo::claim_due(&client, self.batch_size, self.lease).await?
        };
        let count = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|d| self.deliver(d))).await;
        Ok(count)
    }

    async fn deliver(&self, delivery: Claimed) {
        let span = tracing::info_span!(
            "deliver",
            delivery_id = %delivery.id,
            order_id = %delivery.facts.order_id,
            customer_id = %delivery.customer_id,
            kind = delivery.kind.as_str(),
        );
        // The order event's trace goes on: identity's answer and the mail belong to it.
        let headers: http::HeaderMap = delivery
            .trace_context
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    http::HeaderName::from_bytes(name.as_bytes()).ok()?,
                    http::HeaderValue::from_str(value).ok()?,
                ))
            })
            .collect();
        comptoir_platform::telemetry::attach_remote_parent(&span, &headers);
        tracing::Instrument::instrument(self.deliver_in_span(delivery), span).await;
    }

    async fn deliver_in_span(&self, delivery: Claimed) {
        let outcome = tokio::time::timeout(self.budget, self.attempt(&delivery))
            .await
            .unwrap_or(Err(AttemptError::TimedOut(self.budget.as_millis())));
        let kind = delivery.kind.as_str();
        // This attempt's number, from 1.
        let attempt_no = u32::try_from(delivery.attempts)
            .unwrap_or(0)
            .saturating_add(1);
        let attempt = match outcome {
            Ok(()) => {
                metrics::counter!("notifications_sent_total", "kind" => kind).increment(1);
                tracing::info!(attempt = attempt_no, "Notification sent");
                Attempt::Sent
            }
            Err(AttemptError::Identity(IdentityError::UnknownCustomer)) => {
                metrics::counter!("notifications_skipped_total", "kind" => kind).increment(1);
                tracing::info!("Customer unknown to identity (erased?): nothing sent");
                Attempt::Skipped("customer unknown to identity")
            }
            Err(AttemptError::Identity(IdentityError::NoEmail)) => {
                metrics::counter!("notifications_skipped_total", "kind" => kind).increment(1);
                tracing::info!("Customer has no email address: nothing sent");
                Attempt::Skipped("customer has no email address")
            }
            Err(error) => {
                let is_final = match &error {
                    AttemptError::Identity(e) => e.is_final(),
                    AttemptError::Mail(e) => e.is_final(),
                    AttemptError::TimedOut(_) => false,
                };
                if is_final || attempt_no >= self.retry.max_attempts {
                    metrics::counter!("notifications_failed_total", "kind" => kind).increment(1);
                    tracing::error!(attempt = attempt_no, error = %error, "Notification failed; giving up");
                    Attempt::Failed {
                        error: error.to_string(),
                        retry_in: None,
                    }
                } else {
                    let wait = self.retry.backoff(attempt_no);
                    metrics::counter!("notifications_retries_total").increment(1);
                    tracing::warn!(attempt = attempt_no, error = %error, retry_in_ms = wait.as_millis() as u64, "Notification not sent; will retry");
                    Attempt::Failed {
                        error: error.to_string(),
                        retry_in: Some(wait),
                    }
                }
            }
        };
        let recorded = match self.pool.get().await {
            Ok(client) => repo::record_attempt(&client, delivery.id, &attempt).await,
            Err(error) => Err(error.into()),
        };
        if let Err(error) = recorded {
            // The lease expires and the delivery is attempted again: a sent message may be
            // sent twice, never lost.
            tracing::error!(error = %comptoir_platform::telemetry::error_chain(&error), "Cannot record the attempt; the delivery will be attempted again");
        }
    }

    /// Asks identity for the recipient, writes and sends the message. The recipient lives
    /// only in this function: dropped (and wiped) when it returns.
    async fn attempt(&self, delivery: &Claimed) -> Result<(), AttemptError> {
        let recipient = self.identity.recipient(delivery.customer_id).await?;
        let message = render(delivery.kind, &delivery.facts, &recipient.name);
        self.mailer.send(delivery.id, &recipient, &message).await?;
        Ok(())
    }
}
