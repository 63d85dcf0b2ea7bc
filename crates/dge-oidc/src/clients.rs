//! Registered OpenID Connect clients.

use dge_core::token::{constant_time_eq, hash_token, random_token};
use dge_store::Db;
use oxide_auth::primitives::registrar::{ExactUrl, RegisteredUrl};
use sqlx::Row;
use sqlx::any::AnyRow;

pub mod lifecycle;

pub use lifecycle::{ChangeError, ClientChanges, Removed};

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of the secret (confidential clients).
    pub secret_hash: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether the client authenticates with a secret.
    pub confidential: bool,
    /// First-party clients skip consent.
    pub first_party: bool,
    /// Per-client settings beyond registration.
    pub settings: ClientSettings,
    /// A random id of this registration, kept in the codes issued to the client so
    /// that a client registered again under the same id cannot use them; empty for
    /// clients registered before it existed.
    pub registration: String,
    /// When this registration was made (Unix seconds).
    pub registered_at: i64,
}

/// Settings of a client that registration leaves at their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    /// Scopes the client may ask with `client_credentials` (each guards gRPC
    /// methods, see `dge_authz::caller::SERVICE_SCOPES`); empty: no such grant.
    pub service_scopes: Vec<String>,
    /// Whether `/userinfo` answers this client with a signed JWT.
    pub userinfo_signed: bool,
    /// `ES256` (default) or `RS256`: how ID tokens for this client are signed.
    pub id_token_alg: String,
    /// Where back-channel logout tokens are posted.
    pub backchannel_logout_uri: Option<String>,
    /// Public keys (a JWKS) for `private_key_jwt` client authentication.
    pub jwks: Option<String>,
}

impl Client {
    /// Whether `uri` is registered, compared as an exact string: no normalisation,
    /// so a trailing slash, a case or port difference, a query or a fragment all fail
    /// (OAuth 2.0 Security BCP §4.1.3).
    #[must_use]
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        let Ok(requested) = ExactUrl::new(uri.to_owned()) else {
            return false;
        };
        self.redirect_uris.iter().any(|registered| {
            ExactUrl::new(registered.clone()).is_ok_and(|r| RegisteredUrl::Exact(r) == requested)
        })
    }

    /// Whether `secret` is this client's secret, compared in constant time.
    #[must_use]
    pub fn secret_matches(&self, secret: &str) -> bool {
        self.secret_hash
            .as_deref()
            .is_some_and(|h| constant_time_eq(h.as_bytes(), hash_token(secret).as_bytes()))
    }
}

fn client_from_row(row: &AnyRow) -> sqlx::Result<Client> {
    let uris: String = row.try_get("redirect_uris")?;
    let logout: String = row.try_get("post_logout_redirect_uris")?;
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        secret_hash: row.try_get("secret_hash")?,
        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
        post_logout_redirect_uris: serde_json::from_str(&logout).unwrap_or_default(),
        confidential: row.try_get::<i64, _>("confidential")? == 1,
        first_party: row.try_get::<i64, _>("first_party")? == 1,
        settings: ClientSettings {
            service_scopes: split_scopes(&row.try_get::<String, _>("service_scopes")?),
            userinfo_signed: row.try_get::<i64, _>("userinfo_signed")? == 1,
            id_token_alg: row.try_get("id_token_alg")?,
            backchannel_logout_uri: row.try_get("backchannel_logout_uri")?,
            // Normalised again as read: rows stored before normalisation existed.
            jwks: row
                .try_get::<Option<String>, _>("jwks")?
                .map(|j| stored_jwks(&row.try_get::<String, _>("id").unwrap_or_default(), j)),
        },
        registration: row.try_get("registration")?,
        registered_at: row.try_get("created_at")?,
    })
}

/// A stored JWKS, normalised; one that the checks of today refuse (stored before
/// them) is kept as it is, with a warning: its keys may still verify, and only an
/// administrator can replace it.
fn stored_jwks(client_id: &str, jwks: String) -> String {
    match normalize_jwks(&jwks) {
        Ok(normalized) => normalized,
        Err(why) => {
            tracing::warn!(client_id = %client_id, reason = %why, "stored JWKS of a client fails the registration checks; register its keys again");
            jwks
        }
    }
}

