-- Sessions may live in Redis (production with several replicas). Each records the
-- account's sessions epoch at opening; ending every session of an account (password
-- reset or change, deletion) bumps the epoch in the same transaction as the change,
-- so every older session is refused at its next use whatever Redis still holds.
ALTER TABLE accounts ADD COLUMN sessions_epoch BIGINT NOT NULL DEFAULT 0;
