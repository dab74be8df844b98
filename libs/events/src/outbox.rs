//! The transactional outbox.
//!
//! A service writes each event into its own `outbox` table in the same transaction as the
//! change it describes ([`enqueue`], which also sends `NOTIFY outbox`), so a change is never committed without its event nor an
//! event published for a change that rolled back. The [`Relay`], a task inside the service,
//! publishes the rows in id order (so per-key order holds) and deletes them once the broker
//! has acknowledged them. A crash between acknowledgement and delete republishes the rows:
//! consumers deduplicate on the CloudEvents id.
//!
//! Expected table, created by each service's migrations:
//! ```sql
//! CREATE TABLE outbox (
//!     id          bigserial PRIMARY KEY,
//!     topic       text        NOT NULL,
//!     message_key text        NOT NULL,
//!     event_id    uuid        NOT NULL UNIQUE,
//!     event_type  text        NOT NULL,
//!     payload     jsonb       NOT NULL,
//!     properties  jsonb       NOT NULL DEFAULT '{}',  -- message properties (traceparent)
//!     created_at  timestamptz NOT NULL DEFAULT now()
//! );
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use pulsar::producer::{Message, ProducerOptions};
use pulsar::{Producer, Pulsar, TokioExecutor};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::envelope::{CloudEvent, EventType};

/// The advisory lock key of the relay's leadership: any fixed bigint, the same in every
/// replica ("outbox" in ASCII). Each service has its own database, so one key suffices.
const RELAY_LOCK: i64 = 0x6f75_7462_6f78;

/// The `outbox` table as the relay expects it, for migrations and tests to share.
pub const OUTBOX_TABLE_SQL: &str = "CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    message_key text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);";

/// Why an event could not be written or relayed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("cannot encode event")]
    Encode(#[from] serde_json::Error),
    #[error("outbox database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot get a database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("cannot publish to {topic}")]
    Publish {
        topic: String,
        #[source]
        source: Box<pulsar::Error>,
    },
}

