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
//! Rows of the same `INSERT … VALUES (…)` go in one multi-row statement: with one
//! statement per row, each a round trip to SQLite's connection thread (or to
//! PostgreSQL), the writer spent its time waiting for those threads to be scheduled,
//! on a busy machine, and capped `client_credentials` at one core.
//!
//! If a grouped transaction fails, each of its statements is retried alone, so that
//! one bad statement fails only its own caller.
//!
//! Statements insert rows whose unique keys are fresh random ids (a token's `jti`,
//! an audit row's id): when the connection was lost under a group, the group may have
//! committed before the answer was lost, and a retried job whose row then already
//! exists is told it succeeded (its group was one transaction: all of it is there).

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Arguments as _, Connection as _};
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

/// One statement with its values: an insert whose unique keys are fresh random ids
/// (module documentation).
#[derive(Debug, Clone)]
pub struct Statement {
    /// The SQL, with `$1`… placeholders. An `INSERT … VALUES ($1, …, $k)` of one row
    /// is merged with the same statement's other rows of the group.
    pub sql: &'static str,
    /// The values, in placeholder order.
    pub args: Vec<Arg>,
}

/// One caller's statements (committed together or not at all), and its answer.
type Job = (Vec<Statement>, oneshot::Sender<sqlx::Result<()>>);

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

    /// Runs `statements` in the next group, in one transaction, and waits for their
    /// commit.
    pub(crate) async fn execute(&self, statements: Vec<Statement>) -> sqlx::Result<()> {
        if statements.is_empty() {
            return Ok(());
        }
        // PostgreSQL refuses a NUL in text: such a job would fail every group it
        // joined, and each of its jobs would then be retried alone. It fails alone,
        // here, whatever the engine.
        let nul = statements
            .iter()
            .flat_map(|s| &s.args)
            .any(|a| matches!(a, Arg::Text(Some(t)) if t.contains('\0')));
        if nul {
            return Err(sqlx::Error::Encode(
                "a grouped statement holds a NUL character".into(),
            ));
        }
        let (done, committed) = oneshot::channel();
        self.queue
            .send((statements, done))
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        committed.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

/// Until every handle is gone: take what is queued, commit it as one transaction.
///
/// While statements keep coming, the writer keeps its connection from one group to
/// the next: taking one from the pool and giving it back costs a round trip per
/// group (sqlx tests a returned connection), and one SQLite connection thread stays
/// warm instead of eight. It gives it back before it waits for work, so that a
/// quiet writer holds none of the pool, and after any failure (the pool drops a
/// broken one).
async fn write_groups(pool: AnyPool, backend: Backend, mut jobs: mpsc::Receiver<Job>) {
    let mut held: Option<PoolConnection<Any>> = None;
    loop {
        let first = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) => {
                held = None;
                match jobs.recv().await {
                    Some(job) => job,
                    None => break,
                }
            }
        };
        // No timer: the group is whatever arrived while the previous commit ran, so a
        // lone statement is committed at once and a crowd shares one commit.
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let statements = group.iter().flat_map(|(s, _)| s);
        match commit(&pool, &mut held, backend, statements).await {
            Ok(()) => {
                for (_, done) in group {
                    let _ = done.send(Ok(()));
                }
            }
            // A lone statement's own failure is its answer; a connection lost under
            // it (a restart of PostgreSQL) is not: it is tried again below, on a
            // connection the pool tests first.
            Err(e) if group.len() == 1 && !connection_lost(&e) => {
                if let Some((_, done)) = group.pop() {
                    let _ = done.send(Err(e));
                }
            }
            Err(e) => {
                let lost = connection_lost(&e);
                tracing::warn!(error = %e, statements = group.len(), "grouped commit failed; retrying one by one");
                for (statements, done) in group {
                    let alone = commit(&pool, &mut held, backend, statements.iter()).await;
                    let _ = done.send(settle(lost, alone));
                }
            }
        }
    }
}

