-- Identity broker (issue 6): offers to link an upstream identity to an existing
-- local account (kept until the person proves the account or cancels), the upstream
-- ID token of each session (needed as id_token_hint to end the upstream session),
-- and pending upstream logouts (their state, and where to return afterwards).

CREATE TABLE upstream_link_offers (
    token_hash TEXT NOT NULL CONSTRAINT upstream_link_offers_pkey PRIMARY KEY,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    account_id TEXT NOT NULL CONSTRAINT upstream_link_offers_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    id_token TEXT NOT NULL,
    auth_request TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE upstream_sessions (
    session_hash TEXT NOT NULL CONSTRAINT upstream_sessions_pkey PRIMARY KEY,
    provider TEXT NOT NULL,
    id_token TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE upstream_logouts (
    state_hash TEXT NOT NULL CONSTRAINT upstream_logouts_pkey PRIMARY KEY,
    provider TEXT NOT NULL,
    return_to TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX federated_links_provider_email_idx ON federated_links (provider, email);
