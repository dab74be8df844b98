-- Orders schema: the product projection, carts, orders with their saga state, idempotency keys,
-- and the transactional outbox and inbox. Customers are opaque ids (identity's); nothing here
-- is personal data on its own (docs/gdpr/data-inventory.md).

-- Catalog's products as orders last saw them (product-changed events): carts price from here,
-- never by calling the catalog.
CREATE TABLE products (
    product_id  uuid        PRIMARY KEY,
    version     bigint      NOT NULL,
    sku         text        NOT NULL,
    name        text        NOT NULL,
    price_minor bigint      NOT NULL CHECK (price_minor >= 0),
    currency    char(3)     NOT NULL,
    active      boolean     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE cart_lines (
    customer_id       uuid        NOT NULL,
    product_id        uuid        NOT NULL REFERENCES products (product_id),
    quantity          integer     NOT NULL CHECK (quantity BETWEEN 1 AND 99),
    -- The unit price when the line was added, to show a change since.
    added_price_minor bigint      NOT NULL,
    added_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, product_id)
);

CREATE TABLE orders (
    order_id            uuid        PRIMARY KEY,
    customer_id         uuid        NOT NULL,
    status              text        NOT NULL,
    reason              text,
    total_minor         bigint      NOT NULL CHECK (total_minor > 0),
    currency            char(3)     NOT NULL,
    -- The provider's card token, kept only until the authorise command is written.
    payment_token       text,
    -- An id in identity's address book; the address itself stays in identity.
    shipping_address_id uuid,
    version             bigint      NOT NULL DEFAULT 1,
    -- When the current saga step gives up (NULL once nothing is awaited, or while capture is
    -- in flight: a capture is never abandoned).
    step_deadline       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC);
CREATE INDEX orders_by_deadline ON orders (step_deadline) WHERE step_deadline IS NOT NULL;

CREATE TABLE order_lines (
    order_id         uuid    NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    product_id       uuid    NOT NULL,
    sku              text    NOT NULL,
    name             text    NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    unit_price_minor bigint  NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, product_id)
);

-- Every status change of every order: the saga's audit trail, shown in the order detail.
CREATE TABLE order_history (
    order_id uuid        NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    status   text        NOT NULL,
    reason   text
);
CREATE INDEX order_history_by_order ON order_history (order_id, at);

-- Idempotency keys of checkouts: the same key and body give the same order.
CREATE TABLE checkouts (
    customer_id     uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    bytea       NOT NULL,
    order_id        uuid        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, idempotency_key)
);

CREATE TABLE outbox (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    message_key text        NOT NULL,
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);
