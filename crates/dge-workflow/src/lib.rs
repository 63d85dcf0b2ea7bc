//! The validation workflow: the DataGrandEst team approves or rejects accounts and
//! grants rights on the portal's modules.
//!
//! - [`service`]: approval, rejection, grants and revocations, each audited.
//! - [`grpc`]: the `ValidationWorkflow` gRPC service.

pub mod grpc;
pub mod service;

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
    /// No such right.
    #[error("right not found")]
    RightNotFound,
    /// The account is not in a state that allows this (approve a rejected one).
    #[error("account is {0}, not pending")]
    WrongState(&'static str),
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
    /// The mail could not be queued.
    #[error("mail could not be queued")]
    Mail(#[from] dge_mailer::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(v) => v.into_status(),
            Error::AccountNotFound => tonic::Status::not_found("account not found"),
            Error::RightNotFound => tonic::Status::not_found("right not found"),
            Error::WrongState(_) => tonic::Status::failed_precondition(err.to_string()),
            Error::Store(_) | Error::Mail(_) => {
                tracing::error!(error = %dge_core::ErrorChain(&err), "workflow call failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}
