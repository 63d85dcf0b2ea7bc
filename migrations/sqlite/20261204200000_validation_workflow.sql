-- Validation workflow (issue 4): delegated organisation administrators, role
-- bundles, grant end dates already exist; admin notices and reminders need to know
-- what was already sent for each pending account.

CREATE TABLE organisation_admins (
    account_id TEXT NOT NULL CONSTRAINT organisation_admins_account_id_fkey REFERENCES accounts (id) ON DELETE CASCADE,
    organisation_id TEXT NOT NULL CONSTRAINT organisation_admins_organisation_id_fkey REFERENCES organisations (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    CONSTRAINT organisation_admins_pkey PRIMARY KEY (account_id, organisation_id)
);

CREATE TABLE roles (
    name TEXT NOT NULL CONSTRAINT roles_pkey PRIMARY KEY,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE role_rights (
    role TEXT NOT NULL CONSTRAINT role_rights_role_fkey REFERENCES roles (name) ON DELETE CASCADE,
    right_name TEXT NOT NULL CONSTRAINT role_rights_right_name_fkey REFERENCES rights (name),
    CONSTRAINT role_rights_pkey PRIMARY KEY (role, right_name)
);

ALTER TABLE accounts ADD COLUMN admin_notified_at BIGINT;
ALTER TABLE accounts ADD COLUMN reminded_at BIGINT;

CREATE INDEX accounts_organisation_idx ON accounts (organisation_id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, created_at);
CREATE INDEX audit_events_created_idx ON audit_events (created_at);
