//! The click stream: what analytics' ingestion puts on its partitioned topic and its processor
//! reads back. One message per accepted HTTP batch (a visitor's events of a few seconds), so
//! the broker carries hundreds of clicks per message instead of one.
//!
//! No identifier in here is raw: the visitor is a keyed pseudonym of the customer id (signed
//! in) or of the client's session id (anonymous), computed at ingestion with the epoch's key
//! (`comptoir_privacy::Pseudonymizer`). Search terms are never sent, only the result count.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in analytics' namespace, partitioned) of [`ClickBatch`], keyed by visitor pseudonym.
pub const CLICKSTREAM_TOPIC: &str = "clickstream";

/// What a visitor did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ClickKind {
    /// A page was shown (`page` says which kind).
    PageView,
    /// A product page was shown (`product_id`).
    ProductView,
    /// A search was run (`results`, never the terms).
    Search,
    /// Units of a product went into the cart (`product_id`, `quantity`).
    AddToCart,
}

impl ClickKind {
    /// Every kind, in funnel order where it applies.
    pub const ALL: [Self; 4] = [
        Self::PageView,
        Self::ProductView,
        Self::Search,
        Self::AddToCart,
    ];

    /// The name used in the API, the events and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PageView => "page-view",
            Self::ProductView => "product-view",
            Self::Search => "search",
            Self::AddToCart => "add-to-cart",
        }
    }
}

/// One click, validated at ingestion: `product_id` is set exactly for product views and
/// add-to-cart, `page` for page views, `results` for searches, `quantity` for add-to-cart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Click {
    pub kind: ClickKind,
    /// When it happened on the visitor's side (RFC 3339); windows are by this time.
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub at: time::OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
}

/// One accepted batch of a visitor's clicks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClickBatch {
    /// The visitor's pseudonym in `epoch` (32 hex characters): of the customer id when signed
    /// in, of the session id otherwise.
    pub visitor: String,
    /// The pseudonymisation epoch (`YYYY-MM`) whose key made `visitor`.
    pub epoch: String,
    /// Whether the visitor was signed in (and had granted the analytics consent).
    pub signed_in: bool,
    pub clicks: Vec<Click>,
}

impl EventType for ClickBatch {
    const TYPE: &'static str = "comptoir.analytics.click-batch.v1";
}

impl ClickBatch {
    /// A fixed example, for tests and documentation.
    pub fn sample() -> Self {
        Self {
            visitor: "5d0c0b1f7b3a4e6f9a1c2d3e4f5a6b7c".to_owned(),
            epoch: "2026-12".to_owned(),
            signed_in: false,
            clicks: vec![Click {
                kind: ClickKind::ProductView,
                at: time::macros::datetime!(2026-12-03 10:00:00 UTC),
                product_id: Some(Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0001)),
                page: None,
                results: None,
                quantity: None,
            }],
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
        let stored = r#"{"specversion":"1.0","id":"01936d2e-0000-7000-8000-000000000001",
            "source":"/comptoir/analytics","type":"comptoir.analytics.click-batch.v1",
            "time":"2026-12-03T10:00:01Z","subject":"5d0c0b1f7b3a4e6f9a1c2d3e4f5a6b7c",
            "datacontenttype":"application/json",
            "data":{"visitor":"5d0c0b1f7b3a4e6f9a1c2d3e4f5a6b7c","epoch":"2026-12",
                    "signed_in":false,"clicks":[{"kind":"product-view",
                    "at":"2026-12-03T10:00:00Z",
                    "product_id":"01910000-0000-7000-8000-000000000001"}]}}"#;
        let event: CloudEvent<ClickBatch> = serde_json::from_str(stored).expect("decodes");
        assert_eq!(event.data, ClickBatch::sample());
    }

    #[test]
    fn kinds_are_named_as_in_the_api() {
        for kind in ClickKind::ALL {
            let json = serde_json::to_value(kind).expect("serialises");
            assert_eq!(json, serde_json::Value::String(kind.as_str().to_owned()));
        }
    }
}
