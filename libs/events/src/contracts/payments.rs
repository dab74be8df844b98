//! Events published by payments: its replies to orders' [`super::orders::PaymentCommand`]s,
//! one for every outcome, keyed by order id. Amounts are minor units with a currency.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in payments' namespace) of [`PaymentOutcome`].
pub const PAYMENT_OUTCOMES_TOPIC: &str = "payment-outcomes";

/// What happened to an order's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentResult {
    Authorised,
    /// The provider refused the authorisation, did not answer in time, or the order was voided
    /// first. Nothing is held on the card.
    Declined,
    Captured,
    /// The capture failed; the authorisation was voided.
    CaptureFailed,
    Voided,
    Refunded,
    RefundFailed,
}

/// Payments' reply about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PaymentOutcome {
    pub order_id: Uuid,
    pub result: PaymentResult,
    pub amount_minor: i64,
    pub currency: String,
    /// The provider's reference of the payment, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_reference: Option<String>,
    /// Why, for `declined`, `capture-failed` and `refund-failed` (`card-declined`,
    /// `provider-timeout`, `voided-before-authorise`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl EventType for PaymentOutcome {
    const TYPE: &'static str = "comptoir.payments.payment-outcome.v1";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as first published: it must keep decoding (see the versioning rule).
    #[test]
    fn stored_v1_payload_still_decodes() {
        let outcome = r#"{"order_id":"01930000-0000-7000-8000-0000000000a1",
            "result":"declined","amount_minor":2580,"currency":"EUR",
            "reason":"card-declined"}"#;
        let decoded: PaymentOutcome = serde_json::from_str(outcome).expect("decodes");
        assert_eq!(decoded.result, PaymentResult::Declined);
        assert_eq!(decoded.provider_reference, None);
    }
}
