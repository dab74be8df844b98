//! Dead letters: list, inspect, replay or discard what consumers gave up on.
//!
//! A consumer moves a message it failed `max_redeliveries` times to `<topic>-<sub>-DLQ`
//! (see [`crate::consumer`]), adding the properties `REAL_TOPIC` and `ORIGIN_MESSAGE_ID`. An
//! operator then looks at it, fixes the cause (a bug, missing reference data) and replays it
//! to its original topic, or discards it.
//!
//! What is still to be dealt with is tracked by one durable subscription per dead-letter
//! topic, [`CURSOR`]: a dead letter is *pending* until it is replayed or discarded, which
//! acknowledges it there. The cursor is created at the earliest retained message the first
//! time a topic is looked at, so dead letters written before that (kept by the namespace's
//! retention policy) count too. Replaying republishes the message unchanged (same payload,
//! key and properties, so its trace and event id carry over) with a fresh retry budget; the
//! consumer's inbox still guarantees it is applied at most once.
//!
//! Inspecting peeks through the admin API and never moves the cursor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use futures::TryStreamExt;
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::producer::Message;
use pulsar::{Consumer, Producer, Pulsar, SubType, TokioExecutor};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::admin::{AdminError, PulsarAdmin, static_method};

/// The subscription on every dead-letter topic that marks what is still pending.
pub const CURSOR: &str = "comptoir-dlq";
/// Dead-letter topics end with this, as Pulsar's own clients name them.
pub const SUFFIX: &str = "-DLQ";

const REAL_TOPIC: &str = "REAL_TOPIC";
const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Added on replay, so the consumer's logs and an audit can tell a replayed message apart.
pub const REPLAYED_FROM: &str = "comptoir-replayed-from";

/// Why a dead-letter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("{topic} is not a dead-letter topic (its name must end with {SUFFIX})")]
    NotDeadLetterTopic { topic: String },
    #[error("dead letter {message_id} on {topic} names no original topic (no {REAL_TOPIC})")]
    NoOrigin { topic: String, message_id: String },
    #[error("Pulsar refused {what}")]
    Pulsar {
        what: String,
        #[source]
        source: Box<pulsar::Error>,
    },
    #[error(
        "expected {expected} pending dead letters on {topic}, received {received} before timing out"
    )]
    Incomplete {
        topic: String,
        expected: u64,
        received: u64,
    },
}

fn pulsar_error(what: impl Into<String>) -> impl FnOnce(pulsar::Error) -> DlqError {
    let what = what.into();
    move |source| DlqError::Pulsar {
        what,
        source: Box::new(source),
    }
}

/// One dead-letter topic and how many of its messages are pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterTopic {
    pub topic: String,
    pub pending: u64,
}

/// One pending dead letter, as peeked from the cursor.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// 1-based position among the pending dead letters of its topic.
    pub position: u64,
    /// `ledger:entry` of the dead letter itself.
    pub message_id: String,
    pub key: Option<String>,
    /// The topic the consumer failed on, and the message id there.
    pub real_topic: Option<String>,
    pub origin_message_id: Option<String>,
    pub publish_time: Option<String>,
    /// From the CloudEvents envelope, when the payload is one.
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub properties: BTreeMap<String, String>,
    /// The payload as JSON when it parses, else as lossy UTF-8 text.
    pub payload: serde_json::Value,
}

/// Which pending dead letters an operation applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    /// Event ids (from the envelope) or message ids (`ledger:entry`).
    Ids(HashSet<String>),
}

impl Selection {
    fn matches(&self, message_id: &str, event_id: Option<&str>) -> bool {
        match self {
            Self::All => true,
            Self::Ids(ids) => ids.contains(message_id) || event_id.is_some_and(|e| ids.contains(e)),
        }
    }
}

/// What to do with the selected dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Republish to the original topic, then acknowledge on the cursor.
    Replay,
    /// Acknowledge on the cursor only: the operator decided the event must not be applied.
    Discard,
}

/// What an operation did.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Event ids (or message ids when there is no envelope) acted upon.
    pub done: Vec<String>,
    /// Pending dead letters the selection did not match; still pending.
    pub kept: u64,
}

fn short(topic: &str) -> &str {
    topic.trim_start_matches("persistent://")
}

fn ensure_dlq(topic: &str) -> Result<(), DlqError> {
    if topic.ends_with(SUFFIX) {
        Ok(())
    } else {
        Err(DlqError::NotDeadLetterTopic {
            topic: topic.to_owned(),
        })
    }
}

/// The topic to replay to: `REAL_TOPIC` without a `-partition-N` suffix, so a replay to a
/// partitioned topic is routed by key again like any other message.
pub fn replay_target(real_topic: &str) -> &str {
    match real_topic.rsplit_once("-partition-") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => real_topic,
    }
}

/// `ledger:entry` from the forms the broker and clients print (`l:e`, `l:e:p`, `l:e:p:b`).
fn normalize_message_id(id: &str) -> String {
    id.split(':').take(2).collect::<Vec<_>>().join(":")
}

