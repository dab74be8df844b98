//! `spawn_app()`: identity on port 0 with a fresh database, a fresh Pulsar namespace and fresh
//! keys (generated in Rust into the test's scratch directory), driven like a client would,
//! through typed helpers. `spawn_catalog()` runs the real catalog as the GDPR participant, in
//! the same namespace, so exports and erasures really cross the broker.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comptoir_events::admin::PulsarAdmin;
use comptoir_identity::gdpr::{ParticipantEntry, ParticipantTable};
use comptoir_identity::password::Argon2Settings;
use comptoir_identity::{InternalClientSettings, KekFile, Settings};
use comptoir_testkit::{TestDatabase, TestNamespace, pulsar_url, wait_for};
#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::{assert_problem, write_key, write_secret};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token the test's `notifications` client presents on `/internal`.
pub const NOTIFICATIONS_TOKEN: &str = "notifications-test-token-0123456789";
/// A password zxcvbn rates strong.
pub const PASSWORD: &str = "correct horse battery staple";

/// Key files of one identity deployment.
#[derive(Debug, Clone)]
pub struct KeyFiles {
    pub dir: PathBuf,
    pub kek_a: PathBuf,
    pub kek_b: PathBuf,
    pub blind_index: PathBuf,
    pub signing: PathBuf,
    pub notifications_token: PathBuf,
}

impl KeyFiles {
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("key dir");
        let files = Self {
            dir: dir.to_owned(),
            kek_a: dir.join("kek-a"),
            kek_b: dir.join("kek-b"),
            blind_index: dir.join("blind-index"),
            signing: dir.join("signing.pem"),
            notifications_token: dir.join("notifications-token"),
        };
        write_key(&files.kek_a);
        write_key(&files.kek_b);
        write_key(&files.blind_index);
        write_secret(
            &files.signing,
            comptoir_auth::Signer::generate_pem().as_bytes(),
        );
        write_secret(&files.notifications_token, NOTIFICATIONS_TOKEN.as_bytes());
        files
    }

    /// Settings using these keys with KEK A active.
    pub fn apply(&self, settings: &mut Settings) {
        settings.keys.active_kek = Some(KekFile {
            id: "kek-a".to_owned(),
            file: self.kek_a.clone(),
        });
        settings.keys.retired_keks = Vec::new();
        settings.keys.blind_index_key_file = Some(self.blind_index.clone());
        settings.tokens.signing_key_file = Some(self.signing.clone());
        settings.tokens.signing_kid = "test-1".to_owned();
        settings.internal_clients.insert(
            "notifications".to_owned(),
            InternalClientSettings {
                token_file: self.notifications_token.clone(),
                purposes: [
                    ("order-confirmation", vec!["email", "name"]),
                    ("shipping-update", vec!["name", "addresses"]),
                ]
                .into_iter()
                .map(|(purpose, fields)| {
                    (
                        purpose.to_owned(),
                        fields.into_iter().map(str::to_owned).collect(),
                    )
                })
                .collect(),
            },
        );
    }

    /// The signer identity uses, for tests that forge tokens with the real key.
    pub fn signer(&self) -> comptoir_auth::Signer {
        comptoir_auth::Signer::from_pem_file(&self.signing, "test-1").expect("signing key")
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db: Arc<TestDatabase>,
    /// Identity's namespace, and the catalog's in these tests.
    pub namespace: Arc<TestNamespace>,
    pub keys: KeyFiles,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDatabase::create("identity_test")
        .await
        .expect("test database");
    let keys = KeyFiles::generate(&db.scratch_dir().join("keys"));
    spawn_with(Arc::new(db), Arc::new(namespace().await), keys, customise).await
}

/// A fresh namespace with the retention production gives identity's namespace
/// (`libs/events/topology/comptoir.toml`): a request published before a participant ever
/// subscribed is still there when it does.
pub async fn namespace() -> TestNamespace {
    let namespace = TestNamespace::create().await.expect("test namespace");
    PulsarAdmin::new(comptoir_testkit::pulsar_admin_url(), None)
        .set_policy(
            &namespace.name,
            "retention",
            json!({"retentionTimeInMinutes": 60, "retentionSizeInMB": 64}),
        )
        .await
        .expect("retention policy");
    namespace
}

/// Cheap argon2 parameters: tests exercise the flow, not the cost (measured separately). The
/// catalog is the one participant, replying in the test namespace.
pub fn test_settings(db: &TestDatabase, namespace: &TestNamespace, keys: &KeyFiles) -> Settings {
    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.gdpr.participants = vec![ParticipantEntry::Table(ParticipantTable {
        name: "catalog".to_owned(),
        namespace: Some(namespace.name.clone()),
    })];
    settings.gdpr.sweep_interval_ms = 200;
    keys.apply(&mut settings);
    settings.argon2 = Argon2Settings {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
        ..Argon2Settings::default()
    };
    settings.http.shutdown_grace_ms = 5_000;
    settings
}

