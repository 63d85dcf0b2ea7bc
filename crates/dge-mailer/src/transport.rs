//! Where emails go: an SMTP server, or `.eml` files for the embedded default.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{Error, Result};

/// How a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Worth retrying later (server down, timeout, 4xx).
    Transient(String),
    /// Will never succeed (5xx: unknown recipient, refused sender).
    Permanent(String),
}

/// A configured transport.
#[derive(Clone)]
pub enum Transport {
    /// Writes each message as `<dir>/<uuid>.eml`.
    File(AsyncFileTransport<Tokio1Executor>),
    /// Sends through an SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(_) => f.write_str("Transport::File"),
            Self::Smtp(_) => f.write_str("Transport::Smtp"),
        }
    }
}

impl Transport {
    /// Writes `.eml` files into `dir`, creating it.
    ///
    /// # Errors
    /// Fails when the folder cannot be created.
    pub fn file(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Config(format!("cannot create mail folder: {e}")))?;
        Ok(Self::File(AsyncFileTransport::new(dir)))
    }

    /// An SMTP transport from a URL such as `smtp://host:25`,
    /// `smtp://user:pass@host:587?tls=required` or `smtps://host:465`.
    ///
    /// # Errors
    /// Fails on a malformed URL.
    pub fn smtp(url: &str, timeout: Duration) -> Result<Self> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| Error::Config("malformed SMTP URL".to_owned()))?;
        Ok(Self::Smtp(builder.timeout(Some(timeout)).build()))
    }

    /// Sends one message.
    ///
    /// # Errors
    /// A [`SendError`] saying whether a retry may help.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Self::File(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Transient(e.to_string())),
            Self::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| {
                if e.is_permanent() {
                    SendError::Permanent(e.to_string())
                } else {
                    SendError::Transient(e.to_string())
                }
            }),
        }
    }
}
