//! Accounts for the benchmark, written straight into the database in one statement
//! each (a million rows take seconds, not hours): active local accounts
//! `bench1`…`benchN`, all with the same password hashed with our argon2id
//! parameters, each granted `datahub:publish`.

use std::time::{Duration, Instant};

use anyhow::Context;
use dge_registry::Hasher;
use dge_registry::hashing::HashParams;
use dge_store::{Backend, Db};

/// The password of every seeded account. Only ever used on a throw-away server.
pub(crate) const PASSWORD: &str = "Banc-d-essai-Mirabelle-42!";
/// The right every seeded account holds, checked by the `Check` scenarios.
pub(crate) const RIGHT: &str = "datahub:publish";

/// The login of seeded account `i` (1-based).
#[must_use]
pub(crate) fn login(i: u64) -> String {
    format!("bench{i}")
}

/// Inserts `count` accounts and their grants; returns how long it took.
///
/// # Errors
/// When the database refuses.
pub(crate) async fn accounts(database_url: &str, count: u64) -> anyhow::Result<Duration> {
    let started = Instant::now();
    // A million rows in one statement may take longer than a serving statement may.
    let db = Db::connect_bounded(database_url, 2, Duration::from_secs(3600))
        .await
        .context("connecting to the server's database to seed it")?;
    let phc = Hasher::new(HashParams::default(), 1, Duration::from_secs(60))
        .hash(PASSWORD.to_owned())
        .await
        .context("hashing the benchmark password")?;
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    )?;
    let count = i64::try_from(count)?;
    let columns = "INSERT INTO accounts (id, kind, login, login_key, email, email_key, given_name, \
                   family_name, password_hash, status, email_verified, created_at, updated_at) ";
    let values = "SELECT 'bench-' || i, 'local', 'bench' || i, 'bench' || i, \
                  'bench' || i || '@bench.example.org', 'bench' || i || '@bench.example.org', \
                  'Banc', 'Essai', $2, 'active', 1, $3, $3";
    let insert = match db.backend() {
        Backend::Postgres => {
            format!("{columns}{values} FROM generate_series(1, $1::bigint) AS g(i)")
        }
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             {columns}{values} FROM n"
        ),
    };
    sqlx::query(&insert)
        .bind(count)
        .bind(&phc)
        .bind(now)
        .execute(db.pool())
        .await
        .context("inserting the benchmark accounts")?;
    sqlx::query(
        "INSERT INTO grants (account_id, right_name, granted_by, reason, created_at) \
         SELECT id, $1, 'dge-bench', 'benchmark', $2 FROM accounts WHERE id LIKE 'bench-%'",
    )
    .bind(RIGHT)
    .bind(now)
    .execute(db.pool())
    .await
    .context("granting the benchmark right")?;
    if db.backend() == Backend::Postgres {
        // Fresh statistics, as a production database that grew slowly would have.
        sqlx::query("ANALYZE").execute(db.pool()).await?;
    }
    db.pool().close().await;
    Ok(started.elapsed())
}
