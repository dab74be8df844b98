-- GDPR flows (docs/architecture.md §5, docs/adr/0014-crypto-shredding-and-gdpr-flows.md): export
-- jobs and the slices services send back, erasure requests and the services' confirmations,
-- and the inbox of the consumers of those replies. No column holds plaintext personal data:
-- archives and slices are ciphertexts under the customer's data key, so erasing the customer
-- (deleting that key) shreds them too.

-- Same definition as comptoir_events::consumer::INBOX_TABLE_SQL (a unit test checks).
CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);

-- An export of one customer's data (Art. 15 and 20). `services` are the participants that
-- must answer, as configured when it was requested. Once every one has, the archive (identity's
-- own slice and theirs, one JSON document) is sealed under the customer's data key with the
-- AAD (customer id, "export-archive:<id>") and the slices are deleted. After `expires_at` the
-- sweep job deletes the archive and keeps the row (ids and times only) so the customer gets
-- 410 Gone rather than 404 for a while.
CREATE TABLE export_jobs (
    id            uuid        PRIMARY KEY,
    customer_id   uuid        NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    services      text[]      NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                              CHECK (status IN ('pending', 'ready', 'failed', 'expired')),
    failure       text        CHECK (failure IN ('archive-too-large')),
    requested_at  timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    expires_at    timestamptz,
    archive       bytea,
    archive_bytes integer,
    CHECK ((status = 'ready') = (archive IS NOT NULL))
);
CREATE INDEX export_jobs_customer ON export_jobs (customer_id, requested_at);
CREATE INDEX export_jobs_expiry ON export_jobs (expires_at) WHERE status = 'ready';
-- One export in progress per customer: asking again while one is pending returns it.
CREATE UNIQUE INDEX export_jobs_one_pending ON export_jobs (customer_id) WHERE status = 'pending';

-- A participant's answer. `data` is the slice's JSON sealed under the customer's data key,
-- AAD (customer id, "export-slice:<export id>:<service>"), until the archive is assembled;
-- then it is set to NULL and only who answered when remains.
CREATE TABLE export_slices (
    export_id   uuid        NOT NULL REFERENCES export_jobs (id) ON DELETE CASCADE,
    service     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    data        bytea,
    PRIMARY KEY (export_id, service)
);

-- An erasure (Art. 17). It outlives the customer on purpose: the pseudonymous record that the
-- erasure was asked for, done here (`erased`: rows removed per table, counts only) and
-- confirmed by every service. The id is random (UUIDv4): it is the capability to read the
-- status, since the subject can no longer sign in. customer_id is not a foreign key: the
-- customer row is gone. Deleted by the sweep job after gdpr.erasure_record_retention_days.
CREATE TABLE erasure_requests (
    id           uuid        PRIMARY KEY,
    customer_id  uuid        NOT NULL,
    services     text[]      NOT NULL,
    erased       jsonb       NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX erasure_requests_pending ON erasure_requests (requested_at)
    WHERE completed_at IS NULL;
CREATE INDEX erasure_requests_completed ON erasure_requests (completed_at)
    WHERE completed_at IS NOT NULL;

-- One service's confirmation, with what it says it did (no personal data by contract).
CREATE TABLE erasure_confirmations (
    request_id   uuid        NOT NULL REFERENCES erasure_requests (id) ON DELETE CASCADE,
    service      text        NOT NULL,
    confirmed_at timestamptz NOT NULL DEFAULT now(),
    summary      jsonb       NOT NULL,
    PRIMARY KEY (request_id, service)
);
