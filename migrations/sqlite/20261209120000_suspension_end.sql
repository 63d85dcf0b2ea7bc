-- Administration: a suspension may end on its own at a date the administrator set
-- (`dgectl accounts suspend --until`); NULL: until an administrator reactivates the
-- account. The periodic job reads only the accounts with a date.
ALTER TABLE accounts ADD COLUMN suspended_until BIGINT;
CREATE INDEX accounts_suspended_until_idx ON accounts (suspended_until)
    WHERE suspended_until IS NOT NULL;
