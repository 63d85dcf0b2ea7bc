//! What can go wrong, the message shown for it and the exit status.
//!
//! Exit statuses: 0 ok, 1 refused or failed call, 2 usage, 3 server
//! unreachable, 4 not authenticated.

use std::error::Error as _;
use std::fmt::Write as _;
use std::io;

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::cli::ServerUrl;

/// A failure that ends the command. `main` prints it after `error: `.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The command line or one of its inputs is wrong; nothing was sent.
    #[error("{0}")]
    Usage(String),

    /// No connection could be made to the server.
    #[error("cannot reach the DGE Identity server at {server} ({cause})")]
    Unreachable { server: String, cause: String },

    /// No token was given at all.
    #[error("no token given (run dgectl login, or use --token, --token-file or DGECTL_TOKEN)")]
    NoToken,

    /// `dgectl login` did not end with a token, or its saved token has expired.
    #[error("{0}")]
    Login(String),

    /// The server answered `UNAUTHENTICATED` to the token given by `given_by` (an
    /// option or variable; empty: the login saved by `dgectl login`).
    #[error("{}", refused_token(given_by))]
    Unauthenticated { given_by: &'static str },

    /// The server address answers HTTP/1.1: it is the web port, not the gRPC one.
    #[error(
        "{server} answers HTTP, not gRPC: it is the web port of DGE Identity; use its \
         gRPC port instead (server.grpc_addr, 50051 by default)"
    )]
    NotGrpc { server: String },

    /// The server refused or failed the call.
    #[error("{}", describe_status(.0))]
    Call(Status),

    /// The call succeeded for some items and failed for others (each is printed).
    #[error("{0}")]
    Partial(String),

    /// The administrator answered no to a confirmation question.
    #[error("cancelled, nothing was changed")]
    Cancelled,

    /// The call succeeded but writing its result failed.
    #[error("cannot write the result: {0}")]
    Output(#[from] io::Error),
}

impl CliError {
    /// Classifies a failed call to `server`.
    pub(crate) fn from_status(status: Status, server: &ServerUrl) -> Self {
        match status.code() {
            Code::Unauthenticated => Self::Unauthenticated { given_by: "" },
            // tonic reports a broken connection as UNAVAILABLE with the transport
            // error as its source; an UNAVAILABLE sent by the server has none.
            Code::Unavailable if status.source().is_some() => Self::Unreachable {
                server: server.to_string(),
                cause: innermost_cause(&status),
            },
            _ => Self::Call(status),
        }
    }

    /// The connection to `server` could not be opened.
    pub(crate) fn unreachable(server: &ServerUrl, err: &tonic::transport::Error) -> Self {
        Self::Unreachable {
            server: server.to_string(),
            cause: innermost_cause(err),
        }
    }

    /// The process exit status for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Call(_) | Self::Partial(_) | Self::Cancelled | Self::Output(_) => 1,
            Self::Usage(_) => 2,
            Self::Unreachable { .. } | Self::NotGrpc { .. } => 3,
            Self::NoToken | Self::Unauthenticated { .. } | Self::Login(_) => 4,
        }
    }
}

/// The message for a refused token, naming where it came from.
fn refused_token(source: &str) -> String {
    if source.is_empty() {
        return "the server refused the token saved by dgectl login (run dgectl login again, \
                or use --token-file or DGECTL_TOKEN)"
            .to_owned();
    }
    format!("the server refused the token given by {source} (check it, or run dgectl login)")
}

/// The last error of a source chain: the most specific one ("Connection refused").
fn innermost_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `<code>: <message>`, followed by one indented line per `google.rpc.BadRequest`
/// field violation, whatever the code: `INVALID_ARGUMENT`, `PERMISSION_DENIED` (an
/// administrator without two-step verification), `NOT_FOUND` (an undeclared right).
fn describe_status(status: &Status) -> String {
    let mut text = code_name(status.code()).to_owned();
    if !status.message().is_empty() {
        text = format!("{text}: {}", printable(status.message()));
    }
    let details = status.get_error_details();
    for violation in details
        .bad_request()
        .map_or(&[][..], |b| &b.field_violations)
    {
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            "\n  {}: {}",
            printable(&violation.field),
            printable(&violation.description)
        );
    }
    text
}

