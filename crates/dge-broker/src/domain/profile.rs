//! The claims of an upstream, mapped to a profile.

use serde_json::{Map, Value};

use crate::BrokerError;
use crate::config::EffectiveMapping;

/// What the upstream says about the person, after mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// The upstream's subject.
    pub subject: String,
    /// Email address (trimmed).
    pub email: String,
    /// First names.
    pub given_name: String,
    /// Family name (`usual_name` at ProConnect).
    pub family_name: String,
    /// Phone number, when given.
    pub phone: Option<String>,
    /// The employer's SIRET, when given and well formed (14 digits).
    pub siret: Option<String>,
    /// The organisation's display name.
    pub organisation_label: Option<String>,
    /// Which provider authenticated the person.
    pub idp_id: Option<String>,
    /// Roles (ProConnect: `agent_public` …).
    pub roles: Vec<String>,
    /// The other facts the upstream gave ([`FACT_CLAIMS`]), as a JSON object.
    pub facts: String,
}

/// Claims kept with the link besides the profile: who vouched for the person and as
/// what. ProConnect's optional ones appear only when their scope was granted.
pub const FACT_CLAIMS: [&str; 12] = [
    "uid",
    "idp_id",
    "idp_acr",
    "siret",
    "siren",
    "organization_label",
    "organizational_unit",
    "belonging_population",
    "chorusdt",
    "roles",
    "custom",
    "acr",
];

/// The facts as JSON; `custom` (free-form, provider-specific) is dropped when the
/// whole would exceed 8 KiB.
fn facts(claims: &Map<String, Value>) -> String {
    let mut kept: Map<String, Value> = FACT_CLAIMS
        .iter()
        .filter_map(|&name| claims.get(name).map(|v| (name.to_owned(), v.clone())))
        .filter(|(_, v)| !v.is_null())
        .collect();
    let text = Value::Object(kept.clone()).to_string();
    if text.len() <= 8 * 1024 {
        return text;
    }
    kept.remove("custom");
    Value::Object(kept).to_string()
}

