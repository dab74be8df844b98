//! Replies every service sends identity for the GDPR requests (see [`super::identity`]). Each
//! service publishes them in its own namespace, on [`EXPORT_SLICES_TOPIC`] and
//! [`ERASURE_CONFIRMATIONS_TOPIC`], keyed by customer id.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::EventType;

/// Topic (in the replying service's namespace) of [`ExportSlice`].
pub const EXPORT_SLICES_TOPIC: &str = "export-slices";
/// Topic (in the replying service's namespace) of [`ErasureConfirmed`].
pub const ERASURE_CONFIRMATIONS_TOPIC: &str = "erasure-confirmations";

/// One service's part of a customer's export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExportSlice {
    pub request_id: Uuid,
    pub customer_id: Uuid,
    /// The service the slice comes from (`catalog`).
    pub service: String,
    /// What the service holds about the customer, machine-readable. Services hold no
    /// plaintext personal data (only identity does), so this is ids, orders, preferences...
    pub data: serde_json::Value,
}

impl EventType for ExportSlice {
    const TYPE: &'static str = "comptoir.gdpr.export-slice.v1";
}

/// A service removed or anonymised what it held about an erased customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErasureConfirmed {
    pub request_id: Uuid,
    pub customer_id: Uuid,
    pub service: String,
    /// What was done (rows removed, kept under a legal obligation and why, ...).
    pub summary: serde_json::Value,
}

impl EventType for ErasureConfirmed {
    const TYPE: &'static str = "comptoir.gdpr.erasure-confirmed.v1";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CloudEvent;

    /// Payloads as first published: they must keep decoding (see the versioning rule).
    #[test]
    fn stored_v1_payloads_still_decode() {
        let slice = r#"{"specversion":"1.0","id":"01936d2e-0000-7000-8000-000000000003",
            "source":"/comptoir/catalog","type":"comptoir.gdpr.export-slice.v1",
            "time":"2026-11-30T10:00:01Z","subject":"01936d2e-0000-7000-8000-00000000000c",
            "datacontenttype":"application/json",
            "data":{"request_id":"01936d2e-0000-7000-8000-0000000000e1",
                    "customer_id":"01936d2e-0000-7000-8000-00000000000c",
                    "service":"catalog","data":{"records":[]}}}"#;
        let event: CloudEvent<ExportSlice> = serde_json::from_str(slice).expect("decodes");
        assert_eq!(event.data.service, "catalog");
        let confirmed = r#"{"specversion":"1.0","id":"01936d2e-0000-7000-8000-000000000004",
            "source":"/comptoir/catalog","type":"comptoir.gdpr.erasure-confirmed.v1",
            "time":"2026-11-30T10:00:02Z","subject":"01936d2e-0000-7000-8000-00000000000c",
            "datacontenttype":"application/json",
            "data":{"request_id":"01936d2e-0000-7000-8000-0000000000e2",
                    "customer_id":"01936d2e-0000-7000-8000-00000000000c",
                    "service":"catalog","summary":{"removed":0}}}"#;
        let event: CloudEvent<ErasureConfirmed> = serde_json::from_str(confirmed).expect("decodes");
        assert_eq!(event.data.summary["removed"], 0);
    }
}
