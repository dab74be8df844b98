-- Inventory schema: stock per product, reservations per order, the adjustment log, and the
-- transactional outbox and inbox.

-- One row per product the catalog announced. `reserved` units are held for orders not yet
-- committed; what can still be sold is `on_hand - reserved`. The CHECKs are the last line of
-- defence against overselling: even a bug in the code cannot commit a row that holds more
-- than it has.
CREATE TABLE stock (
    product_id  uuid        PRIMARY KEY,
    on_hand     bigint      NOT NULL CHECK (on_hand >= 0),
    reserved    bigint      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    -- Every change increments it: the ETag of the admin routes and the `version` of
    -- stock-level events.
    version     bigint      NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stock_reserved_within_on_hand CHECK (reserved <= on_hand)
);

-- What inventory did for an order, one row per order (so every stock command is idempotent):
--   reserved   its lines are held until `expires_at`, then the sweep releases them;
--   committed  its lines are sold (left on_hand);
--   released   given back (`reason` 'expired' when the sweep did it), or a tombstone (no
--              lines, `reason` 'released-before-reserve') when the release came first;
--   refused    nothing was held (`reason` 'out-of-stock', 'unknown-product', ...).
-- No customer id: inventory holds nothing personal.
CREATE TABLE reservations (
    order_id    uuid        PRIMARY KEY,
    status      text        NOT NULL
                            CHECK (status IN ('reserved', 'committed', 'released', 'refused')),
    reason      text,
    expires_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reservations_reserved_expire CHECK (status <> 'reserved' OR expires_at IS NOT NULL)
);

-- The sweep looks for lapsed reservations only among the held ones.
CREATE INDEX reservations_expiry_idx ON reservations (expires_at) WHERE status = 'reserved';

CREATE TABLE reservation_lines (
    order_id    uuid    NOT NULL REFERENCES reservations (order_id) ON DELETE CASCADE,
    product_id  uuid    NOT NULL REFERENCES stock (product_id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- Every administrator's change of on_hand (deliveries, breakage, counts), append-only.
CREATE TABLE stock_adjustments (
    id             bigserial   PRIMARY KEY,
    product_id     uuid        NOT NULL REFERENCES stock (product_id),
    delta          bigint      NOT NULL,
    reason         text        NOT NULL,
    on_hand_after  bigint      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_adjustments_product_idx ON stock_adjustments (product_id, id);

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

-- The inbox of inventory's consumers (catalog's product events, orders' stock commands, GDPR
-- requests): the event id is recorded in the transaction that handles it, so a redelivery is
-- not handled twice.
CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);
