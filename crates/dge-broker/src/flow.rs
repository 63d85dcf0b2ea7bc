//! Logging in through an upstream provider.
//!
//! `start` stores a random `state`, `nonce` and PKCE verifier (hashed state as the
//! key) and sends the person upstream; `callback` consumes that row once, exchanges
//! the code, verifies the ID token (signature, issuer, audience, expiry, nonce) with
//! the openidconnect crate, and finds or creates the federated account, keyed on
//! `(provider, sub)` and never on the email alone.

use std::sync::Arc;
use std::time::Duration;

use dge_core::token::hash_token;
use dge_core::{Clock, MaskedEmail};
use dge_store::Db;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, reqwest,
};
use sqlx::Row;

use crate::UpstreamConfig;

/// Why a federated login failed. Each ends on a French page; none creates anything.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No provider by that name.
    #[error("unknown upstream provider")]
    UnknownProvider,
    /// Named on the page but not configured by the operator.
    #[error("upstream provider is not configured")]
    NotConfigured,
    /// Discovery, token exchange or network failure.
    #[error("upstream provider unreachable or misbehaving: {0}")]
    Upstream(String),
    /// The callback's state is unknown, used or expired.
    #[error("unknown or expired upstream state")]
    BadState,
    /// The ID token failed verification.
    #[error("upstream ID token rejected: {0}")]
    BadIdToken(String),
    /// The upstream said no (`error=access_denied` …).
    #[error("upstream refused the login: {0}")]
    Refused(String),
    /// The upstream gave no email address.
    #[error("upstream gave no email address")]
    NoEmail,
    /// The address belongs to another account; linking needs the owner's proof.
    #[error("email address already belongs to another account")]
    EmailInUse,
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
}

/// The broker.
#[derive(Clone)]
pub struct Broker {
    db: Db,
    clock: Arc<dyn Clock>,
    providers: Arc<Vec<UpstreamConfig>>,
    public_url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("providers", &self.providers)
            .finish_non_exhaustive()
    }
}

const STATE_TTL_SECS: i64 = 600;

