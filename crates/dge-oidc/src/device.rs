//! The device authorization grant (RFC 8628), for `dgectl login` and other tools
//! without a browser of their own.
//!
//! 1. The tool posts to `/device_authorization` and gets a device code (kept by the
//!    tool) and a short user code (typed by the person).
//! 2. The person, signed in on `/device`, types the user code, sees which client
//!    asks for which scopes, and approves or refuses.
//! 3. The tool polls `/token` with the device code until the answer comes.
//!
//! Everything lives in the shared short-lived store (Redis when replicas run), so any
//! replica can answer any step. Codes are kept only as digests; the device code is
//! taken atomically, so it yields tokens exactly once.
//!
//! Only clients registered without redirect URIs (native tools such as `dgectl`) may
//! use this grant: a web client's name must not be borrowed to phish a user code.

use dge_core::token::{hash_token, random_token};
use dge_store::ephemeral::Ephemeral;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::clients::Client;
use crate::token::mint::Lineage;
use crate::token::{Grant, OAuthError, TokenForm, oauth};
use crate::{Provider, Result};

/// The grant type polled at the token endpoint.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Letters of user codes: consonants only, no look-alikes (RFC 8628 §6.1), so a code
/// cannot spell a word nor be misread.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code (20^8, about 34 bits, with attempts throttled).
const USER_CODE_LEN: usize = 8;
/// How long a person has to type the code, by default.
pub const DEVICE_TTL_SECS: i64 = 600;
/// Seconds a tool waits between two polls.
pub const POLL_INTERVAL_SECS: i64 = 5;
/// A record outlives its expiry this long, so a late poll hears `expired_token`.
const GRACE_SECS: i64 = 300;
/// Wrong user codes a person may type per window before being told to wait.
pub const MAX_WRONG_CODES: u64 = 10;
/// The window of [`MAX_WRONG_CODES`].
const WRONG_CODES_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Scopes a device may ask for.
const DEVICE_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// Where a device authorization stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
enum State {
    Pending,
    Approved {
        account_id: String,
        auth_time: i64,
        /// The account's `sessions_epoch` at approval (see [`dge_store::sessions::account_epoch`]).
        #[serde(default)]
        epoch: Option<i64>,
        /// Digest of the session the person approved in: the tokens belong to it, so
        /// that its logout ends them, and without `offline_access` its end too.
        #[serde(default)]
        session_hash: Option<String>,
    },
    Denied,
}

/// A device authorization as kept in the shared store, under the device code's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    client_id: String,
    /// The client's registration (see `Client::registration`); `None`: stored before.
    #[serde(default)]
    registration: Option<String>,
    scope: String,
    expires_at: i64,
    #[serde(flatten)]
    state: State,
}

/// The answer of the device authorization endpoint (RFC 8628 §3.2). Not `Debug`: it
/// carries the device code.
#[derive(Serialize)]
pub struct DeviceAuthorization {
    /// Kept by the tool, sent when polling.
    pub device_code: String,
    /// Typed by the person (`XXXX-XXXX`).
    pub user_code: String,
    /// Where the person types it.
    pub verification_uri: String,
    /// The same page with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until both codes expire.
    pub expires_in: i64,
    /// Seconds between polls.
    pub interval: i64,
}

/// What the person is asked to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// The user code, formatted `XXXX-XXXX`.
    pub user_code: String,
    /// The client's display name.
    pub client_name: String,
    /// The client's id.
    pub client_id: String,
    /// Scopes asked for.
    pub scopes: Vec<String>,
}

/// The outcome of looking up a typed user code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A pending request.
    Found(DeviceRequest),
    /// Unknown, expired or already answered.
    Unknown,
    /// Too many wrong codes lately: wait.
    Throttled,
}

/// A new user code, formatted `XXXX-XXXX`.
fn new_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let letters: String = (0..USER_CODE_LEN)
        .map(|_| char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]))
        .collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

/// The canonical form of a typed user code (case, spaces and dashes ignored), or
/// `None` when it cannot be one.
#[must_use]
pub fn normalise_user_code(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let valid =
        letters.len() == USER_CODE_LEN && letters.bytes().all(|b| USER_CODE_ALPHABET.contains(&b));
    valid.then(|| format!("{}-{}", &letters[..4], &letters[4..]))
}

fn record_key(device_hash: &str) -> String {
    format!("device:{device_hash}")
}

fn user_key(user_code: &str) -> String {
    format!("device-user:{}", hash_token(user_code))
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(1).unsigned_abs())
}

fn bad_device_code() -> OAuthError {
    oauth(
        "invalid_grant",
        "the device code is invalid, used, or was issued to another client",
    )
}

impl Provider {
    /// The shared store of device codes.
    fn devices(&self) -> &Ephemeral {
        &self.ephemeral
    }