/// Whether `e` says the connection is gone rather than the statement refused: an
/// I/O error, or PostgreSQL's connection exception (class 08) and operator
/// intervention (class 57P: shutdown, restart, terminated backend).
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// A job's answer once retried alone after its group failed: a unique violation
/// after a lost connection means the group's commit went through (module
/// documentation), so the job succeeded; anything else stands.
fn settle(connection_was_lost: bool, alone: sqlx::Result<()>) -> sqlx::Result<()> {
    match alone {
        Err(sqlx::Error::Database(db)) if connection_was_lost && db.is_unique_violation() => {
            tracing::info!(
                "a retried statement was already committed before the connection was lost"
            );
            Ok(())
        }
        other => other,
    }
}

/// Commits `statements` on the writer's connection (taken from the pool when it
/// has none); on failure the connection is given back.
async fn commit<'s>(
    pool: &AnyPool,
    held: &mut Option<PoolConnection<Any>>,
    backend: Backend,
    statements: impl Iterator<Item = &'s Statement>,
) -> sqlx::Result<()> {
    if held.is_none() {
        *held = Some(pool.acquire().await?);
    }
    let mut guard = CloseUnlessSettled {
        held,
        settled: false,
    };
    let result = match guard.held.as_mut() {
        Some(conn) => commit_on(conn, backend, statements).await,
        None => Err(sqlx::Error::PoolClosed),
    };
    guard.settled = result.is_ok();
    result
}

/// Closes the writer's connection instead of giving it back, after a failure or when
/// the commit is dropped half-way (its future cancelled): whatever it left on the
/// connection (a transaction SQLite keeps open after a failed statement, or one
/// whose `COMMIT` never ran) goes with it; the pool opens a fresh one.
struct CloseUnlessSettled<'a> {
    held: &'a mut Option<PoolConnection<Any>>,
    settled: bool,
}

impl Drop for CloseUnlessSettled<'_> {
    fn drop(&mut self) {
        if !self.settled
            && let Some(mut conn) = self.held.take()
        {
            conn.close_on_drop();
        }
    }
}

