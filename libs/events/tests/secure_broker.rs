//! The production security path, end to end: TLS to the broker, one token per service role,
//! and the topology's per-namespace grants enforced by the broker.
//!
//! Runs a private standalone started as `COMPTOIR_PULSAR_SECURE=1 dev/pulsar.sh start` does
//! (TLS listeners only, token authentication, authorization on), applies the real topology
//! (`libs/events/topology/comptoir.toml`) over https as `admin`, then connects the way services
//! do, through [`comptoir_events::pulsar::connect`]. One broker for every case: a JVM start is
//! the expensive part. Every broker call has a deadline, so a refusal is told apart from a hang.
//!
//! When the broker refuses a connection (bad or missing token) or the TLS handshake fails,
//! pulsar-rs returns the same "fatal error when connecting" and only logs the reason
//! (streamnative/pulsar-rs#292). The test reads that log line, as an operator would.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comptoir_events::admin::{AdminError, AdminSettings, PulsarAdmin};
use comptoir_events::pulsar::{ConnectError, PulsarSettings, connect};
use comptoir_events::topology::{COMPTOIR, Topology, apply};
use comptoir_testkit::standalone::Standalone;
use futures::TryStreamExt;
use pulsar::consumer::{ConsumerOptions, InitialPosition};
use pulsar::error::{ConnectionError, ConsumerError, ProducerError, ServiceDiscoveryError};
use pulsar::message::proto::ServerError;
use pulsar::{Pulsar, SubType, TokioExecutor};
use reqwest::StatusCode;

const NAMESPACE: &str = "comptoir/catalog";
/// Long enough for a loaded CI machine, far shorter than the test's own timeout: an answer
/// that does not come within it is a hang, reported as such.
const DEADLINE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?} (a hang, not a refusal)"))
}

async fn connect_as(settings: &PulsarSettings) -> Result<Pulsar<TokioExecutor>, ConnectError> {
    within(&format!("connect to {}", settings.url), connect(settings)).await
}

/// The broker's error code inside a client error, wherever the client wrapped it.
fn server_error(error: &pulsar::Error) -> Option<ServerError> {
    let from_connection = |e: &ConnectionError| match e {
        ConnectionError::PulsarError(code, _) => *code,
        _ => None,
    };
    match error {
        pulsar::Error::Connection(e)
        | pulsar::Error::Producer(ProducerError::Connection(e))
        | pulsar::Error::Consumer(ConsumerError::Connection(e))
        | pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Connection(e)) => {
            from_connection(e)
        }
        pulsar::Error::ServiceDiscovery(ServiceDiscoveryError::Query(code, _)) => *code,
        _ => None,
    }
}

/// What the Pulsar client logs, kept in memory (through the `log` → `tracing` bridge that
/// the platform's telemetry installs as well).
#[derive(Clone, Default)]
struct ClientLog(Arc<Mutex<Vec<u8>>>);

impl ClientLog {
    fn install() -> Self {
        let log = Self::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("pulsar=error")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the only subscriber of this test process");
        log
    }

    /// Everything logged since the last call.
    fn take(&self) -> String {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&std::mem::take(&mut *buffer)).into_owned()
    }
}

impl Write for ClientLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Connects with `settings`, which must fail, and returns why: the error and what the client
/// logged while failing.
async fn refused_connection(log: &ClientLog, settings: &PulsarSettings, what: &str) -> String {
    log.take();
    let error = connect_as(settings)
        .await
        .err()
        .unwrap_or_else(|| panic!("{what}: the connection must be refused"));
    format!("{error:?}\n{}", log.take())
}