fn text(claims: &Map<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn list(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// An upstream's address as an account stores it, by the sign-up's own rule
/// ([`dge_registry::domain::signup::normalise_email`]: NFKC-folded, domain
/// IDNA-encoded, syntax checked, at most 254 bytes), without controls or hidden
/// characters.
///
/// # Errors
/// [`BrokerError::BadEmail`] for anything a sign-up would refuse as an address.
pub fn account_email(raw: &str) -> Result<String, BrokerError> {
    use dge_registry::domain::signup::{has_hidden_characters, normalise_email};
    if has_hidden_characters(raw) {
        return Err(BrokerError::BadEmail);
    }
    normalise_email(raw)
        .map(|(address, _)| address)
        .ok_or(BrokerError::BadEmail)
}

/// The longest name or phone kept from an upstream, as a sign-up allows.
const NAME_MAX_CHARS: usize = 100;

/// A name or phone from an upstream as an account keeps it: without controls or
/// hidden characters, single spaces, at most [`NAME_MAX_CHARS`] characters. The
/// upstream vouches for the person, not for how its directory spells them, and these
/// go into emails and pages.
fn plain(value: &str) -> String {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // Controls become spaces; format characters (bidi overrides, zero-width ones)
    // go, except the joiners some scripts spell names with.
    let visible: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|&c| {
            c == '\u{200C}' || c == '\u{200D}' || c.general_category() != GeneralCategory::Format
        })
        .collect();
    visible
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(NAME_MAX_CHARS)
        .collect()
}

impl Profile {
    /// Maps `claims` (ID token claims overlaid with userinfo) with `mapping`.
    #[must_use]
    pub fn from_claims(
        subject: &str,
        claims: &Map<String, Value>,
        mapping: &EffectiveMapping,
    ) -> Self {
        let opt = |name: &Option<String>| name.as_deref().and_then(|n| text(claims, n));
        let siret = opt(&mapping.siret)
            .map(|s| s.chars().filter(|c| !c.is_whitespace()).collect::<String>())
            .filter(|s| s.len() == 14 && s.bytes().all(|b| b.is_ascii_digit()));
        Self {
            subject: subject.to_owned(),
            email: text(claims, &mapping.email).unwrap_or_default(),
            given_name: plain(&text(claims, &mapping.given_name).unwrap_or_default()),
            family_name: plain(&text(claims, &mapping.family_name).unwrap_or_default()),
            phone: text(claims, &mapping.phone)
                .map(|p| plain(&p))
                .filter(|p| !p.is_empty()),
            siret,
            organisation_label: opt(&mapping.organisation_label),
            idp_id: opt(&mapping.idp_id),
            roles: mapping
                .roles
                .as_deref()
                .map(|n| list(claims, n))
                .unwrap_or_default(),
            facts: facts(claims),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{UpstreamConfig, default_providers};

    fn provider(name: &str) -> UpstreamConfig {
        default_providers()
            .into_iter()
            .find(|p| p.name == name)
            .expect("default provider")
    }

    #[test]
    fn proconnect_claims_fill_the_profile() {
        let claims = json!({
            "sub": "abc", "given_name": "Jeanne Marie", "usual_name": "Dupont",
            "family_name": "ignored", "email": " jeanne@grandest.fr ", "siret": "200 052 267 00013",
            "idp_id": "fia1", "organization_label": "Région Grand Est",
            "roles": ["agent_public", "agent_public_territorial"], "phone_number": "+33612345678"
        });
        let p = Profile::from_claims(
            "abc",
            claims.as_object().expect("object"),
            &provider("proconnect").mapping(),
        );
        assert_eq!(p.family_name, "Dupont");
        assert_eq!(p.given_name, "Jeanne Marie");
        assert_eq!(p.email, "jeanne@grandest.fr");
        assert_eq!(p.siret.as_deref(), Some("20005226700013"));
        assert_eq!(p.organisation_label.as_deref(), Some("Région Grand Est"));
        assert_eq!(p.roles, ["agent_public", "agent_public_territorial"]);
        assert_eq!(p.phone.as_deref(), Some("+33612345678"));
        let facts: Value = serde_json::from_str(&p.facts).expect("JSON");
        assert_eq!(facts["idp_id"], "fia1");
        assert_eq!(facts["roles"][1], "agent_public_territorial");
        assert!(
            facts.get("given_name").is_none(),
            "profile fields are not facts"
        );
    }

    #[test]
    fn a_huge_custom_claim_is_dropped_from_the_facts() {
        let claims = json!({"uid": "u1", "custom": {"blob": "x".repeat(10_000)}});
        let p = Profile::from_claims(
            "s",
            claims.as_object().expect("object"),
            &provider("proconnect").mapping(),
        );
        assert_eq!(p.facts, r#"{"uid":"u1"}"#);
    }

    #[test]
    fn a_malformed_siret_is_dropped() {
        let claims = json!({"siret": "1234"});
        let p = Profile::from_claims(
            "s",
            claims.as_object().expect("object"),
            &provider("proconnect").mapping(),
        );
        assert_eq!(p.siret, None);
    }

    #[test]
    fn generic_upstream_reads_family_name_and_ignores_siret() {
        let claims = json!({"family_name": "Martin", "usual_name": "x", "siret": "20005226700013"});
        let p = Profile::from_claims(
            "s",
            claims.as_object().expect("object"),
            &provider("region").mapping(),
        );
        assert_eq!(p.family_name, "Martin");
        assert_eq!(p.siret, None);
    }

    #[test]
    fn an_upstream_address_is_held_to_the_sign_up_rules() {
        assert_eq!(
            account_email("Jeanne@ÉLYSÉE.fr").unwrap(),
            "Jeanne@xn--lyse-9oad.fr"
        );
        for bad in [
            "no-at-sign.example.org",
            "a@b@grandest.fr",
            "crlf@grandest.fr\r\nBcc: evil@x.fr",
            "sp ace@grandest.fr",
            "rlo\u{202e}@grandest.fr",
        ] {
            assert!(account_email(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@grandest.fr", "a".repeat(300));
        assert!(account_email(&long).is_err());
    }

    #[test]
    fn names_from_an_upstream_lose_hidden_characters_and_length() {
        assert_eq!(plain("  Jeanne\u{202e}  Marie\n "), "Jeanne Marie");
        assert_eq!(plain(&"é".repeat(3000)).chars().count(), NAME_MAX_CHARS);
        // Persian names keep their non-joiner.
        assert_eq!(plain("علی\u{200c}زاده"), "علی\u{200c}زاده");
    }
}