async fn commit_on<'s>(
    conn: &mut AnyConnection,
    backend: Backend,
    statements: impl Iterator<Item = &'s Statement>,
) -> sqlx::Result<()> {
    let runs = runs(statements);
    // One statement in all (the usual case: a crowd of tokens): it is atomic alone.
    if let [run] = runs.as_slice() {
        return execute(&mut *conn, run, backend).await;
    }
    if backend == Backend::Sqlite
        && let Some(sql) = one_trip(&runs)
    {
        return commit_in_one_trip(conn, &sql, &runs).await;
    }
    if backend == Backend::Postgres
        && let Some(sql) = one_statement(&runs)
    {
        let args = arguments(runs.iter().flat_map(|r| &r.rows).flat_map(|s| &s.args))?;
        // Each mix of runs and sizes is its own text: not kept prepared.
        sqlx::query_with(&sql, args)
            .persistent(false)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    let mut tx = match backend {
        // As in `Db::begin`: take SQLite's write lock up front.
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => conn.begin().await?,
    };
    for run in &runs {
        execute(&mut *tx, run, backend).await?;
    }
    tx.commit().await
}

/// SQLite: the whole transaction of `runs` as one text, when every placeholder in
/// it is anonymous (bound by position, across its statements).
///
/// sqlx runs a text of several statements in one request to the connection's
/// thread; as four (`BEGIN`, two inserts, `COMMIT`), each reply waited for the
/// writer task's turn on a busy runtime thread, and a group took about 1.8 ms where
/// SQLite worked 0.1 ms: that cycle, not the processors, capped `client_credentials`
/// (docs/performance.md, run 25).
fn one_trip(runs: &[Run<'_>]) -> Option<String> {
    let mut sql = String::from("BEGIN IMMEDIATE; ");
    for run in runs {
        let text = multi_row(run.sql, run.rows.len(), true);
        // A numbered placeholder would be bound by its number, from the first value
        // of the whole text; and a statement with a wrong count of values would shift
        // every later one into other rows: such a group takes the usual way, where
        // each statement is bound alone.
        let values: usize = run.rows.iter().map(|r| r.args.len()).sum();
        if text.contains('$') || text.matches('?').count() != values {
            return None;
        }
        sql.push_str(&text);
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT");
    Some(sql)
}

/// PostgreSQL: the inserts of `runs` as one statement, every run but the last in a
/// `WITH` clause, their placeholders numbered on across the runs. A statement is
/// atomic alone: one round trip instead of `BEGIN`, one per run and `COMMIT`, each a
/// wait for PostgreSQL and a turn of the writer task (a code exchange commits its
/// access and refresh tokens' rows and its audit row; `client_credentials` its
/// token's row and its audit row). Rows inserted in one statement's `WITH` clauses
/// cannot see one another, which a job's independent inserts never need. `None`
/// (the usual transaction then) for anything but plain one-row inserts, or
/// placeholders that do not number the values of their run exactly.
fn one_statement(runs: &[Run<'_>]) -> Option<String> {
    let mut parts = Vec::with_capacity(runs.len());
    let mut offset = 0;
    for run in runs {
        values_tuple(run.sql)?;
        let text = multi_row(run.sql, run.rows.len(), false);
        let values: usize = run.rows.iter().map(|r| r.args.len()).sum();
        parts.push(shift_placeholders(&text, offset, values)?);
        offset += values;
    }
    let (last, with) = parts.split_last()?;
    if with.is_empty() {
        return Some(last.clone());
    }
    let mut sql = String::from("WITH ");
    for (i, part) in with.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("w{i} AS ({part})"));
    }
    sql.push(' ');
    sql.push_str(last);
    Some(sql)
}

/// `text` with each `$n` made `$(n + offset)`, if its placeholders are exactly `$1`
/// to `$values` (each at least once) and it holds no quoted literal.
fn shift_placeholders(text: &str, offset: usize, values: usize) -> Option<String> {
    if text.contains(['\'', '"']) {
        return None;
    }
    let mut seen = vec![false; values];
    let mut out = String::with_capacity(text.len() + values);
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[..digits].parse().ok()?;
        *seen.get_mut(n.checked_sub(1)?)? = true;
        out.push('$');
        out.push_str(&(n + offset).to_string());
        rest = &rest[digits..];
    }
    out.push_str(rest);
    seen.iter().all(|s| *s).then_some(out)
}

/// Runs `sql` (see [`one_trip`]) with the values of `runs`; on failure, rolls back
/// what it began (SQLite keeps a transaction open when a statement in it fails).
async fn commit_in_one_trip(
    conn: &mut AnyConnection,
    sql: &str,
    runs: &[Run<'_>],
) -> sqlx::Result<()> {
    let args = arguments(runs.iter().flat_map(|r| &r.rows).flat_map(|s| &s.args))?;
    let result = sqlx::query_with(sql, args)
        .persistent(false)
        .execute(&mut *conn)
        .await;
    if let Err(e) = result {
        // "No transaction is active" when the failure was the BEGIN itself. The
        // caller closes the connection after any failure, so a failed ROLLBACK
        // leaves nothing behind.
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return Err(e);
    }
    Ok(())
}

/// Statements of one SQL text, to run as one.
struct Run<'s> {
    sql: &'static str,
    rows: Vec<&'s Statement>,
}

/// Groups the rows of each mergeable `INSERT` into the run of its first row;
/// anything else runs alone, in order. Moving a row up to its run is safe: the jobs
/// of a group come from different callers, each waiting for its own, so their order
/// means nothing, and a job's statements are independent inserts (a job is
/// committed whole or not at all, in whatever order). Without it, the token rows and
/// the audit rows of concurrent requests, interleaved, would be cut into many small
/// runs.
fn runs<'s>(statements: impl Iterator<Item = &'s Statement>) -> Vec<Run<'s>> {
    let mut runs: Vec<Run<'s>> = Vec::new();
    for statement in statements {
        let mergeable = values_tuple(statement.sql).is_some();
        match runs
            .iter_mut()
            .find(|run| mergeable && run.sql == statement.sql)
        {
            Some(run) => run.rows.push(statement),
            None => runs.push(Run {
                sql: statement.sql,
                rows: vec![statement],
            }),
        }
    }
    runs
}

