//! The storage suite: the same workflow cases on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `DATABASE_URL` (default: the loopback server's `test`
//! database). Each case gets a fresh database of its own; a missing server fails
//! the suite, it never skips it.

// Test helpers outside #[test] functions unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

mod admin_input;
mod admins;
mod backends;
mod journey;
mod suspension;
mod workflow;
