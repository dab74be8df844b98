//! Exports (Art. 15 and 20): the request, the slices coming back, and the archive.
//!
//! The archive is one JSON document (`format` [`ARCHIVE_FORMAT`]):
//! `{format, request_id, customer_id, requested_at, generated_at, services, slices}` where
//! `slices` maps each service (`identity` first, then every participant) to
//! `{answered_at, data}`. Identity's `data` is built when the last participant answers, from
//! its own tables: the decrypted profile, current consents and their history, sessions
//! (metadata, never a token) and the PII access log lines about the subject.

use std::collections::BTreeSet;
use std::sync::Arc;

use comptoir_events::CloudEvent;
use comptoir_events::consumer::{Handler, HandlerError};
use comptoir_events::contracts::gdpr::ExportSlice;
use comptoir_events::contracts::identity::ExportRequested;
use comptoir_events::outbox;
use comptoir_privacy::{DataKey, Pii};
use deadpool_postgres::{GenericClient, Pool, Transaction};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::store::{self, ExportJob, NewExport};
use super::{EVENT_SOURCE, Gdpr, GdprError, metric};
use crate::domain::ProfileView;
use crate::vault::{self, Document};

/// The `format` member of every archive; a breaking change to the layout takes `.v2`.
pub const ARCHIVE_FORMAT: &str = "comptoir.gdpr.export.v1";

/// Why an export failed, as stored in `export_jobs.failure`.
pub const TOO_LARGE: &str = "archive-too-large";

/// What asking for an export came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Requested {
    /// A new export job, its request enqueued.
    Created(Uuid),
    /// An export of this customer is still pending: that one.
    AlreadyPending(Uuid),
    /// The customer does not exist (any more).
    NoCustomer,
}

/// Records an export job for `customer` and enqueues `ExportRequested` for every participant,
/// in one transaction: the request is published exactly when the job exists.
pub async fn request(pool: &Pool, gdpr: &Gdpr, customer: Uuid) -> Result<Requested, GdprError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let id = Uuid::new_v4();
    let services = gdpr.services();
    match store::create_export(&tx, id, customer, &services).await? {
        NewExport::NoCustomer => return Ok(Requested::NoCustomer),
        NewExport::Pending(existing) => return Ok(Requested::AlreadyPending(existing)),
        NewExport::Created => {}
    }
    let event = CloudEvent::new(
        EVENT_SOURCE,
        customer.to_string(),
        ExportRequested {
            request_id: id,
            customer_id: customer,
        },
    );
    outbox::enqueue(&tx, &gdpr.export_requests_topic, &event).await?;
    if services.is_empty() {
        // No participant to wait for: identity's own slice is the whole archive.
        if let Some(job) = store::lock_export(&tx, id).await? {
            let key = subject_key(&tx, gdpr, customer).await?;
            complete_if_answered(&tx, gdpr, &job, &key).await?;
        }
    }
    tx.commit().await?;
    metrics::counter!(metric::REQUESTS, "kind" => "export").increment(1);
    tracing::info!(request_id = %id, services = services.len(), "Export requested");
    Ok(Requested::Created(id))
}

async fn subject_key<C: GenericClient + Sync>(
    client: &C,
    gdpr: &Gdpr,
    customer: Uuid,
) -> Result<DataKey, GdprError> {
    let wrapped = store::wrapped_key(client, customer)
        .await?
        .ok_or(GdprError::NoSubjectKey)?;
    Ok(vault::open_subject_key(
        &gdpr.keys.keyring,
        customer,
        &wrapped,
    )?)
}