fn split_scopes(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

const COLUMNS: &str = "id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
     confidential, first_party, service_scopes, userinfo_signed, id_token_alg, \
     backchannel_logout_uri, jwks, registration, created_at";

/// Checks settings: known service scopes, a known algorithm, an acceptable
/// back-channel URI, a JWKS that [`normalize_jwks`] accepts.
#[must_use]
pub fn check_settings(s: &ClientSettings) -> dge_core::Violations {
    let mut v = dge_core::Violations::new();
    for (i, scope) in s.service_scopes.iter().enumerate() {
        if !dge_authz::caller::SERVICE_SCOPES.contains(&scope.as_str()) {
            v.add(
                "service_scopes",
                "invalid",
                format!("portée de service inconnue : {}", scope.escape_debug()),
            );
        } else if s.service_scopes[..i].contains(scope) {
            // As for redirect URIs: a repeat is a slip worth naming.
            v.add(
                "service_scopes",
                "duplicate",
                format!("{scope} : donnée plusieurs fois, une suffit"),
            );
        }
    }
    if !matches!(s.id_token_alg.as_str(), "ES256" | "RS256") {
        v.add("id_token_alg", "invalid", "ES256 ou RS256");
    }
    if let Some(uri) = &s.backchannel_logout_uri {
        if let Some(problem) = redirect_uri_problem(uri) {
            v.add(
                "backchannel_logout_uri",
                "invalid",
                format!("{}: {problem}", shown(uri)),
            );
        } else if crate::backchannel::names_forbidden_target(uri) {
            // The provider itself posts there: not to the cloud's metadata service.
            v.add(
                "backchannel_logout_uri",
                "forbidden_address",
                format!(
                    "{}: adresse interdite (lien local, service de métadonnées d'un nuage, \
                     multidiffusion, réservée ou non spécifiée) : le fournisseur n'y envoie rien",
                    shown(uri)
                ),
            );
        }
    }
    if let Some(Err(why)) = s.jwks.as_deref().map(normalize_jwks) {
        v.add("jwks", "invalid", why);
    }
    v
}

/// Members that only a private JWK holds (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
const PRIVATE_JWK_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// Bytes of a P-256 coordinate.
const P256_COORDINATE_LEN: usize = 32;

/// The smallest RSA modulus accepted, in bits (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// At most this many keys in a client's JWKS (a rotation needs two or three).
const MAX_JWKS_KEYS: usize = 16;

/// At most this many bytes of JWKS: it is checked again each time the client is read.
const MAX_JWKS_BYTES: usize = 64 * 1024;

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A client's JWKS as stored and used for `private_key_jwt`: at most 16 keys, each
/// public, for signatures (`use`, `key_ops` and `alg` when present must say so), EC
/// on P-256 or RSA of 2048 bits or more, and able to verify a signature; a `kid` on
/// each when there are several, all different. Base64url values are written back
/// without padding, RSA integers without leading zero bytes, and EC coordinates
/// shorter than 32 bytes are left-padded with zeros: RFC 7518 §6.2.1.2 wants the
/// full length, but some libraries (authlib among them) drop leading zero bytes,
/// about one key in 128, and such a key is still unambiguous; refusing it would fail
/// a module's authentication at random. The error names the key and says why, for
/// the administrator.
///
/// # Errors
/// A message naming the first key refused.
pub fn normalize_jwks(text: &str) -> Result<String, String> {
    use serde_json::Value;

    if text.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "le JSON Web Key Set dépasse {} Kio",
            MAX_JWKS_BYTES / 1024
        ));
    }
    let mut set: Value =
        serde_json::from_str(text).map_err(|_| "pas du JSON : un JSON Web Key Set est attendu")?;
    let keys = set
        .get_mut("keys")
        .and_then(Value::as_array_mut)
        .ok_or("pas un JSON Web Key Set : il n'a pas de tableau \"keys\"")?;
    if keys.is_empty() {
        return Err("le JSON Web Key Set ne contient aucune clé".into());
    }
    if keys.len() > MAX_JWKS_KEYS {
        return Err(format!(
            "le JSON Web Key Set contient {} clés, {MAX_JWKS_KEYS} au plus sont acceptées",
            keys.len()
        ));
    }
    let several = keys.len() > 1;
    let mut kids = std::collections::HashSet::new();
    for (n, key) in keys.iter_mut().enumerate() {
        let n = n + 1;
        let members = key
            .as_object_mut()
            .ok_or_else(|| format!("clé {n} : pas un objet JSON"))?;
        if let Some(m) = PRIVATE_JWK_MEMBERS
            .iter()
            .find(|m| members.contains_key(**m))
        {
            return Err(format!(
                "la clé {n} contient le membre privé \"{m}\" : n'enregistrez que les clés publiques"
            ));
        }
        check_key_purpose(members, n)?;
        match members.get("kid") {
            None if several => {
                return Err(format!(
                    "clé {n} : chaque clé doit avoir un \"kid\" quand le jeu en contient plusieurs"
                ));
            }
            Some(Value::String(kid)) if !kids.insert(kid.clone()) => {
                return Err(format!("clé {n} : le \"kid\" {kid:?} est déjà utilisé"));
            }
            None | Some(Value::String(_)) => {}
            Some(_) => return Err(format!("clé {n} : \"kid\" doit être une chaîne")),
        }
        let alg = match members.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                normalize_ec_key(members, n)?;
                "ES256"
            }
            Some("RSA") => {
                normalize_rsa_key(members, n)?;
                "RS256"
            }
            _ => return Err(format!("clé {n} : \"kty\" doit valoir EC ou RSA")),
        };
        if members.get("alg").is_some_and(|a| a.as_str() != Some(alg)) {
            return Err(format!(
                "clé {n} : \"alg\" doit valoir {alg} pour cette clé"
            ));
        }
        let usable = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(key.clone())
            .ok()
            .is_some_and(|jwk| jsonwebtoken::DecodingKey::from_jwk(&jwk).is_ok());
        if !usable {
            return Err(format!("clé {n} : pas une clé publique JWK utilisable"));
        }
    }
    serde_json::to_string(&set).map_err(|e| format!("impossible d'écrire le jeu de clés : {e}"))
}

