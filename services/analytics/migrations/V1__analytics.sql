-- Analytics schema: a projection of identity's consents, click and order counts per minute,
-- and the transactional outbox and inbox. Nothing here names a customer except the consent
-- projection, which holds identity's opaque customer id and the analytics consent only; the
-- aggregates hold counts, never a visitor or a pseudonym.

-- The analytics consent of each customer who ever set it, from identity's `ConsentChanged`
-- events. Ingestion reads it to drop the clicks of a signed-in customer without consent.
-- `changed_at` orders the changes: an older one delivered again changes nothing.
CREATE TABLE consents (
    customer_id uuid        PRIMARY KEY,
    granted     boolean     NOT NULL,
    changed_at  timestamptz NOT NULL
);

-- Clicks per minute of event time, per kind and product (the nil uuid for clicks about no
-- product: page views, searches). `units` sums add-to-cart quantities. Windows of any length
-- are sums of these tumbling one-minute windows.
CREATE TABLE clicks_per_minute (
    minute     timestamptz NOT NULL CHECK (minute = date_trunc('minute', minute)),
    kind       text        NOT NULL
                           CHECK (kind IN ('page-view', 'product-view', 'search', 'add-to-cart')),
    product_id uuid        NOT NULL,
    clicks     bigint      NOT NULL CHECK (clicks >= 0),
    units      bigint      NOT NULL DEFAULT 0 CHECK (units >= 0),
    PRIMARY KEY (minute, kind, product_id)
);
-- The top-products and per-product queries read one kind over recent minutes.
CREATE INDEX clicks_per_minute_by_kind ON clicks_per_minute (kind, minute);

-- Orders per minute of the order event's time, from orders' `OrderChanged` events: checkouts
-- (accepted), confirmed and cancelled orders, with their amounts in minor units per currency.
CREATE TABLE orders_per_minute (
    minute       timestamptz NOT NULL CHECK (minute = date_trunc('minute', minute)),
    stage        text        NOT NULL CHECK (stage IN ('checkout', 'confirmed', 'cancelled')),
    currency     text        NOT NULL,
    orders       bigint      NOT NULL CHECK (orders >= 0),
    amount_minor bigint      NOT NULL CHECK (amount_minor >= 0),
    PRIMARY KEY (minute, stage, currency)
);

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

CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);
-- The retention job forgets inbox rows older than the click stream's retention: nothing that
-- old can be delivered again.
CREATE INDEX inbox_processed_at ON inbox (processed_at);
