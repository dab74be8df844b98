//! Liveness and readiness.
//!
//! `/livez` answers as long as the process serves HTTP. `/readyz` runs every registered
//! [`ReadinessCheck`] (a database ping, a broker connection) and answers 503 problem+json
//! naming the ones that fail, so a load balancer stops sending traffic while a dependency is
//! down.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::StatusCode;
use serde_json::json;

use crate::problem::{FieldError, Problem};

/// One dependency check: `Ok` when reachable, `Err(reason)` otherwise.
pub type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A named readiness check.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: &'static str,
    pub check: CheckFn,
}

impl std::fmt::Debug for ReadinessCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessCheck")
            .field("name", &self.name)
            .finish()
    }
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            check: Arc::new(move || Box::pin(check())),
        }
    }
}

/// A check that takes longer than this counts as failed: readiness must answer quickly.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn livez() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn readyz(State(checks): State<Arc<Vec<ReadinessCheck>>>) -> Response {
    let results = futures::future::join_all(checks.iter().map(|c| async move {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
        };
        (c.name, outcome)
    }))
    .await;
    // The reasons (addresses, driver errors) go to the log; the answer names the failing
    // dependencies only.
    let failures: Vec<FieldError> = results
        .into_iter()
        .filter_map(|(name, r)| {
            r.err().map(|reason| {
                tracing::warn!(dependency = name, %reason, "Not ready");
                FieldError::new(name, "unreachable (the reason is in the service's log)")
            })
        })
        .collect();
    if failures.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        Problem {
            errors: failures,
            ..Problem::typed(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "A dependency is unreachable",
            )
        }
        .into_response()
    }
}
