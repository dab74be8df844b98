//! Erasure (Art. 17): identity's own erasure, the `CustomerErased` request to every
//! participant, and their confirmations.
//!
//! What identity keeps afterwards, and why (ADR 0014): the erasure record (request id,
//! customer id, times, counts of rows removed, each service's confirmation) — the proof that
//! the request was honoured (Art. 5(2), 17), pseudonymous and without any value of the
//! subject; and the PII access log lines about the subject, which hold the opaque id, the
//! client, the purpose and field names, never a value.

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::gdpr::ErasureConfirmed;
use comptoir_events::contracts::identity::CustomerErased;
use comptoir_events::outbox;
use deadpool_postgres::{Pool, Transaction};
use futures::future::BoxFuture;
use serde_json::json;
use uuid::Uuid;

use super::export::bounded;
use super::store::{self, ErasureRequest};
use super::{EVENT_SOURCE, Gdpr, GdprError, metric};

/// Largest confirmation summary kept as sent; a bigger one is replaced by a note saying so.
const MAX_SUMMARY_BYTES: usize = 16 * 1024;

/// Erases `customer` here and asks every participant to do the same, in one transaction.
/// Returns the erasure request id, or `None` when there is no such customer.
pub async fn request(pool: &Pool, gdpr: &Gdpr, customer: Uuid) -> Result<Option<Uuid>, GdprError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(erased) = store::erase_customer(&tx, customer).await? else {
        return Ok(None);
    };
    // Random, not time-ordered: the id is the capability to read the status.
    let id = Uuid::new_v4();
    let services = gdpr.services();
    store::insert_erasure(&tx, id, customer, &services, &erased).await?;
    let event = CloudEvent::new(
        EVENT_SOURCE,
        customer.to_string(),
        CustomerErased {
            request_id: id,
            customer_id: customer,
        },
    );
    outbox::enqueue(&tx, &gdpr.customer_erased_topic, &event).await?;
    let complete = services.is_empty();
    if complete {
        store::complete_erasure(&tx, id).await?;
    }
    tx.commit().await?;
    metrics::counter!(metric::REQUESTS, "kind" => "erasure").increment(1);
    tracing::info!(
        request_id = %id,
        services = services.len(),
        data_keys_deleted = erased.subject_keys,
        "Customer erased from identity; waiting for the services' confirmations"
    );
    if complete {
        metrics::counter!(metric::COMPLETED, "kind" => "erasure").increment(1);
        metrics::histogram!(metric::LAG, "kind" => "erasure").record(0.0);
        tracing::info!(request_id = %id, "Erasure complete: no service to wait for");
    }
    Ok(Some(id))
}

/// Publishes again every erasure still waiting for a participant after
/// `gdpr.resend_after_secs`; returns how many.
pub async fn resend_due(pool: &Pool, gdpr: &Gdpr) -> Result<u64, GdprError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let due = store::due_erasures(&tx, gdpr.settings.resend_after_secs).await?;
    for (id, customer) in &due {
        let event = CloudEvent::new(
            EVENT_SOURCE,
            customer.to_string(),
            CustomerErased {
                request_id: *id,
                customer_id: *customer,
            },
        );
        outbox::enqueue(&tx, &gdpr.customer_erased_topic, &event).await?;
    }
    tx.commit().await?;
    for (id, _) in &due {
        tracing::warn!(request_id = %id, "Erasure still unconfirmed; published again");
    }
    metrics::counter!(metric::ERASURES_RESENT).increment(due.len() as u64);
    Ok(due.len() as u64)
}

/// Applies the `ErasureConfirmed`s one participant publishes on its `erasure-confirmations`
/// topic. A confirmation is recorded once per service; a repeated one changes nothing.
#[derive(Debug)]
pub struct ConfirmationHandler {
    participant: String,
}

impl ConfirmationHandler {
    pub fn new(participant: &str) -> Self {
        Self {
            participant: participant.to_owned(),
        }
    }

    async fn apply(
        &self,
        tx: &Transaction<'_>,
        confirmed: &ErasureConfirmed,
    ) -> Result<(), GdprError> {
        let service = bounded(&confirmed.service);
        let ignore = |reason: &'static str, message: &'static str| {
            metrics::counter!(metric::IGNORED, "kind" => "erasure", "reason" => reason)
                .increment(1);
            tracing::warn!(request_id = %confirmed.request_id, %service, expected = %self.participant, reason, "{message}");
        };
        if confirmed.service != self.participant {
            ignore(
                "unexpected-service",
                "Erasure confirmation naming another service than the topic's; ignored",
            );
            return Ok(());
        }
        let Some(request) = store::lock_erasure(tx, confirmed.request_id).await? else {
            ignore(
                "unknown-request",
                "Erasure confirmation for an unknown request; ignored",
            );
            return Ok(());
        };
        if request.customer_id != confirmed.customer_id {
            ignore(
                "customer-mismatch",
                "Erasure confirmation naming another customer than its request; ignored",
            );
            return Ok(());
        }
        if !request.services.contains(&confirmed.service) {
            ignore(
                "service-not-listed",
                "Erasure confirmation from a service the request does not wait for; ignored",
            );
            return Ok(());
        }
        let summary =
            if serde_json::to_vec(&confirmed.summary).map_or(0, |b| b.len()) > MAX_SUMMARY_BYTES {
                json!({ "note": "summary larger than 16 KiB; not kept" })
            } else {
                confirmed.summary.clone()
            };
        if !store::insert_confirmation(tx, request.id, &confirmed.service, &summary).await? {
            tracing::debug!(request_id = %request.id, %service, "Erasure already confirmed by this service");
            return Ok(());
        }
        tracing::info!(request_id = %request.id, %service, "Erasure confirmed by a service");
        complete_if_confirmed(tx, &request).await
    }
}

async fn complete_if_confirmed(
    tx: &Transaction<'_>,
    request: &ErasureRequest,
) -> Result<(), GdprError> {
    if request.completed_at.is_some() {
        return Ok(());
    }
    let confirmed = store::confirmations(tx, request.id).await?;
    if !request
        .services
        .iter()
        .all(|s| confirmed.iter().any(|(c, _)| c == s))
    {
        return Ok(());
    }
    let completed_at = store::complete_erasure(tx, request.id).await?;
    let lag = (completed_at - request.requested_at)
        .as_seconds_f64()
        .max(0.0);
    metrics::counter!(metric::COMPLETED, "kind" => "erasure").increment(1);
    metrics::histogram!(metric::LAG, "kind" => "erasure").record(lag);
    tracing::info!(
        request_id = %request.id,
        services = request.services.len(),
        lag_ms = (lag * 1000.0) as u64,
        "Erasure complete: every service confirmed"
    );
    Ok(())
}

impl Handler<ErasureConfirmed> for ConfirmationHandler {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ErasureConfirmed>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { Ok(self.apply(tx, &event.data).await?) })
    }
}
