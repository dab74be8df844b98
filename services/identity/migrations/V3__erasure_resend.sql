-- When the CustomerErased of a pending erasure was last published. The sweep publishes it
-- again for requests still waiting after `gdpr.resend_after_secs`: a participant that was down
-- longer than the topic's message TTL would otherwise never learn of the erasure.
ALTER TABLE erasure_requests ADD COLUMN last_sent_at timestamptz NOT NULL DEFAULT now();
