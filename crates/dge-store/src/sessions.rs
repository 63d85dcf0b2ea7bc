//! The single sign-on sessions: in Redis when it is configured (several replicas),
//! in the database otherwise (the embedded default, where sessions then outlive a
//! restart of the one process). Both answer the same calls the same way; the test
//! suite runs each case on both.
//!
//! Sessions are known by the SHA-256 of their cookie, never the cookie itself.
//! What must end with an account change stays in the database: each account has a
//! `sessions_epoch`, bumped by [`end_all_in`] in the transaction of a password reset
//! or change, a deletion, a suspension or reactivation, or a two-step enrolment.
//! Their modules are told after the commit ([`SessionsEnded`]). A session records the epoch it was opened at, and
//! every use reads the account (it must be active) and compares the epochs, so the
//! change ends every session at commit, atomically, whatever Redis still holds.
//! Deleting the Redis entries afterwards ([`Sessions::forget_account`]) only frees
//! memory. A Redis restart (without persistence) logs everyone out.

use sqlx::Row;

use crate::Db;
use crate::ephemeral::Ephemeral;

/// Errors of the session store.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The database failed.
    #[error("database error")]
    Sqlx(#[from] sqlx::Error),
    /// Redis refused the command or could not be reached.
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
}

/// Result alias of the session store.
pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// A live session as the person's data export shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    /// When the person authenticated.
    pub auth_time: i64,
    /// When the session ends.
    pub expires_at: i64,
    /// When the session was opened.
    pub created_at: i64,
}

/// The session store: see the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Sessions {
    db: Db,
    redis: Option<(crate::redis_conn::RedisConn, String)>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = if self.redis.is_some() {
            "redis"
        } else {
            "database"
        };
        f.debug_struct("Sessions")
            .field("backend", &backend)
            .finish_non_exhaustive()
    }
}

/// A session as kept in Redis.
struct Stored {
    account_id: String,
    times: SessionTimes,
    epoch: i64,
}

impl Stored {
    fn encode(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.account_id,
            self.times.auth_time,
            self.times.expires_at,
            self.times.created_at,
            self.epoch
        )
    }

    fn decode(value: &str) -> Option<Self> {
        let mut parts = value.split('\n');
        let account_id = parts.next()?.to_owned();
        let mut number = || parts.next()?.parse::<i64>().ok();
        let (auth_time, expires_at, created_at, epoch) =
            (number()?, number()?, number()?, number()?);
        Some(Self {
            account_id,
            times: SessionTimes {
                auth_time,
                expires_at,
                created_at,
            },
            epoch,
        })
    }
}

/// A live session about to be ended by an account change, and the modules (client
/// ids, sorted) that logged in through it: what back-channel logout needs, read
/// before the change deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndingSession {
    /// The SHA-256 of the session's cookie.
    pub hash: String,
    /// The modules that logged in through it.
    pub clients: Vec<String>,
}

/// Told, after the commit of an account change that ended every session of an
/// account (a password reset or change, a suspension, a deletion…), which sessions
/// ended: the OpenID Connect provider sends their modules a back-channel logout.
/// The registry holds one; the provider implements it.
pub trait SessionsEnded: Send + Sync {
    /// `sessions` of `account_id` have ended. Must not block: work is spawned.
    fn sessions_ended(&self, account_id: &str, sessions: Vec<EndingSession>);
}