/// Writes `event` to the outbox through `tx`, which should be the transaction making the
/// change. Returns the outbox id.
pub async fn enqueue<C, T>(tx: &C, topic: &str, event: &CloudEvent<T>) -> Result<i64, OutboxError>
where
    C: GenericClient + Sync,
    T: Serialize + EventType,
{
    let payload = serde_json::to_value(event)?;
    // The trace the change belongs to travels with its event (W3C traceparent in the message
    // properties), so the consumer's work joins the same trace.
    let properties = serde_json::to_value(crate::trace::current_context_headers())?;
    let row = tx
        .query_one(
            // The NOTIFY rides in the same statement (one round trip per event, not two). It
            // is delivered at commit, and once per transaction however many events it holds:
            // it wakes every relay listening on this database, in this process or another.
            "WITH row AS (INSERT INTO outbox \
                 (topic, message_key, event_id, event_type, payload, properties) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id) \
             SELECT id, pg_notify('outbox', '') FROM row",
            &[
                &topic,
                &event.subject,
                &event.id,
                &event.kind,
                &payload,
                &properties,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Publishes outbox rows to Pulsar. One per service process.
pub struct Relay {
    pool: Pool,
    pulsar: Pulsar<TokioExecutor>,
    producer_name: String,
    wake: Arc<Notify>,
    poll_interval: Duration,
    batch_size: i64,
    listen: Option<comptoir_store::DatabaseSettings>,
    /// Crash tests stop a relay between the broker's acknowledgement and the outbox delete,
    /// the window where a crash republishes: with `COMPTOIR_FAILPOINT=outbox-after-publish`
    /// in the environment at construction, the relay never goes past that point until the
    /// test kills the process.
    pause_after_publish: bool,
    /// Bumped each time the producers are rebuilt after an error; part of their names.
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("producer_name", &self.producer_name)
            .finish_non_exhaustive()
    }
}

struct Row {
    id: i64,
    topic: String,
    key: String,
    event_type: String,
    payload: Vec<u8>,
    properties: HashMap<String, String>,
}

impl Relay {
    /// `producer_name` names the service's relay (e.g. `catalog-outbox`); each process adds a
    /// unique suffix, and each rebuild of the producers after an error a generation number. Why not one stable name, which broker deduplication would key on across
    /// restarts: the Rust client numbers messages from 0 in every new producer and cannot take
    /// the outbox id as sequence id, so a restarted relay with the old name would see its first
    /// messages dropped as duplicates of the previous run's (a test proves it). Per process,
    /// deduplication still removes the client's own resends after a reconnect; across a crash,
    /// rows published but not yet deleted go out again and consumers deduplicate on the
    /// CloudEvents id.
    pub fn new(pool: Pool, pulsar: Pulsar<TokioExecutor>, producer_name: &str) -> Self {
        Self {
            pool,
            pulsar,
            producer_name: format!("{producer_name}-{}", uuid::Uuid::now_v7().simple()),
            wake: Arc::new(Notify::new()),
            poll_interval: Duration::from_secs(1),
            batch_size: 500,
            listen: None,
            pause_after_publish: std::env::var("COMPTOIR_FAILPOINT")
                .is_ok_and(|v| v == "outbox-after-publish"),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// [`Relay::new`] with a broker client of its own, which is what a service should use.
    ///
    /// pulsar-rs carries every producer and consumer of one client over a single TCP
    /// connection and never sets TCP_NODELAY on it. Consumers' acknowledgements get no reply,
    /// so on a shared connection the relay's next send waits behind Nagle's algorithm for the
    /// broker's delayed ACK (up to 40 ms on Linux): p99 insert-to-effect went from ~100 ms to
    /// ~25 ms at 1,000 events/s with a connection of its own (docs/performance.md).
    pub async fn connect(
        pool: Pool,
        settings: &crate::pulsar::PulsarSettings,
        producer_name: &str,
    ) -> Result<Self, crate::pulsar::ConnectError> {
        let pulsar = crate::pulsar::connect(settings).await?;
        Ok(Self::new(pool, pulsar, producer_name))
    }

    /// How often the relay looks for rows when nothing woke it (default 1 s).
    pub fn poll_every(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Also wake on `NOTIFY outbox` from the database (what [`enqueue`] sends at commit), over a
    /// dedicated connection made with `settings`; the periodic poll stays as the fallback while
    /// that connection is down.
    pub fn listen_on(mut self, settings: comptoir_store::DatabaseSettings) -> Self {
        self.listen = Some(settings);
        self
    }

    /// Notifying this wakes the relay at once; writers call it after committing. Rows written
    /// by other means are still picked up by the periodic poll.
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Runs until `shutdown` is cancelled, then publishes what is left once and returns.
    ///
    /// Several replicas of a service may each run a relay on the same outbox: one of them, the
    /// holder of a PostgreSQL advisory lock on a connection of its own, publishes; the others
    /// stand by and take over within a poll interval once that connection is gone. (Two
    /// relays publishing at once would still keep per-key order and the inbox would drop the
    /// duplicates; the lock avoids the waste.)
    pub async fn run(self, shutdown: CancellationToken) {
        let listener = self.listen.clone().map(|settings| {
            tokio::spawn(listen(settings, Arc::clone(&self.wake), shutdown.clone()))
        });
        let mut producers: HashMap<String, Producer<TokioExecutor>> = HashMap::new();
        let mut backoff = Duration::from_millis(100);
        let mut leadership: Option<deadpool_postgres::ClientWrapper> = None;
        loop {
            let stopping = shutdown.is_cancelled();
            if !self.lead(&mut leadership).await {
                // Not the leader: drop producers (another relay publishes) and check again at
                // the next poll or notification.
                self.retire(&mut producers).await;
                if stopping {
                    break;
                }
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
                continue;
            }
            match self.drain(&mut producers).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::error!(error = %chain(&error), retry_in_ms = backoff.as_millis() as u64, "Outbox relay failed; will retry");
                    // A producer may be broken; rebuild on the next attempt. Rows published
                    // twice across the rebuild are dropped by the consumers' inbox.
                    self.retire(&mut producers).await;
                    if stopping {
                        break;
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if stopping {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        self.retire(&mut producers).await;
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        tracing::info!("Outbox relay stopped");
    }

    /// Whether this relay holds the outbox's advisory lock, taking it if free. The lock lives
    /// as long as the connection in `held`, which is kept out of the pool for that.
    async fn lead(&self, held: &mut Option<deadpool_postgres::ClientWrapper>) -> bool {
        if held.as_ref().is_some_and(|client| !client.is_closed()) {
            return true;
        }
        if held.take().is_some() {
            tracing::warn!("Lost the outbox relay lock with its connection");
        }
        let taken = async {
            let client = self.pool.get().await.map_err(|e| chain(&e))?;
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&RELAY_LOCK])
                .await
                .map_err(|e| chain(&e))?;
            Ok::<_, String>(row.get::<_, bool>(0).then_some(client))
        }
        .await;
        match taken {
            Ok(Some(client)) => {
                tracing::info!(producer = %self.producer_name, "This relay publishes the outbox");
                // Kept out of the pool for good: back in it, another task could release the
                // lock or the pool could recycle the connection.
                *held = Some(deadpool_postgres::Object::take(client));
                metrics::gauge!("outbox_relay_leader").set(1.0);
                true
            }
            Ok(None) => {
                metrics::gauge!("outbox_relay_leader").set(0.0);
                false
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot take the outbox relay lock; will retry");
                metrics::gauge!("outbox_relay_leader").set(0.0);
                false
            }
        }
    }

    /// Publishes every row present, batch by batch, until the table is empty.
    async fn drain(
        &self,
        producers: &mut HashMap<String, Producer<TokioExecutor>>,
    ) -> Result<(), OutboxError> {
        loop {
            let client = self.pool.get().await?;
            let rows = client
                .query(
                    "SELECT id, topic, message_key, event_type, payload::text, properties \
                     FROM outbox ORDER BY id LIMIT $1",
                    &[&self.batch_size],
                )
                .await?;
            // Rows waiting to be published: exact without a second query while the backlog
            // fits in one batch, counted only when it does not.
            let backlog = if (rows.len() as i64) < self.batch_size {
                rows.len() as i64
            } else {
                client
                    .query_one("SELECT count(*) FROM outbox", &[])
                    .await?
                    .get::<_, i64>(0)
            };
            metrics::gauge!("outbox_backlog").set(backlog as f64);
            if rows.is_empty() {
                return Ok(());
            }
            let rows: Vec<Row> = rows
                .into_iter()
                .map(|r| Row {
                    id: r.get(0),
                    topic: r.get(1),
                    key: r.get(2),
                    event_type: r.get(3),
                    payload: r.get::<_, String>(4).into_bytes(),
                    properties: serde_json::from_value(r.get::<_, serde_json::Value>(5))
                        .unwrap_or_default(),
                })
                .collect();
            let started = Instant::now();
            // Pipeline the sends, then wait for every receipt: one round trip per batch rather
            // than per message, with order kept because one producer per topic sends in order.
            let mut receipts = Vec::with_capacity(rows.len());
            let mut failure = None;
            for row in &rows {
                let producer = match self.producer(producers, &row.topic).await {
                    Ok(producer) => producer,
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                };
                let message = Message {
                    payload: row.payload.clone(),
                    partition_key: Some(row.key.clone()),
                    properties: row
                        .properties
                        .clone()
                        .into_iter()
                        .chain([
                            ("ce_type".to_owned(), row.event_type.clone()),
                            ("outbox_id".to_owned(), row.id.to_string()),
                        ])
                        .collect(),
                    ..Default::default()
                };
                match producer.send_non_blocking(message).await {
                    Ok(receipt) => receipts.push((row.id, row.topic.clone(), receipt)),
                    Err(source) => {
                        failure = Some(OutboxError::Publish {
                            topic: row.topic.clone(),
                            source: Box::new(source),
                        });
                        break;
                    }
                }
            }
            // Every row of the round is queued: send each producer's open batch now rather than
            // when its batch timeout fires (a saga step's single command would otherwise wait
            // that long on every hop). A failed flush shows in the receipts below.
            let mut flushed: Vec<&str> = Vec::new();
            for (_, topic, _) in &receipts {
                if flushed.contains(&topic.as_str()) {
                    continue;
                }
                flushed.push(topic);
                if let Some(producer) = producers.get_mut(topic.as_str())
                    && let Err(error) = producer.send_batch().await
                {
                    tracing::debug!(%topic, %error, "Flushing the producer's batch failed");
                }
            }
            // Only the acknowledged prefix leaves the outbox: a row after a failed one must not
            // be deleted before it, or its key's order would break on the retry.
            let mut ids = Vec::with_capacity(receipts.len());
            let mut unbroken = true;
            for (id, topic, receipt) in receipts {
                match receipt.await {
                    Ok(_) if unbroken => ids.push(id),
                    Ok(_) => {}
                    Err(source) => {
                        unbroken = false;
                        failure.get_or_insert(OutboxError::Publish {
                            topic,
                            source: Box::new(source),
                        });
                    }
                }
            }
            if !ids.is_empty() {
                if self.pause_after_publish {
                    tracing::warn!("Failpoint outbox-after-publish reached; waiting to be killed");
                    std::future::pending::<()>().await;
                }
                client
                    .execute("DELETE FROM outbox WHERE id = ANY($1)", &[&ids])
                    .await?;
            }
            metrics::counter!("outbox_published_total").increment(ids.len() as u64);
            metrics::gauge!("outbox_backlog").set((backlog - ids.len() as i64) as f64);
            metrics::histogram!("outbox_publish_batch_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            tracing::debug!(count = ids.len(), "Published outbox rows");
            if let Some(error) = failure {
                return Err(error);
            }
        }
    }

    /// Closes every producer and moves to the next generation of names, so the next ones are
    /// new producers to the broker. Closed first: a dropped pulsar-rs producer stays
    /// registered on a live connection, and a new one with its name would be refused as
    /// "already connected". Renamed: a new producer numbers its messages from 0 again, and
    /// broker deduplication, keyed on the name, would take them for replays of the old one's
    /// and drop them while answering success. Whenever producers are let go — after an error,
    /// or when the lock was lost (a database outage, a standby leading meanwhile) and is taken
    /// back — this runs: dev/chaos.sh once caught a relay that took the lock back after a
    /// PostgreSQL restart and lost an order's command this way.
    async fn retire(&self, producers: &mut HashMap<String, Producer<TokioExecutor>>) {
        if producers.is_empty() {
            return;
        }
        for (_, mut producer) in producers.drain() {
            let _ = producer.close().await;
        }
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn producer<'a>(
        &self,
        producers: &'a mut HashMap<String, Producer<TokioExecutor>>,
        topic: &str,
    ) -> Result<&'a mut Producer<TokioExecutor>, OutboxError> {
        // Looked up by &str first so the per-message path allocates nothing; the entry API would
        // need an owned key for every row.
        if !producers.contains_key(topic) {
            let producer = self
                .pulsar
                .producer()
                .with_topic(topic)
                .with_name(format!(
                    "{}-{}",
                    self.producer_name,
                    self.generation.load(std::sync::atomic::Ordering::Relaxed)
                ))
                .with_options(ProducerOptions {
                    // Batching turns a drained batch of rows into a few broker frames.
                    batch_size: Some(500),
                    batch_byte_size: Some(512 * 1024),
                    batch_timeout: Some(Duration::from_millis(2)),
                    // Wait for room rather than fail with SlowDown when the client's send
                    // queue is full: back-pressure, not an error to retry.
                    block_queue_if_full: true,
                    ..Default::default()
                })
                .build()
                .await
                .map_err(|source| OutboxError::Publish {
                    topic: topic.to_owned(),
                    source: Box::new(source),
                })?;
            producers.insert(topic.to_owned(), producer);
        }
        Ok(producers
            .get_mut(topic)
            .expect("the producer for this topic was inserted above"))
    }
}

/// Keeps a `LISTEN outbox` connection open, waking the relay on each notification and on
/// each (re)connection: rows committed while no one listened are picked up then, not at the
/// next poll. While the connection is lost, the relay polls.
async fn listen(
    settings: comptoir_store::DatabaseSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let heartbeat = Duration::from_secs(5);
    comptoir_store::keep_listening(
        settings,
        "outbox",
        heartbeat,
        shutdown,
        |event| match event {
            comptoir_store::Listening::Connected | comptoir_store::Listening::Notified(_) => {
                wake.notify_one();
            }
            comptoir_store::Listening::Lost => {}
        },
    )
    .await;
}

pub(crate) fn chain(error: &(dyn std::error::Error + '_)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