async fn execute<'e, E>(executor: E, run: &Run<'_>, backend: Backend) -> sqlx::Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let args = arguments(run.rows.iter().flat_map(|s| &s.args))?;
    if let [_] = run.rows.as_slice() {
        sqlx::query_with(run.sql, args).execute(executor).await?;
        return Ok(());
    }
    let sql = multi_row(run.sql, run.rows.len(), backend == Backend::Sqlite);
    // Each group size is its own text: not kept among the prepared statements.
    sqlx::query_with(&sql, args)
        .persistent(false)
        .execute(executor)
        .await?;
    Ok(())
}

/// `values`, bound in order.
fn arguments<'a>(
    values: impl Iterator<Item = &'a Arg>,
) -> sqlx::Result<sqlx::any::AnyArguments<'a>> {
    let mut args = sqlx::any::AnyArguments::default();
    for arg in values {
        match arg {
            Arg::Text(v) => args.add(v.clone()),
            Arg::Int(v) => args.add(*v),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// Where the `(…)` of a one-row `INSERT … VALUES (…)` starts, if `sql` is one.
fn values_tuple(sql: &str) -> Option<usize> {
    let at = sql.rfind("VALUES (")? + "VALUES ".len();
    // A quoted literal could hold `$` or parentheses: such a tuple is not rewritten.
    if sql[at..].contains(['\'', '"']) {
        return None;
    }
    // The tuple's `(` must close at the very end (no `ON CONFLICT`, `RETURNING`…).
    let mut depth = 0_i32;
    for (i, c) in sql[at..].char_indices() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth == 0 {
            return (sql.starts_with("INSERT ") && at + i + 1 == sql.len()).then_some(at);
        }
    }
    None
}

/// `sql` (see [`values_tuple`]) for `rows` rows: its tuple repeated, each copy's
/// placeholders numbered after the previous copy's.
///
/// With `anonymous` (SQLite), a tuple whose placeholders are `$1` to `$k` in order,
/// each once, gets `?` instead: SQLite looks a named parameter up in a list, by a
/// linear search, when it parses the statement and again for each value sqlx binds,
/// which made the binding of a 256-row statement quadratic (5% of both cores on
/// `client_credentials`). Anonymous ones are bound by position.
fn multi_row(sql: &str, rows: usize, anonymous: bool) -> String {
    let Some(at) = values_tuple(sql) else {
        return sql.to_owned();
    };
    let (head, tuple) = sql.split_at(at);
    let per_row = placeholders(tuple).max().unwrap_or(0);
    let in_order = placeholders(tuple).eq(1..=per_row);
    let mut out = String::with_capacity(head.len() + rows * (tuple.len() + 8));
    out.push_str(head);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        let mut rest = tuple;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            rest = &rest[dollar + 1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                out.push('$');
            } else if anonymous && in_order {
                out.push('?');
            } else {
                let n: usize = rest[..digits].parse().unwrap_or(0);
                out.push('$');
                out.push_str(&(n + row * per_row).to_string());
            }
            rest = &rest[digits..];
        }
        out.push_str(rest);
    }
    out
}

