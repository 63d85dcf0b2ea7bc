//! Upstream provider settings, and the file `dge-idp` reads them from.

use std::path::Path;

use dge_core::Secret;
use serde::Deserialize;

use crate::domain::allow::AllowRules;

/// Which conventions an upstream follows; sets the defaults of the claim mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// A generic OpenID Connect provider (the Région Grand Est): `family_name`.
    #[default]
    Generic,
    /// ProConnect: `usual_name` instead of `family_name`, `siret`, `idp_id`, `roles`.
    Proconnect,
}

/// How the client authenticates at the upstream's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuth {
    /// `client_secret_post` (ProConnect's default).
    #[default]
    ClientSecretPost,
    /// `client_secret_basic`.
    ClientSecretBasic,
}

/// Which claim carries what, when it differs from the kind's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMapping {
    /// First names (default `given_name`).
    pub given_name: Option<String>,
    /// Family name (default `usual_name` for ProConnect, `family_name` otherwise).
    pub family_name: Option<String>,
    /// Email address (default `email`).
    pub email: Option<String>,
    /// Phone number (default `phone_number`).
    pub phone: Option<String>,
    /// The employer's SIRET (default `siret` for ProConnect, none otherwise).
    pub siret: Option<String>,
    /// The organisation's display name (default `organization_label` for ProConnect).
    pub organisation_label: Option<String>,
    /// Which provider authenticated the person (default `idp_id` for ProConnect).
    pub idp_id: Option<String>,
    /// Roles (default `roles` for ProConnect).
    pub roles: Option<String>,
}

/// The claim names in use for one upstream, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMapping {
    /// First names.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Email address.
    pub email: String,
    /// Phone number.
    pub phone: String,
    /// SIRET, when the upstream gives one.
    pub siret: Option<String>,
    /// Organisation display name.
    pub organisation_label: Option<String>,
    /// Identity provider behind the upstream.
    pub idp_id: Option<String>,
    /// Roles.
    pub roles: Option<String>,
}

/// One upstream OpenID Connect provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Short name used in URLs (`proconnect`, `region`).
    pub name: String,
    /// Button label on the login page.
    pub label: String,
    /// Conventions of the upstream.
    #[serde(default)]
    pub kind: UpstreamKind,
    /// Issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    /// Empty means "shown on the login page but not configured". For ProConnect this
    /// setting chooses the platform (integration or production, see the README).
    #[serde(default)]
    pub issuer: String,
    /// Our client id at the upstream.
    #[serde(default)]
    pub client_id: String,
    /// Our client secret at the upstream.
    #[serde(default)]
    pub client_secret: Secret<String>,
    /// Client authentication at the token endpoint.
    #[serde(default)]
    pub token_auth: TokenAuth,
    /// Scopes to ask for, besides `openid` (default: the kind's usual scopes).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Claim names, when they differ from the kind's defaults.
    #[serde(default)]
    pub claims: ClaimMapping,
    /// Assurance levels accepted: asked for as essential `acr` values through the
    /// `claims` parameter, then checked again in the ID token. Empty: not asked.
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// Whether userinfo must be a signed JWT (plain JSON refused). Default: true.
    #[serde(default = "yes")]
    pub userinfo_signed: bool,
    /// Who may log in through this upstream.
    #[serde(default)]
    pub allow: AllowRules,
    /// Seconds to wait for the upstream on each call.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

const fn yes() -> bool {
    true
}

const fn default_timeout_secs() -> u64 {
    10
}

const PROCONNECT_SCOPES: [&str; 8] = [
    "email",
    "given_name",
    "usual_name",
    "uid",
    "siret",
    "idp_id",
    "organization_label",
    "roles",
];

impl UpstreamConfig {
    /// Whether the provider can be used.
    #[must_use]
    pub fn configured(&self) -> bool {
        !self.issuer.is_empty() && !self.client_id.is_empty()
    }

    /// The scopes asked for, besides `openid`.
    #[must_use]
    pub fn effective_scopes(&self) -> Vec<String> {
        if let Some(scopes) = &self.scopes {
            return scopes.clone();
        }
        match self.kind {
            UpstreamKind::Proconnect => PROCONNECT_SCOPES.map(str::to_owned).to_vec(),
            UpstreamKind::Generic => ["email", "profile"].map(str::to_owned).to_vec(),
        }
    }

    /// The claim names, the kind's defaults applied.
    #[must_use]
    pub fn mapping(&self) -> EffectiveMapping {
        let pc = self.kind == UpstreamKind::Proconnect;
        let m = &self.claims;
        let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_owned());
        let pc_only = |v: &Option<String>, d: &str| v.clone().or_else(|| pc.then(|| d.to_owned()));
        EffectiveMapping {
            given_name: or(&m.given_name, "given_name"),
            family_name: or(
                &m.family_name,
                if pc { "usual_name" } else { "family_name" },
            ),
            email: or(&m.email, "email"),
            phone: or(&m.phone, "phone_number"),
            siret: pc_only(&m.siret, "siret"),
            organisation_label: pc_only(&m.organisation_label, "organization_label"),
            idp_id: pc_only(&m.idp_id, "idp_id"),
            roles: pc_only(&m.roles, "roles"),
        }
    }

    fn unconfigured(name: &str, label: &str, kind: UpstreamKind) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            kind,
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            token_auth: TokenAuth::default(),
            scopes: None,
            claims: ClaimMapping::default(),
            acr_values: Vec::new(),
            userinfo_signed: true,
            allow: AllowRules::default(),
            timeout_secs: default_timeout_secs(),
        }
    }
}

