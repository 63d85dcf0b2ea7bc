-- The first schema of DGE Identity: accounts and their organisations, email tokens,
-- modules and rights, OpenID Connect clients, keys, codes and sessions, federated
-- links, the mail outbox and the audit log. Times are Unix seconds set by the
-- application; flags are 0/1 integers so SQLite and PostgreSQL read them alike.

CREATE TABLE organisations (
    id TEXT NOT NULL CONSTRAINT organisations_pkey PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    siret TEXT,
    trusted BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL CONSTRAINT organisations_status_check CHECK (status IN ('active', 'proposed')),
    email_domains TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX organisations_siret_key ON organisations (siret);
CREATE INDEX organisations_name_key_idx ON organisations (name_key);

CREATE TABLE accounts (
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
        CHECK (status IN ('unconfirmed', 'pending', 'active', 'rejected')),
    email_verified BIGINT NOT NULL DEFAULT 0,
    rejection_reason TEXT NOT NULL DEFAULT '',
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX accounts_login_key_key ON accounts (login_key);
CREATE UNIQUE INDEX accounts_email_key_key ON accounts (email_key);
CREATE INDEX accounts_status_created_idx ON accounts (status, created_at);

CREATE TABLE email_tokens (
    token_hash TEXT NOT NULL CONSTRAINT email_tokens_pkey PRIMARY KEY,
    account_id TEXT NOT NULL CONSTRAINT email_tokens_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL CONSTRAINT email_tokens_purpose_check CHECK (purpose IN ('confirm', 'reset')),
    email_key TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX email_tokens_account_idx ON email_tokens (account_id);

CREATE TABLE modules (
    name TEXT NOT NULL CONSTRAINT modules_pkey PRIMARY KEY,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE rights (
    name TEXT NOT NULL CONSTRAINT rights_pkey PRIMARY KEY,
    module TEXT NOT NULL CONSTRAINT rights_module_fkey REFERENCES modules (name),
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE grants (
    account_id TEXT NOT NULL CONSTRAINT grants_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    right_name TEXT NOT NULL CONSTRAINT grants_right_name_fkey REFERENCES rights (name),
    granted_by TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    CONSTRAINT grants_pkey PRIMARY KEY (account_id, right_name)
);

CREATE TABLE api_tokens (
    token_hash TEXT NOT NULL CONSTRAINT api_tokens_pkey PRIMARY KEY,
    name TEXT NOT NULL,
    account_id TEXT CONSTRAINT api_tokens_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    scopes TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX api_tokens_name_key ON api_tokens (name);

CREATE TABLE oidc_clients (
    id TEXT NOT NULL CONSTRAINT oidc_clients_pkey PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]',
    confidential BIGINT NOT NULL,
    first_party BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid TEXT NOT NULL CONSTRAINT signing_keys_pkey PRIMARY KEY,
    alg TEXT NOT NULL,
    private_der TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

CREATE TABLE auth_requests (
    id_hash TEXT NOT NULL CONSTRAINT auth_requests_pkey PRIMARY KEY,
    client_id TEXT NOT NULL CONSTRAINT auth_requests_client_id_fkey REFERENCES oidc_clients (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    state TEXT,
    nonce TEXT,
    code_challenge TEXT NOT NULL,
    prompt TEXT,
    login_hint TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE auth_codes (
    code_hash TEXT NOT NULL CONSTRAINT auth_codes_pkey PRIMARY KEY,
    client_id TEXT NOT NULL CONSTRAINT auth_codes_client_id_fkey REFERENCES oidc_clients (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL CONSTRAINT auth_codes_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    scope TEXT NOT NULL,
    nonce TEXT,
    code_challenge TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE issued_tokens (
    jti TEXT NOT NULL CONSTRAINT issued_tokens_pkey PRIMARY KEY,
    code_hash TEXT,
    client_id TEXT NOT NULL,
    account_id TEXT,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX issued_tokens_code_hash_idx ON issued_tokens (code_hash);

CREATE TABLE sessions (
    id_hash TEXT NOT NULL CONSTRAINT sessions_pkey PRIMARY KEY,
    account_id TEXT NOT NULL CONSTRAINT sessions_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    auth_time BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions (account_id);

CREATE TABLE federated_links (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    account_id TEXT NOT NULL CONSTRAINT federated_links_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT federated_links_pkey PRIMARY KEY (provider, subject)
);
CREATE INDEX federated_links_account_idx ON federated_links (account_id);

CREATE TABLE upstream_logins (
    state_hash TEXT NOT NULL CONSTRAINT upstream_logins_pkey PRIMARY KEY,
    provider TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    auth_request TEXT,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE outbox (
    id TEXT NOT NULL CONSTRAINT outbox_pkey PRIMARY KEY,
    recipient TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL CONSTRAINT outbox_status_check CHECK (status IN ('queued', 'sent', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbox_status_next_idx ON outbox (status, next_attempt_at);

CREATE TABLE audit_events (
    id TEXT NOT NULL CONSTRAINT audit_events_pkey PRIMARY KEY,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, created_at);
