//! What a delivery is, and the words of each message.
//!
//! A [`Delivery`] is one transactional message owed to a customer about an order: which order,
//! which customer (an opaque id), which [`Kind`], and where its sending stands. It holds the
//! order facts the message is written from (number of items, total, currency, cancellation
//! reason: none of them personal) and never the recipient's address or name, nor the text
//! sent: those are asked of identity at send time and dropped once the message is handed over.

use comptoir_events::contracts::orders::{OrderChanged, OrderStatus};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Which message a delivery is. One of each per order at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    OrderConfirmed,
    OrderCancelled,
    OrderRefunded,
}

impl Kind {
    /// The message an order status calls for, if any: only the outcomes a customer is told
    /// about (not `pending` nor the saga's intermediate steps).
    pub fn for_status(status: OrderStatus) -> Option<Self> {
        match status {
            OrderStatus::Confirmed => Some(Self::OrderConfirmed),
            OrderStatus::Cancelled => Some(Self::OrderCancelled),
            OrderStatus::Refunded => Some(Self::OrderRefunded),
            _ => None,
        }
    }

    /// The name stored in the database, shown in the API and used as metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderConfirmed => "order-confirmed",
            Self::OrderCancelled => "order-cancelled",
            Self::OrderRefunded => "order-refunded",
        }
    }

    /// Inverse of [`Self::as_str`].
    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::OrderConfirmed,
            Self::OrderCancelled,
            Self::OrderRefunded,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for its (next) attempt at `next_attempt_at`.
    Pending,
    /// Accepted by the mail relay.
    Sent,
    /// Given up: a permanent refusal, or `retry.max_attempts` attempts failed.
    Failed,
    /// Nothing to send: the customer is unknown to identity (erased) or has no address.
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Failed, Self::Skipped]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// A delivery as the admin route shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub order_id: Uuid,
    /// The customer's opaque id (identity's).
    pub customer_id: Uuid,
    pub kind: Kind,
    pub status: Status,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (meaningful while `pending`).
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// Why the last attempt failed, in fixed words (never a server's reply, never an address).
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sent_at: Option<OffsetDateTime>,
}

/// A delivery to record, from an order event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub kind: Kind,
    pub facts: OrderFacts,
}

impl NewDelivery {
    /// The delivery an order change calls for, if any.
    pub fn from_event(order: &OrderChanged) -> Option<Self> {
        let kind = Kind::for_status(order.status)?;
        Some(Self {
            order_id: order.order_id,
            customer_id: order.customer_id,
            kind,
            facts: OrderFacts {
                order_id: order.order_id,
                items: order
                    .lines
                    .iter()
                    .map(|l| i64::from(l.quantity.max(0)))
                    .sum(),
                total_minor: order.total_minor,
                currency: order.currency.clone(),
                reason: order.reason.clone(),
            },
        })
    }
}

/// The order facts a message is written from. Nothing personal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFacts {
    pub order_id: Uuid,
    /// Units ordered, all lines together.
    pub items: i64,
    pub total_minor: i64,
    pub currency: String,
    /// Why the order was cancelled (`payment-declined`...), for a cancellation.
    pub reason: Option<String>,
}

/// A message's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
}

/// The short form of an order id customers see in subjects: its last 8 hex digits. Order ids
/// are UUIDv7, whose leading digits are a timestamp shared by every order of the same minute,
/// while the trailing ones are random.
pub fn short_id(order: Uuid) -> String {
    let hex = order.simple().to_string();
    hex[hex.len() - 8..].to_owned()
}

/// Decimal places of a currency's minor unit (ISO 4217): 2 but for the few listed.
fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// An amount in minor units as people read it: `2580, "EUR"` → `25.80 EUR`. Integer
/// arithmetic only, never a float.
pub fn format_money(minor: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

/// A cancellation reason in words, completing "Your order was cancelled because ...".
pub fn reason_in_words(reason: Option<&str>) -> &'static str {
    match reason {
        Some("payment-declined") => "the payment was declined",
        Some("out-of-stock") => "an item is no longer in stock",
        Some("timeout") => "it could not be completed in time",
        Some("customer") => "you asked us to cancel it",
        _ => "it could not be completed",
    }
}

