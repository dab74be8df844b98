//! The periodic GDPR job: deletes export archives past their expiry, enforces the retention
//! of identity's records (erasure records, PII access log, stale failed-sign-in counters), and
//! publishes again the erasures a participant has not confirmed for a while, and sets the
//! pending gauges from the database (so every replica reports the same, global, numbers).
//! Safe to run on every replica at once: each statement is idempotent or skips locked rows.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use super::{Gdpr, metric, store};
use crate::repo::RepoError;

/// How long the row of an expired or failed export stays (ids and times only), so that its
/// subject gets 410 Gone rather than 404 for a while.
pub const EXPORT_TOMBSTONE_DAYS: u64 = 30;

/// One pass of the job. `lockout_secs` is `login.lockout_secs`.
pub async fn sweep_once(pool: &Pool, gdpr: &Gdpr, lockout_secs: u64) -> Result<(), RepoError> {
    let expired = store::sweep_exports(pool, EXPORT_TOMBSTONE_DAYS).await?;
    if expired > 0 {
        metrics::counter!(metric::EXPORTS_EXPIRED).increment(expired);
        tracing::info!(archives = expired, "Expired export archives deleted");
    }
    let pruned = store::prune_erasures(pool, gdpr.settings.erasure_record_retention_days).await?;
    if pruned > 0 {
        tracing::info!(
            records = pruned,
            "Erasure records past their retention deleted"
        );
    }
    let pruned = store::prune_access_log(pool, gdpr.settings.access_log_retention_days).await?;
    if pruned > 0 {
        tracing::info!(
            lines = pruned,
            "PII access log lines past their retention deleted"
        );
    }
    store::prune_login_failures(pool, lockout_secs).await?;
    if let Err(error) = super::erasure::resend_due(pool, gdpr).await {
        tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "Cannot publish pending erasures again; will retry");
    }
    let (exports, erasures) = store::pending_counts(pool).await?;
    metrics::gauge!(metric::PENDING, "kind" => "export").set(exports as f64);
    metrics::gauge!(metric::PENDING, "kind" => "erasure").set(erasures as f64);
    Ok(())
}

/// Runs [`sweep_once`] every `gdpr.sweep_interval_ms` until `shutdown`.
pub async fn run(pool: Pool, gdpr: Arc<Gdpr>, lockout_secs: u64, shutdown: CancellationToken) {
    let every = Duration::from_millis(gdpr.settings.sweep_interval_ms);
    loop {
        if let Err(error) = sweep_once(&pool, &gdpr, lockout_secs).await {
            tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "GDPR sweep failed; will retry");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
