//! The CloudEvents 1.0 envelope (JSON format) around every Comptoir event.
//!
//! `type` names the contract and its major version (`comptoir.catalog.product-changed.v1`):
//! additive changes keep the type, breaking changes get a new one. `subject` is the aggregate
//! id, which is also the Pulsar message key so per-aggregate order holds.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Contracts implement this to name their CloudEvents `type`.
pub trait EventType {
    /// The CloudEvents `type`, e.g. `comptoir.catalog.product-changed.v1`.
    const TYPE: &'static str;
}

/// A CloudEvents 1.0 event with a typed `data` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CloudEvent<T> {
    pub specversion: String,
    /// Unique per event; consumers deduplicate on it.
    pub id: Uuid,
    /// The producing service, as a URI reference (`/comptoir/catalog`).
    pub source: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub time: OffsetDateTime,
    /// The aggregate the event is about; also the message key.
    pub subject: String,
    pub datacontenttype: String,
    pub data: T,
}

impl<T: EventType> CloudEvent<T> {
    /// A new event with a fresh time-ordered id, stamped now.
    pub fn new(source: &str, subject: impl Into<String>, data: T) -> Self {
        Self {
            specversion: "1.0".to_owned(),
            id: Uuid::now_v7(),
            source: source.to_owned(),
            kind: T::TYPE.to_owned(),
            time: OffsetDateTime::now_utc(),
            subject: subject.into(),
            datacontenttype: "application/json".to_owned(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contracts::catalog::ProductChanged;

    #[test]
    fn envelope_has_cloudevents_attributes() {
        let data = ProductChanged::sample();
        let event = CloudEvent::new("/comptoir/catalog", data.product_id.to_string(), data);
        let v = serde_json::to_value(&event).expect("serialise");
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "comptoir.catalog.product-changed.v1");
        assert_eq!(v["datacontenttype"], "application/json");
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        let back: CloudEvent<ProductChanged> = serde_json::from_value(v).expect("deserialise");
        assert_eq!(back, event);
    }
}
