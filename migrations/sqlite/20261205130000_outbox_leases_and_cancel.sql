-- The mail dispatcher claims a message by writing its own lease id on the row, so
-- several replicas can run it and only the holder of the lease records the outcome;
-- administrators can also cancel a message, which needs a `cancelled` status.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.

CREATE TABLE outbox_new (
    id TEXT NOT NULL CONSTRAINT outbox_pkey PRIMARY KEY,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL CONSTRAINT outbox_status_check
        CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lease_id TEXT
);
INSERT INTO outbox_new (id, recipient, kind, subject, body_text, body_html, status, attempts,
    next_attempt_at, last_error, sent_at, created_at, updated_at)
SELECT id, recipient, kind, subject, body_text, body_html, status, attempts,
    next_attempt_at, last_error, sent_at, created_at, updated_at
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_status_next_idx ON outbox (status, next_attempt_at);
CREATE INDEX outbox_created_idx ON outbox (created_at);
