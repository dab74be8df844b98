//! The SQL of the GDPR flows. Like `crate::repo`, only ciphertexts, blind indexes, hashes,
//! opaque ids, times and counts cross this boundary. Functions that are part of a larger unit
//! of work take any client (a transaction); the others take the pool.

use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::repo::RepoError;

/// An export job as stored (the archive apart).
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub services: Vec<String>,
    pub status: String,
    pub failure: Option<String>,
    pub requested_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
    pub archive_bytes: Option<i32>,
}

const EXPORT_COLUMNS: &str = "id, customer_id, services, status, failure, requested_at, \
                              completed_at, expires_at, archive_bytes";

fn export_job(row: &tokio_postgres::Row) -> ExportJob {
    ExportJob {
        id: row.get(0),
        customer_id: row.get(1),
        services: row.get(2),
        status: row.get(3),
        failure: row.get(4),
        requested_at: row.get(5),
        completed_at: row.get(6),
        expires_at: row.get(7),
        archive_bytes: row.get(8),
    }
}

/// A customer's wrapped data key, if the customer (still) exists.
pub async fn wrapped_key<C: GenericClient + Sync>(
    client: &C,
    customer: Uuid,
) -> Result<Option<Vec<u8>>, RepoError> {
    Ok(client
        .query_opt(
            "SELECT wrapped_key FROM subject_keys WHERE customer_id = $1",
            &[&customer],
        )
        .await?
        .map(|row| row.get(0)))
}

/// What asking for an export came to.
#[derive(Debug, PartialEq, Eq)]
pub enum NewExport {
    /// A job was created: the caller enqueues the request in the same transaction.
    Created,
    /// One is already pending for this customer: this is its id.
    Pending(Uuid),
    /// No such customer (erased meanwhile).
    NoCustomer,
}

/// Creates export job `id` for `customer`, unless one is pending already.
pub async fn create_export<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
    customer: Uuid,
    services: &[String],
) -> Result<NewExport, RepoError> {
    // FOR SHARE: an erasure running at the same time (FOR UPDATE on the row) waits for this
    // transaction, or this one finds the customer gone.
    if tx
        .query_opt(
            "SELECT 1 FROM customers WHERE id = $1 FOR SHARE",
            &[&customer],
        )
        .await?
        .is_none()
    {
        return Ok(NewExport::NoCustomer);
    }
    let inserted = tx
        .query_opt(
            "INSERT INTO export_jobs (id, customer_id, services) VALUES ($1, $2, $3)
             ON CONFLICT (customer_id) WHERE status = 'pending' DO NOTHING
             RETURNING id",
            &[&id, &customer, &services],
        )
        .await?;
    if inserted.is_some() {
        return Ok(NewExport::Created);
    }
    let pending = tx
        .query_one(
            "SELECT id FROM export_jobs WHERE customer_id = $1 AND status = 'pending'",
            &[&customer],
        )
        .await?;
    Ok(NewExport::Pending(pending.get(0)))
}

/// Export job `id`, locked until the end of the transaction.
pub async fn lock_export<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
) -> Result<Option<ExportJob>, RepoError> {
    Ok(tx
        .query_opt(
            &format!("SELECT {EXPORT_COLUMNS} FROM export_jobs WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(export_job))
}

/// Export job `id` if it belongs to `customer`.
pub async fn export_of(
    pool: &Pool,
    id: Uuid,
    customer: Uuid,
) -> Result<Option<ExportJob>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            &format!("SELECT {EXPORT_COLUMNS} FROM export_jobs WHERE id = $1 AND customer_id = $2"),
            &[&id, &customer],
        )
        .await?
        .as_ref()
        .map(export_job))
}

