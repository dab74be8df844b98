//! Commands become validated values here ("parse, don't validate"), and the payment's state
//! decides, in one pure function, what a command is answered when no provider call is needed.

use comptoir_events::contracts::orders::{PaymentAction, PaymentCommand};
use comptoir_events::contracts::payments::PaymentResult;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Reason of a `declined` authorise that arrived after its order's void (the tombstone).
pub const VOIDED_BEFORE_AUTHORISE: &str = "voided-before-authorise";
/// Reason of a `declined` authorise the provider did not answer in time.
pub const PROVIDER_TIMEOUT: &str = "provider-timeout";
/// Reason of a `capture-failed` for a payment that is not authorised.
pub const NOT_AUTHORISED: &str = "not-authorised";
/// Reason of a `refund-failed` for a payment that was not captured.
pub const NOT_CAPTURED: &str = "not-captured";

/// Longest payment token accepted (provider tokens are short opaque strings).
const MAX_TOKEN_LEN: usize = 256;

/// Where an order's payment stands (`payments.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PaymentStatus {
    /// Money held on the card.
    Authorised,
    /// The provider refused, or did not answer in time: nothing held.
    Declined,
    /// Money taken.
    Captured,
    /// The authorisation was cancelled, or the order was voided before any authorise arrived
    /// (a tombstone, `reason` = `voided-before-authorise`).
    Voided,
    /// Money given back.
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorised => "authorised",
            Self::Declined => "declined",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::Authorised,
            Self::Declined,
            Self::Captured,
            Self::Voided,
            Self::Refunded,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

/// An order's payment, as stored and as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub order_id: Uuid,
    pub status: PaymentStatus,
    /// Minor units of `currency` (cents).
    pub amount_minor: i64,
    pub currency: String,
    /// The provider's id of the payment, once it gave one.
    pub provider_reference: Option<String>,
    /// Why it was declined or voided, when it says more than the status.
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One thing payments did about an order's payment (append-only `payment_operations`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// `authorise`, `capture`, `void` or `refund`.
    pub action: String,
    /// `authorised`, `declined`, `timeout`, `captured`, `voided`, `refunded` or `failed`.
    pub result: String,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// An amount of money in minor units, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

/// A card token from the provider. Its `Debug` hides it so it cannot reach a log by accident;
/// it is handed to the provider and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentToken(String);

impl PaymentToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PaymentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentToken(<redacted>)")
    }
}

/// A valid payment command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub order_id: Uuid,
    pub action: PaymentAction,
    pub money: Money,
    /// Present for `authorise` only.
    pub token: Option<PaymentToken>,
}

/// Why a command was refused (it ends in the dead-letter topic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid payment command: {}", .0.join("; "))]
pub struct InvalidCommand(pub Vec<String>);

impl Command {
    /// Validates every field, reporting all problems at once. A token on a command other than
    /// `authorise` is dropped: only an authorisation needs one.
    pub fn parse(command: &PaymentCommand) -> Result<Self, InvalidCommand> {
        let mut problems = Vec::new();
        if command.amount_minor <= 0 {
            problems.push(format!(
                "amount_minor must be positive, got {}",
                command.amount_minor
            ));
        }
        if !(command.currency.len() == 3
            && command.currency.bytes().all(|b| b.is_ascii_uppercase()))
        {
            problems.push(format!(
                "currency must be three upper-case letters, got {:?}",
                command.currency
            ));
        }
        let token = match (command.action, &command.payment_token) {
            (PaymentAction::Authorise, None) => {
                problems.push("payment_token is required to authorise".to_owned());
                None
            }
            (PaymentAction::Authorise, Some(token)) => {
                // The token itself is never repeated in a message.
                if token.is_empty()
                    || token.len() > MAX_TOKEN_LEN
                    || token.chars().any(char::is_control)
                {
                    problems.push(format!(
                        "payment_token must be 1–{MAX_TOKEN_LEN} characters without control characters"
                    ));
                }
                Some(PaymentToken(token.clone()))
            }
            (_, _) => None,
        };
        if !problems.is_empty() {
            return Err(InvalidCommand(problems));
        }
        Ok(Self {
            order_id: command.order_id,
            action: command.action,
            money: Money {
                amount_minor: command.amount_minor,
                currency: command.currency.clone(),
            },
            token,
        })
    }
}

