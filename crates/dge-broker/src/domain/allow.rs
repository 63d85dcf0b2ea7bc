//! Allow rules: ProConnect lets any professional in; the service filters.

use serde::Deserialize;

use super::profile::Profile;

/// Who may log in through an upstream. Each non-empty list must match (one entry of
/// it is enough); empty lists allow everyone.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRules {
    /// Email domains (`grandest.fr`); subdomains are not included.
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Accepted `idp_id` values.
    #[serde(default)]
    pub idp_ids: Vec<String>,
    /// Accepted roles; the person needs one of them.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Accepted SIRET numbers.
    #[serde(default)]
    pub sirets: Vec<String>,
}

/// The rule a person failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Email domain not in the list.
    EmailDomain,
    /// `idp_id` not in the list.
    IdpId,
    /// No accepted role.
    Role,
    /// SIRET not in the list.
    Siret,
}

impl Refusal {
    /// The rule's name, for logs.
    #[must_use]
    pub const fn rule(self) -> &'static str {
        match self {
            Self::EmailDomain => "email_domains",
            Self::IdpId => "idp_ids",
            Self::Role => "roles",
            Self::Siret => "sirets",
        }
    }
}

impl AllowRules {
    /// `Ok` when `profile` passes every rule; the first failed rule otherwise.
    ///
    /// # Errors
    /// The [`Refusal`] naming the failed rule.
    pub fn check(&self, profile: &Profile) -> Result<(), Refusal> {
        let domain = profile
            .email
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        if !self.email_domains.is_empty()
            && !self
                .email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(&domain))
        {
            return Err(Refusal::EmailDomain);
        }
        let idp = profile.idp_id.as_deref().unwrap_or_default();
        if !self.idp_ids.is_empty() && !self.idp_ids.iter().any(|i| i == idp) {
            return Err(Refusal::IdpId);
        }
        if !self.roles.is_empty() && !profile.roles.iter().any(|r| self.roles.contains(r)) {
            return Err(Refusal::Role);
        }
        let siret = profile.siret.as_deref().unwrap_or_default();
        if !self.sirets.is_empty() && !self.sirets.iter().any(|s| s == siret) {
            return Err(Refusal::Siret);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Profile {
        Profile {
            email: "agent@GrandEst.fr".into(),
            idp_id: Some("fia1".into()),
            roles: vec!["agent_public".into()],
            siret: Some("20005226700013".into()),
            ..Profile::default()
        }
    }

    #[test]
    fn empty_rules_allow_everyone() {
        assert_eq!(AllowRules::default().check(&person()), Ok(()));
    }

    #[test]
    fn each_list_must_match() {
        let mut rules = AllowRules {
            email_domains: vec!["grandest.fr".into()],
            idp_ids: vec!["fia1".into(), "fia2".into()],
            roles: vec!["agent_public_territorial".into(), "agent_public".into()],
            sirets: vec!["20005226700013".into()],
        };
        assert_eq!(rules.check(&person()), Ok(()));
        rules.email_domains = vec!["strasbourg.eu".into()];
        assert_eq!(rules.check(&person()), Err(Refusal::EmailDomain));
        rules.email_domains.clear();
        rules.idp_ids = vec!["other".into()];
        assert_eq!(rules.check(&person()), Err(Refusal::IdpId));
        rules.idp_ids.clear();
        rules.roles = vec!["agent_public_etat".into()];
        assert_eq!(rules.check(&person()), Err(Refusal::Role));
        rules.roles.clear();
        rules.sirets = vec!["13002526500013".into()];
        assert_eq!(rules.check(&person()), Err(Refusal::Siret));
    }

    #[test]
    fn a_subdomain_is_not_the_domain() {
        let rules = AllowRules {
            email_domains: vec!["grandest.fr".into()],
            ..AllowRules::default()
        };
        let mut p = person();
        p.email = "x@evil-grandest.fr".into();
        assert_eq!(rules.check(&p), Err(Refusal::EmailDomain));
    }
}
