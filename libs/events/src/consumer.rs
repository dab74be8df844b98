//! Idempotent consumers: the one way a Comptoir service applies events.
//!
//! - **Key_Shared** subscription: events of one aggregate (one message key) go to one consumer
//!   at a time, in order, while a subscription still spreads keys over many consumers.
//! - **Inbox**: the event id is recorded in the same PostgreSQL transaction as the effect, so a
//!   redelivered or republished event (see ADR 0007) is acknowledged without applying it twice.
//! - **Ack after commit**; a failing handler gets a **negative ack after a backoff** that grows
//!   with its attempts; after `max_redeliveries` the client moves the message to the
//!   **dead-letter topic** and its key's successors carry on.
//! - **Metrics** per topic and subscription: `events_consumed_total`,
//!   `events_duplicates_total`, `events_failed_total`, `events_dead_lettered_total`,
//!   `events_consumer_stalls_total` and the histogram `events_consume_lag_seconds` (broker
//!   publish time to committed effect). The backlog in messages is the broker's own
//!   `pulsar_subscription_back_log`.
//! - **Infrastructure failures are not the message's fault**: while PostgreSQL is unreachable,
//!   the consumer holds the message, acknowledges nothing and retries; nothing goes to the
//!   dead-letter topic because the database was down.
//!
//! Expected table, created by each consuming service's migrations:
//! ```sql
//! CREATE TABLE inbox (
//!     subscription text        NOT NULL,
//!     event_id     uuid        NOT NULL,
//!     processed_at timestamptz NOT NULL DEFAULT now(),
//!     PRIMARY KEY (subscription, event_id)
//! );
//! ```

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::time::Duration;

use deadpool_postgres::{Pool, Transaction};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use pulsar::consumer::{ConsumerOptions, DeadLetterPolicy, InitialPosition, Message};
use pulsar::proto::MessageIdData;
use pulsar::{Consumer, Pulsar, SubType, TokioExecutor};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

use crate::envelope::CloudEvent;
use crate::outbox::chain;

/// The `inbox` table as consumers expect it, for migrations and tests to share.
pub const INBOX_TABLE_SQL: &str = "CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);";

/// The error type handlers return: anything, with its cause chain.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Applies one event inside the transaction that also records it in the inbox.
///
/// A transaction holds the events that arrived together (up to `max_batch`): `begin`, then
/// `handle` for each event not seen before, in order, then `finish`, then the commit. A handler
/// whose effects add up (counters) may gather them in `handle` and write them once in
/// `finish`, one statement per transaction instead of one per event; `begin` drops what a
/// failed attempt gathered (its transaction was rolled back).
pub trait Handler<T>: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a Transaction<'a>,
        event: &'a CloudEvent<T>,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// A transaction starts: forget anything gathered for an earlier one.
    fn begin(&self) {}

    /// Every event of the transaction was handled; it commits after this.
    fn finish<'a>(&'a self, _tx: &'a Transaction<'a>) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Where and how to consume.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub topic: String,
    /// The subscription, named after the consuming service and purpose (`orders-catalog-sync`).
    pub subscription: String,
    /// Failed deliveries after which the client moves a message to the dead-letter topic.
    pub max_redeliveries: usize,
    /// Defaults to `<topic>-<subscription>-DLQ`, the name Pulsar's own clients use.
    pub dead_letter_topic: String,
    /// First retry delay after a handler failure; doubles per attempt up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Most messages applied in one transaction. Whatever has already arrived is taken
    /// together (never waited for), so a busy consumer commits once per batch and an idle one
    /// still applies each event as soon as it arrives.
    pub max_batch: usize,
    /// Transactions applied at once. The messages taken together are split by key into this
    /// many lanes (one key always in the same lane, so its events stay in order); the lanes
    /// run concurrently, each one transaction of up to `max_batch` events after another. A
    /// handler that waits (a provider's answer, a contended row lock) then no longer holds up
    /// every other key. Needs as many pool connections, and a handler whose `begin`/`finish`
    /// keep nothing across transactions (a gathering handler stays at 1).
    pub lanes: usize,
}

