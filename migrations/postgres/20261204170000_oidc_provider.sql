-- The full OpenID Connect provider (issue 5): refresh tokens (rotated, revoked by
-- family), per-client settings, the modules each session logged in to (back-channel
-- logout), consents, and signing keys published before they sign.

CREATE TABLE refresh_tokens (
    token_hash TEXT NOT NULL CONSTRAINT refresh_tokens_pkey PRIMARY KEY,
    family_id TEXT NOT NULL,
    code_hash TEXT,
    client_id TEXT NOT NULL CONSTRAINT refresh_tokens_client_id_fkey REFERENCES oidc_clients (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL CONSTRAINT refresh_tokens_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    session_hash TEXT,
    scope TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_code_hash_idx ON refresh_tokens (code_hash);

ALTER TABLE issued_tokens ADD COLUMN family_id TEXT;
CREATE INDEX issued_tokens_family_idx ON issued_tokens (family_id);

ALTER TABLE oidc_clients ADD COLUMN service_scopes TEXT NOT NULL DEFAULT '';
ALTER TABLE oidc_clients ADD COLUMN userinfo_signed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE oidc_clients ADD COLUMN id_token_alg TEXT NOT NULL DEFAULT 'ES256';
ALTER TABLE oidc_clients ADD COLUMN backchannel_logout_uri TEXT;
ALTER TABLE oidc_clients ADD COLUMN jwks TEXT;

ALTER TABLE auth_codes ADD COLUMN session_hash TEXT;
ALTER TABLE auth_requests ADD COLUMN max_age BIGINT;

CREATE TABLE session_clients (
    session_hash TEXT NOT NULL,
    client_id TEXT NOT NULL CONSTRAINT session_clients_client_id_fkey REFERENCES oidc_clients (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    CONSTRAINT session_clients_pkey PRIMARY KEY (session_hash, client_id)
);

CREATE TABLE consents (
    account_id TEXT NOT NULL CONSTRAINT consents_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    client_id TEXT NOT NULL CONSTRAINT consents_client_id_fkey REFERENCES oidc_clients (id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT consents_pkey PRIMARY KEY (account_id, client_id)
);

ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT NOT NULL DEFAULT 0;
ALTER TABLE signing_keys ADD COLUMN published_until BIGINT;

-- private_key_jwt: assertions already used, refused until they expire.
CREATE TABLE client_assertions (
    jti_hash TEXT NOT NULL CONSTRAINT client_assertions_pkey PRIMARY KEY,
    client_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
