//! Events published by inventory: its replies to orders' [`super::orders::StockCommand`]s and
//! the stock level of each product.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in inventory's namespace) of [`StockOutcome`], keyed by order id.
pub const STOCK_OUTCOMES_TOPIC: &str = "stock-outcomes";
/// Topic (in inventory's namespace) of [`StockLevelChanged`], keyed by product id.
pub const STOCK_LEVELS_TOPIC: &str = "stock-levels";

/// What happened to an order's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StockResult {
    /// Every line is held for the order.
    Reserved,
    /// Nothing is held: a line was short, unknown, or the order was released first.
    Refused,
    /// The held units are sold.
    Committed,
    /// The reservation could not be made a sale (it had lapsed or was released).
    CommitRefused,
    /// What the order held went back to the stock.
    Released,
    /// The reservation lapsed before it was committed and went back to the stock.
    Expired,
}

/// Inventory's reply about one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StockOutcome {
    pub order_id: Uuid,
    pub result: StockResult,
    /// Why, for `refused` and `commit-refused` (`out-of-stock`, `unknown-product`,
    /// `released-before-reserve`, `not-reserved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl EventType for StockOutcome {
    const TYPE: &'static str = "comptoir.inventory.stock-outcome.v1";
}

/// A product's stock after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StockLevelChanged {
    pub product_id: Uuid,
    /// Units physically held.
    pub on_hand: i64,
    /// Units held for orders not yet committed.
    pub reserved: i64,
    /// `on_hand - reserved`: what can still be sold.
    pub available: i64,
    /// Increases with every change of this product's stock.
    pub version: i64,
}

impl EventType for StockLevelChanged {
    const TYPE: &'static str = "comptoir.inventory.stock-level-changed.v1";
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads as first published: they must keep decoding (see the versioning rule).
    #[test]
    fn stored_v1_payloads_still_decode() {
        let outcome = r#"{"order_id":"01930000-0000-7000-8000-0000000000a1",
            "result":"refused","reason":"out-of-stock"}"#;
        let decoded: StockOutcome = serde_json::from_str(outcome).expect("decodes");
        assert_eq!(decoded.result, StockResult::Refused);
        assert_eq!(decoded.reason.as_deref(), Some("out-of-stock"));

        let level = r#"{"product_id":"01910000-0000-7000-8000-000000000001","on_hand":10,
            "reserved":2,"available":8,"version":3}"#;
        let decoded: StockLevelChanged = serde_json::from_str(level).expect("decodes");
        assert_eq!(decoded.available, 8);
    }
}
