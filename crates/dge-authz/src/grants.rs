//! What was issued, and whether it still holds: access tokens (by `jti`), refresh
//! tokens (by digest, grouped in families), introspection (RFC 7662) and
//! revocation (RFC 7009), shared by the HTTP endpoints and the gRPC service.
//!
//! A family is every access and refresh token that descends from one
//! authorization code through refresh-token rotation. Presenting a refresh token
//! that was already rotated, or a code already exchanged, revokes its family.

use dge_core::token::{hash_token, random_token};
use dge_store::Db;
use dge_store::grouped::{Arg, Statement};
use dge_store::sessions::{SessionError, Sessions};
use sqlx::Row;

use crate::Keys;

/// Prefix of refresh tokens, so they are told apart from JWT access tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "dgert_";

/// An access token to record, so it can be revoked.
#[derive(Debug, Clone)]
pub struct IssuedAccess<'a> {
    /// The token's `jti`.
    pub jti: &'a str,
    /// The code it descends from.
    pub code_hash: Option<&'a str>,
    /// Its family.
    pub family_id: Option<&'a str>,
    /// The client it was issued to.
    pub client_id: &'a str,
    /// The person, or `None` for `client_credentials`.
    pub account_id: Option<&'a str>,
    /// Expiry.
    pub expires_at: i64,
}

/// Records an issued access token.
///
/// # Errors
/// Fails when the database fails.
pub async fn record_access(db: &Db, t: &IssuedAccess<'_>, now: i64) -> sqlx::Result<()> {
    // Grouped with the other issuances of the moment: one commit for many tokens.
    db.execute_grouped(access_statement(t, now)).await
}

/// The row [`record_access`] writes, for a caller that commits it with rows of its
/// own ([`Db::execute_grouped_all`]).
#[must_use]
pub fn access_statement(t: &IssuedAccess<'_>, now: i64) -> Statement {
    let text = |v: Option<&str>| Arg::Text(v.map(str::to_owned));
    Statement {
        sql: "INSERT INTO issued_tokens (jti, code_hash, family_id, client_id, account_id, \
              expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args: vec![
            text(Some(t.jti)),
            text(t.code_hash),
            text(t.family_id),
            text(Some(t.client_id)),
            text(t.account_id),
            Arg::Int(Some(t.expires_at)),
            Arg::Int(Some(now)),
        ],
    }
}

/// A stored refresh token.
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// Digest of the token.
    pub token_hash: String,
    /// Its family.
    pub family_id: String,
    /// The code the family descends from.
    pub code_hash: Option<String>,
    /// The client it was issued to.
    pub client_id: String,
    /// The person.
    pub account_id: String,
    /// Digest of the SSO session it came from.
    pub session_hash: Option<String>,
    /// Granted scopes.
    pub scope: String,
    /// When the person authenticated.
    pub auth_time: i64,
    /// Expiry.
    pub expires_at: i64,
    /// When it was rotated.
    pub used_at: Option<i64>,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// When it was issued.
    pub created_at: i64,
}

impl RefreshToken {
    /// Whether it can be used at `now`: not rotated, not revoked, not expired.
    #[must_use]
    pub fn usable(&self, now: i64) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }

    /// Whether the session it came from still holds it. Without `offline_access` a
    /// refresh token lasts as long as that session (OIDC Core §11): once it has expired
    /// or been closed, the token is refused by the refresh grant and inactive to
    /// introspection alike. With it, the token outlives the session's hours, up to its
    /// own 30 days (a logout still revokes it).
    ///
    /// # Errors
    /// The session store failed.
    pub async fn session_holds(&self, sessions: &Sessions, now: i64) -> Result<bool, SessionError> {
        if self.scope.split(' ').any(|s| s == "offline_access") {
            return Ok(true);
        }
        let Some(session) = self.session_hash.as_deref() else {
            return Ok(true);
        };
        let live = sessions.get(session, now).await?;
        Ok(live.is_some_and(|(account_id, _)| account_id == self.account_id))
    }
}

/// A refresh token to issue.
#[derive(Debug, Clone)]
pub struct NewRefresh<'a> {
    /// Its family (a new id for a code exchange, the parent's on rotation).
    pub family_id: &'a str,
    /// The code the family descends from.
    pub code_hash: Option<&'a str>,
    /// The client.
    pub client_id: &'a str,
    /// The person.
    pub account_id: &'a str,
    /// Digest of the SSO session.
    pub session_hash: Option<&'a str>,
    /// Granted scopes.
    pub scope: &'a str,
    /// When the person authenticated.
    pub auth_time: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// Issues a refresh token; returns it once and keeps its digest.