/// Ends every session of `account_id` when the caller's transaction commits: bumps
/// the account's epoch (sessions in Redis) and deletes its rows (sessions in the
/// database). Call [`Sessions::forget_account`] after the commit.
///
/// # Errors
/// The database failed.
pub async fn end_all_in(conn: &mut crate::AnyConnection, account_id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE accounts SET sessions_epoch = sessions_epoch + 1 WHERE id = $1")
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM sessions WHERE account_id = $1")
        .bind(account_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Redis milliseconds until `expires_at` (Unix seconds), at least one.
fn ttl_millis(expires_at: i64, now: i64) -> u64 {
    u64::try_from(expires_at.saturating_sub(now))
        .unwrap_or(0)
        .saturating_mul(1000)
        .max(1)
}

impl Sessions {
    /// Sessions in the database.
    #[must_use]
    pub fn database(db: Db) -> Self {
        Self { db, redis: None }
    }

    /// Sessions in Redis when `ephemeral` is shared through it, else in the database.
    /// The accounts (status and epoch) are always read from `db`.
    #[must_use]
    pub fn new(db: Db, ephemeral: &Ephemeral) -> Self {
        let redis = ephemeral
            .redis_handle()
            .map(|(conn, prefix)| (conn, prefix.to_owned()));
        Self { db, redis }
    }

    /// Whether sessions live in Redis.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    fn session_key(prefix: &str, hash: &str) -> String {
        format!("{prefix}session:{hash}")
    }

    fn clients_key(prefix: &str, hash: &str) -> String {
        format!("{prefix}session-clients:{hash}")
    }

    fn account_key(prefix: &str, account_id: &str) -> String {
        format!("{prefix}account-sessions:{account_id}")
    }

    async fn epoch(&self, account_id: &str, active_only: bool) -> Result<Option<i64>> {
        if !active_only {
            return Ok(account_epoch(&self.db, account_id).await?);
        }
        let row =
            sqlx::query("SELECT sessions_epoch FROM accounts WHERE id = $1 AND status = 'active'")
                .bind(account_id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|r| r.try_get("sessions_epoch")).transpose()?)
    }

    async fn stored(&self, hash: &str) -> Result<Option<Stored>> {
        let Some((conn, prefix)) = &self.redis else {
            return Ok(None);
        };
        let mut conn = conn.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(Self::session_key(prefix, hash))
            .query_async(&mut conn)
            .await?;
        Ok(value.as_deref().and_then(Stored::decode))
    }

    /// Opens the session `hash` (the SHA-256 of its cookie) for `account_id`, until
    /// `expires_at`. `epoch` is the account's `sessions_epoch` as the caller read it
    /// during this login, if it did (a session of Redis records it, read here
    /// otherwise; in the database the row is written only if the epoch still holds):
    /// if everything of the account ended since that reading, the session is born
    /// ended.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn open(
        &self,
        hash: &str,
        account_id: &str,
        auth_time: i64,
        expires_at: i64,
        now: i64,
        epoch: Option<i64>,
    ) -> Result<()> {
        let Some((conn, prefix)) = &self.redis else {
            // With the epoch the login read, the row is written only if nothing ended
            // everything of the account since: as in Redis, the session is then born
            // ended. On PostgreSQL the account's row is locked for share: an ending
            // in progress (`end_all_in` bumps the epoch, then deletes the sessions)
            // holds it, so the insert waits for its commit and sees the new epoch,
            // rather than slipping in between its bump and its delete's snapshot.
            let sql = match (epoch.is_some(), self.db.backend()) {
                (true, crate::Backend::Postgres) => {
                    "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) \
                     SELECT $1, $2, $3, $4, $5 FROM accounts WHERE id = $2 AND sessions_epoch = $6 \
                     FOR SHARE"
                }
                // SQLite serialises writers: the ending commits wholly before or after.
                (true, crate::Backend::Sqlite) => {
                    "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) \
                     SELECT $1, $2, $3, $4, $5 FROM accounts WHERE id = $2 AND sessions_epoch = $6"
                }
                (false, _) => {
                    "INSERT INTO sessions (id_hash, account_id, auth_time, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5)"
                }
            };
            let mut query = sqlx::query(sql)
                .bind(hash)
                .bind(account_id)
                .bind(auth_time)
                .bind(expires_at)
                .bind(now);
            if let Some(epoch) = epoch {
                query = query.bind(epoch);
            }
            query.execute(self.db.pool()).await?;
            return Ok(());
        };
        // Read before writing: a reset committed in between bumps the epoch, so this
        // session is born already ended.
        let epoch = match epoch {
            Some(e) => e,
            None => self
                .epoch(account_id, false)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?,
        };
        let stored = Stored {
            account_id: account_id.to_owned(),
            times: SessionTimes {
                auth_time,
                expires_at,
                created_at: now,
            },
            epoch,
        };
        let millis = ttl_millis(expires_at, now);
        let account_key = Self::account_key(prefix, account_id);
        let mut conn = conn.clone();
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(Self::session_key(prefix, hash))
            .arg(stored.encode())
            .arg("PX")
            .arg(millis)
            .ignore()
            .sadd(&account_key, hash)
            .ignore()
            // Every session lasts as long, so the newest one sets the index's life.
            .cmd("PEXPIRE")
            .arg(&account_key)
            .arg(millis)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// The account and `auth_time` of the session `hash` if it is live, its account
    /// active, and no change ended the account's sessions since it was opened.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn get(&self, hash: &str, now: i64) -> Result<Option<(String, i64)>> {
        if self.redis.is_none() {
            let row = sqlx::query(
                "SELECT s.account_id, s.auth_time FROM sessions s JOIN accounts a ON a.id = s.account_id \
                 WHERE s.id_hash = $1 AND s.expires_at > $2 AND a.status = 'active'",
            )
            .bind(hash)
            .bind(now)
            .fetch_optional(self.db.pool())
            .await?;
            return Ok(row
                .map(|r| Ok::<_, sqlx::Error>((r.try_get("account_id")?, r.try_get("auth_time")?)))
                .transpose()?);
        }
        let Some(stored) = self.stored(hash).await? else {
            return Ok(None);
        };
        if stored.times.expires_at <= now {
            return Ok(None);
        }
        let live = self.epoch(&stored.account_id, true).await? == Some(stored.epoch);
        Ok(live.then_some((stored.account_id, stored.times.auth_time)))
    }

    /// The account of the session `hash`, even if it has expired or been ended by an
    /// account change. In Redis the entry lapses with the session, so logging out of
    /// an already expired session notifies no module there (the database keeps the
    /// row and does); keeping entries past expiry would cost memory for little.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn account(&self, hash: &str) -> Result<Option<String>> {
        if self.redis.is_none() {
            let row = sqlx::query("SELECT account_id FROM sessions WHERE id_hash = $1")
                .bind(hash)
                .fetch_optional(self.db.pool())
                .await?;
            return Ok(row.map(|r| r.try_get("account_id")).transpose()?);
        }
        Ok(self.stored(hash).await?.map(|s| s.account_id))
    }

    /// Records that `client_id` logged in through the session `hash`, for back-channel
    /// logout.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn remember_client(&self, hash: &str, client_id: &str, now: i64) -> Result<()> {
        let Some((conn, prefix)) = &self.redis else {
            sqlx::query(
                "INSERT INTO session_clients (session_hash, client_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (session_hash, client_id) DO NOTHING",
            )
            .bind(hash)
            .bind(client_id)
            .bind(now)
            .execute(self.db.pool())
            .await?;
            return Ok(());
        };
        let Some(stored) = self.stored(hash).await? else {
            return Ok(());
        };
        let key = Self::clients_key(prefix, hash);
        let mut conn = conn.clone();
        redis::pipe()
            .atomic()
            .sadd(&key, client_id)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_millis(stored.times.expires_at, now))
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// The clients that logged in through the session `hash`, sorted.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn clients(&self, hash: &str) -> Result<Vec<String>> {
        let Some((conn, prefix)) = &self.redis else {
            let rows = sqlx::query(
                "SELECT client_id FROM session_clients WHERE session_hash = $1 ORDER BY client_id",
            )
            .bind(hash)
            .fetch_all(self.db.pool())
            .await?;
            return Ok(rows
                .iter()
                .map(|r| r.try_get("client_id"))
                .collect::<sqlx::Result<_>>()?);
        };
        let mut conn = conn.clone();
        let mut clients: Vec<String> = redis::cmd("SMEMBERS")
            .arg(Self::clients_key(prefix, hash))
            .query_async(&mut conn)
            .await?;
        clients.sort();
        Ok(clients)
    }

    /// Moves the modules that logged in through the session `from` to the session
    /// `to` (opened by a new login of the same account in the same browser), then
    /// ends `from`: a logout of `to` then tells them too. The caller moves what else
    /// belongs to the session (its refresh-token families).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn carry_over(&self, from: &str, to: &str, now: i64) -> Result<()> {
        let Some((conn, prefix)) = &self.redis else {
            sqlx::query(
                "INSERT INTO session_clients (session_hash, client_id, created_at) \
                 SELECT $1, client_id, created_at FROM session_clients WHERE session_hash = $2 \
                 ON CONFLICT (session_hash, client_id) DO NOTHING",
            )
            .bind(to)
            .bind(from)
            .execute(self.db.pool())
            .await?;
            return self.close(from).await;
        };
        if let Some(stored) = self.stored(to).await? {
            let key = Self::clients_key(prefix, to);
            let mut conn = conn.clone();
            redis::pipe()
                .atomic()
                .cmd("SUNIONSTORE")
                .arg(&key)
                .arg(&key)
                .arg(Self::clients_key(prefix, from))
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(ttl_millis(stored.times.expires_at, now))
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
        }
        self.close(from).await
    }

    /// Ends the session `hash` and forgets its clients.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn close(&self, hash: &str) -> Result<()> {
        let Some((conn, prefix)) = &self.redis else {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(hash)
                .execute(self.db.pool())
                .await?;
            sqlx::query("DELETE FROM session_clients WHERE session_hash = $1")
                .bind(hash)
                .execute(self.db.pool())
                .await?;
            return Ok(());
        };
        let stored = self.stored(hash).await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(Self::session_key(prefix, hash))
            .ignore()
            .del(Self::clients_key(prefix, hash))
            .ignore();
        if let Some(stored) = stored {
            pipe.srem(Self::account_key(prefix, &stored.account_id), hash)
                .ignore();
        }
        let mut conn = conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The live sessions of `account_id`, oldest first, for the person's data export.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn of_account(&self, account_id: &str, now: i64) -> Result<Vec<SessionTimes>> {
        let Some((conn, prefix)) = &self.redis else {
            let rows = sqlx::query(
                "SELECT auth_time, expires_at, created_at FROM sessions \
                 WHERE account_id = $1 AND expires_at > $2 ORDER BY created_at",
            )
            .bind(account_id)
            .bind(now)
            .fetch_all(self.db.pool())
            .await?;
            return Ok(rows
                .iter()
                .map(|r| {
                    Ok(SessionTimes {
                        auth_time: r.try_get("auth_time")?,
                        expires_at: r.try_get("expires_at")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .collect::<sqlx::Result<_>>()?);
        };
        let mut out: Vec<SessionTimes> = self
            .live_in_redis(conn, prefix, account_id, now)
            .await?
            .into_iter()
            .map(|(_, s)| s.times)
            .collect();
        out.sort_by_key(|t| t.created_at);
        Ok(out)
    }

    /// The live sessions of `account_id` in Redis, with their hashes: of the
    /// account's current epoch, unexpired.
    async fn live_in_redis(
        &self,
        conn: &crate::redis_conn::RedisConn,
        prefix: &str,
        account_id: &str,
        now: i64,
    ) -> Result<Vec<(String, Stored)>> {
        let Some(epoch) = self.epoch(account_id, false).await? else {
            return Ok(Vec::new());
        };
        let mut conn = conn.clone();
        let hashes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(Self::account_key(prefix, account_id))
            .query_async(&mut conn)
            .await?;
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = hashes
            .iter()
            .map(|h| Self::session_key(prefix, h))
            .collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        Ok(hashes
            .into_iter()
            .zip(values)
            .filter_map(|(hash, v)| Some((hash, Stored::decode(v.as_deref()?)?)))
            .filter(|(_, s)| {
                s.account_id == account_id && s.epoch == epoch && s.times.expires_at > now
            })
            .collect())
    }

    /// The live sessions of `account_id` that used at least one module, with those
    /// modules: read before an account change ends them (see [`SessionsEnded`]).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn ending(&self, account_id: &str, now: i64) -> Result<Vec<EndingSession>> {
        let Some((conn, prefix)) = &self.redis else {
            let rows = sqlx::query(
                "SELECT s.id_hash, c.client_id FROM sessions s \
                 JOIN session_clients c ON c.session_hash = s.id_hash \
                 WHERE s.account_id = $1 AND s.expires_at > $2 ORDER BY s.id_hash, c.client_id",
            )
            .bind(account_id)
            .bind(now)
            .fetch_all(self.db.pool())
            .await?;
            let mut out: Vec<EndingSession> = Vec::new();
            for row in &rows {
                let hash: String = row.try_get("id_hash")?;
                let client: String = row.try_get("client_id")?;
                match out.last_mut() {
                    Some(last) if last.hash == hash => last.clients.push(client),
                    _ => out.push(EndingSession {
                        hash,
                        clients: vec![client],
                    }),
                }
            }
            return Ok(out);
        };
        let live = self.live_in_redis(conn, prefix, account_id, now).await?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (hash, _) in &live {
            pipe.cmd("SMEMBERS").arg(Self::clients_key(prefix, hash));
        }
        let mut conn = conn.clone();
        let clients: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        let mut out: Vec<EndingSession> = live
            .into_iter()
            .zip(clients)
            .filter(|(_, c)| !c.is_empty())
            .map(|((hash, _), mut clients)| {
                clients.sort();
                EndingSession { hash, clients }
            })
            .collect();
        out.sort_by(|a, b| a.hash.cmp(&b.hash));
        Ok(out)
    }

    /// Deletes from Redis the sessions of `account_id`, after a commit that ended them
    /// ([`end_all_in`]). They are already refused by then; this only frees the memory,
    /// so a failure is logged and otherwise ignored (the entries lapse with their TTL).
    pub async fn forget_account(&self, account_id: &str) {
        let Some((conn, prefix)) = &self.redis else {
            return;
        };
        let mut conn = conn.clone();
        let account_key = Self::account_key(prefix, account_id);
        let result = async {
            let hashes: Vec<String> = redis::cmd("SMEMBERS")
                .arg(&account_key)
                .query_async(&mut conn)
                .await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            for hash in &hashes {
                pipe.del(Self::session_key(prefix, hash))
                    .ignore()
                    .del(Self::clients_key(prefix, hash))
                    .ignore();
            }
            pipe.del(&account_key).ignore();
            pipe.query_async::<()>(&mut conn).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, %account_id, "could not delete the ended sessions from redis");
        }
    }
}

/// The account's `sessions_epoch`: it grows whenever everything the account is logged
/// in with ends (a reset, a password change, a suspension, a reactivation…). What
/// is on its way to a session or tokens (an authorization code, an approved device
/// code, a login waiting for its second step) records it, and is refused once it
/// changed. `None` for an unknown account.
///
/// # Errors
/// The database failed.
pub async fn account_epoch(db: &Db, account_id: &str) -> sqlx::Result<Option<i64>> {
    let row = sqlx::query("SELECT sessions_epoch FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| r.try_get("sessions_epoch")).transpose()
}