/// The archive of a ready export, decrypted (JSON bytes); `None` when it is not ready, has
/// expired, or is not this customer's.
pub async fn archive(
    pool: &Pool,
    gdpr: &Gdpr,
    id: Uuid,
    customer: Uuid,
) -> Result<Option<Vec<u8>>, GdprError> {
    let Some((sealed, wrapped)) = store::archive_of(pool, id, customer).await? else {
        return Ok(None);
    };
    let key = vault::open_subject_key(&gdpr.keys.keyring, customer, &wrapped)?;
    // The response body needs an owned copy (hyper's from here); the decrypted buffer is wiped.
    let archive = vault::open_document(
        &key,
        customer,
        Document::ExportArchive { export: id },
        &sealed,
    )?;
    Ok(Some(archive.to_vec()))
}

/// Applies the `ExportSlice`s one participant publishes on its `export-slices` topic.
#[derive(Debug)]
pub struct SliceHandler {
    gdpr: Arc<Gdpr>,
    participant: String,
}

impl SliceHandler {
    pub fn new(gdpr: Arc<Gdpr>, participant: &str) -> Self {
        Self {
            gdpr,
            participant: participant.to_owned(),
        }
    }

    async fn apply(&self, tx: &Transaction<'_>, slice: &ExportSlice) -> Result<(), GdprError> {
        let service = bounded(&slice.service);
        let ignore = |reason: &'static str, message: &'static str| {
            metrics::counter!(metric::IGNORED, "kind" => "export", "reason" => reason).increment(1);
            tracing::warn!(request_id = %slice.request_id, %service, expected = %self.participant, reason, "{message}");
        };
        if slice.service != self.participant {
            ignore(
                "unexpected-service",
                "Export slice naming another service than the topic's; ignored",
            );
            return Ok(());
        }
        let Some(job) = store::lock_export(tx, slice.request_id).await? else {
            ignore(
                "unknown-request",
                "Export slice for an unknown export (erased, or never asked); ignored",
            );
            return Ok(());
        };
        if job.customer_id != slice.customer_id {
            ignore(
                "customer-mismatch",
                "Export slice naming another customer than its export; ignored",
            );
            return Ok(());
        }
        if !job.services.contains(&slice.service) {
            ignore(
                "service-not-listed",
                "Export slice from a service the export does not wait for; ignored",
            );
            return Ok(());
        }
        if job.status != "pending" {
            tracing::debug!(request_id = %job.id, %service, "Export slice after the export completed; ignored");
            return Ok(());
        }
        let key = subject_key(tx, &self.gdpr, job.customer_id).await?;
        let bytes = serde_json::to_vec(&slice.data)?;
        if bytes.len() > self.gdpr.settings.export_max_bytes {
            fail(tx, &job, TOO_LARGE).await?;
            return Ok(());
        }
        let sealed = vault::seal_document(
            &key,
            job.customer_id,
            Document::ExportSlice {
                export: job.id,
                service: &slice.service,
            },
            &bytes,
        );
        if !store::insert_slice(tx, job.id, &slice.service, &sealed).await? {
            tracing::debug!(request_id = %job.id, %service, "Export slice already stored");
            return Ok(());
        }
        tracing::info!(request_id = %job.id, %service, "Export slice received");
        complete_if_answered(tx, &self.gdpr, &job, &key).await?;
        Ok(())
    }
}

impl Handler<ExportSlice> for SliceHandler {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ExportSlice>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { Ok(self.apply(tx, &event.data).await?) })
    }
}