/// The sealed archive of a ready export of `customer`, with the customer's wrapped key.
pub async fn archive_of(
    pool: &Pool,
    id: Uuid,
    customer: Uuid,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT e.archive, k.wrapped_key
             FROM export_jobs e JOIN subject_keys k ON k.customer_id = e.customer_id
             WHERE e.id = $1 AND e.customer_id = $2 AND e.status = 'ready'
               AND e.expires_at > now()",
            &[&id, &customer],
        )
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// Stores a participant's sealed slice; false when it was there already.
pub async fn insert_slice<C: GenericClient + Sync>(
    tx: &C,
    export: Uuid,
    service: &str,
    sealed: &[u8],
) -> Result<bool, RepoError> {
    Ok(tx
        .execute(
            "INSERT INTO export_slices (export_id, service, data) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&export, &service, &sealed],
        )
        .await?
        == 1)
}

/// A stored slice: who sent it, when, and its ciphertext.
#[derive(Debug)]
pub struct StoredSlice {
    pub service: String,
    pub received_at: OffsetDateTime,
    pub sealed: Vec<u8>,
}

pub async fn slices<C: GenericClient + Sync>(
    tx: &C,
    export: Uuid,
) -> Result<Vec<StoredSlice>, RepoError> {
    Ok(tx
        .query(
            "SELECT service, received_at, data FROM export_slices
             WHERE export_id = $1 AND data IS NOT NULL ORDER BY service",
            &[&export],
        )
        .await?
        .iter()
        .map(|row| StoredSlice {
            service: row.get(0),
            received_at: row.get(1),
            sealed: row.get(2),
        })
        .collect())
}

/// Which participants have answered export `id`, and when.
pub async fn answered(
    pool: &Pool,
    export: Uuid,
) -> Result<Vec<(String, OffsetDateTime)>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query(
            "SELECT service, received_at FROM export_slices WHERE export_id = $1",
            &[&export],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Stores the sealed archive, starts its expiry and drops the contents of the slices it was
/// made of (who answered when stays).
/// Returns when it completed and when it expires.
pub async fn mark_export_ready<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
    archive: &[u8],
    ttl_secs: u64,
) -> Result<(OffsetDateTime, OffsetDateTime), RepoError> {
    let ttl = ttl_secs as f64;
    let bytes = i32::try_from(archive.len()).unwrap_or(i32::MAX);
    let row = tx
        .query_one(
            "UPDATE export_jobs
             SET status = 'ready', archive = $2, archive_bytes = $3, completed_at = now(),
                 expires_at = now() + make_interval(secs => $4)
             WHERE id = $1
             RETURNING completed_at, expires_at",
            &[&id, &archive, &bytes, &ttl],
        )
        .await?;
    tx.execute(
        "UPDATE export_slices SET data = NULL WHERE export_id = $1",
        &[&id],
    )
    .await?;
    Ok((row.get(0), row.get(1)))
}

