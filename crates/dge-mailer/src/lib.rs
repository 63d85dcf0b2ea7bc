//! Every email DGE Identity sends goes through this crate.
//!
//! - [`outbox`]: emails are rendered and written to the `outbox` table inside the
//!   transaction of the change that causes them, so a change and its email are
//!   committed together or not at all.
//! - [`dispatch`]: a loop that claims due messages, sends them and retries with
//!   exponential back-off up to a limit, then marks them failed with the server's
//!   reason; a lease on each row keeps replicas from sending twice.
//! - [`transport`]: SMTP (lettre; plain, STARTTLS or implicit TLS, with
//!   authentication and timeouts) or `.eml` files for the embedded default.
//! - [`templates`]: the French text and HTML templates, embedded in the binary.
//! - [`grpc`]: the `Mailer` gRPC service for administrators (list, retry, cancel).

pub mod dispatch;
pub mod grpc;
pub mod outbox;
pub mod templates;
pub mod transport;

pub use dispatch::{DispatchSettings, Dispatcher};
pub use outbox::{MailSettings, Outbox};
pub use transport::{SmtpOptions, Transport};

/// Errors of the mailer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed.
    #[error("storage error")]
    Store(#[from] sqlx::Error),
    /// A template failed to render (a bug: templates are tested).
    #[error("template `{kind}` failed to render")]
    Template {
        /// The mail kind.
        kind: String,
        /// The engine's error.
        #[source]
        source: minijinja::Error,
    },
    /// The transport could not be built from the configuration.
    #[error("mail transport configuration: {0}")]
    Config(String),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
