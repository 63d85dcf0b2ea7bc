-- Administration: an administrator may suspend an active account and reactivate it,
-- which needs a `suspended` status. SQLite cannot change a CHECK constraint in place:
-- the table is rebuilt (https://www.sqlite.org/lang_altertable.html#otheralter),
-- keeping every column (with those added since the first schema), index and foreign
-- key. No trigger or view refers to `accounts`.
--
-- Other tables refer to `accounts` with ON DELETE CASCADE: dropping the old table
-- with foreign keys on would delete their rows. `Db::migrate` runs the SQLite
-- migrations with foreign keys off (the pragma is a no-op inside the transaction
-- sqlx wraps each migration in) and runs `PRAGMA foreign_key_check` afterwards.

CREATE TABLE accounts_new (
    id TEXT NOT NULL CONSTRAINT accounts_pkey PRIMARY KEY,
    kind TEXT NOT NULL CONSTRAINT accounts_kind_check CHECK (kind IN ('local', 'federated')),
    login TEXT,
    login_key TEXT,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    phone TEXT NOT NULL DEFAULT '',
    organisation_id TEXT CONSTRAINT accounts_organisation_id_fkey REFERENCES organisations (id),
    function TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    status TEXT NOT NULL CONSTRAINT accounts_status_check
        CHECK (status IN ('unconfirmed', 'pending', 'active', 'rejected', 'suspended')),
    email_verified BIGINT NOT NULL DEFAULT 0,
    rejection_reason TEXT NOT NULL DEFAULT '',
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    admin_notified_at BIGINT,
    reminded_at BIGINT,
    sessions_epoch BIGINT NOT NULL DEFAULT 0
);
INSERT INTO accounts_new (id, kind, login, login_key, email, email_key, given_name,
    family_name, phone, organisation_id, function, description, password_hash, status,
    email_verified, rejection_reason, is_admin, created_at, updated_at, admin_notified_at,
    reminded_at, sessions_epoch)
SELECT id, kind, login, login_key, email, email_key, given_name,
    family_name, phone, organisation_id, function, description, password_hash, status,
    email_verified, rejection_reason, is_admin, created_at, updated_at, admin_notified_at,
    reminded_at, sessions_epoch
FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_new RENAME TO accounts;
CREATE UNIQUE INDEX accounts_login_key_key ON accounts (login_key);
CREATE UNIQUE INDEX accounts_email_key_key ON accounts (email_key);
CREATE INDEX accounts_status_created_idx ON accounts (status, created_at);
CREATE INDEX accounts_organisation_idx ON accounts (organisation_id);
