//! Taking part in GDPR exports and erasures: what every service holding anything about
//! customers runs, the same way.
//!
//! Identity publishes [`ExportRequested`] and [`CustomerErased`] in its namespace. A service
//! implements [`Participant`] (its slice of a customer's data; what erasing them means for
//! it) and runs the two consumers [`consumers`] builds. Each request is handled in one
//! transaction that records it in the inbox, does the work and writes the reply
//! ([`ExportSlice`] or [`ErasureConfirmed`]) into the service's outbox: the reply is sent
//! exactly when the work is committed, once. A service that was down when the request was
//! published catches up from its durable subscription when it comes back.

use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use futures::future::BoxFuture;
use pulsar::{Pulsar, TokioExecutor};
use uuid::Uuid;

use crate::consumer::{ConsumerConfig, EventConsumer, Handler, HandlerError};
use crate::contracts::gdpr::{
    ERASURE_CONFIRMATIONS_TOPIC, EXPORT_SLICES_TOPIC, ErasureConfirmed, ExportSlice,
};
use crate::contracts::identity::{
    CUSTOMER_ERASED_TOPIC, CustomerErased, EXPORT_REQUESTS_TOPIC, ExportRequested,
};
use crate::envelope::CloudEvent;
use crate::outbox;

/// A service's side of the GDPR flows.
pub trait Participant: Send + Sync + 'static {
    /// The service's name as identity knows it (`catalog`).
    fn service(&self) -> &'static str;

    /// Everything the service holds about `customer`, machine-readable.
    fn export<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>>;

    /// Removes or anonymises what the service holds about `customer`; returns what was done.
    fn erase<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        customer: Uuid,
    ) -> BoxFuture<'a, Result<serde_json::Value, HandlerError>>;
}

/// Where the requests come from and the replies go.
#[derive(Debug, Clone)]
pub struct GdprTopics {
    /// Identity's namespace (`comptoir/identity`), where the requests are published.
    pub requests_namespace: String,
    /// The participant's own namespace (`comptoir/catalog`), where its replies go.
    pub replies_namespace: String,
}

impl GdprTopics {
    pub fn export_requests(&self) -> String {
        format!(
            "persistent://{}/{EXPORT_REQUESTS_TOPIC}",
            self.requests_namespace
        )
    }

    pub fn customer_erased(&self) -> String {
        format!(
            "persistent://{}/{CUSTOMER_ERASED_TOPIC}",
            self.requests_namespace
        )
    }

    pub fn export_slices(&self) -> String {
        format!(
            "persistent://{}/{EXPORT_SLICES_TOPIC}",
            self.replies_namespace
        )
    }

    pub fn erasure_confirmations(&self) -> String {
        format!(
            "persistent://{}/{ERASURE_CONFIRMATIONS_TOPIC}",
            self.replies_namespace
        )
    }
}

/// Answers export requests with the participant's slice.
pub struct ExportHandler<P> {
    participant: Arc<P>,
    reply_topic: String,
    source: String,
}

/// Erases on request and confirms.
pub struct ErasureHandler<P> {
    participant: Arc<P>,
    reply_topic: String,
    source: String,
}

impl<P> std::fmt::Debug for ExportHandler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportHandler")
            .field("reply_topic", &self.reply_topic)
            .finish_non_exhaustive()
    }
}

impl<P> std::fmt::Debug for ErasureHandler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasureHandler")
            .field("reply_topic", &self.reply_topic)
            .finish_non_exhaustive()
    }
}

impl<P: Participant> Handler<ExportRequested> for ExportHandler<P> {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<ExportRequested>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let request = &event.data;
            let data = self.participant.export(tx, request.customer_id).await?;
            let reply = ExportSlice {
                request_id: request.request_id,
                customer_id: request.customer_id,
                service: self.participant.service().to_owned(),
                data,
            };
            let reply = CloudEvent::new(&self.source, request.customer_id.to_string(), reply);
            outbox::enqueue(tx, &self.reply_topic, &reply).await?;
            tracing::info!(request_id = %request.request_id, "Export slice written");
            Ok(())
        })
    }
}

impl<P: Participant> Handler<CustomerErased> for ErasureHandler<P> {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<CustomerErased>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let request = &event.data;
            let summary = self.participant.erase(tx, request.customer_id).await?;
            let reply = ErasureConfirmed {
                request_id: request.request_id,
                customer_id: request.customer_id,
                service: self.participant.service().to_owned(),
                summary,
            };
            let reply = CloudEvent::new(&self.source, request.customer_id.to_string(), reply);
            outbox::enqueue(tx, &self.reply_topic, &reply).await?;
            tracing::info!(request_id = %request.request_id, "Erasure confirmed");
            Ok(())
        })
    }
}

/// The two consumers a participant runs (export, erasure), on subscriptions named after the
/// service: `<service>-gdpr-export` and `<service>-gdpr-erasure`. Their replies go through
/// the service's outbox, so the service's relay must be running too.
#[allow(clippy::type_complexity)]
pub fn consumers<P: Participant>(
    pool: Pool,
    pulsar: Pulsar<TokioExecutor>,
    participant: Arc<P>,
    topics: &GdprTopics,
) -> (
    EventConsumer<ExportRequested, ExportHandler<P>>,
    EventConsumer<CustomerErased, ErasureHandler<P>>,
) {
    let service = participant.service();
    let source = format!("/comptoir/{service}");
    let export = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(&topics.export_requests(), &format!("{service}-gdpr-export")),
        ExportHandler {
            participant: Arc::clone(&participant),
            reply_topic: topics.export_slices(),
            source: source.clone(),
        },
    );
    let erasure = EventConsumer::new(
        pool,
        pulsar,
        ConsumerConfig::new(
            &topics.customer_erased(),
            &format!("{service}-gdpr-erasure"),
        ),
        ErasureHandler {
            participant,
            reply_topic: topics.erasure_confirmations(),
            source,
        },
    );
    (export, erasure)
}
