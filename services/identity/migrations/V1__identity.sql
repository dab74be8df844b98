-- Identity schema. Personal data is stored only encrypted (docs/architecture.md §5): each
-- customer's fields are AES-256-GCM ciphertexts under that customer's data key, which is
-- stored only wrapped by a key-encryption key (subject_keys). Deleting a customer's
-- subject_keys row crypto-shreds every copy of their data. No column holds plaintext PII.

CREATE TABLE customers (
    id             uuid        PRIMARY KEY,
    -- HMAC-SHA256 blind index of the normalised email: login lookup without the plaintext.
    email_index    bytea       NOT NULL UNIQUE CHECK (length(email_index) = 32),
    -- argon2id PHC string: a credential, not personal data; never leaves this service.
    password_hash  text        NOT NULL,
    -- Ciphertexts (comptoir_privacy::field format), AAD = (customer id, field name).
    email          bytea       NOT NULL,
    name           bytea       NOT NULL,
    phone          bytea,
    addresses      bytea       NOT NULL,
    version        bigint      NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- One data key per customer, wrapped under the KEK named by kek_id.
CREATE TABLE subject_keys (
    customer_id  uuid        PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    kek_id       text        NOT NULL,
    wrapped_key  bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz
);
-- The rewrap job looks for keys not under the active KEK.
CREATE INDEX subject_keys_kek_id ON subject_keys (kek_id);

-- A login session: the family of refresh tokens descending from one login. Reusing a
-- spent refresh token revokes the whole family (reuse detection).
CREATE TABLE sessions (
    id             uuid        PRIMARY KEY,
    customer_id    uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    revoked_at     timestamptz,
    revoked_reason text        CHECK (revoked_reason IN ('logout', 'reuse-detected'))
);
CREATE INDEX sessions_customer ON sessions (customer_id);

-- Refresh tokens are opaque random strings; only their SHA-256 is stored.
CREATE TABLE refresh_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- Consecutive failed logins per blind-indexed email, whether or not a customer has it, so
-- that a lockout looks the same for every address and survives restarts and replicas.
CREATE TABLE login_failures (
    email_index     bytea       PRIMARY KEY CHECK (length(email_index) = 32),
    failures        integer     NOT NULL,
    locked_until    timestamptz,
    last_failure_at timestamptz NOT NULL DEFAULT now()
);

-- Current consent per purpose; absent means not granted.
CREATE TABLE consents (
    customer_id uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose     text        NOT NULL CHECK (purpose IN ('marketing', 'analytics')),
    granted     boolean     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, purpose)
);

-- Every consent change, append-only: rows are never updated. (Deleting them is left to the
-- erasure of the customer, through the cascade.)
CREATE TABLE consent_history (
    id          bigserial   PRIMARY KEY,
    customer_id uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose     text        NOT NULL,
    granted     boolean     NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_history_customer ON consent_history (customer_id, id);

CREATE FUNCTION consent_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_history is append-only';
END;
$$;
CREATE TRIGGER consent_history_no_update BEFORE UPDATE ON consent_history
    FOR EACH ROW EXECUTE FUNCTION consent_history_append_only();

-- Every read of PII by another service (docs/architecture.md §5); refusals are counted, not stored.
-- subject is not a foreign key: refusals for unknown ids are logged too, and the log
-- outlives an erased customer (it holds no personal data, only the opaque id).
CREATE TABLE pii_access_log (
    id          bigserial   PRIMARY KEY,
    client      text        NOT NULL,
    subject     uuid        NOT NULL,
    purpose     text        NOT NULL,
    fields      text[]      NOT NULL,
    outcome     text        NOT NULL CHECK (outcome IN ('granted', 'refused-client', 'refused-purpose', 'refused-fields', 'not-found')),
    accessed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pii_access_log_subject ON pii_access_log (subject, accessed_at);

-- The transactional outbox, for the GDPR events (customer.erased, export requests) to come.
-- Same definition as comptoir_events::outbox::OUTBOX_TABLE_SQL (a unit test checks).
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    message_key text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
