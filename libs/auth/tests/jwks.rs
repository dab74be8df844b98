//! The JWKS cache against a JWKS served over real HTTP, and the `Subject` extractor in an axum
//! router: key rotation, rate-limited refresh on unknown `kid`, and 401 problems.
//!
//! The JWKS server here stands in for identity: it serves whatever key set the test puts in it
//! and counts the fetches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::routing::get;
use comptoir_auth::{
    Authenticator, Claims, Jwks, JwksCache, JwksCacheSettings, Signer, Subject, VerifyError,
};
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use uuid::Uuid;

#[derive(Clone, Default)]
struct Served {
    jwks: Arc<Mutex<Jwks>>,
    fetches: Arc<AtomicUsize>,
}

/// Serves whatever key set the test holds, counting the fetches.
fn jwks_app(served: Served) -> Router {
    Router::new()
        .route(
            "/.well-known/jwks.json",
            get(|State(s): State<Served>| async move {
                s.fetches.fetch_add(1, Ordering::SeqCst);
                axum::Json(s.jwks.lock().expect("lock").clone())
            }),
        )
        .with_state(served)
}

async fn serve_jwks(served: Served) -> String {
    let app = jwks_app(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/.well-known/jwks.json")
}

fn settings(url: String, min_refresh_ms: u64) -> JwksCacheSettings {
    JwksCacheSettings {
        url,
        min_refresh_interval_ms: min_refresh_ms,
        ..JwksCacheSettings::default()
    }
}

fn token(signer: &Signer, subject: Uuid) -> String {
    let claims = Claims::new(
        comptoir_auth::DEFAULT_ISSUER,
        comptoir_auth::DEFAULT_AUDIENCE,
        subject,
        "customer",
        Duration::from_secs(300),
        None,
    );
    signer.issue(&claims).expect("sign")
}

#[tokio::test]
async fn rotation_is_picked_up_on_the_first_unknown_kid() {
    let served = Served::default();
    let old = Signer::generate("2026-01").expect("key");
    let new = Signer::generate("2026-02").expect("key");
    *served.jwks.lock().expect("lock") = Jwks::new(vec![old.jwk()]);
    let cache = JwksCache::new(settings(serve_jwks(served.clone()).await, 0)).expect("cache");

    let subject = Uuid::new_v4();
    assert_eq!(
        cache.verify(&token(&old, subject)).await.map(|c| c.sub),
        Ok(subject)
    );
    assert_eq!(
        served.fetches.load(Ordering::SeqCst),
        1,
        "fetched once, then cached"
    );
    assert!(cache.verify(&token(&old, subject)).await.is_ok());
    assert_eq!(served.fetches.load(Ordering::SeqCst), 1);

    // Identity rotates: publishes both keys, signs with the new one.
    *served.jwks.lock().expect("lock") = Jwks::new(vec![new.jwk(), old.jwk()]);
    assert_eq!(
        cache.verify(&token(&new, subject)).await.map(|c| c.sub),
        Ok(subject)
    );
    assert_eq!(served.fetches.load(Ordering::SeqCst), 2);

    // Then drops the old key: after a refresh, old tokens stop verifying.
    *served.jwks.lock().expect("lock") = Jwks::new(vec![new.jwk()]);
    cache.refresh().await.expect("refresh");
    assert_eq!(
        cache.verify(&token(&old, subject)).await.map(drop),
        Err(VerifyError::UnknownKid("2026-01".to_owned()))
    );
}

#[tokio::test]
async fn made_up_kids_do_not_hammer_identity() {
    let served = Served::default();
    let known = Signer::generate("k1").expect("key");
    *served.jwks.lock().expect("lock") = Jwks::new(vec![known.jwk()]);
    let cache = JwksCache::new(settings(serve_jwks(served.clone()).await, 60_000)).expect("cache");
    assert!(cache.verify(&token(&known, Uuid::new_v4())).await.is_ok());
    for i in 0..20 {
        let stranger = Signer::generate(&format!("made-up-{i}")).expect("key");
        assert!(matches!(
            cache.verify(&token(&stranger, Uuid::new_v4())).await,
            Err(VerifyError::UnknownKid(_))
        ));
    }
    assert_eq!(
        served.fetches.load(Ordering::SeqCst),
        1,
        "the first fetch was less than min_refresh_interval ago: no more"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_is_keys_unavailable_not_a_valid_token() {
    let signer = Signer::generate("k1").expect("key");
    let cache =
        JwksCache::new(settings("http://127.0.0.1:9/jwks.json".to_owned(), 0)).expect("cache");
    assert!(matches!(
        cache.verify(&token(&signer, Uuid::new_v4())).await,
        Err(VerifyError::KeysUnavailable(_))
    ));
}

#[derive(Clone)]
struct AppState {
    auth: Authenticator,
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

fn app(auth: Authenticator) -> Router {
    Router::new()
        .route(
            "/me",
            get(|subject: Subject| async move { subject.customer_id.to_string() }),
        )
        .with_state(AppState { auth })
}

async fn call(app: &Router, authorization: Option<&str>) -> (StatusCode, String, String) {
    let mut request = Request::get("/me");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .expect("body");
    let body = String::from_utf8_lossy(&body).into_owned();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(content_type, "application/problem+json");
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    (status, body, challenge)
}

#[tokio::test]
async fn the_subject_extractor_admits_only_verified_customers() {
    let signer = Signer::generate("k1").expect("key");
    let verifier = comptoir_auth::Verifier::new(
        &Jwks::new(vec![signer.jwk()]),
        comptoir_auth::DEFAULT_ISSUER,
        comptoir_auth::DEFAULT_AUDIENCE,
    );
    let app = app(Authenticator::Local(Arc::new(verifier)));
    let subject = Uuid::new_v4();

    let good = token(&signer, subject);
    let (status, body, _) = call(&app, Some(&format!("Bearer {good}"))).await;
    assert_eq!((status, body), (StatusCode::OK, subject.to_string()));
    let (status, _, _) = call(&app, Some(&format!("bearer {good}"))).await;
    assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");

    let (status, _, challenge) = call(&app, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!challenge.contains("invalid_token"));
    for bad in [
        "Bearer ".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer not.a.token".to_owned(),
        format!(
            "Bearer {}",
            token(&Signer::generate("k1").expect("key"), subject)
        ),
        format!(
            "Bearer {}",
            token(&Signer::generate("k9").expect("key"), subject)
        ),
    ] {
        let (status, body, _) = call(&app, Some(&bad)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}");
        assert!(!body.contains(&subject.to_string()), "{body}");
    }

    let mut wrong_scope = Claims::new(
        comptoir_auth::DEFAULT_ISSUER,
        comptoir_auth::DEFAULT_AUDIENCE,
        subject,
        "service",
        Duration::from_secs(300),
        None,
    );
    let (status, _, _) = call(
        &app,
        Some(&format!(
            "Bearer {}",
            signer.issue(&wrong_scope).expect("sign")
        )),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    wrong_scope.scope = "customer".to_owned();
    wrong_scope.exp = wrong_scope.iat - 3600;
    let (status, body, challenge) = call(
        &app,
        Some(&format!(
            "Bearer {}",
            signer.issue(&wrong_scope).expect("sign")
        )),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");
    assert!(challenge.contains("invalid_token"), "{challenge}");
}

/// The JWKS served over TLS with a certificate for `localhost` signed by a fresh CA; returns
/// the URL and the CA's PEM.
async fn serve_jwks_over_tls(served: Served) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &issuer)
        .expect("server certificate");

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(
        vec![server.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    )
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = jwks_app(served);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client refusing the certificate ends its handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (
        format!("https://localhost:{port}/.well-known/jwks.json"),
        ca.pem(),
    )
}

#[tokio::test]
async fn the_jwks_is_fetched_over_tls_against_the_configured_ca_only() {
    let served = Served::default();
    let signer = Signer::generate("2026-tls").expect("key");
    *served.jwks.lock().expect("lock") = Jwks::new(vec![signer.jwk()]);
    let (url, ca_pem) = serve_jwks_over_tls(served.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).expect("write ca");

    // With the platform's CA: the keys load and tokens verify.
    let cache = JwksCache::new(JwksCacheSettings {
        ca_file: Some(ca_file),
        ..settings(url.clone(), 0)
    })
    .expect("cache");
    let subject = Uuid::new_v4();
    assert_eq!(
        cache.verify(&token(&signer, subject)).await.map(|c| c.sub),
        Ok(subject)
    );
    assert_eq!(served.fetches.load(Ordering::SeqCst), 1);

    // Without it (system roots only), the same server is not believed: no keys, no tokens.
    let untrusting = JwksCache::new(settings(url, 0)).expect("cache");
    assert!(matches!(
        untrusting.refresh().await,
        Err(VerifyError::KeysUnavailable(_))
    ));
    assert!(untrusting.verify(&token(&signer, subject)).await.is_err());
    assert_eq!(served.fetches.load(Ordering::SeqCst), 1, "no JWKS served");
}

#[tokio::test]
async fn probing_for_keys_before_they_load_fetches_at_most_once_per_interval() {
    // A JWKS endpoint that is failing: readiness probes must not hammer it.
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/.well-known/jwks.json",
            get(|State(count): State<Arc<AtomicUsize>>| async move {
                count.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .with_state(Arc::clone(&fetches));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let cache = JwksCache::new(settings(
        format!("http://{addr}/.well-known/jwks.json"),
        60_000,
    ))
    .expect("cache");
    for _ in 0..20 {
        assert!(matches!(
            cache.ensure_loaded().await,
            Err(VerifyError::KeysUnavailable(_))
        ));
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "one fetch per interval");
}
