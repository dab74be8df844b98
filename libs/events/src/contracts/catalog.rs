//! Events published by the catalog.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in catalog's namespace) of [`ProductChanged`], keyed by product id.
pub const PRODUCT_EVENTS_TOPIC: &str = "product-events";

/// What happened to the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProductChange {
    Created,
    Updated,
    Deleted,
}

/// The state of a product after a change. Carries the full state (not a diff) so a consumer
/// that missed an event still converges on the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProductChanged {
    pub product_id: Uuid,
    pub change: ProductChange,
    /// The product's version after the change; consumers ignore versions older than theirs.
    pub version: i64,
    pub sku: String,
    pub name: String,
    pub category_id: Option<Uuid>,
    pub price_cents: i64,
    pub currency: String,
    pub active: bool,
}

impl EventType for ProductChanged {
    const TYPE: &'static str = "comptoir.catalog.product-changed.v1";
}

impl ProductChanged {
    /// A fixed example, for tests and documentation.
    pub fn sample() -> Self {
        Self {
            product_id: Uuid::from_u128(0x0191_0000_0000_7000_8000_0000_0000_0001),
            change: ProductChange::Created,
            version: 1,
            sku: "COF-ETH-250".to_owned(),
            name: "Ethiopia Yirgacheffe, whole beans, 250 g".to_owned(),
            category_id: None,
            price_cents: 1290,
            currency: "EUR".to_owned(),
            active: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as the first release wrote it: must decode forever under this type.
    const STORED_V1: &str = r#"{"product_id":"01910000-0000-7000-8000-000000000001","change":"created","version":1,"sku":"COF-ETH-250","name":"Ethiopia Yirgacheffe, whole beans, 250 g","category_id":null,"price_cents":1290,"currency":"EUR","active":true}"#;

    #[test]
    fn stored_v1_payload_still_decodes() {
        let decoded: ProductChanged = serde_json::from_str(STORED_V1).expect("decode");
        assert_eq!(decoded, ProductChanged::sample());
    }
}