impl ConsumerConfig {
    pub fn new(topic: &str, subscription: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            subscription: subscription.to_owned(),
            max_redeliveries: 5,
            dead_letter_topic: format!("{topic}-{subscription}-DLQ"),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(30),
            max_batch: 100,
            lanes: 1,
        }
    }

    /// Backoff before the nack of a message that failed `attempts` times.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// A message, its decoded event and the span it is handled in.
struct Received<T> {
    message: Message<Vec<u8>>,
    event: CloudEvent<T>,
    span: tracing::Span,
}

/// What applying one event came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Applied,
    Duplicate,
}

#[derive(Debug)]
enum ApplyError {
    /// The handler refused the event: retry later, dead-letter eventually.
    Handler(HandlerError),
    /// The database is unreachable or failed: not the event's fault, hold and retry.
    Infrastructure(String),
}

/// A running consumer of `T` events.
pub struct EventConsumer<T, H> {
    pool: Pool,
    pulsar: Pulsar<TokioExecutor>,
    config: ConsumerConfig,
    handler: H,
    _event: PhantomData<fn() -> T>,
}

impl<T, H> std::fmt::Debug for EventConsumer<T, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventConsumer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn labels(config: &ConsumerConfig) -> [(&'static str, String); 2] {
    [
        ("topic", config.topic.clone()),
        ("subscription", config.subscription.clone()),
    ]
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn id_key(id: &MessageIdData) -> (u64, u64, i32, i32) {
    (
        id.ledger_id,
        id.entry_id,
        id.partition.unwrap_or(-1),
        id.batch_index.unwrap_or(-1),
    )
}

impl<T, H> EventConsumer<T, H>
where
    T: DeserializeOwned + Send + Sync + 'static,
    H: Handler<T>,
{
    pub fn new(
        pool: Pool,
        pulsar: Pulsar<TokioExecutor>,
        config: ConsumerConfig,
        handler: H,
    ) -> Self {
        Self {
            pool,
            pulsar,
            config,
            handler,
            _event: PhantomData,
        }
    }

    /// Subscribes (retrying with backoff while the broker refuses or is unreachable, so a
    /// service that starts before its broker still consumes once it is there), then consumes
    /// until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.config.retry_base;
        let mut consumer = loop {
            match self.subscribe().await {
                Ok(consumer) => break consumer,
                Err(error) => {
                    metrics::counter!("events_subscribe_failures_total", &labels(&self.config))
                        .increment(1);
                    tracing::warn!(topic = %self.config.topic, subscription = %self.config.subscription, %error, retry_in_ms = backoff.as_millis() as u64, "Cannot subscribe; will retry");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.config.retry_max);
                }
            }
        };
        tracing::info!(topic = %self.config.topic, subscription = %self.config.subscription, "Consuming");
        let mut retries: DelayQueue<(String, MessageIdData)> = DelayQueue::new();
        let mut attempts: HashMap<(u64, u64, i32, i32), u32> = HashMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(expired) = retries.next(), if !retries.is_empty() => {
                    // The topic the message came from: on a partitioned topic that is its
                    // partition (`…-partition-N`), the only name the client nacks it under.
                    let (topic, id) = expired.into_inner();
                    if let Err(error) = consumer.nack_with_id(&topic, id).await {
                        tracing::warn!(%error, "Negative acknowledgement failed; the broker will redeliver on reconnect");
                    }
                }
                next = consumer.try_next() => match next {
                    Ok(Some(message)) => {
                        let batch = self.gather(&mut consumer, message);
                        let stop = self.process(&mut consumer, batch, &mut retries, &mut attempts, &shutdown).await;
                        if stop { break; }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "Receiving failed; the client reconnects");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                },
            }
        }
        let _ = consumer.close().await;
        tracing::info!(subscription = %self.config.subscription, "Consumer stopped");
    }

    async fn subscribe(&self) -> Result<Consumer<Vec<u8>, TokioExecutor>, pulsar::Error> {
        self.pulsar
            .consumer()
            .with_topic(&self.config.topic)
            .with_subscription(&self.config.subscription)
            .with_subscription_type(SubType::KeyShared)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .with_dead_letter_policy(DeadLetterPolicy {
                max_redeliver_count: self.config.max_redeliveries,
                dead_letter_topic: self.config.dead_letter_topic.clone(),
            })
            .build()
            .await
    }

    /// Takes `first` and whatever else has already arrived, up to `max_batch` messages per
    /// lane, without waiting for more.
    fn gather(
        &self,
        consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
        first: Message<Vec<u8>>,
    ) -> Vec<Message<Vec<u8>>> {
        let mut batch = vec![first];
        let most = self.config.max_batch.max(1) * self.config.lanes.max(1);
        while batch.len() < most {
            // Polled once: a message already in the client's queue is taken, none is awaited.
            match consumer.try_next().now_or_never() {
                Some(Ok(Some(message))) => batch.push(message),
                Some(Err(error)) => {
                    tracing::warn!(%error, "Receiving failed; the client reconnects");
                    break;
                }
                Some(Ok(None)) | None => break,
            }
        }
        batch
    }

    /// Applies a batch of messages in one transaction and acknowledges them after the commit.
    /// If a handler refuses one event, the batch is rolled back and its messages are taken one
    /// at a time, so only the refused event is retried. Returns true when shutdown interrupted
    /// the work (what was not committed stays unacknowledged).
    async fn process(
        &self,
        consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
        messages: Vec<Message<Vec<u8>>>,
        retries: &mut DelayQueue<(String, MessageIdData)>,
        attempts: &mut HashMap<(u64, u64, i32, i32), u32>,
        shutdown: &CancellationToken,
    ) -> bool {
        let labels = labels(&self.config);
        let mut batch = Vec::with_capacity(messages.len());
        for message in messages {
            match serde_json::from_slice::<CloudEvent<T>>(&message.payload.data) {
                Ok(event) => {
                    let span = self.span(&message, &event);
                    batch.push(Received {
                        message,
                        event,
                        span,
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "Undecodable event; it will reach the dead-letter topic");
                    self.fail(retries, attempts, &message, &labels);
                }
            }
        }
        if batch.is_empty() {
            return false;
        }
        self.process_decoded(consumer, batch, retries, attempts, shutdown)
            .await
    }

    /// [`Self::process`] for decoded messages: split into lanes by key, apply the lanes
    /// concurrently, then acknowledge what was applied and schedule the retry of what was
    /// refused.
    async fn process_decoded(
        &self,
        consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
        batch: Vec<Received<T>>,
        retries: &mut DelayQueue<(String, MessageIdData)>,
        attempts: &mut HashMap<(u64, u64, i32, i32), u32>,
        shutdown: &CancellationToken,
    ) -> bool {
        let labels = labels(&self.config);
        let lanes = split_into_lanes(batch, self.config.lanes);
        let settled =
            futures::future::join_all(lanes.into_iter().map(|lane| self.settle(lane, shutdown)))
                .await;
        let mut interrupted = false;
        for (results, stopped) in settled {
            interrupted |= stopped;
            for (Received { message, event, .. }, result) in results {
                match result {
                    Ok(outcome) => {
                        self.acknowledge(consumer, &message, &event, outcome, &labels)
                            .await;
                        attempts.remove(&id_key(message.message_id()));
                    }
                    Err(error) => {
                        tracing::warn!(event_id = %event.id, event_type = %event.kind, error = %chain(error.as_ref()), "Handler failed");
                        self.fail(retries, attempts, &message, &labels);
                    }
                }
            }
        }
        interrupted
    }

    /// Applies one lane's events, `max_batch` per transaction, one transaction after another.
    /// Returns what became of each event settled, and true when shutdown interrupted the work
    /// (the events not returned stay unacknowledged).
    async fn settle(&self, lane: Vec<Received<T>>, shutdown: &CancellationToken) -> Settled<T> {
        let mut settled = Vec::with_capacity(lane.len());
        let mut events = lane.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<Received<T>> =
                events.by_ref().take(self.config.max_batch.max(1)).collect();
            let (results, stopped) = self.settle_transaction(chunk, shutdown).await;
            settled.extend(results);
            if stopped {
                return (settled, true);
            }
        }
        (settled, false)
    }

    /// Applies events in one transaction, holding them while the database is unavailable. If
    /// the handler refuses one, the transaction is rolled back and the events are applied one
    /// at a time, so only the refused event is retried.
    async fn settle_transaction(
        &self,
        batch: Vec<Received<T>>,
        shutdown: &CancellationToken,
    ) -> Settled<T> {
        let labels = labels(&self.config);
        let mut infra_backoff = self.config.retry_base;
        loop {
            match self.apply(&batch).await {
                Ok(outcomes) => {
                    metrics::histogram!("events_consume_batch_size", &labels)
                        .record(batch.len() as f64);
                    let results = batch
                        .into_iter()
                        .zip(outcomes.into_iter().map(Ok))
                        .collect();
                    return (results, false);
                }
                Err(ApplyError::Handler(error)) if batch.len() == 1 => {
                    return (
                        batch.into_iter().zip(std::iter::once(Err(error))).collect(),
                        false,
                    );
                }
                Err(ApplyError::Handler(_)) => {
                    let mut settled = Vec::with_capacity(batch.len());
                    for single in batch {
                        let (results, stopped) =
                            Box::pin(self.settle_transaction(vec![single], shutdown)).await;
                        settled.extend(results);
                        if stopped {
                            return (settled, true);
                        }
                    }
                    return (settled, false);
                }
                Err(ApplyError::Infrastructure(reason)) => {
                    metrics::counter!("events_consumer_stalls_total", &labels).increment(1);
                    tracing::warn!(events = batch.len(), %reason, retry_in_ms = infra_backoff.as_millis() as u64, "Database unavailable; holding the events");
                    tokio::select! {
                        () = shutdown.cancelled() => return (Vec::new(), true),
                        () = tokio::time::sleep(infra_backoff) => {}
                    }
                    infra_backoff = (infra_backoff * 2).min(self.config.retry_max);
                }
            }
        }
    }

    /// The span an event is handled in, continuing the trace its message carries.
    fn span(&self, message: &Message<Vec<u8>>, event: &CloudEvent<T>) -> tracing::Span {
        let properties: HashMap<String, String> = message
            .metadata()
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let span = tracing::info_span!(
            "consume_event",
            event_id = %event.id,
            event_type = %event.kind,
            subscription = %self.config.subscription,
        );
        crate::trace::continue_trace(&span, &properties);
        span
    }

    async fn acknowledge(
        &self,
        consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
        message: &Message<Vec<u8>>,
        event: &CloudEvent<T>,
        outcome: Outcome,
        labels: &[(&'static str, String); 2],
    ) {
        if let Err(error) = consumer.ack(message).await {
            // The effect is committed; a redelivery will be recognised as a duplicate.
            tracing::warn!(%error, event_id = %event.id, "Acknowledgement failed");
        }
        let counter = if outcome == Outcome::Applied {
            "events_consumed_total"
        } else {
            "events_duplicates_total"
        };
        metrics::counter!(counter, labels).increment(1);
        // Lag: from the broker accepting the message to its effect being committed here. It
        // grows when the consumer falls behind (or events are held).
        let lag_ms = now_ms().saturating_sub(message.metadata().publish_time);
        metrics::histogram!("events_consume_lag_seconds", labels).record(lag_ms as f64 / 1000.0);
    }

    fn fail(
        &self,
        retries: &mut DelayQueue<(String, MessageIdData)>,
        attempts: &mut HashMap<(u64, u64, i32, i32), u32>,
        message: &Message<Vec<u8>>,
        labels: &[(&'static str, String); 2],
    ) {
        let id = message.message_id().clone();
        let count = {
            let entry = attempts.entry(id_key(&id)).or_insert(0);
            *entry += 1;
            *entry
        };
        metrics::counter!("events_failed_total", labels).increment(1);
        if count as usize >= self.config.max_redeliveries {
            // This delivery was the last: the client moves the next one (its redelivery count
            // now equals `max_redeliveries`) to the dead-letter topic without handing it to us.
            metrics::counter!("events_dead_lettered_total", labels).increment(1);
            attempts.remove(&id_key(&id));
        }
        let delay = self.config.backoff(count);
        retries.insert((message.topic.clone(), id), delay);
    }

    /// Records the events in the inbox and applies the new ones, in order, in one transaction.
    async fn apply(&self, batch: &[Received<T>]) -> Result<Vec<Outcome>, ApplyError> {
        let infra = |e: &dyn std::error::Error| ApplyError::Infrastructure(chain(e));
        let mut client = self.pool.get().await.map_err(|e| infra(&e))?;
        let tx = client.transaction().await.map_err(|e| infra(&e))?;
        self.handler.begin();
        let ids: Vec<uuid::Uuid> = batch.iter().map(|r| r.event.id).collect();
        // One statement records the whole batch; it returns the ids not seen before (a
        // republished event appears once, even twice in the same batch).
        let mut new: HashSet<uuid::Uuid> = tx
            .query(
                "INSERT INTO inbox (subscription, event_id) SELECT $1, unnest($2::uuid[]) \
                 ON CONFLICT DO NOTHING RETURNING event_id",
                &[&self.config.subscription, &ids],
            )
            .await
            .map_err(|e| infra(&e))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut outcomes = Vec::with_capacity(batch.len());
        for Received { event, span, .. } in batch {
            if !new.remove(&event.id) {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            let handled =
                tracing::Instrument::instrument(self.handler.handle(&tx, event), span.clone())
                    .await;
            if let Err(error) = handled {
                drop(tx);
                return Err(refusal(&client, error));
            }
            outcomes.push(Outcome::Applied);
        }
        if let Err(error) = self.handler.finish(&tx).await {
            drop(tx);
            return Err(refusal(&client, error));
        }
        tx.commit().await.map_err(|e| infra(&e))?;
        Ok(outcomes)
    }
}

/// Events settled (applied, duplicate, or refused with the handler's error) and whether
/// shutdown interrupted the work.
type Settled<T> = (Vec<(Received<T>, Result<Outcome, HandlerError>)>, bool);

/// Splits messages into `lanes` lanes by message key, keeping their order within each lane;
/// a message without a key (no order to keep) goes by its event id. Empty lanes are dropped.
fn split_into_lanes<T>(batch: Vec<Received<T>>, lanes: usize) -> Vec<Vec<Received<T>>> {
    use std::hash::{Hash, Hasher};
    let lanes = lanes.max(1);
    if lanes == 1 {
        return vec![batch];
    }
    let mut split: Vec<Vec<Received<T>>> = (0..lanes).map(|_| Vec::new()).collect();
    for received in batch {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        match received.message.key() {
            Some(key) => key.hash(&mut hasher),
            None => received.event.id.hash(&mut hasher),
        }
        split[(hasher.finish() % lanes as u64) as usize].push(received);
    }
    split.retain(|lane| !lane.is_empty());
    split
}

/// A handler's failure: a refusal of the events, unless the connection died under it.
fn refusal(client: &deadpool_postgres::Object, error: HandlerError) -> ApplyError {
    if client.is_closed() {
        ApplyError::Infrastructure(chain(error.as_ref()))
    } else {
        ApplyError::Handler(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = ConsumerConfig::new("persistent://t/n/x", "s");
        assert_eq!(config.backoff(1), Duration::from_millis(200));
        assert_eq!(config.backoff(2), Duration::from_millis(400));
        assert_eq!(config.backoff(4), Duration::from_millis(1600));
        assert_eq!(config.backoff(40), Duration::from_secs(30));
        assert_eq!(config.dead_letter_topic, "persistent://t/n/x-s-DLQ");
    }
}
