//! Logging in through an upstream provider.
//!
//! `start` stores a random `state` and `nonce` (43 characters each, ProConnect wants
//! at least 32) and a PKCE verifier, the state hashed as the key, and sends the
//! person upstream; `callback` consumes that row once, exchanges the code
//! (`client_secret_post` or `_basic`), verifies the ID token (ES256 or RS256,
//! issuer, audience, expiry, nonce, then `acr`) with the openidconnect crate, reads
//! userinfo (a signed JWT, verified, unless the upstream is configured for plain
//! JSON), maps the claims, applies the allow rules, and settles the account
//! ([`crate::accounts`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dge_core::token::{hash_token, random_token};
use dge_core::{Clock, Secret};
use dge_store::Db;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope, TokenResponse, reqwest,
};
use serde_json::{Map, Value};
use sqlx::Row;

use crate::config::TokenAuth;
use crate::domain::allow::Refusal;
use crate::domain::profile::Profile;
use crate::{UpstreamConfig, userinfo};

/// Why a federated login failed. Each ends on a French page; none creates anything.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No provider by that name.
    #[error("unknown upstream provider")]
    UnknownProvider,
    /// Named on the page but not configured by the operator.
    #[error("upstream provider is not configured")]
    NotConfigured,
    /// Discovery, token exchange or network failure (timeouts included).
    #[error("upstream provider unreachable or misbehaving: {0}")]
    Upstream(String),
    /// The callback's state is unknown, used, expired or not this browser's.
    #[error("unknown or expired upstream state")]
    BadState,
    /// The ID token failed verification.
    #[error("upstream ID token rejected: {0}")]
    BadIdToken(String),
    /// Userinfo failed verification.
    #[error("upstream userinfo rejected: {0}")]
    BadUserinfo(String),
    /// The assurance level in the ID token is not one we asked for.
    #[error("upstream assurance level not accepted")]
    AcrNotAccepted,
    /// The upstream said no (`error=access_denied` …); the code is kept for the log.
    #[error("upstream refused the login: {0}")]
    Refused(String),
    /// The person fails an allow rule of the upstream.
    #[error("person not allowed by rule {}", .0.rule())]
    NotAllowed(Refusal),
    /// The upstream gave no email address.
    #[error("upstream gave no email address")]
    NoEmail,
    /// The upstream's email address is not one an account can hold (the sign-up's
    /// rules: syntax, length, no hidden characters).
    #[error("upstream email address is not a valid address")]
    BadEmail,
    /// The address belongs to an account that is not active (unconfirmed, pending or
    /// rejected): it can be neither linked nor logged into until it is.
    #[error("account of that address is not active ({})", .0.as_str())]
    NotActive(dge_registry::AccountStatus),
    /// The upstream says the address is not verified (`email_verified: false`): it
    /// can neither name a new account nor be matched against an existing one.
    #[error("upstream email address not verified")]
    EmailNotVerified,
    /// The address belongs to another account; linking needs the owner's proof.
    #[error("email address already belongs to another account")]
    EmailInUse,
    /// The account is suspended by an administrator: no login until it is
    /// reactivated, and no new link to it.
    #[error("account is suspended")]
    Suspended,
    /// The link offer is unknown, used up or expired.
    #[error("unknown or expired link offer")]
    BadOffer,
    /// The code typed to prove the account is not the one emailed (or none was sent).
    #[error("wrong link code")]
    WrongCode,
    /// The mail could not be queued.
    #[error("mail error: {0}")]
    Mail(String),
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
}

/// A completed federated login.
#[derive(Debug, Clone)]
pub struct FederatedLogin {
    /// The account logged in.
    pub account_id: String,
    /// The portal's authorization request to resume, if any.
    pub auth_request: Option<String>,
    /// The upstream, for its logout.
    pub provider: String,
    /// The upstream's raw ID token, kept for `id_token_hint` at logout.
    pub id_token: Secret<String>,
}