/// `use` and `key_ops`, when present, must allow verifying signatures.
fn check_key_purpose(members: &JsonObject, n: usize) -> Result<(), String> {
    use serde_json::Value;
    if members
        .get("use")
        .is_some_and(|u| u.as_str() != Some("sig"))
    {
        return Err(format!("clé {n} : \"use\" doit valoir \"sig\""));
    }
    let verifies = |ops: &Value| {
        ops.as_array()
            .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    };
    if members.get("key_ops").is_some_and(|ops| !verifies(ops)) {
        return Err(format!("clé {n} : \"key_ops\" doit contenir \"verify\""));
    }
    Ok(())
}

/// The bytes of base64url member `name`, with or without padding.
fn base64url_member(members: &JsonObject, name: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = members.get(name)?.as_str()?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

fn base64url(bytes: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bytes)
        .into()
}

/// An EC key on P-256, its coordinates written back at their full 32 bytes.
fn normalize_ec_key(members: &mut JsonObject, n: usize) -> Result<(), String> {
    if members.get("crv").and_then(serde_json::Value::as_str) != Some("P-256") {
        return Err(format!(
            "clé {n} : les clés EC doivent être sur la courbe P-256 (ES256)"
        ));
    }
    let mut point = vec![0x04];
    for name in ["x", "y"] {
        let bytes = base64url_member(members, name)
            .filter(|b| !b.is_empty() && b.len() <= P256_COORDINATE_LEN)
            .ok_or_else(|| format!("clé {n} : \"{name}\" n'est pas une coordonnée P-256"))?;
        let mut full = vec![0; P256_COORDINATE_LEN - bytes.len()];
        full.extend_from_slice(&bytes);
        members.insert(name.into(), base64url(&full));
        point.extend_from_slice(&full);
    }
    if p256::PublicKey::from_sec1_bytes(&point).is_err() {
        return Err(format!("clé {n} : le point n'est pas sur la courbe P-256"));
    }
    Ok(())
}

/// An RSA public key the `rsa` crate accepts, of [`MIN_RSA_BITS`] or more, its
/// integers written back without padding or leading zero bytes.
fn normalize_rsa_key(members: &mut JsonObject, n: usize) -> Result<(), String> {
    use rsa::traits::PublicKeyParts as _;
    let integer = |name: &str| {
        base64url_member(members, name)
            .filter(|b| !b.is_empty())
            .map(|b| rsa::BigUint::from_bytes_be(&b))
            .ok_or_else(|| format!("clé {n} : \"{name}\" n'est pas un entier en base64url"))
    };
    let key = rsa::RsaPublicKey::new(integer("n")?, integer("e")?)
        .map_err(|e| format!("clé {n} : pas une clé publique RSA ({e})"))?;
    if key.n().bits() < MIN_RSA_BITS {
        return Err(format!(
            "clé {n} : les clés RSA doivent avoir au moins {MIN_RSA_BITS} bits, celle-ci en a {}",
            key.n().bits()
        ));
    }
    members.insert("n".into(), base64url(&key.n().to_bytes_be()));
    members.insert("e".into(), base64url(&key.e().to_bytes_be()));
    Ok(())
}

/// Stores a client's settings.
///
/// # Errors
/// [`AddError::Invalid`] for bad settings, storage errors.
pub async fn set_settings(db: &Db, id: &str, s: &ClientSettings, now: i64) -> Result<(), AddError> {
    check_settings(s).into_result().map_err(AddError::Invalid)?;
    // check_settings accepted it: normalising cannot fail here.
    let jwks = s.jwks.as_deref().and_then(|j| normalize_jwks(j).ok());
    sqlx::query(
        "UPDATE oidc_clients SET service_scopes = $1, userinfo_signed = $2, id_token_alg = $3, \
         backchannel_logout_uri = $4, jwks = $5, updated_at = $6 WHERE id = $7",
    )
    .bind(s.service_scopes.join(" "))
    .bind(i64::from(s.userinfo_signed))
    .bind(&s.id_token_alg)
    .bind(&s.backchannel_logout_uri)
    .bind(jwks)
    .bind(now)
    .bind(id)
    .execute(db.pool())
    .await?;
    db.access_changed().await;
    Ok(())
}

/// The client with this id.
///
/// # Errors
/// Fails when the database fails.
pub async fn find(db: &Db, id: &str) -> sqlx::Result<Option<Client>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM oidc_clients WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(client_from_row).transpose()
}

/// Every client, by id.
///
/// # Errors
/// Fails when the database fails.
pub async fn list(db: &Db) -> sqlx::Result<Vec<Client>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM oidc_clients ORDER BY id"))
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(client_from_row).collect()
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Exact redirect URIs; none for a tool that uses the device grant.
    pub redirect_uris: Vec<String>,
    /// Exact post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// Whether it gets a secret.
    pub confidential: bool,
    /// Whether consent is skipped.
    pub first_party: bool,
    /// A fixed secret (demo seeds only); `None` draws a random one.
    pub secret: Option<String>,
}

/// Why a client cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Bad fields.
    #[error("invalid client")]
    Invalid(dge_core::Violations),
    /// The id is taken.
    #[error("client id already registered")]
    Exists,
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
}

