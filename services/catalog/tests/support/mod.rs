//! `spawn_app()`: a catalog on port 0 with a fresh database and a fresh Pulsar namespace,
//! driven like a client would, through typed request helpers.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::sync::Arc;
use std::time::Duration;

use comptoir_catalog::Settings;
use comptoir_catalog::domain::Product;
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::assert_problem;
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    pub namespace: Arc<TestNamespace>,
    pub admin_token: String,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(customise, "/readyz").await
}

/// Spawns the app and waits only until it is alive, not ready (a dependency may be missing).
pub async fn spawn_app_alive(customise: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(customise, "/livez").await
}

async fn spawn(customise: impl FnOnce(&mut Settings), probe_path: &str) -> TestApp {
    let db = TestDatabase::create("catalog_test")
        .await
        .expect("test database");
    let namespace = TestNamespace::create().await.expect("test namespace");
    spawn_with(Arc::new(db), Arc::new(namespace), customise, probe_path).await
}

/// Spawns a second app on an existing database and namespace, as a restarted process would.
pub async fn spawn_app_on(db: Arc<TestDatabase>, namespace: Arc<TestNamespace>) -> TestApp {
    spawn_with(db, namespace, |_| {}, "/readyz").await
}

async fn spawn_with(
    db: Arc<TestDatabase>,
    namespace: Arc<TestNamespace>,
    customise: impl FnOnce(&mut Settings),
    probe_path: &str,
) -> TestApp {
    let admin_token = Uuid::new_v4().to_string();
    let token_file = db.scratch_dir().join("admin-token");
    std::fs::write(&token_file, &admin_token).expect("write token");

    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    // GDPR requests come from the same test namespace (identity's, in production).
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.http.shutdown_grace_ms = 5_000;
    customise(&mut settings);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_catalog::run(listener, settings, shutdown.clone()));
    let http = reqwest::Client::new();
    let probe = http.clone();
    let ready_url = format!("{base}{probe_path}");
    wait_for("the catalog to be ready", Duration::from_secs(60), || {
        let probe = probe.clone();
        let url = ready_url.clone();
        async move {
            let response = probe.get(url).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        }
    })
    .await
    .expect("catalog ready");
    TestApp {
        base,
        http,
        db,
        namespace,
        admin_token,
        shutdown,
        handle: Some(handle),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    /// GET as a shopper, body as JSON.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.get(path).await.json().await.expect("json body")
    }

    /// GET as an administrator, body as JSON.
    pub async fn admin_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.admin(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.admin_token)
    }

    pub async fn create_category(&self, slug: &str) -> Value {
        let response = self
            .admin(reqwest::Method::POST, "/v1/admin/categories")
            .json(&json!({ "slug": slug, "name": slug.to_uppercase() }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.expect("json")
    }

    pub async fn post_product(&self, body: &Value) -> Response {
        self.admin(reqwest::Method::POST, "/v1/admin/products")
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn create_product(&self, body: &Value) -> Product {
        let response = self.post_product(body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
        response.json().await.expect("json")
    }

    /// An admin PUT or DELETE of a product, with `If-Match` when given.
    pub async fn change_product(
        &self,
        method: reqwest::Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.admin(method, path);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    pub async fn outbox_rows(&self) -> i64 {
        let admin = self.db.admin().await.expect("admin");
        admin
            .query_one("SELECT count(*) FROM outbox", &[])
            .await
            .expect("count")
            .get(0)
    }

    /// Stops the app (draining it) and starts a new one on the same database and namespace.
    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// [`Self::restart`] with settings changed for the new process.
    pub async fn restart_with(mut self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
        spawn_with(
            Arc::clone(&self.db),
            Arc::clone(&self.namespace),
            customise,
            "/readyz",
        )
        .await
    }

    /// Cancels the app and waits for it to finish draining.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.handle.take() {
            Some(handle) => handle.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn product_body(sku: &str, name: &str) -> Value {
    json!({
        "sku": sku,
        "name": name,
        "description": "A test product",
        "price_cents": 1290,
        "currency": "EUR"
    })
}

/// The admin token [`spawn_binary`] configures (the catalog refuses one under 16 characters).
pub const BINARY_ADMIN_TOKEN: &str = "binary-admin-token-for-tests";

/// The real `comptoir-catalog` binary as a child process on `db` and `namespace`, listening on
/// a free port; `extra` adds environment variables. Returns the child and its base URL, once
/// it answers `/readyz`.
pub async fn spawn_binary(
    db: &TestDatabase,
    namespace: &TestNamespace,
    extra: &[(&str, String)],
) -> (std::process::Child, String) {
    let token_file = db.scratch_dir().join("binary-admin-token");
    std::fs::write(&token_file, BINARY_ADMIN_TOKEN).expect("write token");
    let port = comptoir_testkit::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_comptoir-catalog"))
        .env(
            "COMPTOIR_CATALOG__HTTP__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env("COMPTOIR_CATALOG__DATABASE__HOST", &db.host)
        .env("COMPTOIR_CATALOG__DATABASE__PORT", db.port.to_string())
        .env("COMPTOIR_CATALOG__DATABASE__NAME", &db.name)
        .env("COMPTOIR_CATALOG__DATABASE__USER", &db.name)
        .env(
            "COMPTOIR_CATALOG__DATABASE__PASSWORD_FILE",
            db.password_file(),
        )
        .env("COMPTOIR_CATALOG__PULSAR__URL", pulsar_url().as_str())
        .env("COMPTOIR_CATALOG__PULSAR__NAMESPACE", &namespace.name)
        .env("COMPTOIR_CATALOG__ADMIN_TOKEN_FILE", &token_file)
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start comptoir-catalog");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("the binary to be ready", Duration::from_secs(60), || {
        let request = http.get(format!("{base}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
    })
    .await
    .expect("ready");
    (child, base)
}