/// Marks export `id` failed for `reason` and drops the contents of its slices.
pub async fn mark_export_failed<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
    reason: &str,
) -> Result<(), RepoError> {
    tx.execute(
        "UPDATE export_jobs SET status = 'failed', failure = $2, completed_at = now()
         WHERE id = $1",
        &[&id, &reason],
    )
    .await?;
    tx.execute(
        "UPDATE export_slices SET data = NULL WHERE export_id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

/// A session as shown in an export: metadata only (refresh tokens are counted, never shown).
#[derive(Debug, Serialize)]
pub struct SessionRecord {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
    pub refresh_tokens_issued: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_refreshed_at: Option<OffsetDateTime>,
}

pub async fn sessions_of<C: GenericClient + Sync>(
    tx: &C,
    customer: Uuid,
) -> Result<Vec<SessionRecord>, RepoError> {
    Ok(tx
        .query(
            "SELECT s.id, s.created_at, s.revoked_at, s.revoked_reason, count(t.token_hash),
                    max(t.issued_at)
             FROM sessions s LEFT JOIN refresh_tokens t ON t.session_id = s.id
             WHERE s.customer_id = $1
             GROUP BY s.id ORDER BY s.created_at",
            &[&customer],
        )
        .await?
        .iter()
        .map(|row| SessionRecord {
            id: row.get(0),
            created_at: row.get(1),
            revoked_at: row.get(2),
            revoked_reason: row.get(3),
            refresh_tokens_issued: row.get(4),
            last_refreshed_at: row.get(5),
        })
        .collect())
}

/// A consent, current or past, as shown in an export.
#[derive(Debug, Serialize)]
pub struct ConsentRecord {
    pub purpose: String,
    pub granted: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

pub async fn consents_of<C: GenericClient + Sync>(
    tx: &C,
    customer: Uuid,
) -> Result<(Vec<ConsentRecord>, Vec<ConsentRecord>), RepoError> {
    let record = |row: &tokio_postgres::Row| ConsentRecord {
        purpose: row.get(0),
        granted: row.get(1),
        at: row.get(2),
    };
    let current = tx
        .query(
            "SELECT purpose, granted, updated_at FROM consents
             WHERE customer_id = $1 ORDER BY purpose",
            &[&customer],
        )
        .await?
        .iter()
        .map(record)
        .collect();
    let history = tx
        .query(
            "SELECT purpose, granted, recorded_at FROM consent_history
             WHERE customer_id = $1 ORDER BY id",
            &[&customer],
        )
        .await?
        .iter()
        .map(record)
        .collect();
    Ok((current, history))
}

/// A line of the PII access log about the subject, as shown in an export.
#[derive(Debug, Serialize)]
pub struct AccessRecord {
    pub client: String,
    pub purpose: String,
    pub fields: Vec<String>,
    pub outcome: String,
    #[serde(with = "time::serde::rfc3339")]
    pub accessed_at: OffsetDateTime,
}

pub async fn access_log_of<C: GenericClient + Sync>(
    tx: &C,
    customer: Uuid,
) -> Result<Vec<AccessRecord>, RepoError> {
    Ok(tx
        .query(
            "SELECT client, purpose, fields, outcome, accessed_at FROM pii_access_log
             WHERE subject = $1 ORDER BY id",
            &[&customer],
        )
        .await?
        .iter()
        .map(|row| AccessRecord {
            client: row.get(0),
            purpose: row.get(1),
            fields: row.get(2),
            outcome: row.get(3),
            accessed_at: row.get(4),
        })
        .collect())
}

/// What re-authentication needs: the email's blind index (the lockout is keyed by it) and
/// the password hash.
pub async fn credentials_of(
    pool: &Pool,
    customer: Uuid,
) -> Result<Option<([u8; 32], String)>, RepoError> {
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT email_index, password_hash FROM customers WHERE id = $1",
            &[&customer],
        )
        .await?
    else {
        return Ok(None);
    };
    let index: Vec<u8> = row.get(0);
    let index: [u8; 32] = index.try_into().map_err(|_| RepoError::NotFound)?;
    Ok(Some((index, row.get(1))))
}

/// Rows removed from identity's tables by an erasure, per table: the `erased` column of the
/// erasure record. Counts only.
#[derive(Debug, Default, Serialize)]
pub struct Erased {
    pub subject_keys: u64,
    pub customers: u64,
    pub login_failures: u64,
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub consents: u64,
    pub consent_history: u64,
    pub export_jobs: u64,
    pub export_slices: u64,
}

/// Erases `customer` from identity's tables, inside `tx`; `None` when there is no such
/// customer (already erased). The wrapped data key goes first: from that statement on, every
/// ciphertext of the customer — in this database, its replicas and its backups — is noise.
/// The rest removes the ciphertexts themselves, the blind index, the credentials, sessions,
/// consents and exports. The PII access log is kept: it holds the opaque id, never a value.
pub async fn erase_customer<C: GenericClient + Sync>(
    tx: &C,
    customer: Uuid,
) -> Result<Option<Erased>, RepoError> {
    // FOR UPDATE: two erasures of one customer serialise; the second finds nothing.
    let Some(row) = tx
        .query_opt(
            "SELECT email_index FROM customers WHERE id = $1 FOR UPDATE",
            &[&customer],
        )
        .await?
    else {
        return Ok(None);
    };
    let email_index: Vec<u8> = row.get(0);
    let by_customer = |table: &'static str| format!("DELETE FROM {table} WHERE customer_id = $1");
    let mut erased = Erased {
        subject_keys: tx
            .execute(&by_customer("subject_keys"), &[&customer])
            .await?,
        ..Erased::default()
    };
    erased.export_slices = tx
        .execute(
            "DELETE FROM export_slices
             WHERE export_id IN (SELECT id FROM export_jobs WHERE customer_id = $1)",
            &[&customer],
        )
        .await?;
    erased.export_jobs = tx
        .execute(&by_customer("export_jobs"), &[&customer])
        .await?;
    erased.refresh_tokens = tx
        .execute(
            "DELETE FROM refresh_tokens
             WHERE session_id IN (SELECT id FROM sessions WHERE customer_id = $1)",
            &[&customer],
        )
        .await?;
    erased.sessions = tx.execute(&by_customer("sessions"), &[&customer]).await?;
    erased.consents = tx.execute(&by_customer("consents"), &[&customer]).await?;
    erased.consent_history = tx
        .execute(&by_customer("consent_history"), &[&customer])
        .await?;
    erased.login_failures = tx
        .execute(
            "DELETE FROM login_failures WHERE email_index = $1",
            &[&email_index],
        )
        .await?;
    erased.customers = tx
        .execute("DELETE FROM customers WHERE id = $1", &[&customer])
        .await?;
    Ok(Some(erased))
}

/// Records erasure request `id` of `customer`, to be confirmed by `services`.
pub async fn insert_erasure<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
    customer: Uuid,
    services: &[String],
    erased: &Erased,
) -> Result<OffsetDateTime, RepoError> {
    let erased = serde_json::to_value(erased).unwrap_or_default();
    Ok(tx
        .query_one(
            "INSERT INTO erasure_requests (id, customer_id, services, erased)
             VALUES ($1, $2, $3, $4) RETURNING requested_at",
            &[&id, &customer, &services, &erased],
        )
        .await?
        .get(0))
}

/// Pending erasures last published more than `after_secs` ago, marked as published now (in
/// `tx`, which publishes them). Locked rows are skipped, so replicas sweeping at once do not
/// publish the same request twice.
pub async fn due_erasures<C: GenericClient + Sync>(
    tx: &C,
    after_secs: u64,
) -> Result<Vec<(Uuid, Uuid)>, RepoError> {
    let after = after_secs as f64;
    Ok(tx
        .query(
            "UPDATE erasure_requests SET last_sent_at = now()
             WHERE id IN (SELECT id FROM erasure_requests
                          WHERE completed_at IS NULL
                            AND last_sent_at < now() - make_interval(secs => $1)
                          ORDER BY requested_at LIMIT 100
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, customer_id",
            &[&after],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// An erasure request as stored.
#[derive(Debug, Clone)]
pub struct ErasureRequest {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub services: Vec<String>,
    pub requested_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
}

const ERASURE_COLUMNS: &str = "id, customer_id, services, requested_at, completed_at";

fn erasure_request(row: &tokio_postgres::Row) -> ErasureRequest {
    ErasureRequest {
        id: row.get(0),
        customer_id: row.get(1),
        services: row.get(2),
        requested_at: row.get(3),
        completed_at: row.get(4),
    }
}

/// Erasure request `id`, locked until the end of the transaction.
pub async fn lock_erasure<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
) -> Result<Option<ErasureRequest>, RepoError> {
    Ok(tx
        .query_opt(
            &format!("SELECT {ERASURE_COLUMNS} FROM erasure_requests WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(erasure_request))
}

/// Records a service's confirmation; false when it had confirmed already.
pub async fn insert_confirmation<C: GenericClient + Sync>(
    tx: &C,
    request: Uuid,
    service: &str,
    summary: &serde_json::Value,
) -> Result<bool, RepoError> {
    Ok(tx
        .execute(
            "INSERT INTO erasure_confirmations (request_id, service, summary)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&request, &service, summary],
        )
        .await?
        == 1)
}

/// The services that confirmed erasure `request`, and when.
pub async fn confirmations<C: GenericClient + Sync>(
    client: &C,
    request: Uuid,
) -> Result<Vec<(String, OffsetDateTime)>, RepoError> {
    Ok(client
        .query(
            "SELECT service, confirmed_at FROM erasure_confirmations
             WHERE request_id = $1 ORDER BY confirmed_at, service",
            &[&request],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Marks erasure `id` complete; returns when.
pub async fn complete_erasure<C: GenericClient + Sync>(
    tx: &C,
    id: Uuid,
) -> Result<OffsetDateTime, RepoError> {
    Ok(tx
        .query_one(
            "UPDATE erasure_requests SET completed_at = coalesce(completed_at, now())
             WHERE id = $1 RETURNING completed_at",
            &[&id],
        )
        .await?
        .get(0))
}

/// Erasure request `id` and its confirmations.
pub async fn erasure_status(
    pool: &Pool,
    id: Uuid,
) -> Result<Option<(ErasureRequest, Vec<(String, OffsetDateTime)>)>, RepoError> {
    let client = pool.get().await?;
    let Some(request) = client
        .query_opt(
            &format!("SELECT {ERASURE_COLUMNS} FROM erasure_requests WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(erasure_request)
    else {
        return Ok(None);
    };
    let confirmed = confirmations(&client, id).await?;
    Ok(Some((request, confirmed)))
}

/// Deletes the archives of ready exports past their expiry (the rows stay, as `expired`, so
/// the customer gets 410), and the rows of exports expired or failed more than
/// `tombstone_days` ago. Returns the archives deleted.
pub async fn sweep_exports(pool: &Pool, tombstone_days: u64) -> Result<u64, RepoError> {
    let client = pool.get().await?;
    let expired = client
        .execute(
            "UPDATE export_jobs SET status = 'expired', archive = NULL
             WHERE status = 'ready' AND expires_at <= now()",
            &[],
        )
        .await?;
    let keep = (tombstone_days * 86_400) as f64;
    client
        .execute(
            "DELETE FROM export_jobs
             WHERE status IN ('expired', 'failed')
               AND coalesce(expires_at, completed_at) < now() - make_interval(secs => $1)",
            &[&keep],
        )
        .await?;
    Ok(expired)
}

/// Deletes records of erasures completed more than `days` ago. Returns how many.
pub async fn prune_erasures(pool: &Pool, days: u64) -> Result<u64, RepoError> {
    let client = pool.get().await?;
    let keep = (days * 86_400) as f64;
    Ok(client
        .execute(
            "DELETE FROM erasure_requests
             WHERE completed_at < now() - make_interval(secs => $1)",
            &[&keep],
        )
        .await?)
}

/// Exports and erasures waiting for a participant.
pub async fn pending_counts(pool: &Pool) -> Result<(i64, i64), RepoError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM export_jobs WHERE status = 'pending'),
                    (SELECT count(*) FROM erasure_requests WHERE completed_at IS NULL)",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Deletes PII access log lines older than `days`. Returns how many.
pub async fn prune_access_log(pool: &Pool, days: u64) -> Result<u64, RepoError> {
    let client = pool.get().await?;
    let keep = (days * 86_400) as f64;
    Ok(client
        .execute(
            "DELETE FROM pii_access_log WHERE accessed_at < now() - make_interval(secs => $1)",
            &[&keep],
        )
        .await?)
}

/// Deletes failed-sign-in counters that no longer count: not locked, and whose last failure
/// is older than `lockout_secs` (the next failure would start again from one anyway). They
/// are keyed by the blind index of whatever email was typed, a customer's or not.
pub async fn prune_login_failures(pool: &Pool, lockout_secs: u64) -> Result<u64, RepoError> {
    let client = pool.get().await?;
    let window = lockout_secs as f64;
    Ok(client
        .execute(
            "DELETE FROM login_failures
             WHERE last_failure_at < now() - make_interval(secs => $1)
               AND (locked_until IS NULL OR locked_until < now())",
            &[&window],
        )
        .await?)
}