    /// Starts a device authorization for `client` (RFC 8628 §3.1, §3.2).
    ///
    /// # Errors
    /// Shared-store errors; protocol errors are `Ok(Err(_))`.
    pub async fn device_authorize(
        &self,
        client: &Client,
        scope: Option<&str>,
    ) -> Result<Result<DeviceAuthorization, OAuthError>> {
        if !client.redirect_uris.is_empty() {
            return Ok(Err(oauth(
                "unauthorized_client",
                "only clients registered without redirect URIs may use the device grant",
            )));
        }
        let scope = scope
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("openid");
        let asked: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        if !asked.contains(&"openid") || !asked.iter().all(|s| DEVICE_SCOPES.contains(s)) {
            return Ok(Err(oauth(
                "invalid_scope",
                "scope must include openid and only openid, profile, email, offline_access",
            )));
        }
        let ttl = self.settings.device_code_ttl_secs;
        let device_code = random_token();
        let user_code = new_user_code();
        let device_hash = hash_token(&device_code);
        let record = Record {
            client_id: client.id.clone(),
            registration: Some(client.registration.clone()),
            scope: asked.join(" "),
            expires_at: self.now() + ttl,
            state: State::Pending,
        };
        let body = serde_json::to_string(&record).unwrap_or_default();
        let store = self.devices();
        store
            .put(&record_key(&device_hash), &body, secs(ttl + GRACE_SECS))
            .await?;
        store
            .put(&user_key(&user_code), &device_hash, secs(ttl))
            .await?;
        tracing::info!(client_id = %client.id, "device authorization started");
        let verification_uri = format!("{}/device", self.issuer());
        Ok(Ok(DeviceAuthorization {
            verification_uri_complete: format!("{verification_uri}?user_code={user_code}"),
            verification_uri,
            device_code,
            user_code,
            expires_in: ttl,
            interval: POLL_INTERVAL_SECS,
        }))
    }

    /// The pending record behind a user code.
    async fn pending_by_user_code(&self, user_code: &str) -> Result<Option<(String, Record)>> {
        let store = self.devices();
        let Some(device_hash) = store.get(&user_key(user_code)).await? else {
            return Ok(None);
        };
        let Some(body) = store.get(&record_key(&device_hash)).await? else {
            return Ok(None);
        };
        let record = serde_json::from_str::<Record>(&body)
            .ok()
            .filter(|r| r.state == State::Pending && r.expires_at > self.now());
        Ok(record.map(|r| (device_hash, r)))
    }

