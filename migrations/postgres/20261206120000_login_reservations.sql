-- Local accounts (issue 3): a sign-up with an address already in use files no account,
-- but it must hold its login as a fresh sign-up would, or reusing that login would answer
-- "taken" only when the address was free, telling whether the address has an account.
-- The reservation lasts as long as an unconfirmed sign-up and is purged the same way.

CREATE TABLE login_reservations (
    login_key TEXT NOT NULL CONSTRAINT login_reservations_pkey PRIMARY KEY,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX login_reservations_created_idx ON login_reservations (created_at);
