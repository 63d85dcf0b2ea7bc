-- Local accounts (issue 3): a change of email address takes effect only once the new
-- address is confirmed, so the requested address waits here with its token (hashed).
-- A separate table rather than a new email_tokens purpose: the purpose CHECK cannot be
-- widened in SQLite without rebuilding the table, and the pending address needs a column.

CREATE TABLE email_changes (
    token_hash TEXT NOT NULL CONSTRAINT email_changes_pkey PRIMARY KEY,
    account_id TEXT NOT NULL CONSTRAINT email_changes_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    new_email TEXT NOT NULL,
    new_email_key TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX email_changes_account_idx ON email_changes (account_id);
