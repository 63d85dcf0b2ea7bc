//! Database access shared by every DGE Identity service.
//!
//! One code base speaks to SQLite (the embedded default) and PostgreSQL (production)
//! through sqlx's `Any` driver. Queries are written once, with `$1` placeholders
//! (both engines read them), TEXT and BIGINT columns, and times as Unix seconds.
//! Each backend keeps its own migrations folder; both hold the same versions.
//!
//! - [`Db`]: the pool and the backend it talks to.
//! - [`is_unique_violation`]: recognises a named unique constraint in an error.
//! - [`is_unreachable`]: recognises a store that did not answer in time.
//! - [`ephemeral`]: short-lived state shared by replicas (Redis, or in-process).
//! - [`sessions`]: the single sign-on sessions (Redis when configured, else the database).
//! - [`grouped`]: group commit of small independent inserts.
//! - [`leases`]: rows of the durable queues (emails, back-channel logouts) claimed
//!   with a lease, so that replicas never both work one.

pub mod ephemeral;
pub mod expiry;
pub mod grouped;
pub mod leases;
mod redis_conn;
pub mod sessions;

pub use redis_conn::DEFAULT_DEADLINE as DEFAULT_REDIS_DEADLINE;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, ConnectOptions, Connection as _, Row};

pub use sqlx::{Any, AnyConnection, Transaction};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQLite file could not be created or made private.
    #[error("cannot make the SQLite file private: {0}")]
    Files(std::io::Error),
    /// The database URL names an engine we do not support.
    #[error("unsupported database url scheme `{0}` (use sqlite: or postgres:)")]
    UnsupportedScheme(String),
    /// The database answered with an error or could not be reached.
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// After the migrations, rows refer to rows that do not exist.
    #[error("migrations left broken foreign keys: {0}")]
    ForeignKeys(String),
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
    access: Arc<AccessChanges>,
    /// The group-commit writer, started on first use.
    writer: Arc<OnceLock<grouped::Writer>>,
}

/// The topic of [`Db::access_changed`]'s notices.
pub const ACCESS_TOPIC: &str = "access";

/// Tells the caches of authorization answers (`dge-authz`) that something they hold
/// may be stale: a revocation, a logout, an account's status, a grant, a client.
/// Every clone of a [`Db`] shares one; other replicas hear of it through the
/// shared store's notices ([`Db::share_access_changes`]).
#[derive(Debug, Default)]
struct AccessChanges {
    /// Bumped on every change: cached answers of an older generation are stale.
    generation: AtomicU64,
    /// The shared store that carries the change to the other replicas.
    notices: OnceLock<ephemeral::Ephemeral>,
}

/// The file of a `sqlite:` URL, none for an in-memory database.
fn sqlite_path(url: &str) -> Option<(std::path::PathBuf, bool)> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty()
        || path.contains(":memory:")
        || query.split('&').any(|p| p == "mode=memory");
    let creates = query.split('&').any(|p| p == "mode=rwc");
    (!in_memory).then(|| (std::path::PathBuf::from(path), creates))
}

/// Creates the SQLite file as 0600 before sqlx would create it with the umask's
/// mode, or tightens an existing one and its `-wal` and `-shm` (SQLite gives those
/// the database file's mode when it creates them).
fn private_sqlite_file(url: &str) -> std::io::Result<()> {
    let Some((path, creates)) = sqlite_path(url) else {
        return Ok(());
    };
    if creates || path.exists() {
        dge_core::private_fs::private_file(&path)?;
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.clone().into_os_string();
        side.push(suffix);
        dge_core::private_fs::tighten_if_present(std::path::Path::new(&side), 0o600)?;
    }
    Ok(())
}

/// How long PostgreSQL lets one statement of a [`Db`] run, lock waits included,
/// unless [`Db::connect_bounded`] says otherwise.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