/// The two providers the portal names, unconfigured: the login page shows them and
/// explains they are not available until an operator configures them.
#[must_use]
pub fn default_providers() -> Vec<UpstreamConfig> {
    vec![
        UpstreamConfig::unconfigured("proconnect", "ProConnect", UpstreamKind::Proconnect),
        UpstreamConfig::unconfigured("region", "La Région Grand Est", UpstreamKind::Generic),
    ]
}

/// The upstreams file: `{"upstreams": [ { "name": …, … }, … ]}`, in login-page order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamsFile {
    upstreams: Vec<UpstreamConfig>,
}

/// Why the upstreams file was refused. Never carries a configured value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the upstreams file")]
    Read(#[source] std::io::Error),
    /// The file is not valid JSON of the expected shape.
    #[error("upstreams file: {0}")]
    Parse(String),
    /// A setting breaks a rule.
    #[error("upstreams file: upstream {name:?}: {problem}")]
    Invalid {
        /// The upstream's name.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Reads and checks the upstreams file.
///
/// # Errors
/// [`ConfigError`] naming the bad key, never its value.
pub fn load_file(path: &Path) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(ConfigError::Read)?;
    parse(&text)
}

/// Parses and checks the upstreams file's text.
///
/// # Errors
/// [`ConfigError`] naming the bad key, never its value.
pub fn parse(text: &str) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let file: UpstreamsFile =
        serde_json::from_str(text).map_err(|e| ConfigError::Parse(describe(&e)))?;
    check(&file.upstreams)?;
    Ok(file.upstreams)
}

/// Checks upstream settings however they were read (this file, or the server's TOML
/// configuration): names, issuers (https, plain http only on loopback), timeouts.
///
/// # Errors
/// [`ConfigError::Invalid`] for the first upstream that breaks a rule.
pub fn check(upstreams: &[UpstreamConfig]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for u in upstreams {
        let invalid = |problem| ConfigError::Invalid {
            name: u.name.clone(),
            problem,
        };
        if u.name.is_empty()
            || !u
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "name must be lower-case letters, digits and dashes",
            ));
        }
        if !seen.insert(u.name.clone()) {
            return Err(invalid("name is used twice"));
        }
        if !u.issuer.is_empty() && !secure_or_loopback(&u.issuer) {
            return Err(invalid("issuer must use https:// (http only on loopback)"));
        }
        if u.timeout_secs == 0 || u.timeout_secs > 60 {
            return Err(invalid("timeout_secs must be between 1 and 60"));
        }
    }
    Ok(())
}

/// serde_json's message when it names a key; otherwise the kind of error and where,
/// so a wrongly typed secret never reaches the terminal.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if ["unknown field", "missing field", "unknown variant"]
        .iter()
        .any(|k| text.contains(k))
    {
        return text;
    }
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "a value has the wrong type",
        serde_json::error::Category::Eof => "unexpected end of file",
    };
    format!("line {} column {}: {what}", e.line(), e.column())
}

/// `https://`, or plain `http://` to a loopback host (tests and demos).
fn secure_or_loopback(issuer: &str) -> bool {
    let Ok(url) = url::Url::parse(issuer) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proconnect_maps_usual_name_to_the_family_name() {
        let file = r#"{"upstreams":[{"name":"proconnect","label":"ProConnect","kind":"proconnect",
            "issuer":"https://fca.integ01.dev-agentconnect.fr/api/v2","client_id":"c","client_secret":"s"}]}"#;
        let ups = parse(file).expect("valid file");
        let m = ups[0].mapping();
        assert_eq!(m.family_name, "usual_name");
        assert_eq!(m.siret.as_deref(), Some("siret"));
        assert!(ups[0].effective_scopes().contains(&"usual_name".to_owned()));
        assert!(ups[0].userinfo_signed);
        assert_eq!(ups[0].token_auth, TokenAuth::ClientSecretPost);
    }

    #[test]
    fn generic_upstream_uses_family_name_and_no_siret() {
        let file = r#"{"upstreams":[{"name":"region","label":"Région","issuer":"https://idp.example/",
            "client_id":"c","userinfo_signed":false,"token_auth":"client_secret_basic","claims":{"email":"mail"}}]}"#;
        let ups = parse(file).expect("valid file");
        let m = ups[0].mapping();
        assert_eq!(m.family_name, "family_name");
        assert_eq!(m.email, "mail");
        assert_eq!(m.siret, None);
        assert!(!ups[0].userinfo_signed);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let file = r#"{"upstreams":[{"name":"region","label":"R","isuser":"https://x"}]}"#;
        let err = parse(file).expect_err("typo refused").to_string();
        assert!(err.contains("isuser"), "{err}");
    }

    #[test]
    fn errors_never_print_the_secret() {
        let file = r#"{"upstreams":[{"name":"region","label":"R","client_secret":42424242}]}"#;
        let err = parse(file).expect_err("wrong type").to_string();
        assert!(!err.contains("42424242"), "{err}");
    }

    #[test]
    fn plain_http_issuers_are_refused_off_loopback() {
        let file = r#"{"upstreams":[{"name":"region","label":"R","issuer":"http://idp.example"}]}"#;
        assert!(parse(file).is_err());
    }
}