/// The subject and body of `kind` for `facts`, addressed to `name`.
pub fn render(kind: Kind, facts: &OrderFacts, name: &str) -> Rendered {
    let short = short_id(facts.order_id);
    let total = format_money(facts.total_minor, &facts.currency);
    let items = match facts.items {
        1 => "1 item".to_owned(),
        n => format!("{n} items"),
    };
    let greeting = if name.trim().is_empty() {
        "Hello,".to_owned()
    } else {
        format!("Hello {},", name.trim())
    };
    let (subject, news) = match kind {
        Kind::OrderConfirmed => (
            format!("Your Comptoir order {short} is confirmed"),
            "Thank you: your order is confirmed and your payment was taken.".to_owned(),
        ),
        Kind::OrderCancelled => (
            format!("Your Comptoir order {short} was cancelled"),
            format!(
                "Your order was cancelled because {}. You have not been charged.",
                reason_in_words(facts.reason.as_deref())
            ),
        ),
        Kind::OrderRefunded => (
            format!("Your Comptoir order {short} was refunded"),
            "Your order was refunded: the amount below is on its way back to you.".to_owned(),
        ),
    };
    let body = format!(
        "{greeting}\n\n{news}\n\nOrder: {short} (reference {order})\nItems: {items}\nTotal: \
         {total}\n\nThis is a transactional message about your order; you receive it because \
         you placed the order.\n\nComptoir\n",
        order = facts.order_id,
    );
    Rendered { subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> OrderFacts {
        let sample = OrderChanged::sample();
        NewDelivery::from_event(&sample).expect("confirmed").facts
    }

    #[test]
    fn only_outcomes_a_customer_is_told_about_make_a_delivery() {
        let mut order = OrderChanged::sample();
        for (status, kind) in [
            (OrderStatus::Pending, None),
            (OrderStatus::StockReserved, None),
            (OrderStatus::PaymentAuthorised, None),
            (OrderStatus::StockCommitted, None),
            (OrderStatus::RefundRequested, None),
            (OrderStatus::Confirmed, Some(Kind::OrderConfirmed)),
            (OrderStatus::Cancelled, Some(Kind::OrderCancelled)),
            (OrderStatus::Refunded, Some(Kind::OrderRefunded)),
        ] {
            order.status = status;
            assert_eq!(NewDelivery::from_event(&order).map(|d| d.kind), kind);
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in [
            Kind::OrderConfirmed,
            Kind::OrderCancelled,
            Kind::OrderRefunded,
        ] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::json!(kind.as_str())
            );
        }
        for status in [
            Status::Pending,
            Status::Sent,
            Status::Failed,
            Status::Skipped,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn money_is_formatted_from_minor_units() {
        assert_eq!(format_money(2580, "EUR"), "25.80 EUR");
        assert_eq!(format_money(5, "EUR"), "0.05 EUR");
        assert_eq!(format_money(0, "USD"), "0.00 USD");
        assert_eq!(format_money(1500, "JPY"), "1500 JPY");
        assert_eq!(format_money(1234, "KWD"), "1.234 KWD");
        assert_eq!(format_money(-250, "EUR"), "-2.50 EUR");
    }

    #[test]
    fn a_confirmation_names_the_order_its_items_and_total() {
        let rendered = render(Kind::OrderConfirmed, &facts(), "Ada");
        assert_eq!(
            rendered.subject,
            "Your Comptoir order 000000a1 is confirmed"
        );
        assert!(rendered.body.starts_with("Hello Ada,"), "{}", rendered.body);
        assert!(
            rendered.body.contains("Items: 2 items"),
            "{}",
            rendered.body
        );
        assert!(
            rendered.body.contains("Total: 25.80 EUR"),
            "{}",
            rendered.body
        );
        assert!(
            rendered
                .body
                .contains("01930000-0000-7000-8000-0000000000a1")
        );
    }

    #[test]
    fn a_cancellation_says_why_in_words() {
        let mut facts = facts();
        facts.reason = Some("payment-declined".to_owned());
        let rendered = render(Kind::OrderCancelled, &facts, "");
        assert_eq!(
            rendered.subject,
            "Your Comptoir order 000000a1 was cancelled"
        );
        assert!(rendered.body.starts_with("Hello,"));
        assert!(rendered.body.contains("because the payment was declined"));
        facts.reason = Some("something-new".to_owned());
        let rendered = render(Kind::OrderCancelled, &facts, "Ada");
        assert!(rendered.body.contains("because it could not be completed"));
        let rendered = render(Kind::OrderRefunded, &facts, "Ada");
        assert_eq!(
            rendered.subject,
            "Your Comptoir order 000000a1 was refunded"
        );
    }
}
