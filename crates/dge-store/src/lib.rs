//! Database access shared by every DGE Identity service.
//!
//! One code base speaks to SQLite (the embedded default) and PostgreSQL (production)
//! through sqlx's `Any` driver. Queries are written once, with `$1` placeholders
//! (both engines read them), TEXT and BIGINT columns, and times as Unix seconds.
//! Each backend keeps its own migrations folder; both hold the same versions.
//!
//! - [`Db`]: the pool and the backend it talks to.
//! - [`is_unique_violation`]: recognises a named unique constraint in an error.
//! - [`ephemeral`]: short-lived state shared by replicas (Redis, or in-process).

pub mod ephemeral;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions};

pub use sqlx::{Any, AnyConnection, Transaction};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL names an engine we do not support.
    #[error("unsupported database url scheme `{0}` (use sqlite: or postgres:)")]
    UnsupportedScheme(String),
    /// The database answered with an error or could not be reached.
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, one process: the embedded default.
    Sqlite,
    /// Shared by several replicas.
    Postgres,
}

/// A connection pool and its backend. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`).
    ///
    /// # Errors
    /// Fails on an unknown scheme or when the database cannot be reached.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = match url.split(':').next().unwrap_or_default() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            other => return Err(Error::UnsupportedScheme(other.to_owned())),
        };
        let options = AnyConnectOptions::from_str(url)?
            .log_statements(tracing::log::LevelFilter::Trace)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_millis(500));
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; foreign keys are off by
                        // default in SQLite and our schema relies on them.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    /// Applies the migrations of this backend that are not applied yet.
    ///
    /// # Errors
    /// Fails when a migration fails or a landed one was edited.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The pool, for queries.
    #[must_use]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine this is.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction.
    ///
    /// # Errors
    /// Fails when no connection can be had.
    pub async fn begin(&self) -> sqlx::Result<Transaction<'static, Any>> {
        match self.backend {
            // A deferred SQLite transaction that reads then writes fails at once with
            // "database is locked" when another connection wrote meanwhile; taking the
            // write lock up front makes it wait (busy_timeout) instead.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Whether the database answers, for readiness.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Whether `err` is a violation of the unique constraint or index named `name`.
///
/// PostgreSQL names the constraint; SQLite names the columns, so callers pass the
/// column list too (`accounts.email_key`).
#[must_use]
pub fn is_unique_violation(err: &sqlx::Error, name: &str, sqlite_columns: &str) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    if !matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation) {
        // The Any driver does not always carry the kind through; fall back to the text.
        let msg = db.message();
        return msg.contains("UNIQUE constraint failed") && msg.contains(sqlite_columns)
            || db.constraint() == Some(name);
    }
    db.constraint() == Some(name) || db.message().contains(sqlite_columns)
}

/// Appends an event to the audit log, inside the caller's transaction so the event
/// and the act it records are committed together.
///
/// # Errors
/// Fails when the database fails.
pub async fn audit(
    conn: &mut AnyConnection,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (id, actor, action, subject, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(dge_core::new_id())
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    fn versions(dir: &str) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
        let sqlite = versions(&format!("{root}/sqlite"));
        let postgres = versions(&format!("{root}/postgres"));
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres);
    }
}