///
/// # Errors
/// Fails when the database fails.
pub async fn issue_refresh(db: &Db, r: &NewRefresh<'_>, now: i64) -> sqlx::Result<String> {
    let (token, row) = refresh_statement(r, now);
    db.execute_grouped(row).await?;
    Ok(token)
}

/// A new refresh token and the row [`issue_refresh`] writes for it, for a caller that
/// commits it with rows of its own ([`Db::execute_grouped_all`]): the token must not
/// leave before.
#[must_use]
pub fn refresh_statement(r: &NewRefresh<'_>, now: i64) -> (String, Statement) {
    let token = format!("{REFRESH_TOKEN_PREFIX}{}", random_token());
    let text = |v: Option<&str>| Arg::Text(v.map(str::to_owned));
    let row = Statement {
        sql: "INSERT INTO refresh_tokens (token_hash, family_id, code_hash, client_id, account_id, \
              session_hash, scope, auth_time, expires_at, created_at) \
              VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        args: vec![
            text(Some(&hash_token(&token))),
            text(Some(r.family_id)),
            text(r.code_hash),
            text(Some(r.client_id)),
            text(Some(r.account_id)),
            text(r.session_hash),
            text(Some(r.scope)),
            Arg::Int(Some(r.auth_time)),
            Arg::Int(Some(r.expires_at)),
            Arg::Int(Some(now)),
        ],
    };
    (token, row)
}

/// The refresh token `token`, whatever its state.
///
/// # Errors
/// Fails when the database fails.
pub async fn find_refresh(db: &Db, token: &str) -> sqlx::Result<Option<RefreshToken>> {
    let row = sqlx::query(
        "SELECT token_hash, family_id, code_hash, client_id, account_id, session_hash, scope, \
         auth_time, expires_at, used_at, revoked_at, created_at \
         FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(hash_token(token))
    .fetch_optional(db.pool())
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(RefreshToken {
        token_hash: r.try_get("token_hash")?,
        family_id: r.try_get("family_id")?,
        code_hash: r.try_get("code_hash")?,
        client_id: r.try_get("client_id")?,
        account_id: r.try_get("account_id")?,
        session_hash: r.try_get("session_hash")?,
        scope: r.try_get("scope")?,
        auth_time: r.try_get("auth_time")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        revoked_at: r.try_get("revoked_at")?,
        created_at: r.try_get("created_at")?,
    }))
}

/// Marks a refresh token as rotated. Only one concurrent caller wins.
///
/// # Errors
/// Fails when the database fails.
pub async fn consume_refresh(db: &Db, token_hash: &str, now: i64) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 \
         WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(token_hash)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Revokes every access and refresh token of a family.
///
/// # Errors
/// Fails when the database fails.
pub async fn revoke_family(db: &Db, family_id: &str, now: i64) -> sqlx::Result<u64> {
    let refresh = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family_id)
    .execute(db.pool())
    .await?;
    let access = sqlx::query(
        "UPDATE issued_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(family_id)
    .execute(db.pool())
    .await?;
    let revoked = refresh.rows_affected() + access.rows_affected();
    if revoked > 0 {
        db.access_changed().await;
    }
    Ok(revoked)
}

/// Revokes every token issued from a code.
///
/// # Errors
/// Fails when the database fails.
pub async fn revoke_code(db: &Db, code_hash: &str, now: i64) -> sqlx::Result<u64> {
    let refresh = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $1 WHERE code_hash = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(code_hash)
    .execute(db.pool())
    .await?;
    let access = sqlx::query(
        "UPDATE issued_tokens SET revoked_at = $1 WHERE code_hash = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(code_hash)
    .execute(db.pool())
    .await?;
    let revoked = refresh.rows_affected() + access.rows_affected();
    if revoked > 0 {
        db.access_changed().await;
    }
    Ok(revoked)
}

/// Revokes one access token.
///
/// # Errors
/// Fails when the database fails.
pub async fn revoke_access(db: &Db, jti: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE issued_tokens SET revoked_at = $1 WHERE jti = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(jti)
        .execute(db.pool())
        .await?;
    db.access_changed().await;
    Ok(())
}

/// The kind of an active token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A JWT access token.
    Access,
    /// An opaque refresh token.
    Refresh,
}

