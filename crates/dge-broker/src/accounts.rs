//! Federated accounts: keyed on `(upstream, sub)`, never on the email alone.
//!
//! - A known `(upstream, sub)` logs in and refreshes the profile from the claims; the
//!   changed fields are recorded in `audit_events`.
//! - An unknown one whose email belongs to an account gets a link offer: nothing is
//!   linked or created until the person proves the account (its password) or cancels.
//!   The proof is the account's password, or a one-time code emailed to its address
//!   (the only proof an account without a password has: a ProConnect identity that
//!   comes back with a new `sub`).
//! - Otherwise a federated account is created, active, with no rights, its
//!   organisation matched by SIRET (an unknown SIRET proposes one); a SIRET of a
//!   trusted organisation takes the trusted path (the community space at once).

use dge_core::token::{constant_time_eq, hash_token, random_token};
use dge_core::{MaskedEmail, Secret};
use dge_registry::AccountStatus;
use sqlx::{AnyConnection, Row};

use crate::domain::profile::Profile;
use crate::flow::{FederatedLogin, LinkOffer, Outcome};
use crate::{Broker, BrokerError, UpstreamConfig};

const OFFER_TTL_SECS: i64 = 900;
/// Wrong passwords before an offer is dropped.
const OFFER_ATTEMPTS: i64 = 5;

/// How a person proved the account an identity is linked to (recorded in the audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The account's password.
    Password,
    /// The code emailed to the account's address.
    EmailedCode,
}

impl Proof {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "proof=password",
            Self::EmailedCode => "proof=email_code",
        }
    }
}

/// A six-digit code: short enough to type; the offer allows [`OFFER_ATTEMPTS`] tries.
fn new_code() -> String {
    use rand::Rng;
    format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32))
}

/// An offer, as read back for the linking page.
#[derive(Debug, Clone)]
pub struct PendingOffer {
    /// The account the identity would be linked to.
    pub account_id: String,
    /// Its address (to check the password against); never logged in full.
    pub email: String,
    /// The upstream's name.
    pub provider: String,
    /// The upstream's button label.
    pub provider_label: String,
    /// Whether the account has a password.
    pub has_password: bool,
    /// The portal's authorization request to resume, if any.
    pub auth_request: Option<String>,
}

/// The key an address is looked up by, as a sign-up stores it (NFKC, IDNA domain,
/// lower case): `ｃｌａｉｒｅ@…` finds the account `claire@…`.
fn email_key(email: &str) -> String {
    dge_registry::domain::signup::lookup_key(email)
}

