//! Payments' part in the checkout saga: orders' `PaymentCommand`s in, `PaymentOutcome`s out.
//!
//! Each command is handled inside the consumer's transaction (which also records the event in
//! the inbox): lock the order, read its payment, call the provider if the state says so,
//! write the new state, an operation line and the outcome event (outbox) — all committed
//! together, or not at all. The provider call happens inside that transaction; if the
//! transaction then rolls back, the command is handled again later and the provider called
//! again with the same idempotency key, which returns its first answer (no double charge).
//!
//! What each command does in each state is [`crate::domain::answer_from_state`] plus the
//! provider calls below:
//!
//! - **authorise** (no payment yet): authorised → `authorised`; declined → `declined` with
//!   the provider's reason; no answer within `provider_timeout_ms` → the outcome at the
//!   provider is unknown, so the authorisation is voided (best effort, key `<order>:void`) and
//!   the answer is `declined`/`provider-timeout`; provider unavailable → the handler fails and
//!   the consumer retries with backoff (same key, so safe).
//! - **capture** (authorised): done → `captured`; declined → void, `capture-failed` with the
//!   reason; timeout or unavailable → retry (the money may have moved: never give up on a
//!   capture silently).
//! - **void** (authorised): done → `voided`; declined (the provider holds nothing) →
//!   `voided`; timeout or unavailable → retry. With no payment yet: a tombstone (status
//!   `voided`, reason `voided-before-authorise`) so a late authorise is declined.
//! - **refund** (captured): done → `refunded`; declined → `refund-failed` with the reason;
//!   timeout or unavailable → retry.
//!
//! A malformed command (amount not positive, currency not three upper-case letters, authorise
//! without a token) or a capture/refund whose amount differs from the authorised one is
//! refused: the handler fails every attempt and the consumer moves it to the dead-letter topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::orders::{PaymentAction, PaymentCommand};
use comptoir_events::contracts::payments::{PaymentOutcome, PaymentResult};
use comptoir_events::outbox::{self, OutboxError};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::EVENT_SOURCE;
use crate::domain::{
    self, Command, InvalidCommand, Money, Payment, PaymentStatus, Reply, action_name,
};
use crate::provider::{PaymentProvider, ProviderError, VoidTarget, idempotency_key};
use crate::repo::{self, RepoError};

/// Why a command was not applied. Every variant makes the consumer retry; the invalid ones
/// fail every time and end in the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Invalid(#[from] InvalidCommand),
    #[error(
        "the {action} of order {order} is for {command_amount} {command_currency} but the \
         payment is for {amount} {currency}"
    )]
    AmountMismatch {
        action: &'static str,
        order: Uuid,
        command_amount: i64,
        command_currency: String,
        amount: i64,
        currency: String,
    },
    #[error("the provider could not {action} now; will retry")]
    Provider {
        action: &'static str,
        #[source]
        source: ProviderError,
    },
    #[error("payments storage failed")]
    Repo(#[from] RepoError),
    #[error("cannot write the outcome to the outbox")]
    Outbox(#[from] OutboxError),
}

/// Handles orders' payment commands (subscription `payments-commands`).
pub struct PaymentCommands {
    provider: Arc<dyn PaymentProvider>,
    timeout: Duration,
    /// Full name of the `payment-outcomes` topic.
    outcomes_topic: String,
}

impl std::fmt::Debug for PaymentCommands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentCommands")
            .field("timeout", &self.timeout)
            .field("outcomes_topic", &self.outcomes_topic)
            .finish_non_exhaustive()
    }
}

impl Handler<PaymentCommand> for PaymentCommands {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<PaymentCommand>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.apply(tx, &event.data).await.map_err(Into::into) })
    }
}

impl PaymentCommands {
    pub fn new(
        provider: Arc<dyn PaymentProvider>,
        timeout: Duration,
        outcomes_topic: String,
    ) -> Self {
        Self {
            provider,
            timeout,
            outcomes_topic,
        }
    }

