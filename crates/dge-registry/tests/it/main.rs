//! The registry's storage suite (issue 3): the clocked rules of the account life
//! cycle, on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `DATABASE_URL` (default: the loopback server's `test`
//! database). Each case gets a fresh database; a missing server fails the suite.

// Test helpers outside #[test] functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

mod backends;
mod lifecycle;
mod mfa;
mod signup;
mod throttle;