impl Broker {
    /// A broker for `providers`; `public_url` builds our callback URLs.
    ///
    /// # Panics
    /// When the HTTP client cannot be built (no TLS roots), at start.
    #[must_use]
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        providers: Vec<UpstreamConfig>,
        public_url: String,
    ) -> Self {
        let http = reqwest::Client::builder()
            // SSRF and open-redirect safety: never follow redirects from an upstream.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|e| panic!("HTTP client for upstream providers: {e}"));
        Self {
            db,
            clock,
            providers: Arc::new(providers),
            public_url,
            http,
        }
    }

    /// The configured providers, in login-page order.
    #[must_use]
    pub fn providers(&self) -> &[UpstreamConfig] {
        &self.providers
    }

    fn provider(&self, name: &str) -> Result<&UpstreamConfig, BrokerError> {
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

    fn callback_url(&self, name: &str) -> String {
        format!("{}/broker/{name}/callback", self.public_url)
    }

    async fn client(
        &self,
        p: &UpstreamConfig,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        BrokerError,
    > {
        let issuer =
            IssuerUrl::new(p.issuer.clone()).map_err(|e| BrokerError::Upstream(e.to_string()))?;
        // TODO: discovery is fetched on every login; a cache with a short lifetime
        // comes with the upstream work of issue 6.
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| BrokerError::Upstream(format!("discovery failed: {e}")))?;
        let redirect = RedirectUrl::new(self.callback_url(&p.name))
            .map_err(|e| BrokerError::Upstream(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            Some(ClientSecret::new(p.client_secret.expose().clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a login at `name`; returns the upstream authorization URL.
    ///
    /// # Errors
    /// A [`BrokerError`] when the provider is unknown, unconfigured or unreachable.
    pub async fn start(
        &self,
        name: &str,
        auth_request: Option<&str>,
    ) -> Result<String, BrokerError> {
        let p = self.provider(name)?;
        let client = self.client(p).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &p.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let now = self.clock.now();
        sqlx::query(
            "INSERT INTO upstream_logins (state_hash, provider, nonce, pkce_verifier, auth_request, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(hash_token(state.secret()))
        .bind(&p.name)
        .bind(nonce.secret())
        .bind(verifier.secret())
        .bind(auth_request)
        .bind(now + STATE_TTL_SECS)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(url.to_string())
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
    ) -> Result<FederatedLogin, BrokerError> {
        let p = self.provider(name)?;
        let now = self.clock.now();
        let row = sqlx::query(
            "SELECT nonce, pkce_verifier, auth_request FROM upstream_logins \
             WHERE state_hash = $1 AND provider = $2 AND expires_at > $3",
        )
        .bind(hash_token(state))
        .bind(&p.name)
        .bind(now)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(BrokerError::BadState)?;
        // Single use: a replayed callback finds nothing.
        let consumed = sqlx::query("DELETE FROM upstream_logins WHERE state_hash = $1")
            .bind(hash_token(state))
            .execute(self.db.pool())
            .await?;
        if consumed.rows_affected() != 1 {
            return Err(BrokerError::BadState);
        }
        let nonce = Nonce::new(row.try_get("nonce")?);
        let verifier = PkceCodeVerifier::new(row.try_get("pkce_verifier")?);
        let auth_request: Option<String> = row.try_get("auth_request")?;
        let client = self.client(p).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| BrokerError::Upstream(e.to_string()))?
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| BrokerError::Upstream(format!("token exchange failed: {e}")))?;
        let id_token = openidconnect::TokenResponse::id_token(&tokens)
            .ok_or_else(|| BrokerError::BadIdToken("no id_token in the token response".into()))?;
        let claims = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| BrokerError::BadIdToken(e.to_string()))?;
        let subject = claims.subject().to_string();
        let email = claims
            .email()
            .map(|e| e.to_string())
            .ok_or(BrokerError::NoEmail)?;
        let given = claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string())
            .unwrap_or_default();
        let family = claims
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string())
            .unwrap_or_default();
        let account_id = self
            .find_or_create(&p.name, &subject, &email, &given, &family)
            .await?;
        Ok(FederatedLogin {
            account_id,
            auth_request,
        })
    }

    async fn find_or_create(
        &self,
        provider: &str,
        subject: &str,
        email: &str,
        given: &str,
        family: &str,
    ) -> Result<String, BrokerError> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let linked = sqlx::query(
            "SELECT account_id FROM federated_links WHERE provider = $1 AND subject = $2",
        )
        .bind(provider)
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = linked {
            let id: String = row.try_get("account_id")?;
            sqlx::query("UPDATE federated_links SET email = $1, updated_at = $2 WHERE provider = $3 AND subject = $4")
                .bind(email)
                .bind(now)
                .bind(provider)
                .bind(subject)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(id);
        }
        let email_key = email.trim().to_lowercase();
        let taken = sqlx::query("SELECT 1 AS found FROM accounts WHERE email_key = $1")
            .bind(&email_key)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            // Linking to an existing account needs proof from its owner (issue 6);
            // until then, nothing is linked or created silently.
            return Err(BrokerError::EmailInUse);
        }
        let id = dge_core::new_id();
        sqlx::query(
            "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, status, \
             email_verified, created_at, updated_at) VALUES ($1, 'federated', $2, $3, $4, $5, 'active', 1, $6, $6)",
        )
        .bind(&id)
        .bind(email.trim())
        .bind(&email_key)
        .bind(given)
        .bind(family)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO federated_links (provider, subject, account_id, email, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(provider)
        .bind(subject)
        .bind(&id)
        .bind(email.trim())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        dge_store::audit(
            &mut tx,
            &format!("upstream:{provider}"),
            "account.federated_created",
            &id,
            "",
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(account_id = %id, upstream = provider, email = %MaskedEmail(email), "federated account created");
        Ok(id)
    }
}
