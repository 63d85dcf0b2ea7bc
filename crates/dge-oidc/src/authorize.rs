//! The authorization request (OIDC Core §3.1.2, code flow only).
//!
//! Errors that cannot be trusted to go back to the client (unknown client, a
//! redirect URI that is not registered) end on our own error page; every other
//! error is returned to the client's redirect URI with `error` and `state`
//! (RFC 6749 §4.1.2.1).

use std::borrow::Cow;

use dge_core::token::{hash_token, random_token};
use oxide_auth::code_grant::extensions::Pkce;
use serde::Deserialize;
use sqlx::Row;
use url::Url;

use crate::{Provider, Result};

/// Query parameters of `/authorize`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Where the code goes; must be registered exactly.
    pub redirect_uri: Option<String>,
    /// Must contain `openid`.
    pub scope: Option<String>,
    /// Echoed back to the client.
    pub state: Option<String>,
    /// Echoed in the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// PKCE method; only `S256`.
    pub code_challenge_method: Option<String>,
    /// Space-separated: `none` (alone), `login`, `consent`, `select_account`.
    pub prompt: Option<String>,
    /// Pre-fills the login form.
    pub login_hint: Option<String>,
    /// An ID token we issued to this client, naming the person it expects: a session
    /// of anyone else is not used (OIDC Core §3.1.2.1).
    pub id_token_hint: Option<String>,
    /// Seconds since the person last authenticated beyond which they log in again.
    pub max_age: Option<String>,
    /// An upstream provider (`proconnect`, …) to send the person straight to.
    pub idp_hint: Option<String>,
    /// A request object (OIDC Core §6.1): not supported, refused.
    pub request: Option<String>,
    /// A request object by reference (OIDC Core §6.2): not supported, refused.
    pub request_uri: Option<String>,
    /// Only `query` is supported.
    pub response_mode: Option<String>,
}

/// What `/authorize` should do next.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// Show an error page (the redirect URI cannot be trusted).
    ErrorPage(String),
    /// Redirect to the client (a code, or an error).
    Redirect(String),
    /// Ask the logged-in person's consent for the stored request `req`.
    Consent {
        /// Handle of the stored request.
        req: String,
    },
    /// Show the login page for the stored request `req`.
    Login {
        /// Handle of the stored request.
        req: String,
        /// Login hint to pre-fill.
        login_hint: Option<String>,
        /// The upstream provider to go to instead of the login form.
        idp_hint: Option<String>,
    },
}

/// A stored authorization request, waiting for the person to log in.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// The client.
    pub client_id: String,
    /// Its redirect URI, already checked.
    pub redirect_uri: String,
    /// Requested scopes.
    pub scope: String,
    /// Client state.
    pub state: Option<String>,
    /// Client nonce.
    pub nonce: Option<String>,
    /// Encoded PKCE challenge (oxide-auth's form).
    pub code_challenge: String,
    /// The login hint.
    pub login_hint: Option<String>,
    /// `prompt` held `consent`: the consent page is shown after the login even to a
    /// person who consented before.
    pub force_consent: bool,
}

/// The scopes a person's authorization may carry (discovery's `scopes_supported`).
/// Others are dropped, as RFC 6749 §3.3 allows: the service scopes (`authz:*`,
/// `admin`) belong to `client_credentials` tokens, and a module that reads the
/// access token's `scope` claim must not find them in a person's.
pub const PERSON_SCOPES: [&str; 5] = ["openid", "profile", "email", "phone", "offline_access"];

/// The requested scopes this provider grants to a person, each once, in the order
/// asked.
#[must_use]
pub fn person_scope(requested: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for scope in requested.split(' ') {
        if PERSON_SCOPES.contains(&scope) && !kept.contains(&scope) {
            kept.push(scope);
        }
    }
    kept.join(" ")
}

/// What `prompt` asks (OIDC Core §3.1.2.1): a space-separated list, `none` alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Prompt {
    none: bool,
    login: bool,
    consent: bool,
}

impl Prompt {
    /// `None` when a value is unknown or `none` comes with another one.
    fn parse(value: Option<&str>) -> Option<Self> {
        let mut prompt = Self::default();
        for word in value.unwrap_or("").split(' ').filter(|w| !w.is_empty()) {
            match word {
                "none" => prompt.none = true,
                // Choosing another account is logging in again: the login page offers it.
                "login" | "select_account" => prompt.login = true,
                "consent" => prompt.consent = true,
                _ => return None,
            }
        }
        (!prompt.none || !(prompt.login || prompt.consent)).then_some(prompt)
    }
}

/// Appends `params` to a redirect URI that may already carry a query.
#[must_use]
pub fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return uri.to_owned();
    }
    match Url::parse(uri) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