    /// Applies one command in `tx`: state, operation lines and outcome event.
    pub async fn apply(
        &self,
        tx: &Transaction<'_>,
        command: &PaymentCommand,
    ) -> Result<(), CommandError> {
        let command = Command::parse(command)?;
        let order = command.order_id;
        repo::lock_order(tx, order).await?;
        let current = repo::find(tx, order).await?;
        if let Some(payment) = &current {
            check_amount(&command, payment)?;
            if let Some(reply) = domain::answer_from_state(command.action, payment) {
                tracing::info!(order_id = %order, action = action_name(command.action), status = payment.status.as_str(), "Answered from the payment's state");
                return self
                    .publish(
                        tx,
                        order,
                        payment_money(payment),
                        payment.provider_reference.clone(),
                        reply,
                    )
                    .await;
            }
        }
        match (command.action, current) {
            (PaymentAction::Authorise, None) => self.authorise(tx, &command).await,
            (PaymentAction::Capture, None) => {
                repo::record_operation(
                    tx,
                    order,
                    "capture",
                    "failed",
                    Some(domain::NOT_AUTHORISED),
                )
                .await?;
                let reply = Reply::because(PaymentResult::CaptureFailed, domain::NOT_AUTHORISED);
                self.publish(tx, order, command.money, None, reply).await
            }
            (PaymentAction::Refund, None) => {
                repo::record_operation(tx, order, "refund", "failed", Some(domain::NOT_CAPTURED))
                    .await?;
                let reply = Reply::because(PaymentResult::RefundFailed, domain::NOT_CAPTURED);
                self.publish(tx, order, command.money, None, reply).await
            }
            (PaymentAction::Void, None) => {
                // The void overtook its authorise: leave a tombstone so the authorise, when it
                // comes, is declined instead of holding money for a cancelled order.
                let reason = Some(domain::VOIDED_BEFORE_AUTHORISE);
                repo::insert(
                    tx,
                    order,
                    PaymentStatus::Voided,
                    &command.money,
                    None,
                    reason,
                )
                .await?;
                repo::record_operation(tx, order, "void", "voided", reason).await?;
                self.publish(
                    tx,
                    order,
                    command.money,
                    None,
                    Reply::new(PaymentResult::Voided),
                )
                .await
            }
            (PaymentAction::Capture, Some(payment)) => self.capture(tx, &payment).await,
            (PaymentAction::Void, Some(payment)) => self.void(tx, &payment).await,
            (PaymentAction::Refund, Some(payment)) => self.refund(tx, &payment).await,
            // answer_from_state answers every other state.
            (PaymentAction::Authorise, Some(payment)) => {
                let reply = Reply::new(PaymentResult::Authorised);
                self.publish(
                    tx,
                    order,
                    payment_money(&payment),
                    payment.provider_reference,
                    reply,
                )
                .await
            }
        }
    }

    async fn authorise(&self, tx: &Transaction<'_>, command: &Command) -> Result<(), CommandError> {
        let order = command.order_id;
        let key = idempotency_key(order, "authorise");
        let token = command.token.as_ref().map_or("", |t| t.expose());
        let money = &command.money;
        let called = self
            .call(
                "authorise",
                self.provider
                    .authorise(&key, money.amount_minor, &money.currency, token),
            )
            .await;
        match called {
            Ok(authorisation) => {
                let reference = Some(authorisation.reference.as_str());
                repo::insert(tx, order, PaymentStatus::Authorised, money, reference, None).await?;
                repo::record_operation(tx, order, "authorise", "authorised", None).await?;
                let reply = Reply::new(PaymentResult::Authorised);
                self.publish(
                    tx,
                    order,
                    money.clone(),
                    Some(authorisation.reference),
                    reply,
                )
                .await
            }
            Err(ProviderError::Declined(reason)) => {
                repo::insert(
                    tx,
                    order,
                    PaymentStatus::Declined,
                    money,
                    None,
                    Some(&reason),
                )
                .await?;
                repo::record_operation(tx, order, "authorise", "declined", Some(&reason)).await?;
                let reply = Reply::because(PaymentResult::Declined, reason);
                self.publish(tx, order, money.clone(), None, reply).await
            }
            Err(ProviderError::Timeout) => {
                // Did the provider hold the money? Nobody knows: cancel whatever it did for
                // this request. Best effort: if the void fails too, the authorisation expires
                // at the provider, and the operation line says so for reconciliation.
                tracing::warn!(order_id = %order, "The provider did not answer the authorisation in time; voiding it");
                let reason = Some(domain::PROVIDER_TIMEOUT);
                repo::insert(tx, order, PaymentStatus::Declined, money, None, reason).await?;
                repo::record_operation(tx, order, "authorise", "timeout", None).await?;
                let void_key = idempotency_key(order, "void");
                let voided = self
                    .call(
                        "void",
                        self.provider.void(&void_key, VoidTarget::RequestKey(&key)),
                    )
                    .await;
                self.record_void(tx, order, voided).await?;
                let reply = Reply::because(PaymentResult::Declined, domain::PROVIDER_TIMEOUT);
                self.publish(tx, order, money.clone(), None, reply).await
            }
            Err(error @ ProviderError::Unavailable(_)) => Err(CommandError::Provider {
                action: "authorise",
                source: error,
            }),
        }
    }

