-- Lockout per (email, client), not per email: five wrong passwords from one client lock that
-- client out of that email, not the email's owner signing in (or erasing, Art. 17) from
-- elsewhere. The client is a keyed hash (the blind-index key) of its rate-limit key (IPv4
-- address, IPv6 /64), never the address itself. The counters are transient (pruned after the
-- lockout window), so the old per-email rows are simply dropped.
TRUNCATE login_failures;
ALTER TABLE login_failures DROP CONSTRAINT login_failures_pkey;
ALTER TABLE login_failures
    ADD COLUMN client_index bytea NOT NULL CHECK (length(client_index) = 32);
ALTER TABLE login_failures ADD PRIMARY KEY (email_index, client_index);

