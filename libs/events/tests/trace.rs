//! A change's trace continues through its event: the outbox stores the W3C traceparent, the
//! relay sends it as a message property, and the consumer's work joins the same trace.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use comptoir_events::CloudEvent;
use comptoir_events::consumer::INBOX_TABLE_SQL;
use comptoir_events::consumer::{ConsumerConfig, EventConsumer, Handler, HandlerError};
use comptoir_events::contracts::catalog::ProductChanged;
use comptoir_events::outbox::{OUTBOX_TABLE_SQL, Relay, enqueue};
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use pulsar::{Pulsar, TokioExecutor};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// Remembers the trace id the consumer's work ran in.
struct SeeTrace(Arc<Mutex<Option<TraceId>>>);

impl Handler<ProductChanged> for SeeTrace {
    fn handle<'a>(
        &'a self,
        _tx: &'a Transaction<'a>,
        _event: &'a CloudEvent<ProductChanged>,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let trace = tracing::Span::current()
                .context()
                .span()
                .span_context()
                .trace_id();
            *self.0.lock().expect("lock") = Some(trace);
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_of_a_change_continues_in_its_consumer() {
    // Spans get real trace ids (nothing is exported); W3C propagation as in the services.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );

    let db = TestDatabase::create("events_test").await.expect("db");
    db.connect_as_role(&db.name)
        .await
        .expect("connect")
        .batch_execute(&format!("{OUTBOX_TABLE_SQL}\n{INBOX_TABLE_SQL}"))
        .await
        .expect("schema");
    let pool = comptoir_store::connect(&db.settings()).expect("pool");
    let namespace = TestNamespace::create().await.expect("namespace");
    let topic = namespace.topic("traced");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect");
    let mut observer = comptoir_testkit::subscribe(&pulsar, &topic, "observer").await;
    let seen = Arc::new(Mutex::new(None));
    let stop = CancellationToken::new();
    let consumer = EventConsumer::new(
        pool.clone(),
        pulsar.clone(),
        ConsumerConfig::new(&topic, "traced"),
        SeeTrace(Arc::clone(&seen)),
    );
    tokio::spawn(consumer.run(stop.clone()));
    tokio::spawn(Relay::new(pool.clone(), pulsar.clone(), "trace-test").run(stop.clone()));

    let change = tracing::info_span!("change_product");
    let expected = change.context().span().span_context().trace_id();
    assert_ne!(expected, TraceId::INVALID);
    async {
        let mut client = pool.get().await.expect("client");
        let tx = client.transaction().await.expect("begin");
        let data = ProductChanged::sample();
        let event = CloudEvent::new("/comptoir/test", data.product_id.to_string(), data);
        enqueue(&tx, &topic, &event).await.expect("enqueue");
        tx.commit().await.expect("commit");
    }
    .instrument(change)
    .await;

    let message = tokio::time::timeout(
        Duration::from_secs(30),
        futures::TryStreamExt::try_next(&mut observer),
    )
    .await
    .expect("published")
    .expect("stream ok")
    .expect("stream open");
    let traceparent = message
        .metadata()
        .properties
        .iter()
        .find(|kv| kv.key == "traceparent")
        .map(|kv| kv.value.clone())
        .expect("a traceparent property");
    assert!(
        traceparent.contains(&expected.to_string()),
        "{traceparent} vs {expected}"
    );

    let observed = wait_for(
        "the consumer to apply the event",
        Duration::from_secs(30),
        || {
            let seen = Arc::clone(&seen);
            async move { *seen.lock().expect("lock") }
        },
    )
    .await
    .expect("applied");
    assert_eq!(
        observed, expected,
        "the consumer's work joined the change's trace"
    );
    stop.cancel();
}
