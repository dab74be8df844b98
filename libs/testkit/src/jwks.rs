//! [`Keys`]: a JWKS endpoint serving a key generated here, standing in for identity's
//! `/.well-known/jwks.json`, so a service's tests can act as any customer. The end-to-end
//! tests (`tests/e2e`) sign in through the real identity instead.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use comptoir_auth::{Claims, Jwks, Signer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A JWKS endpoint and the key behind it; stopped when dropped.
pub struct Keys {
    /// `http://127.0.0.1:<port>/.well-known/jwks.json`.
    pub url: String,
    signer: Arc<Signer>,
    shutdown: CancellationToken,
}

impl Keys {
    /// Serves a fresh key on a free loopback port.
    pub async fn start() -> Self {
        let signer = Arc::new(Signer::generate("test-key").expect("key"));
        let jwks = Jwks::new(vec![signer.jwk()]);
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        Self {
            url,
            signer,
            shutdown,
        }
    }

    /// An access token for `customer`, as identity would issue at sign-in.
    pub fn token(&self, customer: Uuid) -> String {
        let claims = Claims::new(
            comptoir_auth::DEFAULT_ISSUER,
            comptoir_auth::DEFAULT_AUDIENCE,
            customer,
            "customer",
            Duration::from_secs(600),
            None,
        );
        self.signer.issue(&claims).expect("token")
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
