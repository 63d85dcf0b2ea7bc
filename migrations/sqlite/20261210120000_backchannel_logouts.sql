-- Back-channel logouts (OIDC Back-Channel Logout 1.0) wait here until a module
-- acknowledges them, as emails wait in the outbox: a module that is down when a
-- person logs out, or when an account change ends their sessions, is told once it
-- answers again. One row per module and session. The logout token is not kept: it
-- lives two minutes, so each attempt signs a fresh one (new `jti`, `iat`, `exp`);
-- nor the module's URI, read at each attempt. No foreign keys: a row outlives the
-- deletion of its account (the deletion is what it tells) and of its client (it then
-- ends `failed` with that reason). Times are Unix seconds.
CREATE TABLE backchannel_logouts (
    id TEXT NOT NULL CONSTRAINT backchannel_logouts_pkey PRIMARY KEY,
    client_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    sid TEXT NOT NULL,
    status TEXT NOT NULL CONSTRAINT backchannel_logouts_status_check
        CHECK (status IN ('queued', 'sent', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_id TEXT,
    last_error TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    sent_at BIGINT
);
-- The dispatcher reads the due rows; the expiry job deletes old finished ones.
CREATE INDEX backchannel_logouts_status_next_idx ON backchannel_logouts (status, next_attempt_at);
CREATE INDEX backchannel_logouts_updated_idx ON backchannel_logouts (updated_at);
