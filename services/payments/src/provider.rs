//! The payment service provider (PSP) seen from payments: one trait, four calls.
//!
//! Payments only ever talks to a provider through [`PaymentProvider`]. This repository ships
//! one implementation, [`crate::simulated::SimulatedProvider`], a SIMULATION of an outside
//! party; a real PSP adapter (an HTTP client of the PSP's API) implements the same trait and
//! replaces it in [`crate::run`] (see the README, "Plugging in a real provider").
//!
//! Every call carries an **idempotency key**, `<order_id>:<action>` ([`idempotency_key`]): the
//! provider remembers each key and answers a repeated call with the first answer instead of
//! acting twice. That is what makes retries safe: payments calls the provider inside the
//! consumer's transaction, and when that transaction rolls back (a failure later in the batch,
//! a crash, a redelivery), the command is handled again and the provider called again, with
//! the same key: no second charge.

use futures::future::BoxFuture;
use uuid::Uuid;

/// A successful authorisation: money is held on the card until captured or voided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorisation {
    /// The provider's id of the payment; captures, voids and refunds name it.
    pub reference: String,
}

/// Which authorisation a void cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoidTarget<'a> {
    /// An authorisation whose answer (and reference) payments has.
    Reference(&'a str),
    /// An authorisation whose answer never came (the call timed out), named by the
    /// idempotency key it was requested with: whatever the provider did for that request is
    /// cancelled, and nothing happens if it did nothing.
    RequestKey(&'a str),
}

/// Why a provider call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A definitive refusal (`card-declined`, `insufficient-funds`...): retrying will not help.
    #[error("declined by the provider: {0}")]
    Declined(String),
    /// No answer in time: the provider may or may not have acted.
    #[error("the provider did not answer in time")]
    Timeout,
    /// A transient failure before the provider acted (5xx, connection refused): retry later
    /// with the same idempotency key.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
}

/// The future every provider call returns (boxed, so the trait is object-safe and a
/// `Arc<dyn PaymentProvider>` can hold any implementation).
pub type ProviderFuture<'a, T> = BoxFuture<'a, Result<T, ProviderError>>;

/// A payment service provider. Amounts are minor units (cents), never floats.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Holds `amount_minor` of `currency` on the card behind `token` (a token the shopper's
    /// browser got from the provider, never a card number). Implementations must not store or
    /// log the token.
    fn authorise<'a>(
        &'a self,
        key: &'a str,
        amount_minor: i64,
        currency: &'a str,
        token: &'a str,
    ) -> ProviderFuture<'a, Authorisation>;

    /// Takes the held money (the whole authorised amount).
    fn capture<'a>(
        &'a self,
        key: &'a str,
        reference: &'a str,
        amount_minor: i64,
    ) -> ProviderFuture<'a, ()>;

    /// Releases an authorisation that was not captured.
    fn void<'a>(&'a self, key: &'a str, target: VoidTarget<'a>) -> ProviderFuture<'a, ()>;

    /// Gives a captured payment back.
    fn refund<'a>(
        &'a self,
        key: &'a str,
        reference: &'a str,
        amount_minor: i64,
    ) -> ProviderFuture<'a, ()>;
}

/// The idempotency key of `action` for `order`: `<order_id>:<action>`. One order has one
/// payment, so each action happens at most once per order.
pub fn idempotency_key(order: Uuid, action: &str) -> String {
    format!("{order}:{action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_order_and_the_action() {
        let order = Uuid::from_u128(0xa1);
        assert_eq!(
            idempotency_key(order, "authorise"),
            "00000000-0000-0000-0000-0000000000a1:authorise"
        );
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<std::sync::Arc<dyn PaymentProvider>>) {}
        takes(None);
    }
}
