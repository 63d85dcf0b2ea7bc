//! Accounts and the rules a sign-up must follow.

pub mod signup;

pub use signup::{SignUpForm, ValidSignUp};

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
}

impl Account {
    /// "Prénom Nom".
    #[must_use]
    pub fn display_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}