/// What payments answers a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub result: PaymentResult,
    pub reason: Option<String>,
}

impl Reply {
    pub fn new(result: PaymentResult) -> Self {
        Self {
            result,
            reason: None,
        }
    }

    pub fn because(result: PaymentResult, reason: impl Into<String>) -> Self {
        Self {
            result,
            reason: Some(reason.into()),
        }
    }
}

/// The action's name, as in idempotency keys and `payment_operations.action`.
pub fn action_name(action: PaymentAction) -> &'static str {
    match action {
        PaymentAction::Authorise => "authorise",
        PaymentAction::Capture => "capture",
        PaymentAction::Void => "void",
        PaymentAction::Refund => "refund",
    }
}

/// The answer to `action` when the payment's state already decides it, or `None` when the
/// provider must be called (authorise with no payment yet, capture or void of an authorised
/// payment, refund of a captured one). A repeated command lands here: it changes nothing and
/// is answered with what is true now.
///
/// | state \ command | authorise | capture | void | refund |
/// |---|---|---|---|---|
/// | authorised | `authorised` | *provider* | *provider* | `refund-failed` not-captured |
/// | declined | `declined` (its reason) | `capture-failed` not-authorised | `voided` | `refund-failed` not-captured |
/// | captured | `authorised` | `captured` | `captured` (cannot be voided: the truth) | *provider* |
/// | voided | `declined` (voided-before-authorise, or `voided`) | `capture-failed` (its reason, or not-authorised) | `voided` | `refund-failed` not-captured |
/// | refunded | `authorised` | `captured` | `refunded` | `refunded` |
pub fn answer_from_state(action: PaymentAction, payment: &Payment) -> Option<Reply> {
    use PaymentResult as R;
    use PaymentStatus as S;
    let reason = || payment.reason.clone();
    Some(match (action, payment.status) {
        (PaymentAction::Authorise, S::Authorised | S::Captured | S::Refunded) => {
            Reply::new(R::Authorised)
        }
        (PaymentAction::Authorise, S::Declined) => Reply {
            result: R::Declined,
            reason: reason(),
        },
        (PaymentAction::Authorise, S::Voided) => Reply::because(
            R::Declined,
            if payment.reason.as_deref() == Some(VOIDED_BEFORE_AUTHORISE) {
                VOIDED_BEFORE_AUTHORISE
            } else {
                "voided"
            },
        ),
        (PaymentAction::Capture, S::Captured | S::Refunded) => Reply::new(R::Captured),
        (PaymentAction::Capture, S::Declined) => Reply::because(R::CaptureFailed, NOT_AUTHORISED),
        (PaymentAction::Capture, S::Voided) => Reply::because(
            R::CaptureFailed,
            reason().unwrap_or_else(|| NOT_AUTHORISED.to_owned()),
        ),
        (PaymentAction::Void, S::Voided | S::Declined) => Reply::new(R::Voided),
        (PaymentAction::Void, S::Captured) => Reply::new(R::Captured),
        (PaymentAction::Void, S::Refunded) => Reply::new(R::Refunded),
        (PaymentAction::Refund, S::Refunded) => Reply::new(R::Refunded),
        (PaymentAction::Refund, S::Authorised | S::Declined | S::Voided) => {
            Reply::because(R::RefundFailed, NOT_CAPTURED)
        }
        (PaymentAction::Capture | PaymentAction::Void, S::Authorised)
        | (PaymentAction::Refund, S::Captured) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(
        action: PaymentAction,
        amount: i64,
        currency: &str,
        token: Option<&str>,
    ) -> PaymentCommand {
        PaymentCommand {
            order_id: Uuid::from_u128(1),
            action,
            amount_minor: amount,
            currency: currency.to_owned(),
            payment_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn malformed_commands_are_refused_with_every_problem_and_without_the_token() {
        let refused = Command::parse(&command(PaymentAction::Authorise, 0, "eur", None))
            .expect_err("invalid");
        assert_eq!(refused.0.len(), 3, "{refused}");
        let secret = "tok_\u{7}secret";
        let refused = Command::parse(&command(PaymentAction::Authorise, 10, "EUR", Some(secret)))
            .expect_err("invalid");
        assert!(!refused.to_string().contains("secret"), "{refused}");
        assert!(Command::parse(&command(PaymentAction::Capture, -1, "EURO", None)).is_err());
    }

    #[test]
    fn a_token_is_kept_for_authorise_only_and_never_printed() {
        let parsed = Command::parse(&command(
            PaymentAction::Authorise,
            10,
            "EUR",
            Some("tok_success"),
        ))
        .expect("valid");
        assert_eq!(
            parsed.token.as_ref().map(PaymentToken::expose),
            Some("tok_success")
        );
        assert!(!format!("{parsed:?}").contains("tok_success"));
        let capture = Command::parse(&command(
            PaymentAction::Capture,
            10,
            "EUR",
            Some("tok_success"),
        ))
        .expect("valid");
        assert_eq!(capture.token, None);
    }

    fn payment(status: PaymentStatus, reason: Option<&str>) -> Payment {
        Payment {
            order_id: Uuid::from_u128(1),
            status,
            amount_minor: 100,
            currency: "EUR".to_owned(),
            provider_reference: None,
            reason: reason.map(str::to_owned),
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_state_answers_repeated_and_late_commands() {
        use PaymentAction as A;
        use PaymentResult as R;
        use PaymentStatus as S;
        let answer = |action, status, reason| answer_from_state(action, &payment(status, reason));
        assert_eq!(
            answer(A::Authorise, S::Authorised, None),
            Some(Reply::new(R::Authorised))
        );
        assert_eq!(
            answer(A::Authorise, S::Voided, Some(VOIDED_BEFORE_AUTHORISE)),
            Some(Reply::because(R::Declined, VOIDED_BEFORE_AUTHORISE))
        );
        assert_eq!(
            answer(A::Authorise, S::Declined, Some("card-declined")),
            Some(Reply::because(R::Declined, "card-declined"))
        );
        assert_eq!(answer(A::Capture, S::Authorised, None), None);
        assert_eq!(
            answer(A::Capture, S::Captured, None),
            Some(Reply::new(R::Captured))
        );
        assert_eq!(
            answer(A::Capture, S::Declined, Some("card-declined")),
            Some(Reply::because(R::CaptureFailed, NOT_AUTHORISED))
        );
        assert_eq!(answer(A::Void, S::Authorised, None), None);
        assert_eq!(
            answer(A::Void, S::Declined, None),
            Some(Reply::new(R::Voided))
        );
        assert_eq!(
            answer(A::Void, S::Captured, None),
            Some(Reply::new(R::Captured))
        );
        assert_eq!(answer(A::Refund, S::Captured, None), None);
        assert_eq!(
            answer(A::Refund, S::Refunded, None),
            Some(Reply::new(R::Refunded))
        );
        assert_eq!(
            answer(A::Refund, S::Authorised, None),
            Some(Reply::because(R::RefundFailed, NOT_CAPTURED))
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in [
            PaymentStatus::Authorised,
            PaymentStatus::Declined,
            PaymentStatus::Captured,
            PaymentStatus::Voided,
            PaymentStatus::Refunded,
        ] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PaymentStatus::parse("pending"), None);
    }
}
