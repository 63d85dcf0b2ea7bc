//! The validation workflow: the DataGrandEst team approves or rejects accounts,
//! keeps the organisation directory and grants rights on the portal's modules.
//!
//! - [`access`]: who may act on which account (administrators, delegated
//!   organisation administrators).
//! - [`service`]: approval and rejection, one by one or in bulk.
//! - [`queue`]: the pending queue, filtered and paginated.
//! - [`admins`]: global administrators, granted and revoked over gRPC.
//! - [`suspension`]: accounts suspended and reactivated by a global administrator.
//! - [`organisations`]: the directory, proposed organisations, CSV import.
//! - [`siret`]: SIRET checksums.
//! - [`rights`]: modules, rights, role bundles, grants, the audit log, and the
//!   stream of changes modules watch.
//! - [`notify`]: notices to administrators and reminders for old sign-ups.
//! - [`grpc`]: the `ValidationWorkflow` gRPC service.

pub mod access;
pub mod admins;
pub mod grpc;
pub mod notify;
pub mod organisations;
pub mod queue;
pub mod rights;
pub mod service;
pub mod siret;
pub mod suspension;

pub use access::Actor;
pub use service::Workflow;

/// Errors of the workflow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request broke a rule.
    #[error("invalid request")]
    Invalid(dge_core::Violations),
    /// No such account.
    #[error("account not found")]
    AccountNotFound,
    /// No such organisation.
    #[error("organisation not found")]
    OrganisationNotFound,
    /// No such right is declared: the request's field that named them, and the names.
    #[error("right not found")]
    RightNotFound(&'static str, Vec<String>),
    /// No such role.
    #[error("role not found")]
    RoleNotFound,
    /// The caller may not act on this account or object.
    #[error("not allowed")]
    NotAllowed,
    /// The caller is a global administrator without two-step verification: no power
    /// until enrolled.
    #[error("administrator without two-step verification")]
    MfaRequired,
    /// The object is not in a state that allows this (approve a rejected account).
    #[error("wrong state: {0}")]
    WrongState(String),
    /// Something with the same key exists.
    #[error("already exists: {0}")]
    Exists(&'static str),
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
    /// The mail could not be queued.
    #[error("mail could not be queued")]
    Mail(#[from] dge_mailer::Error),
}

/// `items` with the spaces around each dropped, each once, in the order given: the
/// rights of a role or an approval, the accounts of a bulk decision.
pub(crate) fn distinct_trimmed(items: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    items
        .iter()
        .map(|i| i.trim())
        .filter(|i| seen.insert(*i))
        .collect()
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A violation on one field.
    #[must_use]
    pub fn field(field: &'static str, code: &'static str, message: &str) -> Self {
        let mut v = dge_core::Violations::new();
        v.add(field, code, message);
        Self::Invalid(v)
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(v) => v.into_status(),
            Error::RightNotFound(field, names) => {
                use tonic_types::StatusExt;
                // Each name as typed, escaped and cut: it may be anything.
                let shown: Vec<String> = names
                    .iter()
                    .map(|name| format!("{:?}", name.chars().take(80).collect::<String>()))
                    .collect();
                let mut details = tonic_types::ErrorDetails::new();
                for name in &shown {
                    details.add_bad_request_violation(
                        field,
                        format!("unknown: aucun droit {name} n'est déclaré (dgectl modules list)"),
                    );
                }
                tonic::Status::with_error_details(
                    tonic::Code::NotFound,
                    format!("right not found ({field}): {}", shown.join(", ")),
                    details,
                )
            }
            Error::AccountNotFound | Error::OrganisationNotFound | Error::RoleNotFound => {
                tonic::Status::not_found(err.to_string())
            }
            Error::NotAllowed => tonic::Status::permission_denied("not allowed for this caller"),
            Error::MfaRequired => dge_authz::caller::mfa_enrollment_required(),
            Error::WrongState(_) => tonic::Status::failed_precondition(err.to_string()),
            Error::Exists(_) => tonic::Status::already_exists(err.to_string()),
            Error::Store(_) | Error::Mail(_) => {
                tracing::error!(error = %dge_core::ErrorChain(&err), "workflow call failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}
