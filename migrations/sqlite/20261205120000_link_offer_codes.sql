-- Identity broker (issue 6): a link offer can also be proved with a one-time code
-- emailed to the account's address, so an account without a password (a ProConnect
-- identity arriving with a new `sub`) can still be linked. Only the code's hash is kept.
ALTER TABLE upstream_link_offers ADD COLUMN code_hash TEXT;