    async fn capture(&self, tx: &Transaction<'_>, payment: &Payment) -> Result<(), CommandError> {
        let order = payment.order_id;
        let reference = payment.provider_reference.as_deref().unwrap_or_default();
        let key = idempotency_key(order, "capture");
        let called = self
            .call(
                "capture",
                self.provider.capture(&key, reference, payment.amount_minor),
            )
            .await;
        match called {
            Ok(()) => {
                repo::set_status(tx, order, PaymentStatus::Captured, None).await?;
                repo::record_operation(tx, order, "capture", "captured", None).await?;
                self.publish_for(tx, payment, Reply::new(PaymentResult::Captured))
                    .await
            }
            Err(ProviderError::Declined(reason)) => {
                // The money cannot be taken: release the hold rather than leave it until it
                // expires.
                tracing::warn!(order_id = %order, %reason, "The provider refused the capture; voiding");
                repo::set_status(tx, order, PaymentStatus::Voided, Some(&reason)).await?;
                repo::record_operation(tx, order, "capture", "failed", Some(&reason)).await?;
                let void_key = idempotency_key(order, "void");
                let voided = self
                    .call(
                        "void",
                        self.provider
                            .void(&void_key, VoidTarget::Reference(reference)),
                    )
                    .await;
                self.record_void(tx, order, voided).await?;
                self.publish_for(
                    tx,
                    payment,
                    Reply::because(PaymentResult::CaptureFailed, reason),
                )
                .await
            }
            Err(error) => Err(CommandError::Provider {
                action: "capture",
                source: error,
            }),
        }
    }

    async fn void(&self, tx: &Transaction<'_>, payment: &Payment) -> Result<(), CommandError> {
        let order = payment.order_id;
        let reference = payment.provider_reference.as_deref().unwrap_or_default();
        let key = idempotency_key(order, "void");
        let called = self
            .call(
                "void",
                self.provider.void(&key, VoidTarget::Reference(reference)),
            )
            .await;
        match called {
            Ok(()) | Err(ProviderError::Declined(_)) => {
                // Declined: the provider holds nothing for this payment any more (expired,
                // already voided), which is what a void wants.
                self.record_void(tx, order, called).await?;
                repo::set_status(tx, order, PaymentStatus::Voided, None).await?;
                self.publish_for(tx, payment, Reply::new(PaymentResult::Voided))
                    .await
            }
            Err(error) => Err(CommandError::Provider {
                action: "void",
                source: error,
            }),
        }
    }

    async fn refund(&self, tx: &Transaction<'_>, payment: &Payment) -> Result<(), CommandError> {
        let order = payment.order_id;
        let reference = payment.provider_reference.as_deref().unwrap_or_default();
        let key = idempotency_key(order, "refund");
        let called = self
            .call(
                "refund",
                self.provider.refund(&key, reference, payment.amount_minor),
            )
            .await;
        match called {
            Ok(()) => {
                repo::set_status(tx, order, PaymentStatus::Refunded, None).await?;
                repo::record_operation(tx, order, "refund", "refunded", None).await?;
                self.publish_for(tx, payment, Reply::new(PaymentResult::Refunded))
                    .await
            }
            Err(ProviderError::Declined(reason)) => {
                repo::record_operation(tx, order, "refund", "failed", Some(&reason)).await?;
                self.publish_for(
                    tx,
                    payment,
                    Reply::because(PaymentResult::RefundFailed, reason),
                )
                .await
            }
            Err(error) => Err(CommandError::Provider {
                action: "refund",
                source: error,
            }),
        }
    }

