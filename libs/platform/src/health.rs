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
use tokio::task::JoinHandle;

use crate::problem::{FieldError, Problem};

/// One dependency check's outcome: `Ok` when reachable, `Err(reason)` otherwise.
pub type CheckResult = Result<(), String>;

/// One dependency check.
pub type CheckFn = Arc<dyn Fn() -> BoxFuture<'static, CheckResult> + Send + Sync>;

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

    /// A check whose work runs in a task of its own, at most one at a time, and is never
    /// cancelled: a probe that gives up after the readiness timeout leaves it running, and the
    /// next probe waits for that same run instead of starting another. For clients that are
    /// not cancel-safe (pulsar-rs: a lookup dropped half-way can leave its connection waiting
    /// for an answer nobody reads, and every later lookup time out with it).
    pub fn detached<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let check = Arc::new(check);
        let in_flight: Arc<tokio::sync::Mutex<Option<JoinHandle<CheckResult>>>> = Arc::default();
        Self::new(name, move || {
            let (check, in_flight) = (check.clone(), in_flight.clone());
            async move {
                let mut slot = in_flight.lock().await;
                let run = slot.get_or_insert_with(|| tokio::spawn(check()));
                // Cancelled here (the probe's timeout), the run stays in the slot for the next
                // probe; finished, the slot is emptied.
                let outcome = run.await;
                *slot = None;
                outcome.unwrap_or_else(|e| Err(format!("the check panicked: {e}")))
            }
        })
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_detached_check_outlives_the_probe_timeout_and_runs_once_at_a_time() {
        let runs = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let (counted, gate) = (runs.clone(), release.clone());
        let check = ReadinessCheck::detached("slow", move || {
            let (counted, gate) = (counted.clone(), gate.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok(())
            }
        });
        let probe = || tokio::time::timeout(Duration::from_millis(50), (check.check)());

        // Two probes give up while the first run waits: still one run, not cancelled.
        assert!(probe().await.is_err());
        assert!(probe().await.is_err());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Once it finishes, the next probe takes its result; the one after starts a new run.
        release.notify_one();
        assert_eq!(probe().await.expect("answered"), Ok(()));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        release.notify_one();
        assert_eq!(probe().await.expect("answered"), Ok(()));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