/// Every message of an error and its causes, for assertions on the innermost reason.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn only_granted_roles_reach_a_secured_broker_over_tls() {
    let log = ClientLog::install();
    let broker = tokio::task::spawn_blocking(Standalone::start_secure)
        .await
        .expect("join")
        .expect("start a secured private standalone");
    assert_eq!(broker.url().scheme(), "pulsar+ssl");
    assert_eq!(broker.admin_url().scheme(), "https");

    // The real topology, applied the way `comptoir-xtask provision-topology` does, as the
    // superuser over https with the CA.
    let admin = broker.admin().expect("admin client");
    let topology = Topology::parse(COMPTOIR, None).expect("the shipped topology");
    within("apply the topology", apply(&admin, &topology))
        .await
        .expect("apply the topology as admin over https");
    let permissions = within("read grants", admin.policy(NAMESPACE, "permissions"))
        .await
        .expect("read the catalog namespace's grants");
    assert_eq!(permissions["catalog"], serde_json::json!(["produce"]));

    let topic = format!(
        "persistent://{NAMESPACE}/secure-{}",
        comptoir_testkit::unique_suffix()
    );

    // (a) catalog publishes over pulsar+ssl with its token; orders, granted consume there,
    // receives the message.
    let orders = connect_as(&broker.pulsar_settings("orders", NAMESPACE))
        .await
        .expect("orders connects over TLS with its token");
    let mut consumer = within(
        "orders subscribes",
        orders
            .consumer()
            .with_topic(&topic)
            .with_subscription("secure-broker-test")
            .with_subscription_type(SubType::Exclusive)
            .with_options(
                ConsumerOptions::default().with_initial_position(InitialPosition::Earliest),
            )
            .build::<Vec<u8>>(),
    )
    .await
    .expect("orders may consume from comptoir/catalog");

    let catalog = connect_as(&broker.pulsar_settings("catalog", NAMESPACE))
        .await
        .expect("catalog connects over TLS with its token");
    let mut producer = within(
        "catalog creates a producer",
        catalog.producer().with_topic(&topic).build(),
    )
    .await
    .expect("catalog may produce to comptoir/catalog");
    let payload = format!("over-tls-{}", comptoir_testkit::unique_suffix());
    let receipt = within("catalog publishes", async {
        producer.send_non_blocking(payload.clone()).await?.await
    })
    .await
    .expect("the broker acknowledges catalog's message");
    assert!(
        receipt.message_id.is_some(),
        "an acknowledged message has an id"
    );

    let message = within("orders receives", consumer.try_next())
        .await
        .expect("the consumer stream is healthy")
        .expect("the consumer stream is open");
    assert_eq!(String::from_utf8_lossy(&message.payload.data), payload);
    within("orders acknowledges", consumer.ack(&message))
        .await
        .expect("ack");

    // (b) Authenticated but not granted produce on comptoir/catalog: a role granted nothing
    // anywhere, a role granted only on other namespaces, and a role that may only consume here.
    // Each connects (its token is valid) and is refused by authorization.
    for role in ["outsider", "payments", "orders"] {
        let client = connect_as(&broker.pulsar_settings(role, NAMESPACE))
            .await
            .unwrap_or_else(|e| panic!("{role}'s token authenticates: {e:?}"));
        let refused = within(
            &format!("{role} creates a producer"),
            client.producer().with_topic(&topic).build(),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{role} must not be allowed to produce to {topic}"));
        assert_eq!(
            server_error(&refused),
            Some(ServerError::AuthorizationError),
            "{role} producing: expected an authorization refusal, got {refused:?}"
        );
    }
    let outsider = connect_as(&broker.pulsar_settings("outsider", NAMESPACE))
        .await
        .expect("outsider's token authenticates");
    let refused = within(
        "outsider subscribes",
        outsider
            .consumer()
            .with_topic(&topic)
            .with_subscription("outsider")
            .build::<Vec<u8>>(),
    )
    .await
    .err()
    .expect("outsider must not be allowed to consume from comptoir/catalog");
    assert_eq!(
        server_error(&refused),
        Some(ServerError::AuthorizationError),
        "outsider consuming: expected an authorization refusal, got {refused:?}"
    );

    // (c) No token, or a token whose claims were edited, is refused at connection time as an
    // authentication failure, and the admin API answers 401 without a token.
    let anonymous = PulsarSettings {
        token_file: None,
        ..broker.pulsar_settings("catalog", NAMESPACE)
    };
    let reason = refused_connection(&log, &anonymous, "no token").await;
    assert!(
        reason.contains("AuthenticationError") && !reason.contains("UnknownIssuer"),
        "no token: expected an authentication refusal, got {reason}"
    );

    let forged = forge_admin_claim(&broker, &broker.data_dir().join("forged.jwt"));
    let forged = PulsarSettings {
        token_file: Some(forged),
        ..broker.pulsar_settings("catalog", NAMESPACE)
    };
    let reason = refused_connection(&log, &forged, "edited token").await;
    assert!(
        reason.contains("AuthenticationError") && !reason.contains("UnknownIssuer"),
        "edited token: expected an authentication refusal, got {reason}"
    );

    let anonymous_admin = PulsarAdmin::from_settings(&AdminSettings {
        token_file: None,
        ..admin_settings(&broker)
    })
    .expect("admin client without token");
    match within(
        "anonymous admin call",
        anonymous_admin.tenant_exists("comptoir"),
    )
    .await
    {
        Err(AdminError::Status { status, .. }) => assert_eq!(status, StatusCode::UNAUTHORIZED),
        other => panic!("the admin API without a token: expected 401, got {other:?}"),
    }

    // (d) A client that does not trust the local CA (web PKI roots only) fails the TLS
    // handshake, on the binary protocol and on the admin API alike.
    let untrusting = PulsarSettings {
        ca_file: None,
        ..broker.pulsar_settings("catalog", NAMESPACE)
    };
    let reason = refused_connection(&log, &untrusting, "untrusted CA").await;
    assert!(
        reason.contains("UnknownIssuer") && !reason.contains("AuthenticationError"),
        "untrusted CA: expected a certificate verification failure, got {reason}"
    );

    let untrusting_admin = PulsarAdmin::from_settings(&AdminSettings {
        ca_file: None,
        ..admin_settings(&broker)
    })
    .expect("admin client without the CA");
    match within(
        "untrusting admin call",
        untrusting_admin.tenant_exists("comptoir"),
    )
    .await
    {
        Err(error @ AdminError::Http { .. }) => {
            let reason = chain(&error);
            assert!(
                reason.contains("UnknownIssuer"),
                "expected a certificate verification failure, got {reason}"
            );
        }
        other => panic!("the admin API without the CA: expected a TLS failure, got {other:?}"),
    }

    within("close", producer.close())
        .await
        .expect("close producer");
}

fn admin_settings(broker: &Standalone) -> AdminSettings {
    AdminSettings {
        url: broker.admin_url(),
        token_file: Some(broker.token_file("admin")),
        ca_file: Some(broker.ca_file()),
    }
}

/// catalog's token with its `sub` claim swapped for `admin`'s, keeping catalog's signature:
/// what someone holding one service's token would try to become superuser.
fn forge_admin_claim(broker: &Standalone, path: &std::path::Path) -> PathBuf {
    let read = |role: &str| {
        std::fs::read_to_string(broker.token_file(role))
            .unwrap_or_else(|e| panic!("read {role}'s token: {e}"))
    };
    let catalog = read("catalog");
    let admin = read("admin");
    let parts: Vec<&str> = catalog.trim().split('.').collect();
    let admin_claims = admin.trim().split('.').nth(1).expect("a JWT has claims");
    assert_eq!(parts.len(), 3, "a JWT has three parts");
    assert_ne!(parts[1], admin_claims, "the roles differ");
    std::fs::write(path, format!("{}.{admin_claims}.{}", parts[0], parts[2]))
        .expect("write the forged token");
    path.to_owned()
}
