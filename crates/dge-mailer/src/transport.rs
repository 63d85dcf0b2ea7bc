//! Where emails go: an SMTP server, or `.eml` files for the embedded default.
//!
//! The SMTP transport is described by one URL, as lettre reads it:
//!
//! | URL | connection |
//! |---|---|
//! | `smtp://host:25` | plain SMTP (a relay on a private network) |
//! | `smtp://host:587?tls=required` | STARTTLS, refused if the server does not offer it |
//! | `smtp://host:587?tls=opportunistic` | STARTTLS when offered |
//! | `smtps://host:465` | implicit TLS from the first byte |
//!
//! `user:password@` before the host turns on authentication (PLAIN or LOGIN), with
//! `%`-escapes for special characters. Certificates are checked against the Web PKI
//! roots, plus an optional PEM file for a private authority.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use crate::{Error, Result};

/// How a send failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying later (server down, timeout, 4xx, refused credentials).
    Transient(String),
    /// Will never succeed (5xx on the recipient or the message).
    Permanent(String),
}

/// A configured transport.
#[derive(Clone)]
pub enum Transport {
    /// Writes each message as `<dir>/<uuid>.eml`, readable by our user only.
    File(PathBuf),
    /// Sends through an SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The SMTP URL may hold a password: never printed.
        match self {
            Self::File(_) => f.write_str("Transport::File"),
            Self::Smtp(_) => f.write_str("Transport::Smtp"),
        }
    }
}

/// What the SMTP transport needs besides its URL.
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    /// Limit on connecting and on each exchange with the server.
    pub timeout: Duration,
    /// A PEM file of extra trusted certificate authorities (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// The TLS mode a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    None,
    Opportunistic,
    Required,
    Implicit,
}

fn tls_mode(url: &url::Url) -> Result<TlsMode> {
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match (url.scheme(), tls.as_deref()) {
        ("smtp", None) => Ok(TlsMode::None),
        ("smtp", Some("opportunistic")) => Ok(TlsMode::Opportunistic),
        ("smtp", Some("required")) => Ok(TlsMode::Required),
        ("smtps", None) => Ok(TlsMode::Implicit),
        _ => Err(Error::Config(
            "SMTP URL: smtp:// (optionally ?tls=required or ?tls=opportunistic) or smtps://"
                .to_owned(),
        )),
    }
}

impl Transport {
    /// Writes `.eml` files into `dir`, creating it.
    ///
    /// # Errors
    /// Fails when the folder cannot be created.
    pub fn file(dir: PathBuf) -> Result<Self> {
        // The messages hold live confirmation and reset links: 0700 folder.
        dge_core::private_fs::private_dir(&dir)
            .map_err(|e| Error::Config(format!("cannot create mail folder: {e}")))?;
        Ok(Self::File(dir))
    }

    /// An SMTP transport from a URL (see the module documentation).
    ///
    /// # Errors
    /// Fails on a malformed URL or an unreadable CA file. Messages never repeat the
    /// URL, which may hold a password.
    pub fn smtp(url: &str, options: &SmtpOptions) -> Result<Self> {
        let parsed =
            url::Url::parse(url).map_err(|_| Error::Config("malformed SMTP URL".to_owned()))?;
        let mode = tls_mode(&parsed)?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|_| Error::Config("malformed SMTP URL".to_owned()))?
            .timeout(Some(options.timeout));
        if let Some(ca_file) = &options.ca_file {
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let params = tls_parameters(host, ca_file)?;
            builder = builder.tls(match mode {
                TlsMode::None => Tls::None,
                TlsMode::Opportunistic => Tls::Opportunistic(params),
                TlsMode::Required => Tls::Required(params),
                TlsMode::Implicit => Tls::Wrapper(params),
            });
        }
        Ok(Self::Smtp(builder.build()))
    }

    /// Sends one message.
    ///
    /// # Errors
    /// A [`SendError`] saying whether a retry may help.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self {
            Self::File(dir) => write_private(dir, &message.formatted())
                .await
                .map_err(|e| SendError::Transient(e.to_string())),
            Self::Smtp(t) => t.send(message).await.map(|_| ()).map_err(classify),
        }
    }
}

