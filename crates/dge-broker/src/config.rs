//! Upstream provider settings.

use dge_core::Secret;
use serde::Deserialize;

/// One upstream OpenID Connect provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Short name used in URLs (`proconnect`, `region`).
    pub name: String,
    /// Button label on the login page.
    pub label: String,
    /// Issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    /// Empty means "shown on the login page but not configured".
    #[serde(default)]
    pub issuer: String,
    /// Our client id at the upstream.
    #[serde(default)]
    pub client_id: String,
    /// Our client secret at the upstream.
    #[serde(default)]
    pub client_secret: Secret<String>,
    /// Scopes to ask for, besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["email", "given_name", "usual_name"]
        .map(str::to_owned)
        .to_vec()
}

impl UpstreamConfig {
    /// Whether the provider can be used.
    #[must_use]
    pub fn configured(&self) -> bool {
        !self.issuer.is_empty() && !self.client_id.is_empty()
    }
}

/// The two providers the portal names, unconfigured: the login page shows them and
/// explains they are not available until an operator configures them.
#[must_use]
pub fn default_providers() -> Vec<UpstreamConfig> {
    vec![
        UpstreamConfig {
            name: "proconnect".into(),
            label: "ProConnect".into(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            scopes: [
                "email",
                "given_name",
                "usual_name",
                "siret",
                "uid",
                "idp_id",
                "organization_label",
            ]
            .map(str::to_owned)
            .to_vec(),
        },
        UpstreamConfig {
            name: "region".into(),
            label: "La Région Grand Est".into(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: Secret::default(),
            scopes: ["email", "profile"].map(str::to_owned).to_vec(),
        },
    ]
}
