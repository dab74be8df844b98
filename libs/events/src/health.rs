//! The readiness checks of a service that keeps its state in PostgreSQL and talks through
//! Pulsar (every service but the gateway): one definition, used by each.

use comptoir_platform::health::ReadinessCheck;

/// Ready when PostgreSQL answers a query on the pool.
pub fn postgres(pool: deadpool_postgres::Pool) -> ReadinessCheck {
    ReadinessCheck::new("postgres", move || {
        let pool = pool.clone();
        async move { comptoir_store::ping(&pool).await.map_err(|e| e.to_string()) }
    })
}

/// Ready when the broker can place `topic` (a lookup: the broker is up and serves the
/// namespace). Detached ([`ReadinessCheck::detached`]): pulsar-rs' lookup is not cancel-safe,
/// and the probe's timeout would otherwise cancel it half-way whenever a broker is slow (the
/// fleet lab saw replicas stay unready after a broker came back).
pub fn pulsar_topic(
    pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: String,
) -> ReadinessCheck {
    ReadinessCheck::detached("pulsar", move || {
        let pulsar = pulsar.clone();
        let topic = topic.clone();
        async move {
            pulsar
                .lookup_topic(topic)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        }
    })
}

/// Both: what catalog, identity and every later service are ready on.
pub fn postgres_and_pulsar(
    pool: deadpool_postgres::Pool,
    pulsar: pulsar::Pulsar<pulsar::TokioExecutor>,
    topic: String,
) -> Vec<ReadinessCheck> {
    vec![postgres(pool), pulsar_topic(pulsar, topic)]
}