/// At most this many characters in a client's name, as in an organisation's.
pub const MAX_NAME_CHARS: usize = 200;

/// At most this many bytes in a redirect URI (and a post-logout or back-channel one).
pub const MAX_URI_BYTES: usize = 2000;

/// At most this many URIs in a list of redirect or post-logout redirect URIs.
pub const MAX_URIS: usize = 50;

/// At most this many characters of a refused URI are repeated in its message.
const SHOWN_CHARS: usize = 120;

/// Checks a redirect URI for registration: see [`redirect_uri_problem`].
#[must_use]
pub fn valid_redirect_uri(uri: &str) -> bool {
    redirect_uri_problem(uri).is_none()
}

/// What is wrong with a redirect URI (or a post-logout or back-channel logout URI)
/// offered for registration, if anything: at most [`MAX_URI_BYTES`], absolute
/// http(s), plain http only on loopback hosts, no credentials, no fragment, an ASCII
/// host, and written exactly as a URL parser writes it back.
#[must_use]
pub fn redirect_uri_problem(uri: &str) -> Option<String> {
    if uri.len() > MAX_URI_BYTES {
        return Some(format!(
            "trop longue : {} octets, {MAX_URI_BYTES} au plus",
            uri.len()
        ));
    }
    // Redirect URIs are compared byte for byte: a `*` would never act as a wildcard,
    // and whoever typed one expects it to.
    if uri.contains('*') {
        return Some(
            "pas de joker (*) : les adresses de retour sont comparées à l'identique, donnez chacune"
                .into(),
        );
    }
    let Ok(url) = url::Url::parse(uri) else {
        return Some("pas une adresse absolue".into());
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if url.host_str().is_none()
        || !(url.scheme() == "https" || (url.scheme() == "http" && loopback))
    {
        return Some(
            "doit être en https (http seulement sur localhost, 127.0.0.1 ou [::1])".into(),
        );
    }
    // Credentials in a redirect URI would be sent along with every code.
    if !url.username().is_empty() || url.password().is_some() {
        return Some(
            "pas de nom d'utilisateur ni de mot de passe dans une adresse de retour".into(),
        );
    }
    if url.fragment().is_some() {
        return Some("pas de fragment (#…) dans une adresse de retour".into());
    }
    // The parser gives the host in punycode; the client would send either spelling.
    if !authority(uri).is_ascii() {
        return Some(format!(
            "nom d'hôte non ASCII : écrivez-le en punycode, {}",
            url.host_str().unwrap_or_default()
        ));
    }
    // Compared byte for byte with what the client sends, which its own URL library
    // has most likely written back: a space, a control character, an upper-case
    // host, a default port or a missing `/` would make the two differ, or pass
    // unseen in a log.
    if uri != url.as_str() {
        return Some(format!(
            "pas écrite sous sa forme normalisée (les adresses de retour sont comparées \
             octet par octet) : écrivez {url}"
        ));
    }
    None
}

/// The authority of an absolute URI (`user@host:port`), as written; empty without
/// one.
fn authority(uri: &str) -> &str {
    // Without `//` (`https:a.fr/cb`), the URI differs from its parsed form anyway.
    let rest = uri.split_once("://").map_or("", |(_, rest)| rest);
    rest.split(['/', '?', '#', '\\']).next().unwrap_or_default()
}

/// `text` as repeated in a message: control and invisible format characters written
/// as `\u{…}` escapes, so that they neither garble the message nor pass unseen, and
/// cut after [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push('…');
            break;
        }
        let mut buf = [0; 4];
        if dge_registry::domain::signup::has_hidden_characters(c.encode_utf8(&mut buf)) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Adds to `v` a violation on `name` for each rule a client's display name breaks:
/// at most [`MAX_NAME_CHARS`] characters, and none hidden (controls, bidirectional
/// overrides, zero-width characters…): the name is shown on the consent page, where
/// such a character would garble it or let it pass for another client's. The same
/// rule as for people's and organisations' names.
fn check_name(v: &mut dge_core::Violations, name: &str) {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS {
        v.add(
            "name",
            "too_long",
            format!("le nom compte {MAX_NAME_CHARS} caractères au plus"),
        );
    }
    if dge_registry::domain::signup::has_hidden_characters(name) {
        v.add(
            "name",
            "control_characters",
            "le nom contient des caractères non autorisés (invisibles ou de contrôle)",
        );
    } else if dge_registry::domain::signup::has_stacked_marks(name) {
        v.add("name", "combining_marks", STACKED_MARKS);
    }
}

/// The message for a name that piles up combining marks.
const STACKED_MARKS: &str = "le nom superpose trop d'accents ou de signes sur une même lettre \
                             (3 au plus)";