/// A parameter the request carries that we do not support and must not ignore
/// (OIDC Core §3.1.2.6, §6): the error and its description.
fn unsupported_parameter(p: &AuthorizeParams) -> Option<(&'static str, &'static str)> {
    if p.request.is_some() {
        return Some(("request_not_supported", "request objects are not supported"));
    }
    if p.request_uri.is_some() {
        return Some(("request_uri_not_supported", "request_uri is not supported"));
    }
    if p.response_mode.as_deref().is_some_and(|m| m != "query") {
        return Some(("invalid_request", "only response_mode=query is supported"));
    }
    None
}

/// The longest values kept with a pending request: a request is stored until it is
/// used or expires, so an unbounded `state` would let anyone fill the database.
const MAX_STATE: usize = 1024;
const MAX_NONCE: usize = 512;
const MAX_LOGIN_HINT: usize = 320;
const MAX_SCOPE: usize = 1024;

/// A parameter longer than we keep, or a negative `max_age`: the error description.
fn unreasonable_parameter(p: &AuthorizeParams) -> Option<&'static str> {
    let longer = |v: &Option<String>, max: usize| v.as_deref().is_some_and(|v| v.len() > max);
    if longer(&p.state, MAX_STATE) {
        return Some("state is longer than 1024 bytes");
    }
    if longer(&p.nonce, MAX_NONCE) {
        return Some("nonce is longer than 512 bytes");
    }
    if longer(&p.login_hint, MAX_LOGIN_HINT) {
        return Some("login_hint is longer than 320 bytes");
    }
    if longer(&p.scope, MAX_SCOPE) {
        return Some("scope is longer than 1024 bytes");
    }
    if p.max_age.as_deref().is_some_and(|m| m.starts_with('-')) {
        return Some("max_age must be a non-negative number of seconds");
    }
    None
}

impl Provider {
    pub(crate) fn error_redirect(
        &self,
        redirect_uri: &str,
        error: &str,
        description: &str,
        state: Option<&str>,
    ) -> AuthorizeOutcome {
        let mut params = vec![
            ("error", error),
            ("error_description", description),
            ("iss", self.issuer()),
        ];
        if let Some(state) = state {
            params.push(("state", state));
        }
        AuthorizeOutcome::Redirect(with_params(redirect_uri, &params))
    }

