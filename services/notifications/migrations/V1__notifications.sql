-- Notifications schema: the delivery log, and the outbox and inbox of the service's events.

-- One row per message owed to a customer about an order. No personal data: the customer is an
-- opaque id; the recipient's address and name are asked of identity at send time and never
-- stored; neither is the text sent. The order facts the message is written from (items,
-- total, currency, cancellation reason) are not personal either.
CREATE TABLE deliveries (
    id              uuid        PRIMARY KEY,
    order_id        uuid        NOT NULL,
    customer_id     uuid        NOT NULL,
    kind            text        NOT NULL
                    CHECK (kind IN ('order-confirmed', 'order-cancelled', 'order-refunded')),
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Fixed words and status codes only: never a server's reply text, never an address.
    last_error      text,
    item_count      bigint      NOT NULL CHECK (item_count >= 0),
    total_minor     bigint      NOT NULL,
    currency        text        NOT NULL,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    -- A redelivered or repeated order event records nothing more.
    UNIQUE (order_id, kind)
);

-- The sender's query: due pending deliveries, oldest due first.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
-- GDPR export and erasure.
CREATE INDEX deliveries_customer_idx ON deliveries (customer_id);

-- Events written in the same transaction as the change; the relay publishes and deletes them
-- (here: the GDPR export slices and erasure confirmations).
CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    message_key text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Message properties travel with each outbox row (the W3C traceparent of the change).
ALTER TABLE outbox ADD COLUMN properties jsonb NOT NULL DEFAULT '{}'::jsonb;

-- The inbox of the service's consumers (order events, GDPR requests): the event id is recorded
-- in the transaction that handles it, so a redelivery is not handled twice.
CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);
