//! `spawn_app()`: identity on port 0 with a fresh database and fresh keys (generated in Rust
//! into the test's scratch directory), driven like a client would, through typed helpers.
#![allow(dead_code)] // Each test binary uses a different subset of the helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use comptoir_identity::password::Argon2Settings;
use comptoir_identity::{InternalClientSettings, KekFile, Settings};
use comptoir_testkit::{TestDatabase, wait_for};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The token the test's `notifications` client presents on `/internal`.
pub const NOTIFICATIONS_TOKEN: &str = "notifications-test-token-0123456789";
/// A password zxcvbn rates strong.
pub const PASSWORD: &str = "correct horse battery staple";

/// Writes a random 32-byte key, base64, readable by its owner only.
pub fn write_key(path: &Path) {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("random");
    write_secret(
        path,
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .as_bytes(),
    );
}

pub fn write_secret(path: &Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, content).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

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
                purposes: vec![
                    "order-confirmation".to_owned(),
                    "shipping-update".to_owned(),
                ],
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
    spawn_with(Arc::new(db), keys, customise).await
}

/// Cheap argon2 parameters: tests exercise the flow, not the cost (measured separately).
pub fn test_settings(db: &TestDatabase, keys: &KeyFiles) -> Settings {
    let mut settings = Settings::default();
    settings.database = comptoir_store::DatabaseSettings {
        pool_size: 4,
        ..db.settings()
    };
    keys.apply(&mut settings);
    settings.argon2 = Argon2Settings {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    settings.http.shutdown_grace_ms = 5_000;
    settings
}

async fn spawn_with(
    db: Arc<TestDatabase>,
    keys: KeyFiles,
    customise: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(&db, &keys);
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
        spawn_with(Arc::clone(&self.db), self.keys.clone(), customise).await
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

/// Asserts a problem+json response with `status`, returning its body.
pub async fn assert_problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string());
    body
}
