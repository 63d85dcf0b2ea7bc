-- Administration: an administrator may suspend an active account and reactivate it,
-- which needs a `suspended` status. The CHECK constraint is replaced in place.
ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_status_check
    CHECK (status IN ('unconfirmed', 'pending', 'active', 'rejected', 'suspended'));