impl Broker {
    pub(crate) async fn settle(
        &self,
        p: &UpstreamConfig,
        profile: &Profile,
        id_token: &str,
        auth_request: Option<String>,
    ) -> Result<Outcome, BrokerError> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let linked = sqlx::query(
            "SELECT account_id FROM federated_links WHERE provider = $1 AND subject = $2",
        )
        .bind(&p.name)
        .bind(&profile.subject)
        .fetch_optional(&mut *tx)
        .await?;
        let account_id = if let Some(row) = linked {
            let id: String = row.try_get("account_id")?;
            if account_suspended(&mut tx, &id).await? {
                refused_suspended(tx, &id, &p.name, now).await?;
                tracing::info!(account_id = %id, upstream = %p.name, "federated login refused: account suspended");
                return Err(BrokerError::Suspended);
            }
            refresh(&mut tx, &p.name, &id, profile, now).await?;
            id
        } else {
            let owner =
                sqlx::query("SELECT id, password_hash, status FROM accounts WHERE email_key = $1")
                    .bind(email_key(&profile.email))
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(owner) = owner {
                drop(tx);
                // An account not active yet (or refused) can be neither linked nor
                // logged into: the person is told why and what comes next, rather than
                // offered a link that could only fail.
                let status: String = owner.try_get("status")?;
                if let Some(waiting) = not_active(&status) {
                    tracing::info!(upstream = %p.name, status = %status, "federated login refused: the address's account is not active");
                    return Err(BrokerError::NotActive(waiting));
                }
                let offer = self
                    .offer(
                        p,
                        profile,
                        &owner.try_get::<String, _>("id")?,
                        id_token,
                        auth_request,
                        now,
                    )
                    .await?;
                return Ok(Outcome::LinkOffered(LinkOffer {
                    has_password: owner
                        .try_get::<Option<String>, _>("password_hash")?
                        .is_some(),
                    ..offer
                }));
            }
            create(&mut tx, &p.name, profile, now).await?
        };
        tx.commit().await?;
        Ok(Outcome::LoggedIn(FederatedLogin {
            account_id,
            auth_request,
            provider: p.name.clone(),
            id_token: Secret::new(id_token.to_owned()),
        }))
    }

    async fn offer(
        &self,
        p: &UpstreamConfig,
        profile: &Profile,
        account_id: &str,
        id_token: &str,
        auth_request: Option<String>,
        now: i64,
    ) -> Result<LinkOffer, BrokerError> {
        let token = random_token();
        sqlx::query(
            "INSERT INTO upstream_link_offers (token_hash, provider, subject, account_id, email, id_token, \
             auth_request, attempts, expires_at, created_at, claims) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10)",
        )
        .bind(hash_token(&token))
        .bind(&p.name)
        .bind(&profile.subject)
        .bind(account_id)
        .bind(&profile.email)
        .bind(id_token)
        .bind(&auth_request)
        .bind(now + OFFER_TTL_SECS)
        .bind(now)
        .bind(&profile.facts)
        .execute(self.db.pool())
        .await?;
        tracing::info!(account_id, upstream = %p.name, "upstream identity matches an account by email; link offered");
        Ok(LinkOffer {
            token: Secret::new(token),
            provider_label: p.label.clone(),
            masked_email: MaskedEmail(&profile.email).to_string(),
            has_password: false,
            auth_request,
        })
    }

    /// The live offer of `token`.
    ///
    /// # Errors
    /// [`BrokerError::BadOffer`] when unknown, expired or used up.
    pub async fn pending_offer(&self, token: &str) -> Result<PendingOffer, BrokerError> {
        let row = sqlx::query(
            "SELECT o.account_id, a.email, o.provider, o.auth_request, a.password_hash \
             FROM upstream_link_offers o JOIN accounts a ON a.id = o.account_id \
             WHERE o.token_hash = $1 AND o.expires_at > $2 AND o.attempts < $3",
        )
        .bind(hash_token(token))
        .bind(self.clock.now())
        .bind(OFFER_ATTEMPTS)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(BrokerError::BadOffer)?;
        let provider: String = row.try_get("provider")?;
        let provider_label = self
            .providers()
            .iter()
            .find(|p| p.name == provider)
            .map_or_else(|| provider.clone(), |p| p.label.clone());
        Ok(PendingOffer {
            account_id: row.try_get("account_id")?,
            email: row.try_get("email")?,
            provider,
            provider_label,
            has_password: row.try_get::<Option<String>, _>("password_hash")?.is_some(),
            auth_request: row.try_get("auth_request")?,
        })
    }

    /// Counts a failed proof; the offer is dropped after a few.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn offer_failed(&self, token: &str) -> Result<(), BrokerError> {
        sqlx::query(
            "UPDATE upstream_link_offers SET attempts = attempts + 1 WHERE token_hash = $1",
        )
        .bind(hash_token(token))
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The person cancelled: the offer is dropped, nothing is linked or created.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn cancel_offer(&self, token: &str) -> Result<(), BrokerError> {
        sqlx::query("DELETE FROM upstream_link_offers WHERE token_hash = $1")
            .bind(hash_token(token))
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Emails a fresh one-time code to the account of the offer `token` (replacing any
    /// earlier one); returns the address, masked.
    ///
    /// # Errors
    /// [`BrokerError::BadOffer`] when the offer is gone; storage and mail errors.
    pub async fn send_link_code(&self, token: &str) -> Result<String, BrokerError> {
        let offer = self.pending_offer(token).await?;
        let now = self.clock.now();
        let code = new_code();
        let mut tx = self.db.begin().await?;
        let name: String = sqlx::query("SELECT given_name FROM accounts WHERE id = $1")
            .bind(&offer.account_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("given_name")?;
        // Each code sent counts as an attempt: an offer sends at most
        // OFFER_ATTEMPTS emails, so a stranger's page cannot flood the owner's mailbox.
        sqlx::query(
            "UPDATE upstream_link_offers SET code_hash = $1, attempts = attempts + 1 WHERE token_hash = $2",
        )
            .bind(hash_token(&code))
            .bind(hash_token(token))
            .execute(&mut *tx)
            .await?;
        let context = serde_json::json!({
            "code": code,
            "provider_label": offer.provider_label,
            "valid_minutes": OFFER_TTL_SECS / 60,
        });
        self.outbox
            .enqueue(&mut tx, "link_code", &offer.email, &name, context, now)
            .await
            .map_err(|e| BrokerError::Mail(dge_core::ErrorChain(&e).to_string()))?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(account_id = %offer.account_id, upstream = %offer.provider, "link code emailed");
        Ok(MaskedEmail(&offer.email).to_string())
    }

    /// Checks `code` against the one emailed for the offer `token`; a wrong code
    /// counts as a failed attempt.
    ///
    /// # Errors
    /// [`BrokerError::WrongCode`]; [`BrokerError::BadOffer`] when the offer is gone.
    pub async fn check_link_code(&self, token: &str, code: &str) -> Result<(), BrokerError> {
        let row = sqlx::query(
            "SELECT code_hash FROM upstream_link_offers \
             WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3",
        )
        .bind(hash_token(token))
        .bind(self.clock.now())
        .bind(OFFER_ATTEMPTS)
        .fetch_optional(self.db.pool())
        .await?
        .ok_or(BrokerError::BadOffer)?;
        let expected: Option<String> = row.try_get("code_hash")?;
        let typed = hash_token(code.trim());
        if expected.is_some_and(|e| constant_time_eq(e.as_bytes(), typed.as_bytes())) {
            return Ok(());
        }
        self.offer_failed(token).await?;
        Err(BrokerError::WrongCode)
    }

    /// The upstream labels an account without a password logs in with, when
    /// `identifier` is its email address: the login page then points the person at
    /// the right button instead of only saying the password is wrong.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn federated_labels(&self, identifier: &str) -> Result<Vec<String>, BrokerError> {
        let rows = sqlx::query(
            "SELECT DISTINCT l.provider FROM federated_links l JOIN accounts a ON a.id = l.account_id \
             WHERE a.email_key = $1 AND a.password_hash IS NULL ORDER BY l.provider",
        )
        .bind(email_key(identifier))
        .fetch_all(self.db.pool())
        .await?;
        let mut labels = Vec::new();
        for row in rows {
            let name: String = row.try_get("provider")?;
            if let Some(p) = self.providers().iter().find(|p| p.name == name) {
                labels.push(p.label.clone());
            }
        }
        Ok(labels)
    }

    /// The person proved `account_id` (by `proof`, checked by the caller): links the
    /// upstream identity to it and logs in.
    ///
    /// # Errors
    /// [`BrokerError::BadOffer`] when the offer is gone or is for another account.
    pub async fn accept_offer(
        &self,
        token: &str,
        proven_account_id: &str,
        proof: Proof,
    ) -> Result<FederatedLogin, BrokerError> {
        let now = self.clock.now();
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT provider, subject, account_id, email, id_token, auth_request, claims FROM upstream_link_offers \
             WHERE token_hash = $1 AND expires_at > $2 AND attempts < $3",
        )
        .bind(hash_token(token))
        .bind(now)
        .bind(OFFER_ATTEMPTS)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(BrokerError::BadOffer)?;
        let account_id: String = row.try_get("account_id")?;
        if account_id != proven_account_id {
            return Err(BrokerError::BadOffer);
        }
        // Suspended since the offer (or before it): neither linked nor logged in.
        let provider: String = row.try_get("provider")?;
        if account_suspended(&mut tx, &account_id).await? {
            refused_suspended(tx, &account_id, &provider, now).await?;
            tracing::info!(account_id = %account_id, "link refused: account suspended");
            return Err(BrokerError::Suspended);
        }
        // Not active (any more): whatever the proof, nothing is linked.
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM accounts WHERE id = $1")
                .bind(&account_id)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(waiting) = not_active(status.as_deref().unwrap_or("rejected")) {
            tracing::info!(account_id = %account_id, "link refused: account not active");
            return Err(BrokerError::NotActive(waiting));
        }
        let subject: String = row.try_get("subject")?;
        // Linked meanwhile, from another browser's offer for the same identity: to
        // this account, the login goes on; to another, this offer is void.
        let linked: Option<String> = sqlx::query_scalar(
            "SELECT account_id FROM federated_links WHERE provider = $1 AND subject = $2",
        )
        .bind(&provider)
        .bind(&subject)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(linked) = linked {
            sqlx::query("DELETE FROM upstream_link_offers WHERE token_hash = $1")
                .bind(hash_token(token))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            if linked != account_id {
                return Err(BrokerError::BadOffer);
            }
            return Ok(FederatedLogin {
                account_id,
                auth_request: row.try_get("auth_request")?,
                provider,
                id_token: Secret::new(row.try_get("id_token")?),
            });
        }
        sqlx::query("DELETE FROM upstream_link_offers WHERE token_hash = $1")
            .bind(hash_token(token))
            .execute(&mut *tx)
            .await?;
        insert_link(
            &mut tx,
            &provider,
            &subject,
            &account_id,
            &row.try_get::<String, _>("email")?,
            &row.try_get::<String, _>("claims")?,
            now,
        )
        .await?;
        dge_store::audit(
            &mut tx,
            &format!("upstream:{provider}"),
            "account.link_added",
            &account_id,
            proof.as_str(),
            now,
        )
        .await?;
        // The owner hears of every new way into the account, in the same transaction.
        let owner = sqlx::query("SELECT email, given_name FROM accounts WHERE id = $1")
            .bind(&account_id)
            .fetch_one(&mut *tx)
            .await?;
        let label = self
            .providers()
            .iter()
            .find(|p| p.name == provider)
            .map_or_else(|| provider.clone(), |p| p.label.clone());
        let context = serde_json::json!({
            "provider_label": label,
            "linked_at": dge_core::time::format_fr(now),
            "reset_url": format!("{}/password/forgot", self.public_url),
        });
        self.outbox
            .enqueue(
                &mut tx,
                "federated_link_added",
                &owner.try_get::<String, _>("email")?,
                &owner.try_get::<String, _>("given_name")?,
                context,
                now,
            )
            .await
            .map_err(|e| BrokerError::Mail(dge_core::ErrorChain(&e).to_string()))?;
        tx.commit().await?;
        self.outbox.wake();
        tracing::info!(account_id = %account_id, upstream = %provider, "upstream identity linked after proof");
        Ok(FederatedLogin {
            account_id,
            auth_request: row.try_get("auth_request")?,
            provider,
            id_token: Secret::new(row.try_get("id_token")?),
        })
    }
}

