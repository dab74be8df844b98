//! Events published by identity: the two GDPR requests every service takes part in, and the
//! customers' consent changes. They carry the customer id (a UUID) and never a name, email,
//! phone or address.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in identity's namespace) of [`ExportRequested`].
pub const EXPORT_REQUESTS_TOPIC: &str = "export-requests";
/// Topic (in identity's namespace) of [`CustomerErased`].
pub const CUSTOMER_ERASED_TOPIC: &str = "customer-erased";
/// Topic (in identity's namespace) of [`ConsentChanged`], keyed by customer id.
pub const CONSENT_CHANGES_TOPIC: &str = "consent-changes";

/// A customer asked for their data (GDPR Art. 15 and 20): every service sends its slice back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportRequested {
    /// The export job at identity; replies name it.
    pub request_id: Uuid,
    pub customer_id: Uuid,
}

impl EventType for ExportRequested {
    const TYPE: &'static str = "comptoir.identity.export-requested.v1";
}

/// Identity erased a customer (GDPR Art. 17): their data key and personal data are gone; every
/// service removes or anonymises what it holds about them and confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CustomerErased {
    /// The erasure request at identity; confirmations name it.
    pub request_id: Uuid,
    pub customer_id: Uuid,
}

impl EventType for CustomerErased {
    const TYPE: &'static str = "comptoir.identity.customer-erased.v1";
}

/// A customer granted or withdrew consent for a purpose (`marketing`, `analytics`). Published in
/// the transaction that records the change, so a service keeping a local projection (analytics
/// drops click events of customers without the analytics consent) never misses one. Events of a
/// customer are keyed by their id, so they arrive in order; `changed_at` still lets a projection
/// ignore an older change delivered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsentChanged {
    pub customer_id: Uuid,
    pub purpose: String,
    pub granted: bool,
    /// When the change took effect at identity (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schemars(with = "String", extend("format" = "date-time"))]
    pub changed_at: time::OffsetDateTime,
}

impl EventType for ConsentChanged {
    const TYPE: &'static str = "comptoir.identity.consent-changed.v1";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudEvent;

    /// Payloads as first published: they must keep decoding (see the versioning rule).
    #[test]
    fn stored_v1_payloads_still_decode() {
        let export = r#"{"specversion":"1.0","id":"01936d2e-0000-7000-8000-000000000001",
            "source":"/comptoir/identity","type":"comptoir.identity.export-requested.v1",
            "time":"2026-11-30T10:00:00Z","subject":"01936d2e-0000-7000-8000-00000000000c",
            "datacontenttype":"application/json",
            "data":{"request_id":"01936d2e-0000-7000-8000-0000000000e1",
                    "customer_id":"01936d2e-0000-7000-8000-00000000000c"}}"#;
        let event: CloudEvent<ExportRequested> = serde_json::from_str(export).expect("decodes");
        assert_eq!(event.data.customer_id.to_string(), event.subject);
        let erased = export
            .replace("export-requested", "customer-erased")
            .replace("0000000000e1", "0000000000e2");
        let event: CloudEvent<CustomerErased> = serde_json::from_str(&erased).expect("decodes");
        assert_eq!(event.kind, CustomerErased::TYPE);
    }
}
