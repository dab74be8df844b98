//! The click stream in: a validated batch becomes one [`ClickBatch`] message on the partitioned
//! `clickstream` topic, keyed by the visitor's pseudonym, batched and LZ4-compressed by the
//! producer. `POST /v1/events` answers 202 only after the broker has acknowledged the message
//! (it is then on a bookie's journal): nothing accepted is lost, and the broker's
//! deduplication makes a retried send harmless.
//!
//! The visitor is pseudonymised here, before anything leaves the process: the customer id (or
//! the session id) is replaced by its keyed hash in the current epoch
//! (`comptoir_privacy::Pseudonymizer`). The raw id is never logged, published or stored.

use comptoir_events::CloudEvent;
use comptoir_events::contracts::analytics::{Click, ClickBatch};
use comptoir_privacy::pseudonym::UnknownEpoch;
use pulsar::compression::{Compression, CompressionLz4};
use pulsar::producer::{Message, ProducerOptions};
use pulsar::{Producer, Pulsar, TokioExecutor};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::EVENT_SOURCE;
use crate::domain::{PseudonymKeys, Visitor, epoch_of};

/// Why a batch could not be put on the click stream.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no pseudonymisation key for the current epoch")]
    NoKey(#[from] UnknownEpoch),
    #[error("cannot encode the batch")]
    Encode(#[from] serde_json::Error),
    #[error("the broker did not take the batch")]
    Broker(#[source] Box<pulsar::Error>),
}

/// The producer of the click stream and the keys that pseudonymise visitors.
pub struct Ingest {
    producer: Mutex<Producer<TokioExecutor>>,
    keys: PseudonymKeys,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("keys", &self.keys).finish()
    }
}

impl Ingest {
    /// Connects a producer to `topic` (partitioned or not).
    pub async fn connect(
        pulsar: &Pulsar<TokioExecutor>,
        topic: &str,
        keys: PseudonymKeys,
    ) -> Result<Self, pulsar::Error> {
        let producer = pulsar
            .producer()
            .with_topic(topic)
            .with_options(ProducerOptions {
                // Concurrent requests' batches share broker frames: up to 1,000 messages or
                // 1 MiB, or whatever 5 ms gathered.
                batch_size: Some(1_000),
                batch_byte_size: Some(1024 * 1024),
                batch_timeout: Some(std::time::Duration::from_millis(5)),
                compression: Some(Compression::Lz4(CompressionLz4::default())),
                // The key picks the partition, so a visitor's batches stay in order.
                routing_policy: Some(pulsar::routing_policy::RoutingPolicy::RoundRobin),
                block_queue_if_full: true,
                ..Default::default()
            })
            .build()
            .await?;
        Ok(Self {
            producer: Mutex::new(producer),
            keys,
        })
    }

    /// The visitor's pseudonym in the epoch of `now`, and that epoch.
    pub fn pseudonym(
        &self,
        visitor: &Visitor,
        now: OffsetDateTime,
    ) -> Result<(String, String), UnknownEpoch> {
        let epoch = epoch_of(now);
        let pseudonym = match visitor {
            Visitor::Customer(id) => self
                .keys
                .pseudonymizer
                .pseudonym(&epoch, format!("customer:{id}").as_bytes())?,
            Visitor::Session(session) => self
                .keys
                .pseudonymizer
                .pseudonym(&epoch, format!("session:{session}").as_bytes())?,
        };
        Ok((epoch, pseudonym))
    }

    /// Puts `clicks` of `visitor` on the click stream and waits for the broker's receipt.
    pub async fn publish(
        &self,
        visitor: &Visitor,
        clicks: Vec<Click>,
        now: OffsetDateTime,
    ) -> Result<(), IngestError> {
        let (epoch, pseudonym) = self.pseudonym(visitor, now)?;
        let batch = ClickBatch {
            visitor: pseudonym.clone(),
            epoch,
            signed_in: matches!(visitor, Visitor::Customer(_)),
            clicks,
        };
        let event = CloudEvent::new(EVENT_SOURCE, pseudonym.clone(), batch);
        let message = Message {
            payload: serde_json::to_vec(&event)?,
            partition_key: Some(pseudonym),
            properties: comptoir_events::trace::current_context_headers(),
            event_time: Some(now.unix_timestamp() as u64 * 1000),
            ..Default::default()
        };
        // The lock covers handing the message to the producer's batch only; the receipt is
        // awaited without it, so concurrent requests share batches.
        let receipt = {
            let mut producer = self.producer.lock().await;
            producer
                .send_non_blocking(message)
                .await
                .map_err(|e| IngestError::Broker(Box::new(e)))?
        };
        receipt
            .await
            .map_err(|e| IngestError::Broker(Box::new(e)))?;
        Ok(())
    }

    /// Flushes and closes the producer (at shutdown, after the last request).
    pub async fn close(&self) {
        let mut producer = self.producer.lock().await;
        if let Err(error) = producer.close().await {
            tracing::warn!(%error, "Closing the click-stream producer failed");
        }
    }
}
