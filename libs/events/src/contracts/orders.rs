//! Events published by orders: the commands of the checkout saga (to inventory and payments)
//! and the order's lifecycle. The saga is orchestrated by orders (docs/adr/0016-checkout-saga.md):
//! each step is a command here and a reply from the participant ([`super::inventory`],
//! [`super::payments`]), all through the outbox and the inbox, keyed by order id.
//!
//! Nothing personal travels here: a customer is an opaque id, a shipping address an id into
//! identity's address book, a card a provider token.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in orders' namespace) of [`StockCommand`].
pub const STOCK_COMMANDS_TOPIC: &str = "stock-commands";
/// Topic (in orders' namespace) of [`PaymentCommand`].
pub const PAYMENT_COMMANDS_TOPIC: &str = "payment-commands";
/// Topic (in orders' namespace) of [`OrderChanged`]; partitioned, keyed by order id.
pub const ORDER_EVENTS_TOPIC: &str = "order-events";

/// One line of an order: a product and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderLine {
    pub product_id: Uuid,
    /// At least 1.
    pub quantity: i32,
    /// Price of one unit at checkout, in minor units of the order's currency (cents).
    pub unit_price_minor: i64,
}

/// What orders asks inventory to do for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StockAction {
    /// Hold the lines' quantities for the order, all or nothing, until `commit` or `release`
    /// (or the reservation's expiry).
    Reserve,
    /// Make the reservation a sale: the units leave the stock and the expiry no longer applies.
    Commit,
    /// Give back whatever the order holds (reserved or committed). Also valid before a reserve
    /// has arrived: the order is then refused if its reserve comes later.
    Release,
}

/// A saga step addressed to inventory. Idempotent per (order, action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StockCommand {
    pub order_id: Uuid,
    pub action: StockAction,
    /// The lines to reserve; empty for `commit` and `release`.
    #[serde(default)]
    pub lines: Vec<OrderLine>,
}

impl EventType for StockCommand {
    const TYPE: &'static str = "comptoir.orders.stock-command.v1";
}

/// What orders asks payments to do for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentAction {
    Authorise,
    Capture,
    /// Cancel an authorisation that was not captured. Valid before the authorise arrived:
    /// a later authorise for the order is then refused.
    Void,
    /// Give a captured payment back.
    Refund,
}

/// A saga step addressed to payments. Idempotent per (order, action).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PaymentCommand {
    pub order_id: Uuid,
    pub action: PaymentAction,
    /// The order total, in minor units of `currency`. Never a float.
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
    /// The card token the shopper's browser got from the provider (`authorise` only): never a
    /// card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_token: Option<String>,
}

impl EventType for PaymentCommand {
    const TYPE: &'static str = "comptoir.orders.payment-command.v1";
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OrderStatus {
    /// Accepted; stock is being reserved.
    Pending,
    /// Stock held; the payment is being authorised.
    StockReserved,
    /// Payment authorised; the reservation is being made a sale.
    PaymentAuthorised,
    /// Stock committed; the payment is being captured.
    StockCommitted,
    /// Payment captured: the order is placed. Terminal unless refunded.
    Confirmed,
    /// Given up, compensated (stock released, authorisation voided). Terminal.
    Cancelled,
    /// A refund of the captured payment was asked for.
    RefundRequested,
    /// The captured payment was given back. Terminal.
    Refunded,
}

impl OrderStatus {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::StockReserved => "stock-reserved",
            Self::PaymentAuthorised => "payment-authorised",
            Self::StockCommitted => "stock-committed",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::RefundRequested => "refund-requested",
            Self::Refunded => "refunded",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::StockReserved,
            Self::PaymentAuthorised,
            Self::StockCommitted,
            Self::Confirmed,
            Self::Cancelled,
            Self::RefundRequested,
            Self::Refunded,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }

    /// Whether the saga is over for this order (nothing more will happen by itself).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled | Self::Refunded)
    }
}

/// An order's state after a change. Full state, not a diff, so a consumer that missed one
/// converges on the next. Published at acceptance and at every outcome that matters to
/// someone else (confirmed, cancelled, refunded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OrderChanged {
    pub order_id: Uuid,
    /// The customer's opaque id (identity's); no name, no address, no email.
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// Why an order was cancelled (`payment-declined`, `out-of-stock`, `timeout`, `customer`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub lines: Vec<OrderLine>,
    pub total_minor: i64,
    pub currency: String,
    /// Increases with every change; consumers ignore versions older than theirs.
    pub version: i64,
}

impl EventType for OrderChanged {
    const TYPE: &'static str = "comptoir.orders.order-changed.v1";
}

impl OrderChanged {
    /// A fixed example, for tests and documentation.
    pub fn sample() -> Self {
        Self {
            order_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00a1),
            customer_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_00c1),
            status: OrderStatus::Confirmed,
            reason: None,
            lines: vec![OrderLine {
                product_id: Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0001),
                quantity: 2,
                unit_price_minor: 1290,
            }],
            total_minor: 2580,
            currency: "EUR".to_owned(),
            version: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudEvent;

    /// Payloads as first published: they must keep decoding (see the versioning rule).
    #[test]
    fn stored_v1_payloads_still_decode() {
        let order = r#"{"order_id":"01930000-0000-7000-8000-0000000000a1",
            "customer_id":"01930000-0000-7000-8000-0000000000c1","status":"confirmed",
            "lines":[{"product_id":"01910000-0000-7000-8000-000000000001","quantity":2,
                      "unit_price_minor":1290}],
            "total_minor":2580,"currency":"EUR","version":4}"#;
        let decoded: OrderChanged = serde_json::from_str(order).expect("decodes");
        assert_eq!(decoded, OrderChanged::sample());

        let command = r#"{"specversion":"1.0","id":"01936d2e-0000-7000-8000-000000000003",
            "source":"/comptoir/orders","type":"comptoir.orders.stock-command.v1",
            "time":"2026-12-01T10:00:01Z","subject":"01930000-0000-7000-8000-0000000000a1",
            "datacontenttype":"application/json",
            "data":{"order_id":"01930000-0000-7000-8000-0000000000a1","action":"release"}}"#;
        let event: CloudEvent<StockCommand> = serde_json::from_str(command).expect("decodes");
        assert_eq!(event.data.action, StockAction::Release);
        assert!(event.data.lines.is_empty());

        let pay = r#"{"order_id":"01930000-0000-7000-8000-0000000000a1","action":"authorise",
            "amount_minor":2580,"currency":"EUR","payment_token":"tok_success"}"#;
        let decoded: PaymentCommand = serde_json::from_str(pay).expect("decodes");
        assert_eq!(decoded.action, PaymentAction::Authorise);
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in [
            OrderStatus::Pending,
            OrderStatus::StockReserved,
            OrderStatus::PaymentAuthorised,
            OrderStatus::StockCommitted,
            OrderStatus::Confirmed,
            OrderStatus::Cancelled,
            OrderStatus::RefundRequested,
            OrderStatus::Refunded,
        ] {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).expect("encodes");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }
}
