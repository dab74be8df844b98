-- The inbox of the catalog's consumers (GDPR export and erasure requests from identity): the
-- event id is recorded in the transaction that handles it, so a redelivery is not handled twice.
CREATE TABLE inbox (
    subscription text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription, event_id)
);