/// Whether `id` is a canonical client id. Client ids are the portal's module names, so
/// only one spelling is accepted: `DATAHUB` beside `datahub` would be a second client
/// passing for the first in logs, consent screens and audit.
#[must_use]
pub fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// Adds to `v` a violation on `field` for each rule a list of URIs breaks: at most
/// [`MAX_URIS`] of them, none given twice, each as [`redirect_uri_problem`] wants.
/// Only the first [`MAX_URIS`] are looked at one by one: the list must be cut anyway.
fn check_uris(v: &mut dge_core::Violations, field: &'static str, uris: &[String]) {
    if uris.len() > MAX_URIS {
        v.add(
            field,
            "too_many",
            format!("{} adresses : {MAX_URIS} au plus", uris.len()),
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut repeated: Vec<&str> = Vec::new();
    for uri in uris.iter().take(MAX_URIS) {
        if seen.contains(&uri.as_str()) {
            if !repeated.contains(&uri.as_str()) {
                repeated.push(uri);
                v.add(
                    field,
                    "duplicate",
                    format!("{}: donnée plusieurs fois, une suffit", shown(uri)),
                );
            }
            continue;
        }
        seen.push(uri);
        if let Some(problem) = redirect_uri_problem(uri) {
            v.add(field, "invalid", format!("{}: {problem}", shown(uri)));
        }
    }
}

/// Registers a client with the default settings. Returns its secret (confidential
/// clients), shown once.
///
/// # Errors
/// [`AddError::Invalid`], [`AddError::Exists`], storage errors.
pub async fn add(db: &Db, new: NewClient, now: i64) -> Result<Option<String>, AddError> {
    let defaults = ClientSettings {
        id_token_alg: "ES256".into(),
        ..ClientSettings::default()
    };
    add_with_settings(db, new, &defaults, "system", now).await
}

/// Registers a client and its settings in one statement, with its audit row
/// (`client.registered`, by `actor`) in the same transaction, so that a failure
/// leaves no client behind with default settings. Every broken rule, of the client
/// and of its settings, is answered at once. Returns its secret (confidential
/// clients), shown once.
///
/// # Errors
/// [`AddError::Invalid`], [`AddError::Exists`], storage errors.
pub async fn add_with_settings(
    db: &Db,
    new: NewClient,
    settings: &ClientSettings,
    actor: &str,
    now: i64,
) -> Result<Option<String>, AddError> {
    let mut v = dge_core::Violations::new();
    check_name(&mut v, &new.name);
    if !is_client_id(&new.id) {
        v.add(
            "id",
            "invalid",
            "un nom de module canonique : lettres minuscules, chiffres, « - », « _ » ou « . », \
             commençant par une lettre ou un chiffre, de 1 à 64 caractères",
        );
    }
    // No redirect URI: a tool without a browser (such as `dgectl`), which may only use
    // the device grant (see `crate::device`) or `client_credentials`.
    check_uris(&mut v, "redirect_uris", &new.redirect_uris);
    check_uris(
        &mut v,
        "post_logout_redirect_uris",
        &new.post_logout_redirect_uris,
    );
    v.extend(check_settings(settings));
    v.into_result().map_err(AddError::Invalid)?;
    // check_settings accepted it: normalising cannot fail here.
    let jwks = settings
        .jwks
        .as_deref()
        .and_then(|j| normalize_jwks(j).ok());
    let secret = new
        .confidential
        .then(|| new.secret.clone().unwrap_or_else(random_token));
    let name = if new.name.trim().is_empty() {
        new.id.clone()
    } else {
        new.name.trim().to_owned()
    };
    let mut tx = db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO oidc_clients (id, name, secret_hash, redirect_uris, post_logout_redirect_uris, \
         confidential, first_party, service_scopes, userinfo_signed, id_token_alg, \
         backchannel_logout_uri, jwks, registration, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)",
    )
    .bind(&new.id)
    .bind(name)
    .bind(secret.as_deref().map(hash_token))
    .bind(serde_json::to_string(&new.redirect_uris).unwrap_or_else(|_| "[]".into()))
    .bind(serde_json::to_string(&new.post_logout_redirect_uris).unwrap_or_else(|_| "[]".into()))
    .bind(i64::from(new.confidential))
    .bind(i64::from(new.first_party))
    .bind(settings.service_scopes.join(" "))
    .bind(i64::from(settings.userinfo_signed))
    .bind(&settings.id_token_alg)
    .bind(&settings.backchannel_logout_uri)
    .bind(jwks)
    .bind(dge_core::new_id())
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {
            let detail = format!(
                "confidential={} first_party={} redirect_uris={}",
                new.confidential,
                new.first_party,
                new.redirect_uris.len()
            );
            dge_store::audit(&mut tx, actor, "client.registered", &new.id, &detail, now).await?;
            tx.commit().await?;
            db.access_changed().await;
            Ok(secret)
        }
        Err(e) if dge_store::is_unique_violation(&e, "oidc_clients_pkey", "oidc_clients.id") => {
            Err(AddError::Exists)
        }
        Err(e) => Err(AddError::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client {
            id: "datahub".into(),
            name: "DataHub".into(),
            secret_hash: Some(hash_token("s3cret")),
            redirect_uris: vec!["https://datahub.example.fr/callback".into()],
            post_logout_redirect_uris: vec![],
            confidential: true,
            first_party: true,
            settings: ClientSettings::default(),
            registration: String::new(),
            registered_at: 0,
        }
    }

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// The public JWK of `secret` as authlib writes it: coordinates without their
    /// leading zero bytes.
    fn jwk_without_leading_zeros(secret: &p256::SecretKey) -> serde_json::Value {
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        let trimmed = |c: &[u8]| {
            let start = c.iter().position(|b| *b != 0).unwrap_or(c.len());
            URL_SAFE_NO_PAD.encode(&c[start..])
        };
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "k1",
            "x": trimmed(point.x().unwrap()), "y": trimmed(point.y().unwrap()),
        })
    }

    fn set(keys: &[serde_json::Value]) -> String {
        serde_json::json!({ "keys": keys }).to_string()
    }

    #[test]
    fn a_short_ec_coordinate_is_padded_and_the_key_verifies() {
        use p256::pkcs8::EncodePrivateKey as _;
        let mut rng = p256::elliptic_curve::rand_core::OsRng;
        // About one key in 256 has an x with a leading zero byte.
        let secret = std::iter::repeat_with(|| p256::SecretKey::random(&mut rng))
            .take(20_000)
            .find(|k| {
                let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                    &k.public_key(),
                    false,
                );
                point.x().unwrap()[0] == 0
            })
            .expect("a key with a short x within 20 000 draws");
        let short = jwk_without_leading_zeros(&secret);
        assert!(
            URL_SAFE_NO_PAD
                .decode(short["x"].as_str().unwrap())
                .unwrap()
                .len()
                < 32
        );
        let text = set(&[short]);
        // jsonwebtoken alone cannot use the short key.
        let as_sent: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&text).unwrap();
        let der = secret.to_pkcs8_der().unwrap();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &serde_json::json!({ "sub": "svc" }),
            &jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()),
        )
        .unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let verifies = |set: &jsonwebtoken::jwk::JwkSet| {
            jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).is_ok_and(|key| {
                jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).is_ok()
            })
        };
        assert!(!verifies(&as_sent));
        let normalized: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(&normalize_jwks(&text).unwrap()).unwrap();
        assert!(verifies(&normalized));
        let stored: serde_json::Value =
            serde_json::from_str(&normalize_jwks(&text).unwrap()).unwrap();
        for c in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD.decode(stored["keys"][0][c].as_str().unwrap());
            assert_eq!(bytes.unwrap().len(), 32, "{c}");
        }
        assert_eq!(stored["keys"][0]["kid"], "k1");
    }

    #[test]
    fn a_jwks_that_cannot_serve_private_key_jwt_is_refused_with_its_reason() {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let good = jwk_without_leading_zeros(&secret);
        let with = |name: &str, value: serde_json::Value| {
            let mut key = good.clone();
            key[name] = value;
            set(&[key])
        };
        let mut no_kid = good.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        let long = URL_SAFE_NO_PAD.encode([1u8; 33]);
        let off_curve = URL_SAFE_NO_PAD.encode([7u8; 32]);
        for (text, expected) in [
            ("{".to_owned(), "pas du JSON"),
            (r#"{"kty":"EC"}"#.to_owned(), "pas de tableau \"keys\""),
            (set(&[]), "ne contient aucune clé"),
            (set(&[serde_json::json!("k")]), "clé 1 : pas un objet JSON"),
            (with("d", "AAAA".into()), "membre privé \"d\""),
            (with("crv", "P-384".into()), "courbe P-256"),
            (with("kty", "oct".into()), "\"kty\" doit valoir EC ou RSA"),
            (
                with("x", long.into()),
                "\"x\" n'est pas une coordonnée P-256",
            ),
            (
                with("y", "!!".into()),
                "\"y\" n'est pas une coordonnée P-256",
            ),
            (with("x", off_curve.into()), "pas sur la courbe P-256"),
            (with("use", "enc".into()), "\"use\" doit valoir \"sig\""),
            (
                with("key_ops", serde_json::json!(["sign"])),
                "doit contenir \"verify\"",
            ),
            (with("alg", "HS256".into()), "\"alg\" doit valoir ES256"),
            (with("kid", 5.into()), "\"kid\" doit être une chaîne"),
            (
                set(&[good.clone(), good.clone()]),
                "clé 2 : le \"kid\" \"k1\" est déjà utilisé",
            ),
            (
                set(&[no_kid.clone(), good.clone()]),
                "clé 1 : chaque clé doit avoir un \"kid\"",
            ),
            (set(&vec![good.clone(); 17]), "contient 17 clés, 16 au plus"),
            (
                set(&[serde_json::json!({"kty": "EC", "x": "A".repeat(70_000)})]),
                "dépasse 64 Kio",
            ),
            (
                set(&[
                    good.clone(),
                    serde_json::json!({"kty": "RSA", "kid": "r", "e": "AQAB"}),
                ]),
                "clé 2 : \"n\" n'est pas un entier en base64url",
            ),
            (
                set(&[serde_json::json!({"kty": "RSA", "e": "AQAB",
                    "n": URL_SAFE_NO_PAD.encode([0xffu8; 64])})]),
                "les clés RSA doivent avoir au moins 2048 bits, celle-ci en a 512",
            ),
            (
                set(&[
                    serde_json::json!({"kty": "RSA", "e": "AQAB", "alg": "ES256",
                    "n": URL_SAFE_NO_PAD.encode([0xffu8; 256])}),
                ]),
                "\"alg\" doit valoir RS256",
            ),
        ] {
            let why = normalize_jwks(&text).unwrap_err();
            assert!(why.contains(expected), "{text}: {why}");
        }
        // RFC 7517 appendix A.1's RSA public key passes as it is.
        let rsa = serde_json::json!({"kty": "RSA", "kid": "2011-04-29", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        let kept: serde_json::Value =
            serde_json::from_str(&normalize_jwks(&set(std::slice::from_ref(&rsa))).unwrap())
                .unwrap();
        assert_eq!(kept["keys"][0], rsa);
        // Written with padding, a leading zero byte and the members of a signing key,
        // it is accepted and written back in the canonical form.
        let mut padded = rsa.clone();
        let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
        padded["n"] = base64::engine::general_purpose::URL_SAFE
            .encode([&[0u8][..], &n].concat())
            .into();
        padded["e"] = "AQAB====".into();
        padded["use"] = "sig".into();
        padded["alg"] = "RS256".into();
        padded["key_ops"] = serde_json::json!(["verify"]);
        let kept: serde_json::Value =
            serde_json::from_str(&normalize_jwks(&set(&[padded])).unwrap()).unwrap();
        assert_eq!(kept["keys"][0]["n"], rsa["n"]);
        assert_eq!(kept["keys"][0]["e"], "AQAB");
        // Several keys, each with its own kid.
        let mut other = good.clone();
        other["kid"] = "k2".into();
        assert!(normalize_jwks(&set(&[good.clone(), other, rsa.clone()])).is_ok());
        // The check of settings reports the reason on the `jwks` field.
        let settings = ClientSettings {
            id_token_alg: "ES256".into(),
            jwks: Some(with("d", "AAAA".into())),
            ..ClientSettings::default()
        };
        let violations = check_settings(&settings);
        let why = violations.message_for("jwks").unwrap();
        assert!(why.contains("membre privé"), "{why}");
    }

    #[test]
    fn a_service_scope_given_twice_is_named() {
        let settings = ClientSettings {
            id_token_alg: "ES256".into(),
            service_scopes: vec!["authz:check".into(), "authz:check".into()],
            ..ClientSettings::default()
        };
        let violations = check_settings(&settings);
        let found: Vec<_> = violations.iter().map(|v| (v.field, v.code)).collect();
        assert_eq!(found, [("service_scopes", "duplicate")]);
    }

    #[test]
    fn client_ids_have_one_lower_case_spelling() {
        for ok in [
            "datahub",
            "communautes",
            "portail-cartes",
            "svc_2",
            "a.b",
            "9lives",
        ] {
            assert!(is_client_id(ok), "{ok}");
        }
        for bad in [
            "DATAHUB",
            "DataHub",
            "datahuB",
            "",
            "-x",
            ".x",
            "é",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(!is_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_exact_registered_uri_is_allowed() {
        let c = client();
        assert!(c.redirect_allowed("https://datahub.example.fr/callback"));
        for near in [
            "https://datahub.example.fr/callback/",
            "https://datahub.example.fr/Callback",
            "https://DATAHUB.example.fr/callback",
            "https://datahub.example.fr:8443/callback",
            "https://datahub.example.fr/callback?x=1",
            "https://datahub.example.fr/callback#f",
            "http://datahub.example.fr/callback",
            "https://datahub.example.fr.evil.fr/callback",
        ] {
            assert!(!c.redirect_allowed(near), "{near}");
        }
    }

    #[test]
    fn secrets_compare_by_hash() {
        let c = client();
        assert!(c.secret_matches("s3cret"));
        assert!(!c.secret_matches("s3cret "));
    }

    #[test]
    fn registration_refuses_fragments_and_plain_http_off_loopback() {
        assert!(valid_redirect_uri("https://a.fr/cb"));
        assert!(valid_redirect_uri("http://localhost:8081/callback"));
        assert!(!valid_redirect_uri("http://a.fr/cb"));
        assert!(!valid_redirect_uri("https://a.fr/cb#x"));
        assert!(!valid_redirect_uri("javascript:alert(1)"));
        assert!(!valid_redirect_uri("http://user:pw@localhost/cb"));
        assert!(!valid_redirect_uri("https://user@a.fr/cb"));
        assert!(!valid_redirect_uri("https://*.a.fr/cb"));
        assert!(!valid_redirect_uri("https://a.fr/*"));
        assert_eq!(
            redirect_uri_problem("https://a.fr/cb/*").as_deref(),
            Some(
                "pas de joker (*) : les adresses de retour sont comparées à l'identique, donnez chacune"
            )
        );
    }

    #[test]
    fn a_uri_must_be_written_as_a_parser_writes_it_back() {
        for ok in [
            "https://a.fr/cb",
            "https://a.fr/",
            "https://a.fr/cb?x=1",
            "https://a.fr:8443/cb",
            "http://localhost:8081/callback",
            "http://127.0.0.1:9/cb",
            "http://[::1]:9/cb",
            "https://xn--caf-dma.fr/cb",
            "https://a.fr/caf%C3%A9",
        ] {
            assert_eq!(redirect_uri_problem(ok), None, "{ok}");
        }
        for (bad, instead) in [
            ("https://a.fr/c b", "https://a.fr/c%20b"),
            ("https://a.fr/c\0b", "https://a.fr/c%00b"),
            ("https://a.fr/cb\0", "https://a.fr/cb"),
            ("https://a.fr/c\tb", "https://a.fr/cb"),
            (" https://a.fr/cb", "https://a.fr/cb"),
            ("https://a.fr/cb\u{202E}", "https://a.fr/cb%E2%80%AE"),
            ("https://a.fr/café", "https://a.fr/caf%C3%A9"),
            ("https://A.fr/cb", "https://a.fr/cb"),
            ("https://a.fr:443/cb", "https://a.fr/cb"),
            ("https://a.fr", "https://a.fr/"),
            ("https://a.fr/x/../cb", "https://a.fr/cb"),
            ("https:a.fr/café", "https://a.fr/caf%C3%A9"),
        ] {
            let why = redirect_uri_problem(bad).unwrap_or_default();
            assert!(why.contains("forme normalisée"), "{bad:?}: {why}");
            assert!(
                why.ends_with(&format!("écrivez {instead}")),
                "{bad:?}: {why}"
            );
        }
        let why = redirect_uri_problem("https://café.fr/cb").unwrap_or_default();
        assert_eq!(
            why,
            "nom d'hôte non ASCII : écrivez-le en punycode, xn--caf-dma.fr"
        );
        let long = format!("https://a.fr/{}", "x".repeat(MAX_URI_BYTES));
        let why = redirect_uri_problem(&long).unwrap_or_default();
        assert_eq!(why, "trop longue : 2013 octets, 2000 au plus");
        let longest = format!("https://a.fr/{}", "x".repeat(MAX_URI_BYTES - 13));
        assert_eq!(redirect_uri_problem(&longest), None);
    }

    #[test]
    fn a_list_of_uris_is_bounded_and_without_repeats() {
        let uri = |i: usize| format!("https://a.fr/cb{i}");
        let mut v = dge_core::Violations::new();
        check_uris(
            &mut v,
            "redirect_uris",
            &(0..MAX_URIS).map(uri).collect::<Vec<_>>(),
        );
        assert!(v.is_empty());
        check_uris(
            &mut v,
            "redirect_uris",
            &(0..=MAX_URIS).map(uri).collect::<Vec<_>>(),
        );
        let found: Vec<_> = v
            .iter()
            .map(|v| (v.field, v.code, v.message.as_str()))
            .collect();
        assert_eq!(
            found,
            [("redirect_uris", "too_many", "51 adresses : 50 au plus")]
        );

        let mut v = dge_core::Violations::new();
        let twice = vec![uri(1), uri(2), uri(1), uri(1), "https://a.fr/c b".into()];
        check_uris(&mut v, "post_logout_redirect_uris", &twice);
        let found: Vec<_> = v.iter().map(|v| (v.code, v.message.as_str())).collect();
        assert_eq!(
            found,
            [
                (
                    "duplicate",
                    "https://a.fr/cb1: donnée plusieurs fois, une suffit"
                ),
                (
                    "invalid",
                    "https://a.fr/c b: pas écrite sous sa forme normalisée (les adresses de \
                     retour sont comparées octet par octet) : écrivez https://a.fr/c%20b"
                ),
            ]
        );
    }

    #[test]
    fn hidden_characters_are_shown_escaped_and_long_uris_cut() {
        assert_eq!(
            shown("https://a.fr/\u{202E}\0x"),
            "https://a.fr/\\u{202e}\\u{0}x"
        );
        assert_eq!(shown(&"é".repeat(500)).chars().count(), SHOWN_CHARS + 1);
    }

    #[test]
    fn a_client_name_is_bounded_and_without_hidden_characters() {
        let codes = |name: &str| {
            let mut v = dge_core::Violations::new();
            check_name(&mut v, name);
            v.iter().map(|v| (v.field, v.code)).collect::<Vec<_>>()
        };
        for ok in [
            "DataHub",
            "DGE Communautés",
            "dgectl (outil d'administration)",
            "",
            &"é".repeat(MAX_NAME_CHARS),
            &format!("  {}  ", "a".repeat(MAX_NAME_CHARS)),
        ] {
            assert_eq!(codes(ok), [], "{ok}");
        }
        for bad in [
            "Data\u{202E}buHataD",
            "Data\0Hub",
            "Data\u{200B}Hub",
            "Data\nHub",
            "Data\u{7}Hub",
            "\u{FEFF}DataHub",
        ] {
            assert_eq!(codes(bad), [("name", "control_characters")], "{bad:?}");
        }
        // Three marks on one letter are a language's; four are a pile.
        assert_eq!(codes("Da\u{301}\u{302}\u{303}taHub"), [], "three");
        assert_eq!(codes("Donne\u{301}es"), [], "é typed as e + U+0301");
        assert_eq!(
            codes("Dx\u{301}\u{302}\u{303}\u{304}taHub"),
            [("name", "combining_marks")]
        );
        assert_eq!(
            codes(&"a".repeat(MAX_NAME_CHARS + 1)),
            [("name", "too_long")]
        );
        assert_eq!(
            codes(&format!("\u{202E}{}", "a".repeat(MAX_NAME_CHARS))),
            [("name", "too_long"), ("name", "control_characters")]
        );
    }
}