/// What a server said, with its control characters escaped (`\u{1b}`): a message may
/// quote what an administrator or a CSV file sent, and must not drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The canonical gRPC name of a code, in lower case (`not_found`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::{ErrorDetails, FieldViolation};

    use super::*;

    fn server() -> ServerUrl {
        "http://127.0.0.1:50051".parse().expect("valid URL")
    }

    #[test]
    fn invalid_argument_lists_each_field_violation() {
        let details = ErrorDetails::with_bad_request(vec![
            FieldViolation::new("reason", "must not be empty"),
            FieldViolation::new("account", "no such account"),
        ]);
        let status = Status::with_error_details(Code::InvalidArgument, "invalid request", details);
        let err = CliError::from_status(status, &server());
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "invalid_argument: invalid request\n  \
             reason: must not be empty\n  \
             account: no such account"
        );
    }

    #[test]
    fn an_administrator_without_two_step_verification_is_told_so() {
        // As `dge_authz::caller::mfa_enrollment_required` answers.
        let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(
            "mfa",
            "mfa_enrollment_required: activez la vérification en deux étapes",
        )]);
        let status = Status::with_error_details(
            Code::PermissionDenied,
            "administrator power needs two-step verification",
            details,
        );
        let err = CliError::from_status(status, &server());
        assert_eq!(err.exit_code(), 1);
        let text = err.to_string();
        assert!(text.starts_with("permission_denied: "), "{text}");
        assert!(
            text.contains("\n  mfa: mfa_enrollment_required: "),
            "{text}"
        );
    }

    #[test]
    fn an_undeclared_right_is_named_with_its_field() {
        let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(
            "right",
            "unknown: aucun droit \"datahub:pubilsh\" n'est déclaré",
        )]);
        let status = Status::with_error_details(Code::NotFound, "right not found: right", details);
        let err = CliError::from_status(status, &server());
        assert_eq!(
            err.to_string(),
            "not_found: right not found: right\n  \
             right: unknown: aucun droit \"datahub:pubilsh\" n'est déclaré"
        );
    }

    #[test]
    fn invalid_argument_without_details_shows_the_message() {
        let err = CliError::from_status(Status::invalid_argument("bad"), &server());
        assert_eq!(err.to_string(), "invalid_argument: bad");
    }

    #[test]
    fn unauthenticated_has_its_own_message_and_exit_status() {
        let err = CliError::from_status(Status::unauthenticated("bad token"), &server());
        assert_eq!(
            err.to_string(),
            "the server refused the token saved by dgectl login (run dgectl login again, \
             or use --token-file or DGECTL_TOKEN)"
        );
        assert_eq!(err.exit_code(), 4);
        for source in [
            "--token",
            "--token-file",
            "DGECTL_TOKEN",
            "DGECTL_TOKEN_FILE",
        ] {
            let err = CliError::Unauthenticated { given_by: source };
            assert_eq!(
                err.to_string(),
                format!(
                    "the server refused the token given by {source} (check it, or run dgectl login)"
                )
            );
        }
    }

    #[test]
    fn control_characters_in_a_message_are_escaped() {
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid \u{1b}[2J",
            ErrorDetails::with_bad_request_violation(
                "email_domains",
                "domaine invalide : to\u{1b}[31mul.fr",
            ),
        );
        let text = describe_status(&status);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("to\\u{1b}[31mul.fr"), "{text:?}");
    }

    #[test]
    fn other_codes_show_code_and_message() {
        let err = CliError::from_status(Status::not_found("account not found"), &server());
        assert_eq!(err.to_string(), "not_found: account not found");
        assert_eq!(err.exit_code(), 1);

        let err = CliError::from_status(Status::failed_precondition("not pending"), &server());
        assert_eq!(err.to_string(), "failed_precondition: not pending");
    }

    #[test]
    fn an_empty_message_leaves_the_code_alone() {
        let err = CliError::from_status(Status::unimplemented(""), &server());
        assert_eq!(err.to_string(), "unimplemented");
    }

    #[test]
    fn unavailable_sent_by_the_server_is_a_failed_call() {
        let err = CliError::from_status(Status::unavailable("database down"), &server());
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.to_string(), "unavailable: database down");
    }

    #[test]
    fn a_broken_connection_is_unreachable() {
        let cause = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(cause))));
        assert_eq!(status.code(), Code::Unavailable);
        let err = CliError::from_status(status, &server());
        assert_eq!(err.exit_code(), 3);
        assert_eq!(
            err.to_string(),
            "cannot reach the DGE Identity server at http://127.0.0.1:50051 (connection refused)"
        );
    }

    #[test]
    fn usage_and_token_errors_have_their_exit_statuses() {
        assert_eq!(CliError::Usage("x".to_owned()).exit_code(), 2);
        assert_eq!(CliError::NoToken.exit_code(), 4);
        assert_eq!(CliError::Cancelled.exit_code(), 1);
    }
}
