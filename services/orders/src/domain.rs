//! Requests parsed into validated values, and the shapes the API answers with.

use comptoir_events::contracts::orders::OrderStatus;
use comptoir_platform::FieldError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most units of one product in a cart.
pub const MAX_QUANTITY: i32 = 99;
/// Most distinct products in a cart.
pub const MAX_CART_LINES: i64 = 50;
/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

/// `PUT /v1/cart/lines/{product_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartLineInput {
    /// Units of the product, 1–99.
    #[schema(minimum = 1, maximum = 99)]
    pub quantity: i64,
}

impl CartLineInput {
    pub fn parse(&self) -> Result<i32, Vec<FieldError>> {
        match i32::try_from(self.quantity) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(q),
            _ => Err(vec![FieldError::new(
                "quantity",
                format!("must be between 1 and {MAX_QUANTITY}"),
            )]),
        }
    }
}

/// `POST /v1/orders`: checks out the cart.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutInput {
    /// The card token the payment provider gave the shopper's browser (never a card number).
    /// The simulated provider knows `tok_success`, `tok_decline`, `tok_insufficient_funds` and
    /// `tok_timeout`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,200}$")]
    pub payment_token: String,
    /// An address id from the shopper's address book in identity.
    #[serde(default)]
    pub shipping_address_id: Option<Uuid>,
}

/// A checkout request, validated, with the fingerprint its idempotency key is bound to.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub idempotency_key: String,
    pub payment_token: String,
    pub shipping_address_id: Option<Uuid>,
    /// SHA-256 of the request's meaningful content: the same key with another body is refused.
    pub fingerprint: Vec<u8>,
}

impl CheckoutInput {
    pub fn parse(self, idempotency_key: String) -> Result<Checkout, Vec<FieldError>> {
        let token = self.payment_token.as_str();
        if token.is_empty()
            || token.len() > 200
            || !token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(vec![FieldError::new(
                "payment_token",
                "must be a provider token: 1–200 letters, digits, '_' or '-'",
            )]);
        }
        let mut hash = Sha256::new();
        hash.update(token.as_bytes());
        hash.update([0]);
        if let Some(address) = self.shipping_address_id {
            hash.update(address.as_bytes());
        }
        Ok(Checkout {
            idempotency_key,
            payment_token: token.to_owned(),
            shipping_address_id: self.shipping_address_id,
            fingerprint: hash.finalize().to_vec(),
        })
    }
}

/// The `Idempotency-Key` header's value: 1–200 visible ASCII characters.
pub fn idempotency_key(value: Option<&http::HeaderValue>) -> Result<String, String> {
    let Some(value) = value else {
        return Err(
            "Send an Idempotency-Key header (a UUID is a good choice) so that a retried \
                    checkout never places a second order"
                .to_owned(),
        );
    };
    let key = value
        .to_str()
        .map_err(|_| "Idempotency-Key must be visible ASCII".to_owned())?
        .trim();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(format!(
            "Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ));
    }
    Ok(key.to_owned())
}

/// One line of the cart, priced at the current price.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CartLine {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    /// The current unit price (the one checkout charges), minor units.
    pub unit_price_minor: i64,
    /// The unit price when the line was added.
    pub added_price_minor: i64,
    /// Whether the price changed since the line was added.
    pub price_changed: bool,
    /// False when the product was withdrawn: checkout refuses the cart until it is removed.
    pub available: bool,
    pub line_total_minor: i64,
    pub currency: String,
}

/// The shopper's cart.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cart {
    pub lines: Vec<CartLine>,
    /// Sum of the lines at current prices, minor units (0 for an empty cart).
    pub total_minor: i64,
    /// The currency of the lines (absent for an empty cart).
    pub currency: Option<String>,
}

impl Cart {
    pub fn from_lines(lines: Vec<CartLine>) -> Self {
        Self {
            total_minor: lines.iter().map(|l| l.line_total_minor).sum(),
            currency: lines.first().map(|l| l.currency.clone()),
            lines,
        }
    }
}

/// One line of an order, as it was sold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderLineView {
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
}

/// A status the order went through.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

/// An order as its customer sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Order {
    pub id: Uuid,
    /// `pending`, `stock-reserved`, `payment-authorised`, `stock-committed`, `confirmed`,
    /// `cancelled`, `refund-requested` or `refunded`.
    pub status: String,
    /// Why it was cancelled (`out-of-stock`, `card-declined`, `provider-timeout`, `timeout`,
    /// `customer`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub total_minor: i64,
    pub currency: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address_id: Option<Uuid>,
    pub lines: Vec<OrderLineView>,
    /// Every status it went through, oldest first (empty in listings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl Order {
    pub fn status(&self) -> Option<OrderStatus> {
        OrderStatus::parse(&self.status)
    }
}

/// A page of the customer's orders, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub next_offset: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_outside_1_to_99_are_refused() {
        for bad in [0, -1, 100, i64::MAX, i64::MIN] {
            assert!(CartLineInput { quantity: bad }.parse().is_err(), "{bad}");
        }
        assert_eq!(CartLineInput { quantity: 99 }.parse(), Ok(99));
    }

    #[test]
    fn the_fingerprint_follows_the_body_not_the_key() {
        let input = |token: &str| CheckoutInput {
            payment_token: token.to_owned(),
            shipping_address_id: None,
        };
        let a = input("tok_success").parse("k1".to_owned()).expect("valid");
        let b = input("tok_success").parse("k2".to_owned()).expect("valid");
        let c = input("tok_decline").parse("k1".to_owned()).expect("valid");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert!(input("4111 1111 1111 1111").parse("k".to_owned()).is_err());
        assert!(input("").parse("k".to_owned()).is_err());
    }

    #[test]
    fn idempotency_keys_are_bounded_visible_ascii() {
        let header = |v: &str| http::HeaderValue::from_str(v).expect("header");
        assert!(idempotency_key(None).is_err());
        assert!(idempotency_key(Some(&header(""))).is_err());
        assert!(idempotency_key(Some(&header("a b"))).is_err());
        assert!(idempotency_key(Some(&header(&"k".repeat(201)))).is_err());
        assert_eq!(
            idempotency_key(Some(&header(" 0193-abc "))).as_deref(),
            Ok("0193-abc")
        );
    }
}
