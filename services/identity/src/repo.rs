//! The SQL of identity. Only ciphertexts, blind indexes, hashes and opaque ids cross this
//! boundary: no function here takes or returns plaintext personal data.

use comptoir_events::CloudEvent;
use comptoir_events::contracts::identity::ConsentChanged;
use comptoir_events::outbox;
use deadpool_postgres::Pool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::vault::SealedProfile;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("cannot get a database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot enqueue the event")]
    Outbox(#[from] comptoir_events::outbox::OutboxError),
}

/// What a new customer is stored as.
#[derive(Debug)]
pub struct NewCustomer<'a> {
    pub id: Uuid,
    pub email_index: [u8; 32],
    pub password_hash: &'a str,
    pub sealed: &'a SealedProfile,
    pub kek_id: &'a str,
    pub wrapped_key: Vec<u8>,
}

/// Inserts a customer and their wrapped data key. Returns false, changing nothing, when the
/// email is already registered.
pub async fn insert_customer(pool: &Pool, new: &NewCustomer<'_>) -> Result<bool, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let inserted = tx
        .query_opt(
            "INSERT INTO customers (id, email_index, password_hash, email, name, phone, addresses)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (email_index) DO NOTHING
             RETURNING id",
            &[
                &new.id,
                &new.email_index.as_slice(),
                &new.password_hash,
                &new.sealed.email,
                &new.sealed.name,
                &new.sealed.phone,
                &new.sealed.addresses,
            ],
        )
        .await?
        .is_some();
    if inserted {
        tx.execute(
            "INSERT INTO subject_keys (customer_id, kek_id, wrapped_key) VALUES ($1, $2, $3)",
            &[&new.id, &new.kek_id, &new.wrapped_key],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// The id and password hash of the customer with this email index.
pub async fn find_credentials(
    pool: &Pool,
    email_index: &[u8; 32],
) -> Result<Option<(Uuid, String)>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT id, password_hash FROM customers WHERE email_index = $1",
            &[&email_index.as_slice()],
        )
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// Whose consecutive sign-in failures count together: one email (its blind index, whether a
/// customer has it or not) from one client (a keyed hash of its rate-limit key). A client
/// that fails five times is locked out of that email; its owner, elsewhere, is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginKey {
    pub email_index: [u8; 32],
    pub client_index: [u8; 32],
}

/// Until when this email is locked for this client, if it is now.
pub async fn locked_until(
    pool: &Pool,
    key: &LoginKey,
) -> Result<Option<OffsetDateTime>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query_opt(
            "SELECT locked_until FROM login_failures
             WHERE email_index = $1 AND client_index = $2 AND locked_until > now()",
            &[&key.email_index.as_slice(), &key.client_index.as_slice()],
        )
        .await?
        .and_then(|row| row.get(0)))
}

/// Counts one more consecutive failure; at `threshold` the email is locked for this client
/// for `lockout_secs` and the count starts again. A failure long after the previous one
/// (more than the lockout period) counts as the first.
pub async fn record_login_failure(
    pool: &Pool,
    key: &LoginKey,
    threshold: u32,
    lockout_secs: u64,
) -> Result<Option<OffsetDateTime>, RepoError> {
    let client = pool.get().await?;
    let threshold = i32::try_from(threshold).unwrap_or(i32::MAX);
    let lockout = lockout_secs as f64;
    let (email, client_index) = (key.email_index.as_slice(), key.client_index.as_slice());
    let row = client
        .query_one(
            "INSERT INTO login_failures AS f (email_index, client_index, failures, last_failure_at)
             VALUES ($1, $2, 1, now())
             ON CONFLICT (email_index, client_index) DO UPDATE SET
                 failures = CASE
                     WHEN f.last_failure_at < now() - make_interval(secs => $3)
                       OR f.locked_until IS NOT NULL THEN 1
                     ELSE f.failures + 1 END,
                 locked_until = NULL,
                 last_failure_at = now()
             RETURNING failures",
            &[&email, &client_index, &lockout],
        )
        .await?;
    let failures: i32 = row.get(0);
    if failures < threshold {
        return Ok(None);
    }
    let row = client
        .query_one(
            "UPDATE login_failures
             SET locked_until = now() + make_interval(secs => $3), failures = 0
             WHERE email_index = $1 AND client_index = $2
             RETURNING locked_until",
            &[&email, &client_index, &lockout],
        )
        .await?;
    Ok(row.get(0))
}

/// Forgets this client's failures for an email after it signed in.
pub async fn clear_login_failures(pool: &Pool, key: &LoginKey) -> Result<(), RepoError> {
    let client = pool.get().await?;
    client
        .execute(
            "DELETE FROM login_failures WHERE email_index = $1 AND client_index = $2",
            &[&key.email_index.as_slice(), &key.client_index.as_slice()],
        )
        .await?;
    Ok(())
}