    /// Handles an authorization request. `cookie` is the single sign-on session
    /// cookie, if the browser sent one.
    ///
    /// # Errors
    /// Storage errors only; protocol errors are outcomes.
    pub async fn authorize(
        &self,
        p: AuthorizeParams,
        cookie: Option<&str>,
    ) -> Result<AuthorizeOutcome> {
        let session = match cookie {
            Some(c) => self.session(c).await?,
            None => None,
        };
        let Some(client_id) = p.client_id.as_deref().filter(|c| !c.is_empty()) else {
            return Ok(AuthorizeOutcome::ErrorPage(
                "La demande ne précise pas le service (client_id manquant).".into(),
            ));
        };
        let Some(client) = self.client(client_id).await? else {
            return Ok(AuthorizeOutcome::ErrorPage(
                "Ce service n'est pas enregistré auprès du fournisseur d'identité.".into(),
            ));
        };
        let Some(redirect_uri) = p
            .redirect_uri
            .as_deref()
            .filter(|r| client.redirect_allowed(r))
        else {
            return Ok(AuthorizeOutcome::ErrorPage(
                "L'adresse de retour de ce service n'est pas enregistrée ; la connexion est refusée par sécurité.".into(),
            ));
        };
        let state = p.state.as_deref();
        if let Some(description) = unreasonable_parameter(&p) {
            // An oversized state is not echoed back either.
            let state = state.filter(|s| s.len() <= MAX_STATE);
            return Ok(self.error_redirect(redirect_uri, "invalid_request", description, state));
        }
        if let Some((error, description)) = unsupported_parameter(&p) {
            return Ok(self.error_redirect(redirect_uri, error, description, state));
        }
        if p.response_type.as_deref().is_none_or(str::is_empty) {
            return Ok(self.error_redirect(
                redirect_uri,
                "invalid_request",
                "response_type is required",
                state,
            ));
        }
        if p.response_type.as_deref() != Some("code") {
            return Ok(self.error_redirect(
                redirect_uri,
                "unsupported_response_type",
                "only response_type=code is supported",
                state,
            ));
        }
        let scope = person_scope(p.scope.as_deref().unwrap_or_default());
        if !scope.split(' ').any(|s| s == "openid") {
            return Ok(self.error_redirect(
                redirect_uri,
                "invalid_scope",
                "scope must include openid",
                state,
            ));
        }
        // PKCE is mandatory for every client and only S256 is accepted (plain is
        // refused by oxide-auth unless allowed, and we never allow it).
        let challenge = Pkce::required().challenge(
            p.code_challenge_method.as_deref().map(Cow::Borrowed),
            p.code_challenge.as_deref().map(Cow::Borrowed),
        );
        // RFC 7636 §4.2: an S256 challenge is the 43-character base64url digest.
        let well_formed = p.code_challenge.as_deref().is_some_and(|c| {
            c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        let encoded = match challenge {
            Ok(Some(value)) if well_formed => value.into_private_value().ok().flatten(),
            _ => None,
        };
        let Some(code_challenge) = encoded else {
            return Ok(self.error_redirect(
                redirect_uri,
                "invalid_request",
                "code_challenge with code_challenge_method=S256 is required",
                state,
            ));
        };
        let Some(prompt) = Prompt::parse(p.prompt.as_deref()) else {
            return Ok(self.error_redirect(
                redirect_uri,
                "invalid_request",
                "prompt is a space-separated list of login, consent and select_account, or none alone",
                state,
            ));
        };
        let pending = PendingRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            scope,
            state: p.state.clone(),
            nonce: p.nonce.clone(),
            code_challenge,
            login_hint: p.login_hint.clone(),
            force_consent: prompt.consent,
        };
        let Ok(max_age) = p.max_age.as_deref().map(str::parse::<i64>).transpose() else {
            return Ok(self.error_redirect(
                redirect_uri,
                "invalid_request",
                "max_age must be a number of seconds",
                state,
            ));
        };
        // OIDC Core §3.1.2.1: the hint must be an ID token we issued to this client
        // (an expired one will do); the person it names is the one the client expects.
        let hinted = match p.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
            None => None,
            Some(hint) => match self.id_token_hint(hint) {
                // Issued before this registration: to a removed client of the same id.
                Some(h) if h.aud == client.id && h.iat >= client.registered_at => Some(h.sub),
                _ => {
                    return Ok(self.error_redirect(
                        redirect_uri,
                        "invalid_request",
                        "id_token_hint is not an ID token this provider issued to this client",
                        state,
                    ));
                }
            },
        };
        // A session older than max_age counts as no session (OIDC Core §3.1.2.1), and
        // so does the session of someone other than the hinted person: they log in
        // (`login_required` with prompt=none) rather than get a code for someone else.
        // `max_age=0` is `prompt=login` (OIDC Core §3.1.2.1): with whole seconds, a
        // login made in the same second would otherwise pass for fresh enough.
        let now = self.now();
        let session = session.filter(|(account_id, auth_time)| {
            max_age.is_none_or(|m| m > 0 && now - auth_time <= m)
                && hinted.as_ref().is_none_or(|sub| sub == account_id)
        });
        let session = session.filter(|_| !prompt.login);
        match (session, prompt.none) {
            (Some((account_id, _)), true)
                if self
                    .needs_consent(&client, &account_id, &pending.scope)
                    .await? =>
            {
                Ok(self.error_redirect(
                    redirect_uri,
                    "consent_required",
                    "the person has not consented to this client",
                    state,
                ))
            }
            (Some((account_id, _)), false)
                if prompt.consent
                    || self
                        .needs_consent(&client, &account_id, &pending.scope)
                        .await? =>
            {
                let req = self.store_request(&pending).await?;
                Ok(AuthorizeOutcome::Consent { req })
            }
            (Some((account_id, auth_time)), _) => Ok(AuthorizeOutcome::Redirect(
                self.issue_code(&pending, &account_id, auth_time, cookie, None)
                    .await?,
            )),
            (None, true) => {
                let description = if hinted.is_some() {
                    "no active session of the person named by id_token_hint"
                } else {
                    "no active session"
                };
                Ok(self.error_redirect(redirect_uri, "login_required", description, state))
            }
            (None, false) => {
                let req = self.store_request(&pending).await?;
                Ok(AuthorizeOutcome::Login {
                    req,
                    login_hint: pending.login_hint,
                    idp_hint: p.idp_hint.filter(|h| !h.is_empty()),
                })
            }
        }
    }

