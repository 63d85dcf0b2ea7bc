-- The mail dispatcher claims a message by writing its own lease id on the row, so
-- several replicas can run it and only the holder of the lease records the outcome;
-- administrators can also cancel a message, which needs a `cancelled` status.

ALTER TABLE outbox ADD COLUMN lease_id TEXT;
ALTER TABLE outbox DROP CONSTRAINT outbox_status_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_status_check
    CHECK (status IN ('queued', 'sent', 'failed', 'cancelled'));
CREATE INDEX outbox_created_idx ON outbox (created_at);
