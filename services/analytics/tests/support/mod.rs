//! `spawn_app()`: analytics on port 0 with a fresh database and a fresh Pulsar namespace (used
//! for identity's, orders' and analytics' topics alike, the click stream created partitioned as
//! in production), a fresh pseudonymisation key for the current month, and a JWKS stand-in
//! (`comptoir_testkit::jwks::Keys`) to act as any customer.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use comptoir_analytics::Settings;
use comptoir_events::CloudEvent;
use comptoir_events::admin::PulsarAdmin;
use comptoir_events::contracts::analytics::CLICKSTREAM_TOPIC;
use comptoir_events::contracts::identity::{CONSENT_CHANGES_TOPIC, ConsentChanged};
use comptoir_testkit::jwks::Keys;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use pulsar::{Pulsar, TokioExecutor};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Partitions of the test click stream (production has 8: the topology file).
pub const PARTITIONS: u32 = 4;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub namespace: Arc<TestNamespace>,
    pub keys: Arc<Keys>,
    pub admin_token: String,
    pub pulsar: Pulsar<TokioExecutor>,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A fresh database and namespace with the click stream partitioned.
pub async fn fresh() -> (Arc<TestDatabase>, Arc<TestNamespace>) {
    let db = TestDatabase::create("analytics_test")
        .await
        .expect("test database");
    let namespace = TestNamespace::create().await.expect("test namespace");
    PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None)
        .ensure_partitioned_topic(
            &format!("{}/{CLICKSTREAM_TOPIC}", namespace.name),
            PARTITIONS,
        )
        .await
        .expect("partitioned click stream");
    (Arc::new(db), Arc::new(namespace))
}

/// Writes the admin token and this month's pseudonymisation key into the test's scratch
/// directory: (admin token, token file, keys directory).
pub fn secrets(db: &TestDatabase) -> (String, PathBuf, PathBuf) {
    let admin_token = Uuid::new_v4().to_string();
    let token_file = db.scratch_dir().join(format!("admin-token-{admin_token}"));
    comptoir_testkit::write_secret(&token_file, admin_token.as_bytes());
    let keys_dir = db.scratch_dir().join("pseudonym-keys");
    if !keys_dir.exists() {
        std::fs::create_dir_all(&keys_dir).expect("keys dir");
        let now = OffsetDateTime::now_utc();
        // This month's and the next: a test running across midnight at a month's end still
        // finds its key.
        let next = now + time::Duration::days(32);
        for at in [now, next] {
            comptoir_testkit::write_key(&keys_dir.join(format!(
                "{:04}-{:02}.key",
                at.year(),
                u8::from(at.month())
            )));
        }
    }
    (admin_token, token_file, keys_dir)
}

pub async fn spawn_app() -> TestApp {
    let (db, namespace) = fresh().await;
    spawn_on(db, namespace, Arc::new(Keys::start().await), |_| {}).await
}

/// Analytics on an existing database and namespace: a second instance, or a restart.
pub async fn spawn_on(
    db: Arc<TestDatabase>,
    namespace: Arc<TestNamespace>,
    keys: Arc<Keys>,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let (admin_token, token_file, keys_dir) = secrets(&db);
    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.identity_namespace = namespace.name.clone();
    settings.orders_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.pseudonym_keys_dir = Some(keys_dir);
    settings.auth.url = keys.url.parse().expect("jwks url");
    settings.http.shutdown_grace_ms = 5_000;
    customise(&mut settings);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_analytics::run(
        listener,
        settings,
        shutdown.clone(),
    ));
    let http = reqwest::Client::new();
    let probe = http.clone();
    let ready_url = format!("{base}/readyz");
    wait_for("analytics to be ready", Duration::from_secs(60), || {
        let probe = probe.clone();
        let url = ready_url.clone();
        async move {
            let response = probe.get(url).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        }
    })
    .await
    .expect("analytics ready");
    let pulsar = Pulsar::builder(pulsar_url().as_str(), TokioExecutor)
        .build()
        .await
        .expect("connect to Pulsar");
    TestApp {
        base,
        http,
        db,
        namespace,
        keys,
        admin_token,
        pulsar,
        shutdown,
        handle: Some(handle),
    }
}

/// A click of `kind` now, with the fields its kind needs (`product` for views and carts).
pub fn click(kind: &str, product: Option<Uuid>) -> Value {
    let at = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let mut click = json!({ "type": kind, "at": at });
    match kind {
        "page-view" => click["page"] = json!("home"),
        "search" => click["results"] = json!(3),
        "product-view" => click["product_id"] = json!(product),
        "add-to-cart" => {
            click["product_id"] = json!(product);
            click["quantity"] = json!(2);
        }
        _ => {}
    }
    click
}

/// A storefront session id.
pub fn session() -> String {
    format!("session-{}", Uuid::new_v4().simple())
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v1/events` as an anonymous session.
    pub async fn post_anonymous(&self, session: &str, events: Vec<Value>) -> Response {
        self.http
            .post(self.url("/v1/events"))
            .json(&json!({ "session": session, "events": events }))
            .send()
            .await
            .expect("request")
    }

    /// `POST /v1/events` as a signed-in customer.
    pub async fn post_as(&self, customer: Uuid, events: Vec<Value>) -> Response {
        self.http
            .post(self.url("/v1/events"))
            .bearer_auth(self.keys.token(customer))
            .json(&json!({ "events": events }))
            .send()
            .await
            .expect("request")
    }

    pub fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
    }

    /// A KPI document (admin), asserting 200.
    pub async fn kpi(&self, path: &str) -> Value {
        let response = self.admin(Method::GET, path).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.expect("json")
    }

    /// Waits until the funnel of the last hour satisfies `check`.
    pub async fn funnel_until(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        wait_for(what, Duration::from_secs(30), || async {
            let funnel = self.kpi("/v1/admin/kpis/funnel?minutes=60").await;
            check(&funnel).then_some(funnel)
        })
        .await
        .expect(what)
    }

    /// Plays identity: announces `customer`'s analytics consent.
    pub async fn identity_says(&self, customer: Uuid, granted: bool, at: OffsetDateTime) {
        let event = CloudEvent::new(
            "/comptoir/identity",
            customer.to_string(),
            ConsentChanged {
                customer_id: customer,
                purpose: "analytics".to_owned(),
                granted,
                changed_at: at,
            },
        );
        comptoir_testkit::publish(
            &self.pulsar,
            &self.namespace.topic(CONSENT_CHANGES_TOPIC),
            &event,
        )
        .await;
    }

    /// Waits until analytics' projection holds `granted` for `customer`.
    pub async fn consent_known(&self, customer: Uuid, granted: bool) {
        wait_for("the consent projected", Duration::from_secs(30), || async {
            let row = self
                .db
                .admin()
                .await
                .ok()?
                .query_opt(
                    "SELECT granted FROM consents WHERE customer_id = $1",
                    &[&customer],
                )
                .await
                .ok()??;
            (row.get::<_, bool>(0) == granted).then_some(())
        })
        .await
        .expect("consent projected");
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle
                .await
                .expect("join")
                .expect("analytics stopped cleanly");
        }
    }
}