/// What introspection says about an active token (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Access or refresh token.
    pub kind: TokenKind,
    /// The client it was issued to.
    pub client_id: String,
    /// The account, or the client itself for `client_credentials`.
    pub sub: String,
    /// Whether the subject is a person (not a service).
    pub person: bool,
    /// Granted scopes.
    pub scope: String,
    /// Issued at.
    pub iat: i64,
    /// Expiry.
    pub exp: i64,
    /// The access token's `jti`.
    pub jti: Option<String>,
    /// The family, for revocation.
    pub family_id: Option<String>,
}

/// Inspects a token: `Some` only when it is one of ours, valid, unexpired and not
/// revoked, and its account (if any) is still active; a refresh token without
/// `offline_access` also needs its session open, as the refresh grant does.
/// Tokens signed with `none`, HMAC or an unknown key are inactive (verification
/// accepts ES256 keys only).
///
/// # Errors
/// Fails when the database or the session store fails.
pub async fn inspect(
    db: &Db,
    sessions: &Sessions,
    keys: &Keys,
    issuer: &str,
    now: i64,
    token: &str,
) -> Result<Option<TokenInfo>, SessionError> {
    let token = token.trim();
    if token.starts_with(REFRESH_TOKEN_PREFIX) {
        return inspect_refresh(db, sessions, now, token).await;
    }
    let Ok(claims) = keys.verify_access_token(token, issuer, now) else {
        return Ok(None);
    };
    // The token's row and its account's status in one round trip: introspection is
    // on the path of the modules that do not verify tokens themselves.
    let row = sqlx::query(
        "SELECT t.account_id, t.family_id, t.revoked_at, a.status AS account_status \
         FROM issued_tokens t LEFT JOIN accounts a ON a.id = t.account_id \
         WHERE t.jti = $1 AND t.client_id = $2",
    )
    .bind(&claims.jti)
    .bind(&claims.client_id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let revoked: Option<i64> = row.try_get("revoked_at")?;
    let account: Option<String> = row.try_get("account_id")?;
    let status: Option<String> = row.try_get("account_status")?;
    if revoked.is_some() {
        return Ok(None);
    }
    // A person's token (a service's has no account) needs the account active; an
    // account gone (no row) is not.
    if account.is_some() && status.as_deref() != Some("active") {
        return Ok(None);
    }
    Ok(Some(TokenInfo {
        kind: TokenKind::Access,
        client_id: claims.client_id,
        sub: claims.sub,
        person: account.is_some(),
        scope: claims.scope,
        iat: claims.iat,
        exp: claims.exp,
        jti: Some(claims.jti),
        family_id: row.try_get("family_id")?,
    }))
}

async fn inspect_refresh(
    db: &Db,
    sessions: &Sessions,
    now: i64,
    token: &str,
) -> Result<Option<TokenInfo>, SessionError> {
    let Some(r) = find_refresh(db, token).await? else {
        return Ok(None);
    };
    if !r.usable(now)
        || !account_active(db, &r.account_id).await?
        || !r.session_holds(sessions, now).await?
    {
        return Ok(None);
    }
    Ok(Some(TokenInfo {
        kind: TokenKind::Refresh,
        client_id: r.client_id,
        sub: r.account_id,
        person: true,
        scope: r.scope,
        iat: r.created_at,
        exp: r.expires_at,
        jti: None,
        family_id: Some(r.family_id),
    }))
}

/// Whether an account exists and is active.
///
/// # Errors
/// Fails when the database fails.
pub async fn account_active(db: &Db, account_id: &str) -> sqlx::Result<bool> {
    let row = sqlx::query("SELECT 1 AS ok FROM accounts WHERE id = $1 AND status = 'active'")
        .bind(account_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}

/// Revokes an inspected token: an access token alone, or a refresh token with its
/// whole family (RFC 7009 §2.1: the access tokens of the same grant go too).
///
/// # Errors
/// Fails when the database fails.
pub async fn revoke(db: &Db, info: &TokenInfo, now: i64) -> sqlx::Result<()> {
    match (info.kind, info.family_id.as_deref(), info.jti.as_deref()) {
        (TokenKind::Refresh, Some(family), _) => {
            revoke_family(db, family, now).await?;
        }
        (_, _, Some(jti)) => revoke_access(db, jti, now).await?,
        _ => {}
    }
    Ok(())
}
