//! KEK rotation, step two: move every data key to the active KEK.
//!
//! After an operator makes a new KEK active and keeps the old one as retired, this job
//! rewraps, batch by batch, every data key still under another KEK — unwrapping with the
//! retired KEK, wrapping with the active one — without touching any encrypted field. Once it
//! reports none left, the retired KEK can be removed from the configuration and destroyed.
//! `FOR UPDATE SKIP LOCKED` lets several replicas run it at once without conflict.

use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Keys;
use crate::repo::RepoError;

/// Rewraps up to `batch` data keys not under the active KEK. Returns how many moved; keys
/// that cannot be unwrapped (their KEK is not configured) are counted as left behind.
pub async fn rewrap_batch(pool: &Pool, keys: &Keys, batch: i64) -> Result<(u64, u64), RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let active = keys.keyring.active_id();
    let rows = tx
        .query(
            "SELECT customer_id, wrapped_key FROM subject_keys
             WHERE kek_id <> $1 ORDER BY customer_id LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&active, &batch],
        )
        .await?;
    let (mut moved, mut stuck) = (0, 0);
    for row in &rows {
        let customer: Uuid = row.get(0);
        let wrapped: Vec<u8> = row.get(1);
        let rewrapped = comptoir_privacy::WrappedKey::from_bytes(&wrapped)
            .ok()
            .and_then(|w| keys.keyring.rewrap(&w, customer.as_bytes()).ok());
        match rewrapped {
            Some(new) => {
                tx.execute(
                    "UPDATE subject_keys SET kek_id = $2, wrapped_key = $3, rewrapped_at = now()
                     WHERE customer_id = $1",
                    &[&customer, &new.kek_id(), &new.to_bytes()],
                )
                .await?;
                moved += 1;
            }
            None => stuck += 1,
        }
    }
    tx.commit().await?;
    Ok((moved, stuck))
}

/// Runs batches until no key is left under a retired KEK (or only keys no configured KEK
/// opens), then stops. Logs progress once per batch, ids of KEKs only.
pub async fn run(pool: Pool, keys: Arc<Keys>, batch: i64, shutdown: CancellationToken) {
    let mut total = 0;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match rewrap_batch(&pool, &keys, batch).await {
            Ok((0, 0)) => {
                if total > 0 {
                    tracing::info!(
                        rewrapped = total,
                        active_kek = keys.keyring.active_id(),
                        "Every data key is under the active KEK"
                    );
                }
                return;
            }
            Ok((moved, stuck)) => {
                total += moved;
                metrics::counter!("identity_data_keys_rewrapped_total").increment(moved);
                if stuck > 0 {
                    tracing::error!(
                        stuck,
                        "Data keys under a KEK this process does not hold; add it as retired"
                    );
                }
                if moved == 0 {
                    return;
                }
            }
            Err(error) => {
                tracing::warn!(error = %comptoir_platform::telemetry::error_chain(&error), "KEK rewrap batch failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                }
            }
        }
    }
}