impl Db {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`), statements
    /// bounded by [`DEFAULT_STATEMENT_TIMEOUT`].
    ///
    /// # Errors
    /// Fails on an unknown scheme or when the database cannot be reached.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_bounded(url, max_connections, DEFAULT_STATEMENT_TIMEOUT).await
    }

    /// [`Self::connect`], with PostgreSQL ending any statement that runs longer than
    /// `statement_timeout` (a lock held by a stuck session, a query gone wrong) and
    /// any session left idle inside a transaction for twice that, so one stuck
    /// replica cannot hold rows the others wait for.
    /// Migrations are not bounded. SQLite waits at most 5 s for its write lock
    /// (`busy_timeout`) and has no other wait.
    ///
    /// # Errors
    /// Fails on an unknown scheme or when the database cannot be reached.
    pub async fn connect_bounded(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let statement_ms = statement_timeout.as_millis().max(1);
        let idle_ms = statement_ms * 2;
        let backend = match url.split(':').next().unwrap_or_default() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            other => return Err(Error::UnsupportedScheme(other.to_owned())),
        };
        if backend == Backend::Sqlite {
            private_sqlite_file(url).map_err(Error::Files)?;
        }
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
                    } else {
                        sqlx::query(&format!("SET statement_timeout = {statement_ms}"))
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(&format!(
                            "SET idle_in_transaction_session_timeout = {idle_ms}"
                        ))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .after_release(|conn, _| {
                Box::pin(async move {
                    // sqlx 0.8 leaves a transaction open when a custom `BEGIN` (ours:
                    // `BEGIN IMMEDIATE` on SQLite) is cancelled after the database ran it
                    // but before the `Transaction` existed: a client hanging up at that
                    // moment left SQLite's write lock held for good. Such a connection
                    // is closed (which rolls back) instead of going back to the pool.
                    if !conn.is_in_transaction() {
                        return Ok(true);
                    }
                    // A dropped `Transaction` queues its rollback: let it run first.
                    conn.ping().await?;
                    if conn.is_in_transaction() {
                        tracing::warn!(
                            "a connection came back inside a transaction nobody owns; closed"
                        );
                        return Ok(false);
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            backend,
            access: Arc::default(),
            writer: Arc::default(),
        })
    }

    /// Applies the migrations of this backend that are not applied yet.
    ///
    /// # Errors
    /// Fails when a migration fails or a landed one was edited.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => self.migrate_sqlite().await,
            Backend::Postgres => {
                // A migration may rewrite a large table: no statement limit on its
                // connection, which is closed afterwards rather than pooled.
                let mut conn = self.pool.acquire().await?;
                conn.close_on_drop();
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut *conn)
                    .await?;
                POSTGRES_MIGRATIONS.run(&mut *conn).await?;
                Ok(())
            }
        }
    }

    /// The SQLite migrations, on one connection with foreign keys off, then checked.
    ///
    /// SQLite changes a CHECK constraint only by rebuilding the table, and dropping
    /// the old `accounts` with foreign keys on would delete the rows of every table
    /// that refers to it `ON DELETE CASCADE`. The pragma is a no-op inside a
    /// transaction, and sqlx runs each migration in one: it is set here, around
    /// them all, as SQLite's own procedure does
    /// (<https://www.sqlite.org/lang_altertable.html#otheralter>). When migrations
    /// ran, a dangling reference they left fails the start (the check reads every
    /// table, so a start with nothing to apply skips it).
    async fn migrate_sqlite(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        // If this future is dropped (a start cancelled) while foreign keys are off,
        // the connection must not go back to the pool: it is closed instead, and the
        // pool opens a fresh one with the pragmas of `after_connect`.
        conn.close_on_drop();
        // Pending: an embedded version not applied successfully. No table yet on a
        // fresh database: everything is to apply.
        let applied: Vec<i64> =
            sqlx::query("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                .fetch_all(&mut *conn)
                .await
                .and_then(|rows| rows.iter().map(|r| r.try_get("version")).collect())
                .unwrap_or_default();
        let pending = SQLITE_MIGRATIONS
            .iter()
            .any(|m| applied.binary_search(&m.version).is_err());
        if !pending {
            // Still run: it checks that no applied migration was edited.
            SQLITE_MIGRATIONS.run(&mut *conn).await?;
            return Ok(());
        }
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await?;
        let ran = SQLITE_MIGRATIONS.run(&mut *conn).await;
        let checked = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut *conn)
            .await;
        let restored = sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut *conn)
            .await;
        ran?;
        restored?;
        let dangling = checked?;
        if let Some(row) = dangling.first() {
            let table: String = row.try_get(0).unwrap_or_default();
            return Err(Error::ForeignKeys(format!(
                "{} row(s) refer to missing rows after the migrations (first in table {table})",
                dangling.len()
            )));
        }
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

    /// Runs an insert through group commit ([`grouped`]): with others queued at the
    /// same time, in one transaction; returns once it is committed.
    ///
    /// Only for rows whose unique keys are fresh random ids ([`dge_core::new_id`]): after
    /// a lost connection, a retried row found already there counts as committed, which
    /// would hide a real duplicate of a natural key (an address, a name).
    ///
    /// # Errors
    /// The statement (retried alone when its group failed) or the commit failed.
    pub async fn execute_grouped(&self, statement: grouped::Statement) -> sqlx::Result<()> {
        self.execute_grouped_all(vec![statement]).await
    }

    /// Like [`Self::execute_grouped`] for several independent inserts of one caller,
    /// committed together in the next group or not at all: one commit to wait for
    /// instead of one per statement.
    ///
    /// # Errors
    /// The statements (retried alone when their group failed) or the commit failed.
    pub async fn execute_grouped_all(
        &self,
        statements: Vec<grouped::Statement>,
    ) -> sqlx::Result<()> {
        self.writer
            .get_or_init(|| grouped::Writer::start(self.pool.clone(), self.backend))
            .execute(statements)
            .await
    }

    /// Sends [`Self::access_changed`]'s notices to every replica through `notices`
    /// (Redis pub/sub); without it they stay in this process. Set once at start-up.
    pub fn share_access_changes(&self, notices: ephemeral::Ephemeral) {
        let _ = self.access.notices.set(notices);
    }

    /// The generation of access-related data: it grows on every change.
    #[must_use]
    pub fn access_generation(&self) -> u64 {
        self.access.generation.load(Ordering::Acquire)
    }

    /// Marks every cached authorization answer of this replica stale, without telling
    /// the others (what a replica does when it hears another's notice).
    pub fn access_changed_here(&self) {
        self.access.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Call after committing a change that can turn an authorization answer from
    /// "allowed" to "refused" or back (a token revoked, an account's status, a grant,
    /// a client): this replica's caches drop their answers at once, the others when
    /// the notice reaches them (`ACCESS_TOPIC`). A lost notice (Redis down) is
    /// covered by the caches' short lifetime.
    pub async fn access_changed(&self) {
        self.access_changed_here();
        if let Some(notices) = self.access.notices.get()
            && let Err(e) = notices.notify(ACCESS_TOPIC, "").await
        {
            tracing::warn!(error = %e, "access change not shared with the other replicas");
        }
    }

    /// Marks this replica's cached answers stale whenever another replica announces
    /// an access change (or a rights change, or a `resync` after a Redis outage, or
    /// when notices were missed), until `stop`. Needs [`Self::share_access_changes`].
    pub async fn relay_access_changes(self, stop: impl std::future::Future<Output = ()>) {
        let Some(notices) = self.access.notices.get() else {
            return;
        };
        let mut notices = notices.subscribe();
        tokio::pin!(stop);
        loop {
            let notice = tokio::select! {
                () = &mut stop => break,
                n = notices.recv() => n,
            };
            match notice {
                Ok(n) if matches!(n.topic.as_str(), ACCESS_TOPIC | "rights" | "resync") => {
                    self.access_changed_here();
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    self.access_changed_here();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    }

    /// Whether the database would take a write within `deadline`, for readiness:
    /// SQLite's write lock can be had (a lock held for good answers reads but
    /// refuses every write); PostgreSQL is a primary and not read-only (a
    /// fail-over left us on a standby, or `default_transaction_read_only`).
    /// Nothing is written: the probe's transaction is rolled back.
    pub async fn ready(&self, deadline: Duration) -> bool {
        let probe = async {
            let mut tx = self.begin().await?;
            let writable = match self.backend {
                Backend::Sqlite => true,
                Backend::Postgres => {
                    sqlx::query_scalar::<_, bool>(
                        "SELECT NOT pg_is_in_recovery() \
                         AND current_setting('transaction_read_only') = 'off'",
                    )
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            tx.rollback().await?;
            Ok::<_, sqlx::Error>(writable)
        };
        match tokio::time::timeout(deadline, probe).await {
            Ok(Ok(writable)) => writable,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "not ready: the database refused the probe");
                false
            }
            Err(_) => {
                tracing::warn!(?deadline, "not ready: the database did not answer in time");
                false
            }
        }
    }
}

/// Whether `err` is a violation of the unique constraint or index named `name`.
///
/// Whether `err`, or an error it was caused by, says that a store could not be
/// reached in time (Redis silent or gone, no database connection free or possible):
/// a passing condition, worth "unavailable, retry" rather than "internal error".
#[must_use]
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(r) = e.downcast_ref::<redis::RedisError>()
            && (r.is_timeout()
                || r.is_io_error()
                || r.is_connection_dropped()
                || r.is_connection_refusal())
        {
            return true;
        }
        match e.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => return true,
            // PostgreSQL's statement timeout (57014), a read-only PostgreSQL (25006: a
            // standby during a fail-over), SQLite's busy timeout (SQLITE_BUSY and its
            // extended codes).
            Some(sqlx::Error::Database(db))
                if matches!(
                    db.code().as_deref(),
                    Some("57014" | "25006" | "5" | "517" | "773")
                ) =>
            {
                return true;
            }
            _ => {}
        }
        cause = e.source();
    }
    false
}

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

/// The statement of [`audit`], for [`audit_grouped`].
const AUDIT_INSERT: &str = "INSERT INTO audit_events (id, actor, action, subject, detail, created_at) \
                            VALUES ($1, $2, $3, $4, $5, $6)";

/// [`audit`] outside any transaction of the caller's, committed with the other rows
/// of the moment ([`Db::execute_grouped`]): the hot paths (every `/token` answer,
/// every password login) would otherwise each pay a write transaction of their own.
/// The row is committed when this returns.
///
/// # Errors
/// Fails when the database fails.
pub async fn audit_grouped(
    db: &Db,
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    now: i64,
) -> sqlx::Result<()> {
    db.execute_grouped(audit_statement(actor, action, subject, detail, now))
        .await
}

/// The row [`audit`] writes, as a statement for [`Db::execute_grouped_all`].
#[must_use]
pub fn audit_statement(
    actor: &str,
    action: &str,
    subject: &str,
    detail: &str,
    now: i64,
) -> grouped::Statement {
    use grouped::Arg;
    let text = |v: &str| Arg::Text(Some(v.to_owned()));
    grouped::Statement {
        sql: AUDIT_INSERT,
        args: vec![
            text(&dge_core::new_id()),
            text(actor),
            text(action),
            text(subject),
            text(detail),
            Arg::Int(Some(now)),
        ],
    }
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
    sqlx::query(AUDIT_INSERT)
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

    #[test]
    fn a_store_that_did_not_answer_is_told_from_other_failures() {
        let silent = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer",
        ));
        assert!(super::is_unreachable(&silent));
        // Through the errors that carry it, as the pages and services see it.
        let wrapped = crate::ephemeral::EphemeralError::from(silent);
        assert!(super::is_unreachable(&wrapped));
        assert!(super::is_unreachable(&sqlx::Error::PoolTimedOut));
        let refused = redis::RedisError::from((redis::ErrorKind::ResponseError, "WRONGTYPE"));
        assert!(!super::is_unreachable(&refused));
        assert!(!super::is_unreachable(&sqlx::Error::RowNotFound));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_or_loose_sqlite_file_and_its_wal_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = std::env::temp_dir().join(format!("dge-store-{}", dge_core::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("db.sqlite3");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let db = super::Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        let wal = dir.join("db.sqlite3-wal");
        assert_eq!((mode(&file), mode(&wal)), (0o600, 0o600));
        db.pool.close().await;
        // Closing removes the WAL; an empty one left by a crash is as valid.
        std::fs::write(&wal, b"").unwrap();
        for f in [&file, &wal] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let db = super::Db::connect(&url, 2).await.unwrap();
        db.migrate().await.unwrap();
        assert_eq!((mode(&file), mode(&wal)), (0o600, 0o600));
        db.pool.close().await;
        assert!(super::sqlite_path("sqlite::memory:").is_none());
        assert!(super::sqlite_path("sqlite://x?mode=memory&cache=shared").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
