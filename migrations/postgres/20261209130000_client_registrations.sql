-- Each registration of a client gets its own random id, recorded in the codes and
-- device codes issued to it: a client removed then registered again under the same
-- id (even within the same second) cannot exchange what was issued to the old one.
-- Clients registered before have ''.
ALTER TABLE oidc_clients ADD COLUMN registration TEXT NOT NULL DEFAULT '';
