-- Payments schema: one payment per order, the append-only log of what was done about it, the
-- SIMULATED provider's memory, and the transactional outbox and inbox.

-- An order's payment. No customer id, no card data, no token: an order id and an amount.
CREATE TABLE payments (
    order_id           uuid        PRIMARY KEY,
    status             text        NOT NULL
                       CHECK (status IN ('authorised', 'declined', 'captured', 'voided', 'refunded')),
    amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
    currency           char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The provider's id of the payment, once it gave one.
    provider_reference text,
    -- Why it was declined or voided (`card-declined`, `provider-timeout`, `voided-before-authorise`...).
    reason             text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Every provider call and state change, never updated nor deleted: the trail a reconciliation
-- with the provider's own reports starts from. No foreign key: a refused capture of an order
-- payments never saw is recorded too.
CREATE TABLE payment_operations (
    id        bigserial   PRIMARY KEY,
    order_id  uuid        NOT NULL,
    action    text        NOT NULL CHECK (action IN ('authorise', 'capture', 'void', 'refund')),
    result    text        NOT NULL,
    reason    text,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_operations_order_idx ON payment_operations (order_id, id);

-- The SIMULATED provider's memory (src/simulated.rs), not payments' data: each idempotency key
-- and the answer given. Written on the simulation's own connections, outside payments'
-- transactions, as a real provider remembers what it did whatever happens to ours. Stays empty
-- with a real provider.
CREATE TABLE simulated_provider_operations (
    idempotency_key text        PRIMARY KEY,
    action          text        NOT NULL,
    result          jsonb       NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);

-- Events written in the same transaction as the change; the relay publishes and deletes them.
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

-- The inbox of payments' consumers (orders' payment commands, GDPR requests): the event id is
-- recorded in the transaction that handles it, so a redelivery is not handled twice.
CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);