/// The person must prove an existing account before their identity is linked to it.
#[derive(Debug, Clone)]
pub struct LinkOffer {
    /// The offer's token (a cookie on the person's browser; only its hash is kept).
    pub token: Secret<String>,
    /// The upstream's button label.
    pub provider_label: String,
    /// The account's address, masked.
    pub masked_email: String,
    /// Whether the account has a password to prove it with.
    pub has_password: bool,
    /// The portal's authorization request to resume, if any.
    pub auth_request: Option<String>,
}

/// What a callback ends in.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Logged in.
    LoggedIn(FederatedLogin),
    /// An account with the same address exists: the person may link or cancel.
    LinkOffered(LinkOffer),
}

/// Optional hints a portal module passes through to the upstream.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// `login_hint`: an email address.
    pub login_hint: Option<String>,
    /// `siret_hint`: 14 digits (ProConnect).
    pub siret_hint: Option<String>,
    /// `idp_hint`: skips ProConnect's email screen.
    pub idp_hint: Option<String>,
}

/// Where to send the person, and the state to bind to their browser.
#[derive(Debug)]
pub struct Started {
    /// The upstream authorization URL.
    pub url: String,
    /// The `state` (set as a cookie by the pages so the callback comes from the same browser).
    pub state: Secret<String>,
}

pub(crate) type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The broker.
#[derive(Clone)]
pub struct Broker {
    pub(crate) db: Db,
    pub(crate) clock: Arc<dyn Clock>,
    providers: Arc<Vec<UpstreamConfig>>,
    pub(crate) public_url: String,
    http: Arc<HashMap<String, reqwest::Client>>,
    pub(crate) outbox: dge_mailer::Outbox,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

const STATE_TTL_SECS: i64 = 600;

fn http_client(timeout_secs: u64) -> reqwest::Client {
    reqwest::Client::builder()
        // SSRF and open-redirect safety: never follow redirects from an upstream.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(timeout_secs))
        .connect_timeout(Duration::from_secs(timeout_secs.min(5)))
        .build()
        .unwrap_or_else(|e| panic!("HTTP client for upstream providers: {e}"))
}

fn upstream<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> BrokerError + '_ {
    move |e| BrokerError::Upstream(format!("{what}: {e}"))
}

