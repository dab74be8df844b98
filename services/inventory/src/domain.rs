//! Requests and commands become validated values here, and nowhere else ("parse, don't
//! validate"): the admin inputs, and the lines of a reserve command.

use std::collections::BTreeMap;

use comptoir_events::contracts::orders::OrderLine;
use comptoir_platform::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Most units a product may have on hand (a billion: a typo guard, not a warehouse limit).
pub const MAX_ON_HAND: i64 = 1_000_000_000;
/// Longest reason of an adjustment, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// A product's stock as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Stock {
    pub product_id: Uuid,
    /// Units physically held.
    pub on_hand: i64,
    /// Units held for orders not yet committed.
    pub reserved: i64,
    /// `on_hand - reserved`: what can still be sold.
    pub available: i64,
    /// Incremented by every change; also the ETag.
    pub version: i64,
}

/// A product's availability as shoppers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Availability {
    pub product_id: Uuid,
    /// Units that can still be ordered.
    pub available: i64,
}

impl From<&Stock> for Availability {
    fn from(stock: &Stock) -> Self {
        Self {
            product_id: stock.product_id,
            available: stock.available,
        }
    }
}

/// `PUT /v1/admin/stock/{product_id}`: the units counted on hand.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStockInput {
    /// 0 to 1 000 000 000, and at least what is reserved.
    #[schema(example = 120, minimum = 0, maximum = 1_000_000_000)]
    pub on_hand: i64,
}

impl SetStockInput {
    pub fn parse(self) -> Result<i64, Vec<FieldError>> {
        if (0..=MAX_ON_HAND).contains(&self.on_hand) {
            Ok(self.on_hand)
        } else {
            Err(vec![FieldError::new(
                "on_hand",
                format!("must be between 0 and {MAX_ON_HAND}"),
            )])
        }
    }
}

/// `POST /v1/admin/stock/{product_id}/adjustments`: a delivery (positive) or breakage, loss,
/// a correction (negative).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentInput {
    /// Units added (positive) or removed (negative); not 0, at most 1 000 000 000 either way.
    #[schema(example = 24, minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: i64,
    /// Why, for the log: 1–200 characters once trimmed, no control characters.
    #[schema(
        example = "delivery 2026-12-01",
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

/// A validated adjustment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub delta: i64,
    pub reason: String,
}

impl AdjustmentInput {
    /// Validates every field, reporting all problems at once.
    pub fn parse(self) -> Result<Adjustment, Vec<FieldError>> {
        let mut errors = Vec::new();
        if self.delta == 0 || !(-MAX_ON_HAND..=MAX_ON_HAND).contains(&self.delta) {
            errors.push(FieldError::new(
                "delta",
                format!("must not be 0 and at most {MAX_ON_HAND} either way"),
            ));
        }
        let reason = self.reason.trim().to_owned();
        let length = reason.chars().count();
        if length == 0 || length > MAX_REASON_CHARS {
            errors.push(FieldError::new(
                "reason",
                format!("must be 1 to {MAX_REASON_CHARS} characters"),
            ));
        }
        if reason.chars().any(char::is_control) {
            errors.push(FieldError::new(
                "reason",
                "must not contain control characters",
            ));
        }
        if errors.is_empty() {
            Ok(Adjustment {
                delta: self.delta,
                reason,
            })
        } else {
            Err(errors)
        }
    }
}

/// Where a reservation stands (the `reservations.status` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Committed,
    Released,
    Refused,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Refused => "refused",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Reserved,
            Self::Committed,
            Self::Released,
            Self::Refused,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// Reasons inventory gives, in `StockOutcome.reason` and `reservations.reason`.
pub mod reason {
    /// A line asks for more than is available.
    pub const OUT_OF_STOCK: &str = "out-of-stock";
    /// A line names a product inventory has no stock row for.
    pub const UNKNOWN_PRODUCT: &str = "unknown-product";
    /// The order's release arrived first; its reserve is refused for good.
    pub const RELEASED_BEFORE_RESERVE: &str = "released-before-reserve";
    /// A commit for an order with nothing held (never reserved, refused, released, lapsed).
    pub const NOT_RESERVED: &str = "not-reserved";
    /// A reserve with no lines or a quantity below 1: orders never sends one.
    pub const INVALID_LINES: &str = "invalid-lines";
    /// The reservation lapsed (`reservations.reason` of a swept reservation).
    pub const EXPIRED: &str = "expired";
}

/// The lines of a reserve command, one per product (quantities of a product named twice are
/// summed), in product id order: the order every transaction locks stock rows in, so two
/// transactions never wait for each other in a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lines(BTreeMap<Uuid, i32>);

impl Lines {
    /// `None` for an empty command, a quantity below 1, or a sum past `i32` (the column type).
    pub fn parse(lines: &[OrderLine]) -> Option<Self> {
        if lines.is_empty() {
            return None;
        }
        let mut summed: BTreeMap<Uuid, i32> = BTreeMap::new();
        for line in lines {
            if line.quantity < 1 {
                return None;
            }
            let entry = summed.entry(line.product_id).or_insert(0);
            *entry = entry.checked_add(line.quantity)?;
        }
        Some(Self(summed))
    }

    /// Product ids, ascending.
    pub fn products(&self) -> Vec<Uuid> {
        self.0.keys().copied().collect()
    }

    /// Quantities, in the order of [`Self::products`].
    pub fn quantities(&self) -> Vec<i32> {
        self.0.values().copied().collect()
    }

    pub fn quantity(&self, product: Uuid) -> Option<i32> {
        self.0.get(&product).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(product: u128, quantity: i32) -> OrderLine {
        OrderLine {
            product_id: Uuid::from_u128(product),
            quantity,
            unit_price_minor: 100,
        }
    }

    #[test]
    fn lines_are_summed_per_product_and_sorted() {
        let lines = Lines::parse(&[line(2, 1), line(1, 3), line(2, 4)]).expect("valid");
        assert_eq!(lines.products(), [Uuid::from_u128(1), Uuid::from_u128(2)]);
        assert_eq!(lines.quantities(), [3, 5]);
    }

    #[test]
    fn empty_lines_bad_quantities_and_overflow_are_refused() {
        assert_eq!(Lines::parse(&[]), None);
        assert_eq!(Lines::parse(&[line(1, 0)]), None);
        assert_eq!(Lines::parse(&[line(1, -2)]), None);
        assert_eq!(Lines::parse(&[line(1, i32::MAX), line(1, 1)]), None);
    }

    #[test]
    fn admin_inputs_are_checked() {
        assert_eq!(SetStockInput { on_hand: 5 }.parse(), Ok(5));
        assert!(SetStockInput { on_hand: -1 }.parse().is_err());
        assert!(
            SetStockInput {
                on_hand: MAX_ON_HAND + 1
            }
            .parse()
            .is_err()
        );
        let bad = AdjustmentInput {
            delta: 0,
            reason: " ".to_owned(),
        };
        let fields: Vec<_> = bad
            .parse()
            .expect_err("invalid")
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["delta", "reason"]);
        let good = AdjustmentInput {
            delta: -3,
            reason: " breakage ".to_owned(),
        };
        assert_eq!(
            good.parse(),
            Ok(Adjustment {
                delta: -3,
                reason: "breakage".to_owned()
            })
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            ReservationStatus::Reserved,
            ReservationStatus::Committed,
            ReservationStatus::Released,
            ReservationStatus::Refused,
        ] {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReservationStatus::parse("pending"), None);
    }
}