    async fn store_request(&self, p: &PendingRequest) -> Result<String> {
        let handle = random_token();
        let now = self.now();
        sqlx::query(
            "INSERT INTO auth_requests (id_hash, client_id, redirect_uri, scope, state, nonce, \
             code_challenge, login_hint, prompt, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(hash_token(&handle))
        .bind(&p.client_id)
        .bind(&p.redirect_uri)
        .bind(&p.scope)
        .bind(&p.state)
        .bind(&p.nonce)
        .bind(&p.code_challenge)
        .bind(&p.login_hint)
        .bind(p.force_consent.then_some("consent"))
        .bind(now + self.settings.request_ttl_secs)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(handle)
    }

    /// The stored request behind a login page's `req`, if it has not expired.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn pending_request(&self, req: &str) -> Result<Option<PendingRequest>> {
        let row = sqlx::query(
            "SELECT client_id, redirect_uri, scope, state, nonce, code_challenge, login_hint, prompt \
             FROM auth_requests WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(hash_token(req))
        .bind(self.now())
        .fetch_optional(self.db.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(PendingRequest {
            client_id: r.try_get("client_id")?,
            redirect_uri: r.try_get("redirect_uri")?,
            scope: r.try_get("scope")?,
            state: r.try_get("state")?,
            nonce: r.try_get("nonce")?,
            code_challenge: r.try_get("code_challenge")?,
            login_hint: r.try_get("login_hint")?,
            force_consent: r.try_get::<Option<String>, _>("prompt")?.as_deref() == Some("consent"),
        }))
    }

    /// Completes a stored request once the person has logged in: the request is
    /// consumed and the client gets a code. Returns the redirect URL (the consent
    /// page first for a client the person has not consented to), or `None` when the
    /// request was already used or has expired. `epoch` is the account's
    /// `sessions_epoch` as the login read it, if it did (read here otherwise).
    ///
    /// # Errors
    /// Storage or signing errors.
    pub async fn complete(
        &self,
        req: &str,
        account_id: &str,
        auth_time: i64,
        cookie: Option<&str>,
        epoch: Option<i64>,
    ) -> Result<Option<String>> {
        let Some(pending) = self.pending_request(req).await? else {
            return Ok(None);
        };
        let Some(client) = self
            .client(&pending.client_id)
            .await?
            .filter(|c| c.redirect_allowed(&pending.redirect_uri))
        else {
            // Removed, or its redirect URI taken off, during the login (see
            // `finish_request`).
            return Ok(None);
        };
        if pending.force_consent
            || self
                .needs_consent(&client, account_id, &pending.scope)
                .await?
        {
            return Ok(Some(format!("/consent?req={req}")));
        }
        self.finish_request(req, &pending, account_id, auth_time, cookie, epoch)
            .await
    }

    /// Consumes a stored request and issues its code.
    pub(crate) async fn finish_request(
        &self,
        req: &str,
        pending: &PendingRequest,
        account_id: &str,
        auth_time: i64,
        cookie: Option<&str>,
        epoch: Option<i64>,
    ) -> Result<Option<String>> {
        // A client removed, or its redirect URI taken off, while the person was
        // logging in gets nothing: the URI may have been dropped because its host
        // was lost.
        let still_registered = self
            .client(&pending.client_id)
            .await?
            .is_some_and(|c| c.redirect_allowed(&pending.redirect_uri));
        if !still_registered {
            return Ok(None);
        }
        // The code first, the request consumed after: a store failing while the code
        // is written leaves the request for another try. A code issued for a request
        // that another tab consumed meanwhile is never given out, and expires.
        let redirect = self
            .issue_code(pending, account_id, auth_time, cookie, epoch)
            .await?;
        let gone = sqlx::query("DELETE FROM auth_requests WHERE id_hash = $1")
            .bind(hash_token(req))
            .execute(self.db.pool())
            .await?;
        Ok((gone.rows_affected() == 1).then_some(redirect))
    }

    /// Issues a single-use code and returns the client's redirect URL with it. The
    /// session (if any) remembers the client, for back-channel logout. The code
    /// records the account's `sessions_epoch`: `epoch` when the caller read it during
    /// this login (an epoch read earlier can only make the code refused, never
    /// accepted after everything ended), else read now.
    async fn issue_code(
        &self,
        p: &PendingRequest,
        account_id: &str,
        auth_time: i64,
        cookie: Option<&str>,
        epoch: Option<i64>,
    ) -> Result<String> {
        let code = random_token();
        let now = self.now();
        let session_hash = cookie.map(hash_token);
        if let Some(hash) = &session_hash {
            self.remember_client(hash, &p.client_id).await?;
        }
        // Gone meanwhile: its pending request went with it, the code is never given out.
        let registration = self.client(&p.client_id).await?.map(|c| c.registration);
        let stored = crate::token::code::StoredCode {
            registration,
            client_id: p.client_id.clone(),
            account_id: account_id.to_owned(),
            redirect_uri: p.redirect_uri.clone(),
            scope: p.scope.clone(),
            nonce: p.nonce.clone(),
            code_challenge: p.code_challenge.clone(),
            auth_time,
            expires_at: now + self.settings.code_ttl_secs,
            session_hash,
            epoch: match epoch {
                Some(e) => Some(e),
                None => dge_store::sessions::account_epoch(&self.db, account_id).await?,
            },
        };
        self.store_code(&hash_token(&code), &stored).await?;
        let mut params = vec![("code", code.as_str()), ("iss", self.issuer())];
        if let Some(state) = p.state.as_deref() {
            params.push(("state", state));
        }
        Ok(with_params(&p.redirect_uri, &params))
    }
}
