-- Expired rows are purged in batches (dge-store's expiry module): by expiry.
-- Revoking everything of an account (reset, password change, deletion,
-- suspension) finds its tokens by account instead of reading the whole table.
CREATE INDEX IF NOT EXISTS issued_tokens_expires_idx ON issued_tokens (expires_at);
CREATE INDEX IF NOT EXISTS issued_tokens_account_idx ON issued_tokens (account_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX IF NOT EXISTS refresh_tokens_account_idx ON refresh_tokens (account_id);
CREATE INDEX IF NOT EXISTS sessions_expires_idx ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS auth_requests_expires_idx ON auth_requests (expires_at);
CREATE INDEX IF NOT EXISTS upstream_logins_expires_idx ON upstream_logins (expires_at);