    /// Records a void's result (a compensation that may fail without failing the command).
    async fn record_void(
        &self,
        tx: &Transaction<'_>,
        order: Uuid,
        voided: Result<(), ProviderError>,
    ) -> Result<(), CommandError> {
        match voided {
            Ok(()) => repo::record_operation(tx, order, "void", "voided", None).await?,
            Err(error) => {
                let reason = match &error {
                    ProviderError::Declined(reason) => reason.clone(),
                    ProviderError::Timeout => "timeout".to_owned(),
                    ProviderError::Unavailable(_) => "unavailable".to_owned(),
                };
                tracing::warn!(order_id = %order, %error, "The void failed at the provider");
                repo::record_operation(tx, order, "void", "failed", Some(&reason)).await?;
            }
        }
        Ok(())
    }

    /// Runs a provider call within the timeout, timing it (`payments_provider_duration_seconds`).
    async fn call<T>(
        &self,
        action: &'static str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .unwrap_or(Err(ProviderError::Timeout));
        metrics::histogram!("payments_provider_duration_seconds", "action" => action)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn publish_for(
        &self,
        tx: &Transaction<'_>,
        payment: &Payment,
        reply: Reply,
    ) -> Result<(), CommandError> {
        let reference = payment.provider_reference.clone();
        self.publish(
            tx,
            payment.order_id,
            payment_money(payment),
            reference,
            reply,
        )
        .await
    }

    /// Writes the outcome into the outbox, in the command's transaction.
    async fn publish(
        &self,
        tx: &Transaction<'_>,
        order: Uuid,
        money: Money,
        provider_reference: Option<String>,
        reply: Reply,
    ) -> Result<(), CommandError> {
        let outcome = PaymentOutcome {
            order_id: order,
            result: reply.result,
            amount_minor: money.amount_minor,
            currency: money.currency,
            provider_reference,
            reason: reply.reason,
        };
        let result = result_name(outcome.result);
        tracing::info!(order_id = %order, result, reason = outcome.reason.as_deref(), "Payment outcome");
        outbox::enqueue(
            tx,
            &self.outcomes_topic,
            &CloudEvent::new(EVENT_SOURCE, order.to_string(), outcome),
        )
        .await?;
        // Counted when written: a transaction that then rolls back is retried and counted again.
        metrics::counter!("payments_outcomes_total", "result" => result).increment(1);
        Ok(())
    }
}

fn payment_money(payment: &Payment) -> Money {
    Money {
        amount_minor: payment.amount_minor,
        currency: payment.currency.clone(),
    }
}

/// A capture or refund must be for the amount authorised: partial captures and refunds are
/// not part of the saga, so a difference is a bug upstream, refused rather than guessed at.
fn check_amount(command: &Command, payment: &Payment) -> Result<(), CommandError> {
    let action = match command.action {
        PaymentAction::Capture => "capture",
        PaymentAction::Refund => "refund",
        PaymentAction::Authorise | PaymentAction::Void => return Ok(()),
    };
    if command.money == payment_money(payment) {
        return Ok(());
    }
    Err(CommandError::AmountMismatch {
        action,
        order: payment.order_id,
        command_amount: command.money.amount_minor,
        command_currency: command.money.currency.clone(),
        amount: payment.amount_minor,
        currency: payment.currency.clone(),
    })
}

/// The result's wire name (the metric label).
pub fn result_name(result: PaymentResult) -> &'static str {
    match result {
        PaymentResult::Authorised => "authorised",
        PaymentResult::Declined => "declined",
        PaymentResult::Captured => "captured",
        PaymentResult::CaptureFailed => "capture-failed",
        PaymentResult::Voided => "voided",
        PaymentResult::Refunded => "refunded",
        PaymentResult::RefundFailed => "refund-failed",
    }
}
