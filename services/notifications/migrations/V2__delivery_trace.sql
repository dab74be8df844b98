-- The trace of the order event a delivery was recorded in (W3C `traceparent`, and `tracestate`
-- when there is one), so that sending it later — asking identity for the recipient, the SMTP
-- exchange — continues that trace instead of starting one of its own. Ids only, nothing
-- personal.
ALTER TABLE deliveries ADD COLUMN trace_context jsonb NOT NULL DEFAULT '{}'::jsonb;