impl Broker {
    /// A broker for `providers`; `public_url` builds our callback URLs.
    ///
    /// # Panics
    /// When an HTTP client cannot be built (no TLS roots), at start.
    #[must_use]
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        providers: Vec<UpstreamConfig>,
        public_url: String,
        outbox: dge_mailer::Outbox,
    ) -> Self {
        let http = providers
            .iter()
            .map(|p| (p.name.clone(), http_client(p.timeout_secs)))
            .collect();
        Self {
            db,
            clock,
            providers: Arc::new(providers),
            public_url,
            http: Arc::new(http),
            outbox,
        }
    }

    /// The configured providers, in login-page order.
    #[must_use]
    pub fn providers(&self) -> &[UpstreamConfig] {
        &self.providers
    }

    pub(crate) fn provider(&self, name: &str) -> Result<&UpstreamConfig, BrokerError> {
        let p = self
            .providers
            .iter()
            .find(|p| p.name == name)
            .ok_or(BrokerError::UnknownProvider)?;
        if p.configured() {
            Ok(p)
        } else {
            Err(BrokerError::NotConfigured)
        }
    }

    pub(crate) fn http(&self, name: &str) -> &reqwest::Client {
        // Every provider got a client in `new`.
        &self.http[name]
    }

    fn callback_url(&self, name: &str) -> String {
        format!("{}/broker/{name}/callback", self.public_url)
    }

    /// The post-logout redirect URI to register at the upstream.
    #[must_use]
    pub fn logged_out_url(&self, name: &str) -> String {
        format!("{}/broker/{name}/logged-out", self.public_url)
    }

    pub(crate) async fn discover(
        &self,
        p: &UpstreamConfig,
    ) -> Result<ProviderMetadataWithLogout, BrokerError> {
        let issuer = IssuerUrl::new(p.issuer.clone()).map_err(upstream("issuer"))?;
        // TODO: discovery and keys are fetched on every login; a cache with a short
        // lifetime would save two requests per login but needs key-rotation handling.
        ProviderMetadataWithLogout::discover_async(issuer, self.http(&p.name))
            .await
            .map_err(|e| {
                BrokerError::Upstream(format!("discovery failed: {}", dge_core::ErrorChain(&e)))
            })
    }

    fn client(
        &self,
        p: &UpstreamConfig,
        metadata: ProviderMetadataWithLogout,
    ) -> Result<Client, BrokerError> {
        let redirect =
            RedirectUrl::new(self.callback_url(&p.name)).map_err(upstream("redirect"))?;
        let auth = match p.token_auth {
            TokenAuth::ClientSecretPost => AuthType::RequestBody,
            TokenAuth::ClientSecretBasic => AuthType::BasicAuth,
        };
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            Some(ClientSecret::new(p.client_secret.expose().clone())),
        )
        .set_redirect_uri(redirect)
        .set_auth_type(auth))
    }

    /// Starts a login at `name`; returns the upstream authorization URL and the state.
    ///
    /// # Errors
    /// A [`BrokerError`] when the provider is unknown, unconfigured or unreachable.
    pub async fn start(
        &self,
        name: &str,
        auth_request: Option<&str>,
        hints: &Hints,
    ) -> Result<Started, BrokerError> {
        let p = self.provider(name)?;
        let client = self.client(p, self.discover(p).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new(random_token()),
                || Nonce::new(random_token()),
            )
            .set_pkce_challenge(challenge);
        for scope in p.effective_scopes() {
            request = request.add_scope(Scope::new(scope));
        }
        if !p.acr_values.is_empty() {
            // ProConnect: the level is asked for as essential `acr` values.
            let claims = serde_json::json!({
                "id_token": { "acr": { "essential": true, "values": p.acr_values } }
            });
            request = request.add_extra_param("claims", claims.to_string());
        }
        for (param, value) in [
            ("login_hint", &hints.login_hint),
            ("siret_hint", &hints.siret_hint),
            ("idp_hint", &hints.idp_hint),
        ] {
            if let Some(v) = value {
                request = request.add_extra_param(param, v.clone());
            }
        }
        let (url, state, nonce) = request.url();
        self.remember_start(
            &p.name,
            state.secret(),
            nonce.secret(),
            verifier.secret(),
            auth_request,
        )
        .await?;
        Ok(Started {
            url: url.to_string(),
            state: Secret::new(state.secret().clone()),
        })
    }

    async fn remember_start(
        &self,
        name: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
        auth_request: Option<&str>,
    ) -> Result<(), BrokerError> {
        let now = self.clock.now();
        sqlx::query(
            "INSERT INTO upstream_logins (state_hash, provider, nonce, pkce_verifier, auth_request, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash_token(state))
        .bind(name)
        .bind(nonce)
        .bind(verifier)
        .bind(auth_request)
        .bind(now + STATE_TTL_SECS)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Forgets a started login whose callback carried an error, so the state cannot
    /// be used again.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn abandon(&self, state: &str) -> Result<(), BrokerError> {
        sqlx::query("DELETE FROM upstream_logins WHERE state_hash = $1")
            .bind(hash_token(state))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Consumes the started login of `state` (single use: a replayed callback finds nothing).
    async fn consume_start(
        &self,
        name: &str,
        state: &str,
    ) -> Result<(Nonce, PkceCodeVerifier, Option<String>), BrokerError> {
        let now = self.clock.now();
        let row = sqlx::query(
            "SELECT nonce, pkce_verifier, auth_request FROM upstream_logins \
             WHERE state_hash = $1 AND provider = $2 AND expires_at > $3",
        )
        .bind(hash_token(state))
        .bind(name)
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(BrokerError::BadState)?;
        let consumed = sqlx::query("DELETE FROM upstream_logins WHERE state_hash = $1")
            .bind(hash_token(state))
            .execute(self.db.pool())
            .await?;
        if consumed.rows_affected() != 1 {
            return Err(BrokerError::BadState);
        }
        Ok((
            Nonce::new(row.try_get("nonce")?),
            PkceCodeVerifier::new(row.try_get("pkce_verifier")?),
            row.try_get("auth_request")?,
        ))
    }

    /// Completes a login at `name` with the callback's `state` and `code`.
    ///
    /// # Errors
    /// A [`BrokerError`]; nothing is created when one is returned.
    pub async fn callback(
        &self,
        name: &str,
        state: &str,
        code: &str,
    ) -> Result<Outcome, BrokerError> {
        let p = self.provider(name)?;
        let (nonce, verifier, auth_request) = self.consume_start(&p.name, state).await?;
        let metadata = self.discover(p).await?;
        let client = self.client(p, metadata.clone())?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(upstream("token endpoint"))?
            .set_pkce_verifier(verifier)
            .request_async(self.http(&p.name))
            .await
            .map_err(|e| {
                BrokerError::Upstream(format!(
                    "token exchange failed: {}",
                    dge_core::ErrorChain(&e)
                ))
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| BrokerError::BadIdToken("no id_token in the token response".into()))?;
        let subject = self.verify_id_token(p, &client, id_token, &nonce)?;
        let mut claims = payload(id_token)?;
        if let Some(endpoint) = metadata.userinfo_endpoint() {
            let info = userinfo::fetch(
                self.http(&p.name),
                p,
                &metadata,
                endpoint.url().as_str(),
                tokens.access_token().secret(),
                &subject,
            )
            .await?;
            claims.extend(info);
        }
        let mut profile = Profile::from_claims(&subject, &claims, &p.mapping());
        if profile.email.is_empty() {
            return Err(BrokerError::NoEmail);
        }
        // The address as a sign-up would store it (NFKC, IDNA domain), so that one
        // address is one account whichever way it came; one a sign-up would refuse
        // names no account.
        profile.email = crate::domain::profile::account_email(&profile.email)?;
        // ProConnect gives no `email_verified` (its addresses are the providers'); a
        // generic upstream may say an address is unverified, and then it is not used.
        // Only a true boolean or its absence count: `"false"` or `0` are not a yes.
        if claims
            .get("email_verified")
            .is_some_and(|v| v != &Value::Bool(true))
        {
            return Err(BrokerError::EmailNotVerified);
        }
        p.allow.check(&profile).map_err(BrokerError::NotAllowed)?;
        self.settle(p, &profile, &id_token.to_string(), auth_request)
            .await
    }

    /// Checks signature (ES256 or RS256 only, so never `none`), issuer, audience,
    /// expiry and nonce, then the assurance level; returns the subject.
    fn verify_id_token(
        &self,
        p: &UpstreamConfig,
        client: &Client,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<String, BrokerError> {
        check_id_token(client.id_token_verifier(), &p.acr_values, id_token, nonce)
    }
}

/// The ID token checks of [`Broker::verify_id_token`], given the upstream's verifier
/// (its keys, issuer and our client id): ES256 or RS256 only, then the nonce and the
/// assurance level. Returns the subject.
pub(crate) fn check_id_token(
    verifier: CoreIdTokenVerifier<'_>,
    acr_values: &[String],
    id_token: &CoreIdToken,
    nonce: &Nonce,
) -> Result<String, BrokerError> {
    let verifier = verifier.set_allowed_algs([
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    ]);
    let claims = id_token
        .claims(&verifier, nonce)
        .map_err(|e| BrokerError::BadIdToken(e.to_string()))?;
    if !acr_values.is_empty() {
        // ProConnect: the level asked for is checked again in the ID token.
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned());
        if !acr.is_some_and(|a| acr_values.contains(&a)) {
            return Err(BrokerError::AcrNotAccepted);
        }
    }
    Ok(claims.subject().to_string())
}

/// The claims of an ID token that openidconnect has already verified.
pub(crate) fn payload(id_token: &CoreIdToken) -> Result<Map<String, Value>, BrokerError> {
    let raw = id_token.to_string();
    let part = raw
        .split('.')
        .nth(1)
        .ok_or_else(|| BrokerError::BadIdToken("not a JWS".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| BrokerError::BadIdToken(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| BrokerError::BadIdToken(e.to_string()))
}