/// Writes `bytes` as a new `<uuid>.eml` in `dir`, mode 0600 from its creation
/// (lettre's file transport leaves the mode to the umask).
async fn write_private(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let path = dir.join(format!("{}.eml", uuid::Uuid::new_v4()));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&path).await?;
    file.write_all(bytes).await?;
    file.sync_data().await
}

fn tls_parameters(host: String, ca_file: &Path) -> Result<TlsParameters> {
    let pem = std::fs::read(ca_file)
        .map_err(|e| Error::Config(format!("cannot read the SMTP CA file: {e}")))?;
    // lettre would take any bytes here and rustls would then skip what it cannot
    // read: a wrong file must stop the start, not leave a private CA untrusted.
    if !holds_a_pem_certificate(&pem) {
        return Err(Error::Config(
            "the SMTP CA file holds no PEM certificate".to_owned(),
        ));
    }
    let cert = Certificate::from_pem(&pem)
        .map_err(|_| Error::Config("the SMTP CA file holds no PEM certificate".to_owned()))?;
    TlsParameters::builder(host)
        .add_root_certificate(cert)
        .build_rustls()
        .map_err(|_| Error::Config("cannot set up TLS for SMTP".to_owned()))
}

/// Whether `pem` holds at least one readable `CERTIFICATE` block, and nothing else
/// that fails to decode.
fn holds_a_pem_certificate(pem: &[u8]) -> bool {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut found = false;
    for cert in CertificateDer::pem_slice_iter(pem) {
        match cert {
            Ok(der) if !der.is_empty() => found = true,
            _ => return false,
        }
    }
    found
}

/// A 5xx answer is permanent, except those about our own credentials (530, 534,
/// 535, 538): an operator fixes the configuration and the queue then drains.
/// An address lettre will not send because the server lacks SMTPUTF8 is
/// permanent too: the same server gives the same answer on every retry.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let reason = e.to_string();
    let auth_problem = e
        .status()
        .is_some_and(|code| matches!(code.to_string().as_str(), "530" | "534" | "535" | "538"));
    // lettre gives this refusal no kind of its own, only a client error with
    // these words; `tests/it/smtp.rs` fails if a new lettre changes them.
    let needs_smtputf8 = e.is_client() && reason.contains("SMTPUTF8");
    if (e.is_permanent() && !auth_problem) || needs_smtputf8 {
        SendError::Permanent(reason)
    } else {
        SendError::Transient(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> Result<TlsMode> {
        tls_mode(&url::Url::parse(url).unwrap())
    }

    #[test]
    fn urls_choose_the_tls_mode() {
        assert_eq!(mode("smtp://relay:25").unwrap(), TlsMode::None);
        assert_eq!(
            mode("smtp://u:p@relay:587?tls=required").unwrap(),
            TlsMode::Required
        );
        assert_eq!(
            mode("smtp://relay?tls=opportunistic").unwrap(),
            TlsMode::Opportunistic
        );
        assert_eq!(mode("smtps://relay:465").unwrap(), TlsMode::Implicit);
        assert!(mode("smtp://relay?tls=yes").is_err());
        assert!(mode("http://relay").is_err());
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let err = Transport::smtp("smtp://user:hunter2@", &SmtpOptions::default())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = Transport::smtp("ftp://user:hunter2@relay", &SmtpOptions::default())
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = Transport::smtp(
            "smtp://user:hunter2@127.0.0.1:28025?tls=bogus",
            &SmtpOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls=required"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_missing_or_non_pem_ca_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("dge-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let with_ca = |path: &Path| SmtpOptions {
            ca_file: Some(path.to_owned()),
            ..SmtpOptions::default()
        };
        let url = "smtp://relay:587?tls=required";
        let missing = Transport::smtp(url, &with_ca(&dir.join("none.pem"))).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate at all\n").unwrap();
        let err = Transport::smtp(url, &with_ca(&garbage)).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = Transport::smtp(url, &with_ca(&broken)).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
