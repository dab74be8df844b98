//! The retention job: aggregates older than `retention_days` are deleted, and inbox rows older
//! than the click stream's own retention (nothing that old can be delivered again).

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;

use crate::repo;

/// How long the inbox remembers a message: twice the click stream's retention (a day).
pub const INBOX_RETENTION_SECS: u64 = 2 * 24 * 3600;

/// Runs one pass now and then every `interval` until `stop` is cancelled.
pub async fn run(pool: Pool, retention_days: u32, interval: Duration, stop: CancellationToken) {
    loop {
        match pass(&pool, retention_days).await {
            Ok(pruned) => {
                if pruned.aggregates + pruned.inbox > 0 {
                    tracing::info!(
                        aggregates = pruned.aggregates,
                        inbox = pruned.inbox,
                        "Retention: old rows deleted"
                    );
                }
                metrics::counter!("analytics_retention_deleted_total", "table" => "aggregates")
                    .increment(pruned.aggregates);
                metrics::counter!("analytics_retention_deleted_total", "table" => "inbox")
                    .increment(pruned.inbox);
            }
            Err(error) => {
                tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "Retention pass failed; retrying at the next");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One retention pass.
pub async fn pass(pool: &Pool, retention_days: u32) -> Result<repo::Pruned, repo::RepoError> {
    let client = pool.get().await?;
    repo::prune(&client, retention_days, INBOX_RETENTION_SECS).await
}