impl PulsarAdmin {
    /// Persistent topics of `namespace` (full names).
    pub async fn topics(&self, namespace: &str) -> Result<Vec<String>, AdminError> {
        let text = self
            .call(Method::GET, &format!("persistent/{namespace}"), None, &[])
            .await?;
        Ok(serde_json::from_str(&text).unwrap_or_default())
    }

    /// Creates `subscription` on `topic` at the earliest retained message, unless it exists.
    pub async fn ensure_subscription_from_earliest(
        &self,
        topic: &str,
        subscription: &str,
    ) -> Result<(), AdminError> {
        // MessageId.earliest in the admin API's JSON form.
        let earliest = json!({ "ledgerId": -1, "entryId": -1, "partitionIndex": -1 });
        self.call(
            Method::PUT,
            &format!("persistent/{}/subscription/{subscription}", short(topic)),
            Some(earliest),
            &[StatusCode::CONFLICT],
        )
        .await
        .map(drop)
    }

    /// The `position`-th (1-based) unacknowledged message of a subscription, without
    /// consuming it: its headers (`X-Pulsar-*`) and payload.
    pub async fn peek(
        &self,
        topic: &str,
        subscription: &str,
        position: u64,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), AdminError> {
        let path = format!(
            "persistent/{}/subscription/{subscription}/position/{position}",
            short(topic)
        );
        let request = self.request(Method::GET, &path);
        let url = format!("{path} (admin)");
        let response = request.send().await.map_err(|source| AdminError::Http {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|source| AdminError::Http {
                url: url.clone(),
                source,
            })?
            .to_vec();
        if !status.is_success() {
            return Err(AdminError::Status {
                method: static_method(&Method::GET),
                url,
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok((headers, body))
    }
}

async fn pending(admin: &PulsarAdmin, topic: &str) -> Result<u64, DlqError> {
    admin
        .ensure_subscription_from_earliest(topic, CURSOR)
        .await?;
    let stats = admin.topic_stats(topic).await?;
    Ok(stats["subscriptions"][CURSOR]["msgBacklog"]
        .as_u64()
        .unwrap_or(0))
}

/// Every dead-letter topic of `namespace` with its pending count.
pub async fn list(admin: &PulsarAdmin, namespace: &str) -> Result<Vec<DeadLetterTopic>, DlqError> {
    let mut topics = Vec::new();
    for topic in admin.topics(namespace).await? {
        if !topic.ends_with(SUFFIX) {
            continue;
        }
        let pending = pending(admin, &topic).await?;
        topics.push(DeadLetterTopic { topic, pending });
    }
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(topics)
}

/// Up to `limit` pending dead letters of `topic`, oldest first. Moves nothing.
pub async fn inspect(
    admin: &PulsarAdmin,
    topic: &str,
    limit: u64,
) -> Result<Vec<DeadLetter>, DlqError> {
    ensure_dlq(topic)?;
    let pending = pending(admin, topic).await?;
    let mut letters = Vec::new();
    for position in 1..=pending.min(limit) {
        let (headers, body) = admin.peek(topic, CURSOR, position).await?;
        letters.push(dead_letter(position, &headers, &body));
    }
    Ok(letters)
}

fn dead_letter(position: u64, headers: &reqwest::header::HeaderMap, body: &[u8]) -> DeadLetter {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // Pulsar 4 sends all message properties as one JSON object in `X-Pulsar-PROPERTY`.
    let properties: BTreeMap<String, String> = header("x-pulsar-property")
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    let property = |name: &str| properties.get(name).cloned();
    let payload = serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
    DeadLetter {
        position,
        message_id: header("x-pulsar-message-id")
            .map(|id| normalize_message_id(&id))
            .unwrap_or_default(),
        key: header("x-pulsar-partition-key"),
        real_topic: property(REAL_TOPIC),
        origin_message_id: property(ORIGIN_MESSAGE_ID),
        publish_time: header("x-pulsar-publish-time"),
        event_id: payload["id"].as_str().map(str::to_owned),
        event_type: payload["type"].as_str().map(str::to_owned),
        properties,
        payload,
    }
}

/// Replays or discards the selected pending dead letters of `topic`; the rest stay pending.
///
/// Takes the cursor with an exclusive subscription, so two operators cannot act on the same
/// topic at once (the second gets an error). A replayed message is acknowledged only after
/// the original topic has acknowledged its republication.
pub async fn resolve(
    admin: &PulsarAdmin,
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    action: Action,
    selection: &Selection,
) -> Result<Outcome, DlqError> {
    ensure_dlq(topic)?;
    let expected = pending(admin, topic).await?;
    let mut outcome = Outcome::default();
    if expected == 0 {
        return Ok(outcome);
    }
    let mut consumer: Consumer<Vec<u8>, TokioExecutor> = pulsar
        .consumer()
        .with_topic(topic)
        .with_subscription(CURSOR)
        .with_subscription_type(SubType::Exclusive)
        .with_options(ConsumerOptions::default().with_initial_position(InitialPosition::Earliest))
        .build()
        .await
        .map_err(pulsar_error(format!("the cursor of {topic}")))?;
    let mut producers: HashMap<String, Producer<TokioExecutor>> = HashMap::new();
    let result = drain(
        &mut consumer,
        &mut producers,
        pulsar,
        topic,
        expected,
        action,
        selection,
        &mut outcome,
    )
    .await;
    for (_, mut producer) in producers {
        let _ = producer.close().await;
    }
    // Closed explicitly: what was received and not acknowledged goes back to the cursor.
    let _ = consumer.close().await;
    result.map(|()| outcome)
}

#[allow(clippy::too_many_arguments)]
async fn drain(
    consumer: &mut Consumer<Vec<u8>, TokioExecutor>,
    producers: &mut HashMap<String, Producer<TokioExecutor>>,
    pulsar: &Pulsar<TokioExecutor>,
    topic: &str,
    expected: u64,
    action: Action,
    selection: &Selection,
    outcome: &mut Outcome,
) -> Result<(), DlqError> {
    for received in 0..expected {
        let next = tokio::time::timeout(Duration::from_secs(30), consumer.try_next()).await;
        let message = match next {
            Ok(Ok(Some(message))) => message,
            Ok(Err(source)) => return Err(pulsar_error(format!("reading {topic}"))(source)),
            Ok(Ok(None)) | Err(_) => {
                return Err(DlqError::Incomplete {
                    topic: topic.to_owned(),
                    expected,
                    received,
                });
            }
        };
        let id = &message.message_id.id;
        let message_id = format!("{}:{}", id.ledger_id, id.entry_id);
        let envelope: Option<serde_json::Value> =
            serde_json::from_slice(&message.payload.data).ok();
        let event_id = envelope
            .as_ref()
            .and_then(|e| e["id"].as_str().map(str::to_owned));
        if !selection.matches(&message_id, event_id.as_deref()) {
            outcome.kept += 1;
            continue;
        }
        if action == Action::Replay {
            let mut properties: HashMap<String, String> = message
                .metadata()
                .properties
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone()))
                .collect();
            let real_topic = properties
                .remove(REAL_TOPIC)
                .ok_or_else(|| DlqError::NoOrigin {
                    topic: topic.to_owned(),
                    message_id: message_id.clone(),
                })?;
            properties.remove(ORIGIN_MESSAGE_ID);
            properties.insert(REPLAYED_FROM.to_owned(), topic.to_owned());
            let target = replay_target(&real_topic).to_owned();
            if !producers.contains_key(&target) {
                let producer = pulsar
                    .producer()
                    .with_topic(&target)
                    .build()
                    .await
                    .map_err(pulsar_error(format!("a producer on {target}")))?;
                producers.insert(target.clone(), producer);
            }
            let producer = producers.get_mut(&target).expect("inserted above");
            let metadata = message.metadata();
            let republished = Message {
                payload: message.payload.data.clone(),
                properties,
                partition_key: metadata.partition_key.clone(),
                event_time: metadata.event_time,
                ..Default::default()
            };
            producer
                .send_non_blocking(republished)
                .await
                .map_err(pulsar_error(format!(
                    "republishing {message_id} to {target}"
                )))?
                .await
                .map_err(pulsar_error(format!(
                    "republishing {message_id} to {target}"
                )))?;
        }
        consumer
            .ack(&message)
            .await
            .map_err(|e| pulsar_error(format!("acknowledging {message_id}"))(e.into()))?;
        outcome.done.push(event_id.unwrap_or(message_id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_to_the_partitioned_topic_not_the_partition() {
        assert_eq!(
            replay_target("persistent://comptoir/orders/order-events-partition-3"),
            "persistent://comptoir/orders/order-events"
        );
        assert_eq!(
            replay_target("persistent://comptoir/catalog/product-events"),
            "persistent://comptoir/catalog/product-events"
        );
        assert_eq!(
            replay_target("persistent://t/n/odd-partition-x"),
            "persistent://t/n/odd-partition-x"
        );
    }

    #[test]
    fn message_ids_compare_as_ledger_and_entry() {
        assert_eq!(normalize_message_id("12:5:-1:-1"), "12:5");
        assert_eq!(normalize_message_id("12:5"), "12:5");
        let selection = Selection::Ids(HashSet::from(["12:5".to_owned()]));
        assert!(selection.matches("12:5", None));
        assert!(!selection.matches("12:6", Some("other")));
        assert!(Selection::All.matches("1:1", None));
    }

    #[test]
    fn only_dead_letter_topics_are_resolved() {
        assert!(ensure_dlq("persistent://t/n/x-sub-DLQ").is_ok());
        assert!(matches!(
            ensure_dlq("persistent://t/n/x"),
            Err(DlqError::NotDeadLetterTopic { .. })
        ));
    }
}