fn placeholders(tuple: &str) -> impl Iterator<Item = usize> + '_ {
    tuple.split('$').skip(1).filter_map(|part| {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        part[..digits].parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_one_insert_become_one_statement() {
        let sql = "INSERT INTO t (id, n) VALUES ($1, $2)";
        assert_eq!(multi_row(sql, 1, false), sql);
        assert_eq!(
            multi_row(sql, 3, false),
            "INSERT INTO t (id, n) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        let wide = "INSERT INTO t (a, b) VALUES ($10, $9)";
        assert_eq!(
            multi_row(wide, 2, false),
            "INSERT INTO t (a, b) VALUES ($10, $9), ($20, $19)"
        );
        // SQLite: anonymous placeholders when the tuple's are $1..$k in order, once each.
        assert_eq!(
            multi_row(sql, 3, true),
            "INSERT INTO t (id, n) VALUES (?, ?), (?, ?), (?, ?)"
        );
        assert_eq!(
            multi_row(wide, 2, true),
            "INSERT INTO t (a, b) VALUES ($10, $9), ($20, $19)"
        );
        // A quoted literal is never rewritten; a `$` without digits stays as it is.
        let quoted = "INSERT INTO t (a, b) VALUES ($1, 'US$')";
        assert_eq!(multi_row(quoted, 2, true), quoted);
        assert_eq!(
            multi_row("INSERT INTO t (a, b) VALUES ($1, $)", 2, false),
            "INSERT INTO t (a, b) VALUES ($1, $), ($2, $)"
        );
        let twice = "INSERT INTO t (a, b) VALUES ($1, lower($1))";
        assert_eq!(
            multi_row(twice, 2, true),
            "INSERT INTO t (a, b) VALUES ($1, lower($1)), ($2, lower($2))"
        );
    }

    #[test]
    fn a_lost_connection_is_told_from_a_refused_statement() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert!(connection_lost(&io));
        assert!(!connection_lost(&sqlx::Error::RowNotFound));
        assert!(!connection_lost(&sqlx::Error::Encode("NUL".into())));
    }

    #[tokio::test]
    async fn a_row_already_there_after_a_lost_connection_is_a_success() {
        sqlx::any::install_default_drivers();
        let mut conn: AnyConnection = sqlx::Connection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut run = async |sql: &str| sqlx::query(sql).execute(&mut conn).await.map(drop);
        let insert = "INSERT INTO t (id) VALUES ('x')";
        run(insert).await.unwrap();
        assert!(settle(true, run(insert).await).is_ok());
        // Without a lost connection the row was someone else's: the error stands.
        assert!(settle(false, run(insert).await).is_err());
        let refused = run("INSERT INTO nowhere (id) VALUES ('x')").await;
        assert!(settle(true, refused).is_err());
        assert!(settle(true, Ok(())).is_ok());
    }

    #[test]
    fn other_statements_are_not_merged() {
        let update = Statement {
            sql: "UPDATE t SET n = $1 WHERE id = $2",
            args: vec![],
        };
        let upsert = Statement {
            sql: "INSERT INTO t (id) VALUES ($1) ON CONFLICT DO NOTHING",
            args: vec![],
        };
        let returning = Statement {
            sql: "INSERT INTO t (id) VALUES ($1) RETURNING (id)",
            args: vec![],
        };
        let insert = Statement {
            sql: "INSERT INTO t (id) VALUES (lower($1))",
            args: vec![],
        };
        let other = Statement {
            sql: "INSERT INTO u (id) VALUES ($1)",
            args: vec![],
        };
        let all = [
            &update, &update, &upsert, &upsert, &returning, &returning, &insert, &insert, &update,
        ];
        let sizes: Vec<usize> = runs(all.into_iter()).iter().map(|r| r.rows.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1, 1, 1, 2, 1]);
        // Interleaved rows of two mergeable inserts: one run each, in first-seen order.
        let all = [&insert, &other, &update, &insert, &other, &insert];
        let merged: Vec<(&str, usize)> = runs(all.into_iter())
            .iter()
            .map(|r| (r.sql, r.rows.len()))
            .collect();
        assert_eq!(
            merged,
            vec![(insert.sql, 3), (other.sql, 2), (update.sql, 1)]
        );
        assert_eq!(
            multi_row(insert.sql, 2, false),
            "INSERT INTO t (id) VALUES (lower($1)), (lower($2))"
        );
    }

    /// A token's row (two values) and an audit row (one).
    fn token_and_audit() -> (Statement, Statement) {
        let token = Statement {
            sql: "INSERT INTO t (id, n) VALUES ($1, $2)",
            args: vec![Arg::Text(Some("j".into())), Arg::Int(Some(1))],
        };
        let audit = Statement {
            sql: "INSERT INTO a (id) VALUES ($1)",
            args: vec![Arg::Text(Some("a".into()))],
        };
        (token, audit)
    }

    #[test]
    fn a_group_goes_to_postgresql_as_one_statement_numbered_across_its_runs() {
        let text = |v: &str| Arg::Text(Some(v.to_owned()));
        let (token, audit) = token_and_audit();
        let grouped = runs([&token, &audit, &token].into_iter());
        assert_eq!(
            one_statement(&grouped).as_deref(),
            Some(
                "WITH w0 AS (INSERT INTO t (id, n) VALUES ($1, $2), ($3, $4)) \
                 INSERT INTO a (id) VALUES ($5)"
            )
        );
        let three = runs([&audit, &token, &audit, &audit].into_iter());
        assert_eq!(
            one_statement(&three).as_deref(),
            Some(
                "WITH w0 AS (INSERT INTO a (id) VALUES ($1), ($2), ($3)) \
                 INSERT INTO t (id, n) VALUES ($4, $5)"
            )
        );
        // A run whose placeholders do not number its values exactly, an upsert or a
        // quoted literal: the usual transaction.
        let short = Statement {
            sql: token.sql,
            args: vec![text("k")],
        };
        assert_eq!(one_statement(&runs([&audit, &short].into_iter())), None);
        let upsert = Statement {
            sql: "INSERT INTO t (id) VALUES ($1) ON CONFLICT DO NOTHING",
            args: vec![text("u")],
        };
        assert_eq!(one_statement(&runs([&audit, &upsert].into_iter())), None);
        let quoted = Statement {
            sql: "INSERT INTO t (id, n) VALUES ($1, 'x')",
            args: vec![text("q")],
        };
        assert_eq!(one_statement(&runs([&audit, &quoted].into_iter())), None);
        assert_eq!(shift_placeholders("f($1, $3)", 0, 3), None);
        assert_eq!(
            shift_placeholders("f($1, $2, $2)", 4, 2).as_deref(),
            Some("f($5, $6, $6)")
        );
        assert_eq!(shift_placeholders("f($0)", 0, 1), None);
        assert_eq!(shift_placeholders("f($)", 0, 0), None);
    }

    #[test]
    fn a_group_goes_to_sqlite_as_one_text_when_bound_by_position() {
        let text = |v: &str| Arg::Text(Some(v.to_owned()));
        let (token, audit) = token_and_audit();
        let grouped = runs([&token, &audit, &token].into_iter());
        assert_eq!(
            one_trip(&grouped).as_deref(),
            Some(
                "BEGIN IMMEDIATE; INSERT INTO t (id, n) VALUES (?, ?), (?, ?);\n\
                 INSERT INTO a (id) VALUES (?);\nCOMMIT"
            )
        );
        // One value short: bound by position, it would shift the audit row's.
        let short = Statement {
            sql: token.sql,
            args: vec![text("k")],
        };
        assert_eq!(one_trip(&runs([&token, &short, &audit].into_iter())), None);
        // A placeholder bound by number would take the text's first values.
        let numbered = Statement {
            sql: "INSERT INTO t (a, b) VALUES ($2, $1)",
            args: vec![],
        };
        let upsert = Statement {
            sql: "INSERT INTO t (id) VALUES ($1) ON CONFLICT DO NOTHING",
            args: vec![],
        };
        assert_eq!(one_trip(&runs([&token, &numbered].into_iter())), None);
        assert_eq!(one_trip(&runs([&audit, &upsert].into_iter())), None);
    }
}
