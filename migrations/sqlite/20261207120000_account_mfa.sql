-- Security (issue 9): two-step verification (TOTP, RFC 6238) of local accounts.
-- The secret must be readable to check codes, so it is sealed (AES-256-GCM with the
-- key-encryption key of the signing keys, bound to the account id), never hashed.
-- `confirmed_at` is NULL while an enrolment waits for its first code; `last_step` is
-- the time step of the last code accepted, so that a code is never accepted twice.

CREATE TABLE account_mfa (
    account_id TEXT NOT NULL CONSTRAINT account_mfa_pkey PRIMARY KEY
        CONSTRAINT account_mfa_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    secret_sealed TEXT NOT NULL,
    confirmed_at BIGINT,
    last_step BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Single-use recovery codes, SHA-256 digests only (they are random, 60 bits each).
CREATE TABLE account_recovery_codes (
    account_id TEXT NOT NULL CONSTRAINT account_recovery_codes_account_id_fkey
        REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at BIGINT,
    CONSTRAINT account_recovery_codes_pkey PRIMARY KEY (account_id, code_hash)
);