/// Replaces a customer's password hash (a rehash with the current argon2 parameters).
pub async fn update_password_hash(
    pool: &Pool,
    customer: Uuid,
    hash: &str,
) -> Result<(), RepoError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE customers SET password_hash = $2 WHERE id = $1",
            &[&customer, &hash],
        )
        .await?;
    Ok(())
}

/// Opens a session with its first refresh token. Returns the session id.
pub async fn create_session(
    pool: &Pool,
    customer: Uuid,
    token_hash: &[u8; 32],
    expires_at: OffsetDateTime,
) -> Result<Uuid, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let session = Uuid::now_v7();
    tx.execute(
        "INSERT INTO sessions (id, customer_id) VALUES ($1, $2)",
        &[&session, &customer],
    )
    .await?;
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        &[&token_hash.as_slice(), &session, &expires_at],
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// What presenting a refresh token came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// The token was fresh: it is now spent and `new` replaces it in the same session.
    Rotated { customer: Uuid, session: Uuid },
    /// The token had been used already: someone holds a copy. The session is revoked.
    ReuseDetected { session: Uuid },
    /// Unknown, expired, or its session is revoked.
    Refused,
}

/// Spends `presented` and stores `new` in its place, detecting reuse.
///
/// A session also ends `session_max_age` after its sign-in, however often it is refreshed:
/// the new token never outlives that, and a token presented after it is refused.
pub async fn rotate_refresh_token(
    pool: &Pool,
    presented: &[u8; 32],
    new: &[u8; 32],
    new_expires_at: OffsetDateTime,
    session_max_age: std::time::Duration,
) -> Result<Refresh, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // FOR UPDATE on both rows: two concurrent uses of one token serialise here, and the
    // second sees the first's used_at (reuse), never two successes.
    let Some(row) = tx
        .query_opt(
            "SELECT t.session_id, s.customer_id, t.used_at IS NOT NULL, t.expires_at <= now(),
                    s.revoked_at IS NOT NULL, s.created_at + make_interval(secs => $2)
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.token_hash = $1
             FOR UPDATE OF t, s",
            &[&presented.as_slice(), &session_max_age.as_secs_f64()],
        )
        .await?
    else {
        return Ok(Refresh::Refused);
    };
    let session: Uuid = row.get(0);
    let customer: Uuid = row.get(1);
    let (used, expired, revoked): (bool, bool, bool) = (row.get(2), row.get(3), row.get(4));
    let session_ends: OffsetDateTime = row.get(5);
    if revoked || expired || session_ends <= OffsetDateTime::now_utc() {
        return Ok(Refresh::Refused);
    }
    let new_expires_at = new_expires_at.min(session_ends);
    if used {
        tx.execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'reuse-detected'
             WHERE id = $1",
            &[&session],
        )
        .await?;
        tx.commit().await?;
        return Ok(Refresh::ReuseDetected { session });
    }
    tx.execute(
        "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1",
        &[&presented.as_slice()],
    )
    .await?;
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        &[&new.as_slice(), &session, &new_expires_at],
    )
    .await?;
    tx.commit().await?;
    Ok(Refresh::Rotated { customer, session })
}

/// Revokes a session of `customer` (logout). Revoking twice is harmless.
pub async fn revoke_session(pool: &Pool, customer: Uuid, session: Uuid) -> Result<(), RepoError> {
    let client = pool.get().await?;
    client
        .execute(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'logout'
             WHERE id = $1 AND customer_id = $2 AND revoked_at IS NULL",
            &[&session, &customer],
        )
        .await?;
    Ok(())
}

/// A customer as stored: ciphertexts and the wrapped data key.
#[derive(Debug)]
pub struct StoredCustomer {
    pub sealed: SealedProfile,
    pub wrapped_key: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub version: i64,
}

pub async fn load_customer(pool: &Pool, id: Uuid) -> Result<StoredCustomer, RepoError> {
    let client = pool.get().await?;
    customer(&client, id)
        .await?
        .map(|(stored, _)| stored)
        .ok_or(RepoError::NotFound)
}

/// A customer's sealed profile and when it last changed, on any client (a pool's, or a
/// transaction's: the GDPR export reads it inside its own).
pub async fn customer<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
    id: Uuid,
) -> Result<Option<(StoredCustomer, OffsetDateTime)>, RepoError> {
    Ok(client
        .query_opt(
            "SELECT c.email, c.name, c.phone, c.addresses, k.wrapped_key, c.created_at, c.version,
                    c.updated_at
             FROM customers c JOIN subject_keys k ON k.customer_id = c.id
             WHERE c.id = $1",
            &[&id],
        )
        .await?
        .map(|row| {
            (
                StoredCustomer {
                    sealed: SealedProfile {
                        email: row.get(0),
                        name: row.get(1),
                        phone: row.get(2),
                        addresses: row.get(3),
                    },
                    wrapped_key: row.get(4),
                    created_at: row.get(5),
                    version: row.get(6),
                },
                row.get(7),
            )
        }))
}

