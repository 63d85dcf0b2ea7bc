-- Authorization codes live in the shared short-lived store (Redis, or the process in the
-- embedded default), taken exactly once; nothing reads this table any more.
DROP TABLE auth_codes;
