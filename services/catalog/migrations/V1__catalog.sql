-- Catalog schema: categories, products (price included), and the transactional outbox.

CREATE TABLE categories (
    id          uuid        PRIMARY KEY,
    slug        text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id          uuid        PRIMARY KEY,
    sku         text        NOT NULL UNIQUE,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    category_id uuid        REFERENCES categories (id) ON DELETE RESTRICT,
    price_cents bigint      NOT NULL CHECK (price_cents >= 0),
    currency    text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    active      boolean     NOT NULL DEFAULT true,
    -- Optimistic concurrency: every update increments it; clients send it back in If-Match.
    version     bigint      NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Full-text search over name (weighted first), description and SKU. The 'simple'
    -- configuration does no stemming, so it works the same for French and English names.
    search      tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', name), 'A')
        || setweight(to_tsvector('simple', description), 'B')
        || to_tsvector('simple', sku)
    ) STORED
);

CREATE INDEX products_search_idx ON products USING gin (search);
CREATE INDEX products_category_name_idx ON products (category_id, name, id);
CREATE INDEX products_name_idx ON products (name, id);

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