/// The status of an account that can be neither linked nor logged into through an
/// upstream (suspension aside, which has its own answer), or `None` when active. A
/// status this version does not know counts as refused.
fn not_active(status: &str) -> Option<AccountStatus> {
    match AccountStatus::parse(status) {
        Some(AccountStatus::Active | AccountStatus::Suspended) => None,
        known => Some(known.unwrap_or(AccountStatus::Rejected)),
    }
}

/// Whether an administrator suspended `account_id`.
/// Records a login or link refused because the account is suspended, as the password
/// form does (`login.refused_inactive`), and ends `tx`: nothing else was written in it.
async fn refused_suspended(
    mut tx: dge_store::Transaction<'static, dge_store::Any>,
    account_id: &str,
    provider: &str,
    now: i64,
) -> sqlx::Result<()> {
    dge_store::audit(
        &mut tx,
        account_id,
        "login.refused_inactive",
        account_id,
        &format!("upstream={provider} status=suspended"),
        now,
    )
    .await?;
    tx.commit().await
}

async fn account_suspended(conn: &mut AnyConnection, account_id: &str) -> sqlx::Result<bool> {
    Ok(
        sqlx::query("SELECT 1 AS found FROM accounts WHERE id = $1 AND status = 'suspended'")
            .bind(account_id)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

async fn insert_link(
    conn: &mut AnyConnection,
    provider: &str,
    subject: &str,
    account_id: &str,
    email: &str,
    facts: &str,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO federated_links (provider, subject, account_id, email, claims, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(provider)
    .bind(subject)
    .bind(account_id)
    .bind(email)
    .bind(facts)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The organisation of `siret`; an unknown SIRET proposes one named after the claims.
async fn organisation_for(
    conn: &mut AnyConnection,
    profile: &Profile,
    now: i64,
) -> sqlx::Result<Option<String>> {
    let Some(siret) = &profile.siret else {
        return Ok(None);
    };
    let found = sqlx::query("SELECT id FROM organisations WHERE siret = $1")
        .bind(siret)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = found {
        return Ok(Some(row.try_get("id")?));
    }
    let id = dge_core::new_id();
    let name = profile
        .organisation_label
        .clone()
        .unwrap_or_else(|| format!("SIRET {siret}"));
    sqlx::query(
        "INSERT INTO organisations (id, name, name_key, siret, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'proposed', $5, $5)",
    )
    .bind(&id)
    .bind(&name)
    .bind(name.to_lowercase())
    .bind(siret)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Some(id))
}

async fn create(
    conn: &mut AnyConnection,
    provider: &str,
    profile: &Profile,
    now: i64,
) -> Result<String, BrokerError> {
    let id = dge_core::new_id();
    let organisation = organisation_for(conn, profile, now).await?;
    sqlx::query(
        "INSERT INTO accounts (id, kind, email, email_key, given_name, family_name, phone, organisation_id, \
         status, email_verified, created_at, updated_at) \
         VALUES ($1, 'federated', $2, $3, $4, $5, $6, $7, 'active', 1, $8, $8)",
    )
    .bind(&id)
    .bind(&profile.email)
    .bind(email_key(&profile.email))
    .bind(&profile.given_name)
    .bind(&profile.family_name)
    .bind(profile.phone.clone().unwrap_or_default())
    .bind(&organisation)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    insert_link(
        conn,
        provider,
        &profile.subject,
        &id,
        &profile.email,
        &profile.facts,
        now,
    )
    .await?;
    dge_store::audit(
        conn,
        &format!("upstream:{provider}"),
        "account.federated_created",
        &id,
        "",
        now,
    )
    .await?;
    if let Some(org) = &organisation
        && trusted(conn, org).await?
    {
        // The trusted path: the upstream vouches for the SIRET, so a member of a
        // trusted organisation gets the community space at once, like a local
        // sign-up from one of its domains. Data-module rights still wait for an
        // administrator. Applied at creation only: a later change of SIRET is
        // recorded by `refresh` but grants nothing by itself.
        dge_registry::store::grant_in(
            conn,
            &id,
            dge_registry::service::TRUSTED_PATH_RIGHT,
            "trusted-path",
            now,
        )
        .await?;
        dge_store::audit(
            conn,
            "trusted-path",
            "account.approved",
            &id,
            "trusted organisation (SIRET)",
            now,
        )
        .await?;
    }
    tracing::info!(account_id = %id, upstream = provider, email = %MaskedEmail(&profile.email), "federated account created");
    Ok(id)
}

/// Whether `organisation` is active and trusted.
async fn trusted(conn: &mut AnyConnection, organisation: &str) -> sqlx::Result<bool> {
    let row = sqlx::query(
        "SELECT 1 AS found FROM organisations WHERE id = $1 AND status = 'active' AND trusted = 1",
    )
    .bind(organisation)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}

/// Brings the account up to date with the claims; records which fields changed.
async fn refresh(
    conn: &mut AnyConnection,
    provider: &str,
    account_id: &str,
    profile: &Profile,
    now: i64,
) -> Result<(), BrokerError> {
    let row = sqlx::query(
        "SELECT email, given_name, family_name, phone, organisation_id FROM accounts WHERE id = $1",
    )
    .bind(account_id)
    .fetch_one(&mut *conn)
    .await?;
    let mut changed = Vec::new();
    let mut given: String = row.try_get("given_name")?;
    let mut family: String = row.try_get("family_name")?;
    let mut phone: String = row.try_get("phone")?;
    let mut email: String = row.try_get("email")?;
    let mut organisation: Option<String> = row.try_get("organisation_id")?;
    for (field, current, new) in [
        ("given_name", &mut given, Some(&profile.given_name)),
        ("family_name", &mut family, Some(&profile.family_name)),
        ("phone", &mut phone, profile.phone.as_ref()),
    ] {
        if let Some(new) = new.filter(|n| !n.is_empty() && *n != current) {
            current.clone_from(new);
            changed.push(field);
        }
    }
    if email_key(&email) != email_key(&profile.email) {
        let taken =
            sqlx::query("SELECT 1 AS found FROM accounts WHERE email_key = $1 AND id <> $2")
                .bind(email_key(&profile.email))
                .bind(account_id)
                .fetch_optional(&mut *conn)
                .await?;
        if taken.is_none() {
            email.clone_from(&profile.email);
            changed.push("email");
        } else {
            tracing::warn!(
                account_id,
                upstream = provider,
                "upstream email belongs to another account; kept the old one"
            );
        }
    }
    if profile.siret.is_some() {
        let org = organisation_for(conn, profile, now).await?;
        if org != organisation {
            organisation = org;
            changed.push("organisation_id");
        }
    }
    sqlx::query("UPDATE federated_links SET email = $1, claims = $2, updated_at = $3 WHERE provider = $4 AND subject = $5")
        .bind(&profile.email)
        .bind(&profile.facts)
        .bind(now)
        .bind(provider)
        .bind(&profile.subject)
        .execute(&mut *conn)
        .await?;
    if changed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE accounts SET email = $1, email_key = $2, given_name = $3, family_name = $4, phone = $5, \
         organisation_id = $6, updated_at = $7 WHERE id = $8",
    )
    .bind(&email)
    .bind(email_key(&email))
    .bind(&given)
    .bind(&family)
    .bind(&phone)
    .bind(&organisation)
    .bind(now)
    .bind(account_id)
    .execute(&mut *conn)
    .await?;
    let detail = format!("changed={}", changed.join(","));
    dge_store::audit(
        conn,
        &format!("upstream:{provider}"),
        "account.profile_refreshed",
        account_id,
        &detail,
        now,
    )
    .await?;
    tracing::info!(account_id, upstream = provider, fields = %changed.join(","), "profile refreshed from upstream claims");
    Ok(())
}

#[cfg(test)]
#[path = "accounts_tests.rs"]
mod tests;
