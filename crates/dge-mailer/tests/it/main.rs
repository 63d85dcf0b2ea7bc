//! Integration tests of the mailer: the outbox and its dispatchers on SQLite and
//! PostgreSQL, and delivery to a real SMTP server (aiosmtpd) on loopback.
//!
//! PostgreSQL comes from `DATABASE_URL` (default: the loopback server's `test`
//! database); aiosmtpd from the repository's `.venv`, which tests/run-all.sh fills
//! from tests/e2e/requirements.txt. A missing one fails the suite, never skips it.

// Helpers outside #[test] functions unwrap too: a failure is a failed test. The
// racing test prints how the replicas shared the work.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod dispatch;
mod smtp;
mod support;
mod templates;
