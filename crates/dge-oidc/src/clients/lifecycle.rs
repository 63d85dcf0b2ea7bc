//! What happens to a client after registration: its fields changed, its secret
//! replaced, its removal. Each change is one transaction with its audit row, then
//! drops the cached answers of every replica ([`Db::access_changed`]), so that the
//! change holds at once at `/token`, `/introspect`, `/revoke` and `Check`.

use dge_core::token::{hash_token, random_token};
use dge_store::Db;

use super::{Client, ClientSettings, check_name, check_settings, check_uris, find, normalize_jwks};

/// Audit action of [`update`].
pub const UPDATED: &str = "client.updated";
/// Audit action of [`rotate_secret`].
pub const SECRET_ROTATED: &str = "client.secret_rotated";
/// Audit action of [`remove`].
pub const REMOVED: &str = "client.removed";

/// The fields of a client to change; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges {
    /// Display name; empty: the client id.
    pub name: Option<String>,
    /// Exact redirect URIs, replacing the stored ones.
    pub redirect_uris: Option<Vec<String>>,
    /// Exact post-logout redirect URIs, replacing the stored ones.
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Whether consent is skipped.
    pub first_party: Option<bool>,
    /// Scopes of `client_credentials`, replacing the stored ones.
    pub service_scopes: Option<Vec<String>>,
    /// Whether `/userinfo` answers with a signed JWT.
    pub userinfo_signed: Option<bool>,
    /// `ES256` or `RS256`.
    pub id_token_alg: Option<String>,
    /// `Some(None)` removes the back-channel logout URI.
    pub backchannel_logout_uri: Option<Option<String>>,
    /// `Some(None)` removes the keys of `private_key_jwt`.
    pub jwks: Option<Option<String>>,
}

impl ClientChanges {
    /// The names of the fields given, for the audit log and the journal.
    #[must_use]
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("redirect_uris", self.redirect_uris.is_some()),
            (
                "post_logout_redirect_uris",
                self.post_logout_redirect_uris.is_some(),
            ),
            ("first_party", self.first_party.is_some()),
            ("service_scopes", self.service_scopes.is_some()),
            ("userinfo_signed", self.userinfo_signed.is_some()),
            ("id_token_alg", self.id_token_alg.is_some()),
            (
                "backchannel_logout_uri",
                self.backchannel_logout_uri.is_some(),
            ),
            ("jwks", self.jwks.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// The rules of registration, for the fields given: every broken one at once.
    fn check(&self) -> dge_core::Violations {
        let mut v = dge_core::Violations::new();
        if self.fields().is_empty() {
            // An update that changes nothing would still be audited as one.
            v.add(
                "client",
                "nothing_to_change",
                "aucune modification demandée",
            );
        }
        if let Some(name) = &self.name {
            check_name(&mut v, name);
        }
        if let Some(uris) = &self.redirect_uris {
            check_uris(&mut v, "redirect_uris", uris);
        }
        if let Some(uris) = &self.post_logout_redirect_uris {
            check_uris(&mut v, "post_logout_redirect_uris", uris);
        }
        // Each setting is checked on its own: the ones not given stand in as valid.
        let given = ClientSettings {
            service_scopes: self.service_scopes.clone().unwrap_or_default(),
            userinfo_signed: false,
            id_token_alg: self.id_token_alg.clone().unwrap_or_else(|| "ES256".into()),
            backchannel_logout_uri: self.backchannel_logout_uri.clone().flatten(),
            jwks: self.jwks.clone().flatten(),
        };
        v.extend(check_settings(&given));
        v
    }
}

/// Why a client cannot be changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// Bad fields.
    #[error("invalid client")]
    Invalid(dge_core::Violations),
    /// No client has this id.
    #[error("no such client")]
    NotFound,
    /// A public client has no secret to rotate.
    #[error("public client")]
    Public,
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
}

fn json_list(uris: &[String]) -> String {
    serde_json::to_string(uris).unwrap_or_else(|_| "[]".into())
}

