//! The provider's storage paths on SQLite and on PostgreSQL: codes, refresh
//! families, consent, sessions and back-channel bookkeeping and delivery,
//! private_key_jwt replay. PostgreSQL comes from `DATABASE_URL` (default: the loopback server's
//! `test` database); each case gets a fresh database, and a missing server fails.

// Test helpers outside #[test] functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

mod backchannel;
mod backends;
mod flows;
mod lifecycle;
mod prompts;
