//! Event contracts and the Pulsar plumbing every Comptoir service publishes and consumes through.
//!
//! - [`envelope`]: the CloudEvents 1.0 JSON envelope every event travels in.
//! - [`contracts`]: one module per bounded context with its event payload types.
//! - [`pulsar`]: client settings and connection (token auth, TLS), topic names.
//! - [`admin`]: idempotent provisioning of tenants and namespaces over the admin REST API.
//! - [`consumer`]: idempotent Key_Shared consumers with inbox, backoff and dead letters.
//! - [`dlq`]: list, inspect, replay or discard dead letters (the `comptoir-xtask dlq` CLI).
//! - [`gdpr`]: a service's part in GDPR exports and erasures (consumers that reply via the outbox).
//! - [`outbox`]: the transactional outbox: write the event with the change, relay it after.
//! - [`trace`]: W3C trace context in message properties, both ways.
//! - [`topology`]: tenant, namespaces, policies and permissions as code, applied idempotently.
//!
//! The full event backbone (broker deduplication, inbox, dead letters, per-role permissions)
//! grows here; services only ever see these types.
#![forbid(unsafe_code)]

pub mod admin;
pub mod consumer;
pub mod contracts;
pub mod dlq;
pub mod envelope;
pub mod gdpr;
pub mod health;
pub mod outbox;
pub mod pulsar;
pub mod topology;
pub mod trace;

pub use envelope::CloudEvent;