/// Changes the fields given of client `id` in one statement, recorded in the audit
/// log as done by `actor`. Returns the client as stored after.
///
/// # Errors
/// [`ChangeError::Invalid`] (checked first), [`ChangeError::NotFound`], storage errors.
pub async fn update(
    db: &Db,
    id: &str,
    changes: &ClientChanges,
    actor: &str,
    now: i64,
) -> Result<Client, ChangeError> {
    changes
        .check()
        .into_result()
        .map_err(ChangeError::Invalid)?;
    let name = changes.name.as_deref().map(|n| match n.trim() {
        "" => id.to_owned(),
        n => n.to_owned(),
    });
    // check() accepted it: normalising cannot fail here.
    let jwks = changes
        .jwks
        .as_ref()
        .map(|j| j.as_deref().and_then(|j| normalize_jwks(j).ok()));
    let mut tx = db.begin().await?;
    // A web client (with redirect URIs) does not become a device client (without),
    // nor the reverse: the device-only first-party clients are the administration
    // clients whose tokens carry administrator power (`is_admin_client`), so a
    // module turned into one would lend that power to the tokens it already holds.
    if let Some(uris) = &changes.redirect_uris {
        let current: Option<String> =
            sqlx::query_scalar("SELECT redirect_uris FROM oidc_clients WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(current) = current else {
            return Err(ChangeError::NotFound);
        };
        let device_now = current == "[]";
        if device_now != uris.is_empty() {
            let mut v = dge_core::Violations::new();
            v.add(
                "redirect_uris",
                "kind_change",
                if device_now {
                    "un client d'appareil (dgectl login) ne reçoit pas d'adresse de retour : \
                     enregistrez un autre client pour le web"
                } else {
                    "un client web garde au moins une adresse de retour : pour un client \
                     d'appareil, enregistrez-en un autre (clients add --device)"
                },
            );
            return Err(ChangeError::Invalid(v));
        }
    }
    let updated = sqlx::query(
        "UPDATE oidc_clients SET name = COALESCE($1, name), \
         redirect_uris = COALESCE($2, redirect_uris), \
         post_logout_redirect_uris = COALESCE($3, post_logout_redirect_uris), \
         first_party = COALESCE($4, first_party), \
         service_scopes = COALESCE($5, service_scopes), \
         userinfo_signed = COALESCE($6, userinfo_signed), \
         id_token_alg = COALESCE($7, id_token_alg), \
         backchannel_logout_uri = CASE WHEN $8 = 1 THEN $9 ELSE backchannel_logout_uri END, \
         jwks = CASE WHEN $10 = 1 THEN $11 ELSE jwks END, \
         updated_at = $12 WHERE id = $13",
    )
    .bind(name)
    .bind(changes.redirect_uris.as_deref().map(json_list))
    .bind(changes.post_logout_redirect_uris.as_deref().map(json_list))
    .bind(changes.first_party.map(i64::from))
    .bind(changes.service_scopes.as_ref().map(|s| s.join(" ")))
    .bind(changes.userinfo_signed.map(i64::from))
    .bind(changes.id_token_alg.clone())
    .bind(i64::from(changes.backchannel_logout_uri.is_some()))
    .bind(changes.backchannel_logout_uri.clone().flatten())
    .bind(i64::from(jwks.is_some()))
    .bind(jwks.flatten())
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(ChangeError::NotFound);
    }
    let detail = changes.fields().join(",");
    dge_store::audit(&mut tx, actor, UPDATED, id, &detail, now).await?;
    tx.commit().await?;
    db.access_changed().await;
    find(db, id).await?.ok_or(ChangeError::NotFound)
}

/// Gives confidential client `id` a new random secret, kept hashed, and returns it
/// (shown once). The old secret is refused from the commit on.
///
/// # Errors
/// [`ChangeError::NotFound`], [`ChangeError::Public`], storage errors.
pub async fn rotate_secret(
    db: &Db,
    id: &str,
    actor: &str,
    now: i64,
) -> Result<String, ChangeError> {
    let secret = random_token();
    let mut tx = db.begin().await?;
    let updated = sqlx::query(
        "UPDATE oidc_clients SET secret_hash = $1, updated_at = $2 \
         WHERE id = $3 AND confidential = 1",
    )
    .bind(hash_token(&secret))
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        let exists = sqlx::query("SELECT 1 AS one FROM oidc_clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        return Err(if exists {
            ChangeError::Public
        } else {
            ChangeError::NotFound
        });
    }
    dge_store::audit(&mut tx, actor, SECRET_ROTATED, id, "", now).await?;
    tx.commit().await?;
    db.access_changed().await;
    Ok(secret)
}

/// What a removal ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Access tokens revoked (their rows are kept, revoked, until they expire, so that
    /// a client registered later under the same id does not revive them).
    pub access_tokens: u64,
    /// Refresh tokens deleted.
    pub refresh_tokens: u64,
    /// Consents deleted.
    pub consents: u64,
}

/// Removes client `id` and ends, in the same transaction, everything it was given:
/// its access tokens are revoked; its refresh tokens, consents, pending authorization
/// requests, session records (back-channel logout) and used assertions are deleted.
/// The foreign keys would cascade most of these; they are deleted by name so that the
/// counts can be reported and so that tables without a foreign key are not forgotten.
///
/// # Errors
/// [`ChangeError::NotFound`], storage errors.
pub async fn remove(db: &Db, id: &str, actor: &str, now: i64) -> Result<Removed, ChangeError> {
    let mut tx = db.begin().await?;
    let access = sqlx::query(
        "UPDATE issued_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let mut deleted = Vec::new();
    for table in [
        "refresh_tokens",
        "consents",
        "auth_requests",
        "session_clients",
        "client_assertions",
    ] {
        let n = sqlx::query(&format!("DELETE FROM {table} WHERE client_id = $1"))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        deleted.push(n);
    }
    let gone = sqlx::query("DELETE FROM oidc_clients WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if gone.rows_affected() == 0 {
        return Err(ChangeError::NotFound);
    }
    // Logouts still waiting for this module end here: a module registered later
    // under the same id must not be told of sessions it never had.
    sqlx::query(
        "UPDATE backchannel_logouts SET status = 'failed', lease_id = NULL, \
         last_error = 'the client was removed', updated_at = $1 \
         WHERE client_id = $2 AND status = 'queued'",
    )
    .bind(now)
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let removed = Removed {
        access_tokens: access,
        refresh_tokens: deleted.first().copied().unwrap_or(0),
        consents: deleted.get(1).copied().unwrap_or(0),
    };
    let detail = format!(
        "access_tokens_revoked={} refresh_tokens_deleted={} consents_deleted={}",
        removed.access_tokens, removed.refresh_tokens, removed.consents
    );
    dge_store::audit(&mut tx, actor, REMOVED, id, &detail, now).await?;
    tx.commit().await?;
    db.access_changed().await;
    Ok(removed)
}