/// Replaces a customer's sealed profile if it is still at `version` (optimistic: two
/// concurrent PATCHes cannot silently drop one another's change).
pub async fn update_profile(
    pool: &Pool,
    id: Uuid,
    version: i64,
    sealed: &SealedProfile,
) -> Result<bool, RepoError> {
    let client = pool.get().await?;
    let updated = client
        .execute(
            "UPDATE customers
             SET name = $3, phone = $4, addresses = $5, version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $2",
            &[
                &id,
                &version,
                &sealed.name,
                &sealed.phone,
                &sealed.addresses,
            ],
        )
        .await?;
    Ok(updated == 1)
}

/// `Err(NotFound)` unless `customer` exists: reads on behalf of an erased customer whose
/// access token has not expired yet answer 404, not an empty record.
pub async fn ensure_customer(pool: &Pool, customer: Uuid) -> Result<(), RepoError> {
    let client = pool.get().await?;
    client
        .query_opt("SELECT 1 FROM customers WHERE id = $1", &[&customer])
        .await?
        .map(drop)
        .ok_or(RepoError::NotFound)
}

/// The current consents of a customer, by purpose.
pub async fn consents(
    pool: &Pool,
    customer: Uuid,
) -> Result<Vec<(String, bool, OffsetDateTime)>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query(
            "SELECT purpose, granted, updated_at FROM consents WHERE customer_id = $1",
            &[&customer],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// Sets a consent, appending to the history and enqueuing `ConsentChanged` on `topic` (in the
/// same transaction) when it changes. Returns when it took effect.
pub async fn set_consent(
    pool: &Pool,
    topic: &str,
    customer: Uuid,
    purpose: &str,
    granted: bool,
) -> Result<OffsetDateTime, RepoError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let exists = tx
        .query_opt(
            "SELECT 1 FROM customers WHERE id = $1 FOR SHARE",
            &[&customer],
        )
        .await?;
    if exists.is_none() {
        return Err(RepoError::NotFound);
    }
    let current = tx
        .query_opt(
            "SELECT granted, updated_at FROM consents
             WHERE customer_id = $1 AND purpose = $2 FOR UPDATE",
            &[&customer, &purpose],
        )
        .await?;
    if let Some(row) = &current
        && row.get::<_, bool>(0) == granted
    {
        return Ok(row.get(1));
    }
    let row = tx
        .query_one(
            "INSERT INTO consents (customer_id, purpose, granted) VALUES ($1, $2, $3)
             ON CONFLICT (customer_id, purpose)
             DO UPDATE SET granted = EXCLUDED.granted, updated_at = now()
             RETURNING updated_at",
            &[&customer, &purpose, &granted],
        )
        .await?;
    tx.execute(
        "INSERT INTO consent_history (customer_id, purpose, granted, recorded_at)
         VALUES ($1, $2, $3, $4)",
        &[
            &customer,
            &purpose,
            &granted,
            &row.get::<_, OffsetDateTime>(0),
        ],
    )
    .await?;
    let changed_at: OffsetDateTime = row.get(0);
    let event = CloudEvent::new(
        crate::gdpr::EVENT_SOURCE,
        customer.to_string(),
        ConsentChanged {
            customer_id: customer,
            purpose: purpose.to_owned(),
            granted,
            changed_at,
        },
    );
    outbox::enqueue(&tx, topic, &event).await?;
    tx.commit().await?;
    Ok(changed_at)
}

/// Every consent change of a customer, oldest first.
pub async fn consent_history(
    pool: &Pool,
    customer: Uuid,
) -> Result<Vec<(String, bool, OffsetDateTime)>, RepoError> {
    let client = pool.get().await?;
    Ok(client
        .query(
            "SELECT purpose, granted, recorded_at FROM consent_history
             WHERE customer_id = $1 ORDER BY id",
            &[&customer],
        )
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect())
}

/// One line of the PII access log.
#[derive(Debug)]
pub struct PiiAccess<'a> {
    pub client: &'a str,
    pub subject: Uuid,
    pub purpose: &'a str,
    pub fields: &'a [String],
    pub outcome: &'a str,
}

pub async fn log_pii_access(pool: &Pool, access: &PiiAccess<'_>) -> Result<(), RepoError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO pii_access_log (client, subject, purpose, fields, outcome)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &access.client,
                &access.subject,
                &access.purpose,
                &access.fields,
                &access.outcome,
            ],
        )
        .await?;
    Ok(())
}
