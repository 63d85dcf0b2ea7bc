//! Group commit: many small independent inserts, committed together.
//!
//! Issuing a token writes one row (`issued_tokens`), so that it can be revoked and
//! introspected. One transaction per row serialises every issuance behind SQLite's
//! single writer, and concurrent writers then sleep in SQLite's busy handler; on
//! PostgreSQL each commit is a WAL flush. Here one writer task takes the statements
//! queued while its previous commit ran and commits them in one transaction; each
//! caller waits for the commit of its own statement, so a row is durable before the
//! caller goes on (a token is never handed out before its record exists).
//!
//! If a grouped transaction fails, each of its statements is retried alone, so that
//! one bad statement fails only its own caller.

use sqlx::{AnyPool, Arguments as _};
use tokio::sync::{mpsc, oneshot};

use crate::Backend;

/// At most this many statements per transaction.
const MAX_GROUP: usize = 256;

/// Statements waiting for the writer; a caller beyond waits to queue (back-pressure).
const QUEUE: usize = 4096;

/// A value bound to a grouped statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// TEXT, or NULL.
    Text(Option<String>),
    /// BIGINT, or NULL.
    Int(Option<i64>),
}

/// One statement with its values.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL, with `$1`… placeholders.
    pub sql: &'static str,
    /// The values, in placeholder order.
    pub args: Vec<Arg>,
}

type Job = (Statement, oneshot::Sender<sqlx::Result<()>>);

/// The queue of the writer task.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(pool: AnyPool, backend: Backend) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(pool, backend, jobs));
        Self { queue }
    }

    /// Runs `statement` in the next group and waits for its commit.
    pub(crate) async fn execute(&self, statement: Statement) -> sqlx::Result<()> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send((statement, done))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        committed.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// Until every handle is gone: take what is queued, commit it as one transaction.
async fn write_groups(pool: AnyPool, backend: Backend, mut jobs: mpsc::Receiver<Job>) {
    while let Some(first) = jobs.recv().await {
        // No timer: the group is whatever arrived while the previous commit ran, so a
        // lone statement is committed at once and a crowd shares one commit.
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match commit(&pool, backend, group.iter().map(|(s, _)| s)).await {
            Ok(()) => {
                for (_, done) in group {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) if group.len() == 1 => {
                if let Some((_, done)) = group.pop() {
                    let _ = done.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, statements = group.len(), "grouped commit failed; retrying one by one");
                for (statement, done) in group {
                    let alone = commit(&pool, backend, std::iter::once(&statement)).await;
                    let _ = done.send(alone);
                }
            }
        }
    }
}

async fn commit<'s>(
    pool: &AnyPool,
    backend: Backend,
    statements: impl Iterator<Item = &'s Statement>,
) -> sqlx::Result<()> {
    let mut tx = match backend {
        // As in `Db::begin`: take SQLite's write lock up front.
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    for statement in statements {
        let mut args = sqlx::any::AnyArguments::default();
        for arg in &statement.args {
            match arg {
                Arg::Text(v) => args.add(v.clone()),
                Arg::Int(v) => args.add(*v),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        sqlx::query_with(statement.sql, args)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