/// A service name from another service, as logged: printable and bounded.
pub(crate) fn bounded(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

async fn fail<C: GenericClient + Sync>(
    tx: &C,
    job: &ExportJob,
    reason: &'static str,
) -> Result<(), GdprError> {
    store::mark_export_failed(tx, job.id, reason).await?;
    metrics::counter!(metric::EXPORTS_FAILED, "reason" => reason).increment(1);
    tracing::warn!(request_id = %job.id, reason, "Export failed");
    Ok(())
}

fn rfc3339(at: OffsetDateTime) -> Value {
    at.format(&Rfc3339).map_or(Value::Null, Value::String)
}

/// When every participant of `job` has answered: assembles the archive, seals it under the
/// customer's data key and marks the job ready. Returns whether it did.
async fn complete_if_answered<C: GenericClient + Sync>(
    tx: &C,
    gdpr: &Gdpr,
    job: &ExportJob,
    key: &DataKey,
) -> Result<bool, GdprError> {
    let slices = store::slices(tx, job.id).await?;
    let answered: BTreeSet<&str> = slices.iter().map(|s| s.service.as_str()).collect();
    if !job.services.iter().all(|s| answered.contains(s.as_str())) {
        return Ok(false);
    }
    let customer = job.customer_id;
    let generated_at = OffsetDateTime::now_utc();
    let mut parts = Map::new();
    parts.insert(
        "identity".to_owned(),
        json!({
            "answered_at": rfc3339(generated_at),
            "data": identity_slice(tx, customer, key).await?,
        }),
    );
    for slice in &slices {
        let bytes = vault::open_document(
            key,
            customer,
            Document::ExportSlice {
                export: job.id,
                service: &slice.service,
            },
            &slice.sealed,
        )?;
        let data: Value = serde_json::from_slice(&bytes)?;
        parts.insert(
            slice.service.clone(),
            json!({ "answered_at": rfc3339(slice.received_at), "data": data }),
        );
    }
    let services: Vec<&str> = std::iter::once("identity")
        .chain(job.services.iter().map(String::as_str))
        .collect();
    let archive = json!({
        "format": ARCHIVE_FORMAT,
        "request_id": job.id,
        "customer_id": customer,
        "requested_at": rfc3339(job.requested_at),
        "generated_at": rfc3339(generated_at),
        "services": services,
        "slices": parts,
    });
    let bytes = serde_json::to_vec_pretty(&archive)?;
    if bytes.len() > gdpr.settings.export_max_bytes {
        fail(tx, job, TOO_LARGE).await?;
        return Ok(true);
    }
    let sealed = vault::seal_document(
        key,
        customer,
        Document::ExportArchive { export: job.id },
        &bytes,
    );
    let (completed_at, _) =
        store::mark_export_ready(tx, job.id, &sealed, gdpr.settings.export_ttl_secs).await?;
    let lag = (completed_at - job.requested_at).as_seconds_f64().max(0.0);
    metrics::counter!(metric::COMPLETED, "kind" => "export").increment(1);
    metrics::histogram!(metric::LAG, "kind" => "export").record(lag);
    tracing::info!(
        request_id = %job.id,
        services = job.services.len(),
        bytes = bytes.len(),
        lag_ms = (lag * 1000.0) as u64,
        "Export ready: every service answered"
    );
    Ok(true)
}

/// Identity's own slice of a customer: everything it holds about them, decrypted.
async fn identity_slice<C: GenericClient + Sync>(
    tx: &C,
    customer: Uuid,
    key: &DataKey,
) -> Result<Value, GdprError> {
    let (stored, updated_at) = crate::repo::customer(tx, customer)
        .await?
        .ok_or(GdprError::NoSubjectKey)?;
    let profile = vault::open(key, customer, &stored.sealed)?;
    let profile = ProfileView {
        id: customer,
        email: profile.email.expose().to_owned(),
        name: profile.name.into_inner(),
        phone: profile.phone.map(Pii::into_inner),
        addresses: profile.addresses.into_inner(),
        created_at: stored.created_at,
    };
    let (consents, consent_history) = store::consents_of(tx, customer).await?;
    let sessions = store::sessions_of(tx, customer).await?;
    let access_log = store::access_log_of(tx, customer).await?;
    let mut profile = serde_json::to_value(profile)?;
    profile["updated_at"] = rfc3339(updated_at);
    Ok(json!({
        "profile": profile,
        "consents": consents,
        "consent_history": consent_history,
        "sessions": sessions,
        "pii_access_log": access_log,
        "notes": [
            "Passwords are stored only as argon2id hashes and refresh tokens only as SHA-256 \
             digests: neither is exported.",
            "pii_access_log lists every request another service made for your personal data, \
             with its declared purpose."
        ],
    }))
}
