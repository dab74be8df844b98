//! Analytics' part in GDPR exports and erasures.
//!
//! What analytics holds about a customer: their analytics consent as identity last announced
//! it (the `consents` projection). The clicks themselves are pseudonymised at ingestion with a
//! keyed hash whose key changes every month, and the aggregates keep only counts per minute,
//! kind and product: no visitor, no pseudonym. So no aggregate can be traced back to a
//! customer, by us or anyone, and there is nothing of theirs in them to export or erase. The
//! raw click stream keeps a customer's batches under their pseudonym for the topic's retention
//! (a day, `libs/events/topology/comptoir.toml`) and then expires them; erasure does not wait
//! for that (the batches name nobody without the month's key, which never leaves analytics).

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use comptoir_events::consumer::HandlerError;
use comptoir_events::gdpr::Participant;

use crate::repo;

/// What analytics says about the aggregates, in every export and erasure.
const STATEMENT: &str = "Analytics keeps your analytics consent as identity announced it. Your \
                         clicks were pseudonymised when they arrived (a keyed hash that changes \
                         monthly) and are kept only as counts per minute and product, which \
                         hold no identifier and cannot be linked to you; the pseudonymised raw \
                         clicks expire after a day.";

#[derive(Debug, Default)]
pub struct AnalyticsParticipant;

impl Participant for AnalyticsParticipant {
    fn service(&self) -> &'static str {
        "analytics"
    }

    fn export<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async move {
            let records = match repo::consent(tx, customer).await? {
                Some((granted, changed_at)) => vec![json!({
                    "kind": "analytics-consent",
                    "granted": granted,
                    "changed_at": changed_at
                        .format(&time::format_description::well_known::Rfc3339)?,
                })],
                None => vec![],
            };
            Ok(json!({ "records": records, "statement": STATEMENT }))
        })
    }

    fn erase<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>> {
        Box::pin(async move {
            let removed = repo::forget_consent(tx, customer).await?;
            Ok(json!({ "removed": removed, "retained": [], "statement": STATEMENT }))
        })
    }
}
