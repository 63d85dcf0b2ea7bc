//! Scratch databases for the storage test suites (a dev-dependency only).
//!
//! Every case gets a database of its own, on SQLite or on the PostgreSQL at
//! `DATABASE_URL`, through a [`ScratchDb`] that removes it when dropped. A case that
//! panics keeps its database for a look, and says so on stderr; the first PostgreSQL
//! scratch database made by a later run drops those left over for more than
//! [`STALE_AFTER_SECS`], which no run still uses.
//!
//! PostgreSQL names carry their creation time: `dge_t<unix seconds>_<label>_<random>`.
//! Only names of that shape are ever swept, so databases of other tools (the e2e
//! fixture's `dge_e2e_*`, the benchmark's) are left alone.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection, Row};

/// The PostgreSQL that tests/run-all.sh checks when `DATABASE_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Scratch databases older than this belong to runs that are over: a day.
pub const STALE_AFTER_SECS: u64 = 24 * 3600;

/// The prefix of every PostgreSQL scratch database, before its creation time.
const PREFIX: &str = "dge_t";

/// PostgreSQL cuts identifiers longer than this.
const MAX_IDENTIFIER: usize = 63;

static SWEPT: AtomicBool = AtomicBool::new(false);

/// The administration URL of the test PostgreSQL (`DATABASE_URL`).
pub fn postgres_admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A database made for one test case; dropping it removes the database.
#[derive(Debug)]
pub struct ScratchDb {
    url: String,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Sqlite(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl ScratchDb {
    /// A new SQLite file in the temporary folder; `label` names the suite.
    pub fn sqlite(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "dge_{label}_{}.sqlite3",
            uuid::Uuid::new_v4().simple()
        ));
        Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            target: Target::Sqlite(path),
        }
    }

    /// A new, empty PostgreSQL database on the server of `DATABASE_URL`; `label`
    /// (lower-case letters, digits and `_`) names the suite.
    ///
    /// # Panics
    /// When PostgreSQL does not answer or refuses the database: the case cannot run.
    pub async fn postgres(label: &str) -> Self {
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "scratch database label {label:?} must be lower-case letters, digits and _"
        );
        let admin_url = postgres_admin_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL must answer at DATABASE_URL (127.0.0.1:5432 by default)");
        if !SWEPT.swap(true, Ordering::SeqCst) {
            // Best effort: a failed sweep must not fail the case that triggered it.
            let _ = sweep_stale(&mut admin, now_secs()).await;
        }
        let random = uuid::Uuid::new_v4().simple().to_string();
        let mut name = format!("{PREFIX}{}_{label}_{random}", now_secs());
        name.truncate(MAX_IDENTIFIER);
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create the scratch database");
        let _ = admin.close().await;
        let (server, _) = admin_url
            .rsplit_once('/')
            .expect("DATABASE_URL has a database path");
        Self {
            url: format!("{server}/{name}"),
            target: Target::Postgres { admin_url, name },
        }
    }

    /// The URL to connect to the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (PostgreSQL) or file path (SQLite).
    pub fn name(&self) -> String {
        match &self.target {
            Target::Sqlite(path) => path.display().to_string(),
            Target::Postgres { name, .. } => name.clone(),
        }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            #[allow(clippy::print_stderr)] // test harness output, next to the panic
            {
                eprintln!(
                    "keeping scratch database {} of the failed test; the first run after \
                     {} h drops it",
                    self.name(),
                    STALE_AFTER_SECS / 3600
                );
            }
            return;
        }
        match &self.target {
            Target::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Target::Postgres { admin_url, name } => {
                // Drop cannot await and may run inside the test's runtime, where
                // blocking on it would deadlock a current-thread runtime: a thread of
                // its own, with its own runtime, does the work while this one waits.
                let admin_url = admin_url.clone();
                let sql = drop_sql(name);
                let outcome = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    runtime.block_on(async {
                        let mut admin = PgConnection::connect(&admin_url)
                            .await
                            .map_err(|e| e.to_string())?;
                        admin
                            .execute(sql.as_str())
                            .await
                            .map_err(|e| e.to_string())?;
                        let _ = admin.close().await;
                        Ok::<_, String>(())
                    })
                })
                .join();
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("could not drop scratch database {name}: {e}"),
                    Err(_) => panic!("the thread dropping scratch database {name} panicked"),
                }
            }
        }
    }
}

/// `WITH (FORCE)` ends the case's pooled connections, still open when the guard drops.
fn drop_sql(name: &str) -> String {
    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
}

/// The creation time written in a scratch database's name, if it has our shape.
fn created_at(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(PREFIX)?;
    let (secs, _) = rest.split_once('_')?;
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secs.parse().ok()
}

/// Whether a database of this name was left by a run that is over.
fn is_stale(name: &str, now: u64) -> bool {
    created_at(name).is_some_and(|t| t.saturating_add(STALE_AFTER_SECS) < now)
}

/// Drops the scratch databases older than [`STALE_AFTER_SECS`] on the server of
/// `admin_url` (failed cases keep theirs, and a killed run drops nothing), and
/// returns their names. Another run may sweep the same ones at the same time: a
/// database gone meanwhile is no error.
///
/// # Errors
/// When PostgreSQL does not answer or refuses to list or drop databases.
pub async fn sweep_stale_databases(admin_url: &str) -> Result<Vec<String>, sqlx::Error> {
    let mut admin = PgConnection::connect(admin_url).await?;
    let dropped = sweep_stale(&mut admin, now_secs()).await;
    let _ = admin.close().await;
    dropped
}

async fn sweep_stale(admin: &mut PgConnection, now: u64) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT datname FROM pg_database WHERE datname LIKE 'dge\\_t%'")
        .fetch_all(&mut *admin)
        .await?;
    let mut dropped = Vec::new();
    for row in rows {
        let name: String = row.get("datname");
        if is_stale(&name, now) {
            admin.execute(drop_sql(&name).as_str()).await?;
            dropped.push(name);
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_past_a_day_are_stale() {
        let now = 1_800_000_000;
        let old = format!("dge_t{}_reg_0123456789abcdef", now - STALE_AFTER_SECS - 1);
        let young = format!("dge_t{}_reg_0123456789abcdef", now - 60);
        assert!(is_stale(&old, now));
        assert!(!is_stale(&young, now));
        // The e2e fixture's, the benchmark's and the old suites' names are never ours.
        for name in [
            "dge_e2e_0123456789ab",
            "dge_reg_0123",
            "dge_t_reg_1",
            "dge_tx1_a",
            "test",
        ] {
            assert!(!is_stale(name, now), "{name}");
        }
    }
}
