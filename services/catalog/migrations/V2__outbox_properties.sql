-- Message properties travel with each outbox row (the W3C traceparent of the change).
ALTER TABLE outbox ADD COLUMN properties jsonb NOT NULL DEFAULT '{}'::jsonb;