async fn spawn_with(
    db: Arc<TestDatabase>,
    namespace: Arc<TestNamespace>,
    keys: KeyFiles,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(&db, &namespace, &keys);
    customise(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_identity::run(listener, settings, shutdown.clone()));
    let http = reqwest::Client::new();
    let probe = http.clone();
    let ready_url = format!("{base}/readyz");
    wait_for("identity to be ready", Duration::from_secs(60), || {
        let probe = probe.clone();
        let url = ready_url.clone();
        async move {
            let response = probe.get(url).send().await.ok()?;
            (response.status() == StatusCode::OK).then_some(())
        }
    })
    .await
    .expect("identity ready");
    TestApp {
        base,
        http,
        db,
        namespace,
        keys,
        shutdown,
        handle: Some(handle),
    }
}

/// A customer's registration body with distinctive personal data.
pub fn registration(email: &str, name: &str) -> Value {
    json!({
        "email": email,
        "password": PASSWORD,
        "name": name,
        "phone": "+33 6 98 76 54 32",
        "addresses": [{
            "line1": "17 rue des Zéphyrs Improbables",
            "postal_code": "75011",
            "city": "Paris",
            "country": "FR"
        }]
    })
}

/// Tokens from a sign-in or a refresh.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub async fn register(&self, email: &str, name: &str) -> Response {
        self.post_json("/v1/customers", &registration(email, name))
            .await
    }

    pub async fn login_response(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/sessions",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Tokens {
        let response = self.login_response(email, password).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{:?}",
            response.text().await
        );
        tokens(response).await
    }

    /// Registers and signs in.
    pub async fn customer(&self, email: &str, name: &str) -> Tokens {
        assert_eq!(
            self.register(email, name).await.status(),
            StatusCode::ACCEPTED
        );
        self.login(email, PASSWORD).await
    }

    pub async fn refresh_response(&self, refresh: &str) -> Response {
        self.post_json("/v1/sessions/refresh", &json!({"refresh_token": refresh}))
            .await
    }

    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        access: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(access)
    }

    pub async fn get_authed(&self, path: &str, access: &str) -> Response {
        self.authed(reqwest::Method::GET, path, access)
            .send()
            .await
            .expect("request")
    }

    pub async fn me(&self, access: &str) -> Value {
        let response = self.get_authed("/v1/me", access).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    pub async fn internal_pii(&self, token: &str, customer: &str, body: &Value) -> Response {
        self.http
            .post(self.url(&format!("/internal/v1/customers/{customer}/pii")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Rows of the PII access log, oldest first: (client, subject, purpose, fields, outcome).
    pub async fn pii_log(&self) -> Vec<(String, String, String, Vec<String>, String)> {
        let admin = self.db.admin().await.expect("admin");
        admin
            .query(
                "SELECT client, subject::text, purpose, fields, outcome FROM pii_access_log ORDER BY id",
                &[],
            )
            .await
            .expect("query")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    /// Stops the app (draining it) and starts a new one on the same database and keys.
    pub async fn restart_with(mut self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
        spawn_with(
            Arc::clone(&self.db),
            Arc::clone(&self.namespace),
            self.keys.clone(),
            customise,
        )
        .await
    }

    /// Stops the app, waiting for it to drain.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
    }

    /// The signed-in customer's id.
    pub async fn id(&self, access: &str) -> String {
        self.me(access).await["id"].as_str().expect("id").to_owned()
    }

    /// `POST /v1/me/exports`: 202 with a Location; returns the export id.
    pub async fn request_export(&self, access: &str) -> String {
        let response = self
            .authed(reqwest::Method::POST, "/v1/me/exports", access)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_owned();
        let body: Value = response.json().await.expect("json");
        let id = body["id"].as_str().expect("id").to_owned();
        assert_eq!(location, format!("/v1/me/exports/{id}"));
        assert_eq!(body["status_url"], location.as_str());
        assert_eq!(body["status"], "pending");
        id
    }

    /// The export's status body, asserting 200.
    pub async fn export_status(&self, access: &str, id: &str) -> Value {
        let response = self
            .get_authed(&format!("/v1/me/exports/{id}"), access)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// Waits until the export is ready and returns its status.
    pub async fn wait_export_ready(&self, access: &str, id: &str) -> Value {
        wait_for(
            "the export to be ready",
            Duration::from_secs(60),
            || async {
                let status = self.export_status(access, id).await;
                (status["status"] == "ready").then_some(status)
            },
        )
        .await
        .expect("export ready")
    }

    /// `DELETE /v1/me` with `body`.
    pub async fn erase_response(&self, access: &str, body: &Value) -> Response {
        self.authed(reqwest::Method::DELETE, "/v1/me", access)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// Erases the signed-in customer: 202 with a Location; returns the status path.
    pub async fn erase(&self, access: &str) -> String {
        let response = self
            .erase_response(access, &json!({"password": PASSWORD}))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("Location")
            .to_owned();
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            location,
            format!("/v1/erasures/{}", body["id"].as_str().expect("id"))
        );
        location
    }

    /// An erasure's status body (no token: the path is the capability), asserting 200.
    pub async fn erasure_status(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("json")
    }

    /// Waits until the erasure is complete and returns its status.
    pub async fn wait_erasure_complete(&self, path: &str) -> Value {
        wait_for(
            "the erasure to be confirmed by every service",
            Duration::from_secs(60),
            || async {
                let status = self.erasure_status(path).await;
                (status["status"] == "complete").then_some(status)
            },
        )
        .await
        .expect("erasure complete")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn tokens(response: Response) -> Tokens {
    let body: Value = response.json().await.expect("token json");
    assert_eq!(body["token_type"], "Bearer");
    Tokens {
        access: body["access_token"].as_str().expect("access").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh").to_owned(),
    }
}

/// The real catalog, as the GDPR participant: its own database, publishing its replies into
/// `namespace` and reading identity's requests from it.
pub struct Catalog {
    pub db: Arc<TestDatabase>,
    pub shutdown: CancellationToken,
    pub handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_catalog(namespace: &TestNamespace) -> Catalog {
    let db = TestDatabase::create("catalog_test")
        .await
        .expect("catalog database");
    let token_file = db.scratch_dir().join("admin-token");
    write_secret(&token_file, uuid::Uuid::new_v4().to_string().as_bytes());
    let mut settings = comptoir_catalog::Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    settings.pulsar.url = pulsar_url();
    settings.pulsar.namespace = namespace.name.clone();
    settings.gdpr_requests_namespace = namespace.name.clone();
    settings.admin_token_file = Some(token_file);
    settings.http.shutdown_grace_ms = 5_000;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(comptoir_catalog::run(listener, settings, shutdown.clone()));
    let http = reqwest::Client::new();
    wait_for("the catalog to be ready", Duration::from_secs(60), || {
        let request = http.get(format!("{base}/readyz")).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(drop) }
    })
    .await
    .expect("catalog ready");
    Catalog {
        db: Arc::new(db),
        shutdown,
        handle: Some(handle),
    }
}

impl Catalog {
    /// Stops the catalog and waits for it to drain; its subscriptions stay on the broker.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
    }

    pub async fn outbox_rows(&self) -> i64 {
        let admin = self.db.admin().await.expect("admin");
        admin
            .query_one("SELECT count(*) FROM outbox", &[])
            .await
            .expect("count")
            .get(0)
    }
}

impl Drop for Catalog {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[allow(unused_imports)] // Each test binary uses a different subset of the helpers.
pub use comptoir_testkit::drained;

/// Asserts that none of `needles` appears, in any case, in any text-like, bytea, JSON or
/// array column of any table of `db`, nor in its `pg_dump` where pg_dump is installed.
pub async fn assert_nowhere_in(db: &TestDatabase, needles: &[&str]) {
    let admin = db.admin().await.expect("admin");
    let columns = admin
        .query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns
             WHERE table_schema = 'public'
               AND data_type IN ('text', 'character varying', 'bytea', 'jsonb', 'json', 'ARRAY')",
            &[],
        )
        .await
        .expect("columns");
    assert!(columns.len() > 10, "{} columns", columns.len());
    for column in &columns {
        let (table, name, kind): (String, String, String) =
            (column.get(0), column.get(1), column.get(2));
        // Bytes are searched as bytes (a ciphertext is no valid UTF-8), in both cases.
        let condition = match kind.as_str() {
            "bytea" => format!(
                "position(convert_to($1, 'UTF8') in \"{name}\") > 0
                 OR position(convert_to(lower($1), 'UTF8') in \"{name}\") > 0"
            ),
            _ => format!("strpos(lower(\"{name}\"::text), lower($1)) > 0"),
        };
        for needle in needles {
            let hits: i64 = admin
                .query_one(
                    &format!("SELECT count(*) FROM \"{table}\" WHERE {condition}"),
                    &[needle],
                )
                .await
                .expect("search")
                .get(0);
            assert_eq!(hits, 0, "{needle:?} found in {table}.{name}");
        }
    }

    // And the dump an operator would take, where pg_dump is installed (it is wherever the
    // local platform's PostgreSQL comes from Debian's packages).
    let admin_url = comptoir_testkit::pg_admin_url();
    let (server, _) = admin_url.rsplit_once('/').expect("database in the URL");
    match std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(format!("{server}/{}", db.name))
        .output()
    {
        Err(error) => eprintln!("pg_dump not run ({error}); the column search above stands"),
        Ok(output) => {
            assert!(
                output.status.success(),
                "pg_dump failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let dump = String::from_utf8_lossy(&output.stdout).to_lowercase();
            assert!(
                dump.contains("copy public.customers"),
                "the dump has the data"
            );
            for needle in needles {
                assert!(
                    !dump.contains(&needle.to_lowercase()),
                    "{needle:?} in the dump"
                );
            }
        }
    }
}
