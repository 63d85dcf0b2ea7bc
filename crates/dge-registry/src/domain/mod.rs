//! Accounts and the rules a sign-up must follow.

pub mod password;
#[cfg(test)]
mod proptests;
pub mod signup;

pub use password::PasswordContext;
pub use signup::{SignUpForm, ValidSignUp};

/// Whether the domain of `email` is one of `domains` (comma-separated, lower case)
/// or a subdomain of one. Matching is on whole labels, so `evilgrandest.fr` and
/// `grandest.fr.example.com` do not pass for `grandest.fr`.
#[must_use]
pub fn email_in_domains(email: &str, domains: &str) -> bool {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    domains
        .split(',')
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .any(|d| {
            domain == d
                || domain
                    .strip_suffix(d.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

#[cfg(test)]
mod tests {
    use super::email_in_domains;

    #[test]
    fn only_the_domain_or_its_subdomains_match() {
        let domains = "grandest.fr,strasbourg.eu";
        assert!(email_in_domains("a@grandest.fr", domains));
        assert!(email_in_domains("a@GrandEst.FR", domains));
        assert!(email_in_domains("a@agents.grandest.fr", domains));
        assert!(email_in_domains("a@strasbourg.eu", domains));
        for lookalike in [
            "a@evilgrandest.fr",
            "a@grandest.fr.example.com",
            "a@grandest.fr-x.com",
            "a@grandest.com",
            "grandest.fr",
            "a@fr",
        ] {
            assert!(!email_in_domains(lookalike, domains), "{lookalike}");
        }
        assert!(!email_in_domains("a@grandest.fr", ""));
    }
}

/// Lifecycle of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Signed up; email not confirmed.
    Unconfirmed,
    /// Email confirmed; waiting for the DataGrandEst team.
    Pending,
    /// May log in.
    Active,
    /// Refused by an administrator.
    Rejected,
    /// Was active; an administrator suspended it. Cannot log in and its tokens are
    /// refused, but it keeps its rights until it is reactivated.
    Suspended,
}

impl AccountStatus {
    /// The database spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unconfirmed => "unconfirmed",
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Rejected => "rejected",
            Self::Suspended => "suspended",
        }
    }

    /// Parses the database spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unconfirmed" => Some(Self::Unconfirmed),
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "rejected" => Some(Self::Rejected),
            "suspended" => Some(Self::Suspended),
            _ => None,
        }
    }
}

/// An account, as read from the database.
#[derive(Debug, Clone)]
pub struct Account {
    /// Stable id, also the OIDC `sub`.
    pub id: String,
    /// `local` or `federated`.
    pub kind: String,
    /// Login (local accounts).
    pub login: Option<String>,
    /// Email address as typed (domain lower-cased).
    pub email: String,
    /// First name.
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// E.164 phone number.
    pub phone: String,
    /// Organisation id.
    pub organisation_id: Option<String>,
    /// Organisation display name (joined).
    pub organisation_name: Option<String>,
    /// Job title.
    pub function: String,
    /// The person's request at sign-up.
    pub description: String,
    /// Lifecycle state.
    pub status: AccountStatus,
    /// Whether the email address was confirmed.
    pub email_verified: bool,
    /// Why an administrator refused the account.
    pub rejection_reason: String,
    /// Whether this account administers DGE Identity.
    pub is_admin: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// When a suspension ends on its own (Unix seconds), if it does.
    pub suspended_until: Option<i64>,
}

impl Account {
    /// "Prénom Nom".
    #[must_use]
    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}