    /// Looks up a user code typed by `account_id`. Wrong codes count against the
    /// person: after [`MAX_WRONG_CODES`] in 15 minutes, every code is refused for a while.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn device_lookup(&self, typed: &str, account_id: &str) -> Result<Lookup> {
        let tries_key = format!("device-tries:{account_id}");
        let store = self.devices();
        let wrong = store
            .get(&tries_key)
            .await?
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if wrong >= MAX_WRONG_CODES {
            return Ok(Lookup::Throttled);
        }
        let found = match normalise_user_code(typed) {
            Some(code) => self
                .pending_by_user_code(&code)
                .await?
                .map(|(_, r)| (code, r)),
            None => None,
        };
        let Some((user_code, record)) = found else {
            store.hit(&tries_key, WRONG_CODES_WINDOW).await?;
            tracing::warn!(account_id = %account_id, "wrong device user code");
            return Ok(Lookup::Unknown);
        };
        // A client removed since, or registered again under the same id, is not the
        // one that asked: its code is nobody's to approve.
        let client = crate::clients::find(&self.db, &record.client_id)
            .await?
            .filter(|c| {
                record
                    .registration
                    .as_ref()
                    .is_none_or(|reg| *reg == c.registration)
            });
        let Some(client) = client else {
            return Ok(Lookup::Unknown);
        };
        Ok(Lookup::Found(DeviceRequest {
            user_code,
            client_name: client.name,
            client_id: client.id,
            scopes: record.scope.split(' ').map(str::to_owned).collect(),
        }))
    }

    /// Records the person's answer to a user code, given in the session of
    /// `session_cookie`. `Ok(None)` when the code is unknown, expired, already
    /// answered, or the person is throttled.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn device_decide(
        &self,
        typed: &str,
        session_cookie: &str,
        account_id: &str,
        auth_time: i64,
        approve: bool,
    ) -> Result<Option<DeviceRequest>> {
        let Lookup::Found(request) = self.device_lookup(typed, account_id).await? else {
            return Ok(None);
        };
        let Some((device_hash, mut record)) = self.pending_by_user_code(&request.user_code).await?
        else {
            return Ok(None);
        };
        // The user code is spent: whatever the answer, it cannot be typed again.
        let store = self.devices();
        store.forget(&user_key(&request.user_code)).await?;
        record.state = if approve {
            State::Approved {
                account_id: account_id.to_owned(),
                auth_time,
                epoch: dge_store::sessions::account_epoch(&self.db, account_id).await?,
                session_hash: Some(hash_token(session_cookie)),
            }
        } else {
            State::Denied
        };
        let ttl = record.expires_at + GRACE_SECS - self.now();
        let body = serde_json::to_string(&record).unwrap_or_default();
        store
            .put(&record_key(&device_hash), &body, secs(ttl))
            .await?;
        let (action, outcome) = if approve {
            ("device.approved", "approved")
        } else {
            ("device.denied", "denied")
        };
        tracing::info!(client_id = %record.client_id, account_id = %account_id, outcome, "device authorization answered");
        let mut conn = self.db.pool().acquire().await?;
        let actor = format!("account:{account_id}");
        dge_store::audit(
            &mut conn,
            &actor,
            action,
            account_id,
            &record.client_id,
            self.now(),
        )
        .await?;
        Ok(Some(request))
    }

    /// The device grant at the token endpoint (RFC 8628 §3.4, §3.5).
    pub(crate) async fn device_grant(&self, client: &Client, form: &TokenForm) -> Grant {
        let Some(code) = form.device_code.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(Err(oauth("invalid_request", "device_code is required")));
        };
        let device_hash = hash_token(code);
        let key = record_key(&device_hash);
        let store = self.devices();
        let record = store
            .get(&key)
            .await?
            .and_then(|body| serde_json::from_str::<Record>(&body).ok());
        let Some(record) = record.filter(|r| {
            r.client_id == client.id
                && r.registration
                    .as_ref()
                    .is_none_or(|reg| *reg == client.registration)
        }) else {
            return Ok(Err(bad_device_code()));
        };
        if record.expires_at <= self.now() {
            store.forget(&key).await?;
            return Ok(Err(oauth("expired_token", "the device code has expired")));
        }
        match record.state {
            State::Pending => {
                // One poll per interval: a second one within the window slows down.
                let polls = store
                    .hit(
                        &format!("device-poll:{device_hash}"),
                        secs(POLL_INTERVAL_SECS),
                    )
                    .await?;
                Ok(Err(if polls > 1 {
                    oauth("slow_down", "polling too fast: wait 5 more seconds")
                } else {
                    oauth("authorization_pending", "the person has not answered yet")
                }))
            }
            State::Denied => {
                store.forget(&key).await?;
                Ok(Err(oauth("access_denied", "the person refused")))
            }
            State::Approved { .. } => self.redeem_device_code(client, &key).await,
        }
    }

    /// Takes an approved device code (of concurrent polls, exactly one wins) and
    /// issues the person's tokens.
    async fn redeem_device_code(&self, client: &Client, key: &str) -> Grant {
        let taken = self
            .devices()
            .take(key)
            .await?
            .and_then(|body| serde_json::from_str::<Record>(&body).ok());
        let Some(Record {
            scope,
            state:
                State::Approved {
                    account_id,
                    auth_time,
                    epoch,
                    session_hash,
                },
            ..
        }) = taken
        else {
            return Ok(Err(bad_device_code()));
        };
        let account = dge_registry::store::find_account(&self.db, &account_id).await?;
        let Some(account) = account.filter(|a| a.status == dge_registry::AccountStatus::Active)
        else {
            return Ok(Err(bad_device_code()));
        };
        // Approved before everything of the account ended (a reset, a suspension…).
        if epoch.is_none()
            || epoch != dge_store::sessions::account_epoch(&self.db, &account_id).await?
        {
            return Ok(Err(bad_device_code()));
        }
        // The session the person approved in must still be open, as for a code.
        if let Some(session) = session_hash.as_deref() {
            let live = self.sessions.get(session, self.now()).await?;
            if live.is_none_or(|(id, _)| id != account_id) {
                return Ok(Err(bad_device_code()));
            }
            self.remember_client(session, &client.id).await?;
        }
        let family_id = dge_core::new_id();
        let lineage = Lineage {
            scope: &scope,
            grant_scope: &scope,
            auth_time,
            nonce: None,
            code_hash: None,
            family_id: &family_id,
            session_hash: session_hash.as_deref(),
        };
        Ok(Ok(self.person_tokens(client, &account, &lineage).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_use_the_short_alphabet_and_normalise() {
        let code = new_user_code();
        assert_eq!(code.len(), 9);
        assert_eq!(normalise_user_code(&code), Some(code.clone()));
        let typed = code.replace('-', " ").to_lowercase();
        assert_eq!(normalise_user_code(&typed), Some(code));
        assert_eq!(normalise_user_code("BCDF-GHJ"), None);
        assert_eq!(
            normalise_user_code("BCDF-GHJA"),
            None,
            "vowels are not used"
        );
        assert_eq!(normalise_user_code("BCDF-GHJK-L"), None);
        assert_eq!(normalise_user_code(""), None);
    }
}
