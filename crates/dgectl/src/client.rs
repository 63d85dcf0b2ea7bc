//! The connection to the server: one channel, the bearer token attached to
//! every call, and a client per gRPC service.

use std::path::Path;
use std::time::Duration;

use dge_proto::v1::account_registry_client::AccountRegistryClient;
use dge_proto::v1::authorization_client::AuthorizationClient;
use dge_proto::v1::client_registry_client::ClientRegistryClient;
use dge_proto::v1::identity_broker_client::IdentityBrokerClient;
use dge_proto::v1::mailer_client::MailerClient;
use dge_proto::v1::signing_keys_client::SigningKeysClient;
use dge_proto::v1::validation_workflow_client::ValidationWorkflowClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::cli::{ConnectionOpts, ServerUrl, Token};
use crate::error::CliError;

/// How long to wait for the TCP connection to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may take; every administrator call is a short lookup or update.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A channel whose calls carry the bearer token.
pub(crate) type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub(crate) struct BearerAuth {
    header: MetadataValue<Ascii>,
}

impl BearerAuth {
    /// Prepares the header value; it is marked sensitive so that tonic's own
    /// `Debug` output never shows it.
    pub(crate) fn new(token: &Token) -> Result<Self, CliError> {
        let mut header: MetadataValue<Ascii> =
            format!("Bearer {}", token.expose()).parse().map_err(|_| {
                CliError::Usage(
                    "the token holds characters that cannot be sent in a gRPC header".to_owned(),
                )
            })?;
        header.set_sensitive(true);
        Ok(Self { header })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}

/// The token and server to use: `--token`/`DGECTL_TOKEN`, else
/// `--token-file`/`DGECTL_TOKEN_FILE`, else the login saved by `dgectl login` (whose
/// server is used unless `--server`/`DGECTL_SERVER` says otherwise).
pub(crate) fn resolve_token(opts: &ConnectionOpts) -> Result<(Token, ServerUrl), CliError> {
    if let Some(token) = &opts.token {
        return Ok((token.clone(), opts.server.clone()));
    }
    if let Some(path) = &opts.token_file {
        return Ok((read_token_file(path)?, opts.server.clone()));
    }
    let Some(saved) = crate::credentials::load()? else {
        return Err(CliError::NoToken);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if saved.expires_at <= now {
        return Err(CliError::Login(
            "the token saved by dgectl login has expired: run dgectl login again".into(),
        ));
    }
    let server = if opts.server_given {
        opts.server.clone()
    } else {
        saved.server.parse().map_err(|e| {
            CliError::Usage(format!(
                "the saved login names a bad server ({e}): run dgectl login"
            ))
        })?
    };
    Ok((saved.token, server))
}

/// Reads a token file, ignoring surrounding white space (a final newline).
fn read_token_file(path: &Path) -> Result<Token, CliError> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        CliError::Usage(format!(
            "cannot read the token file {}: {err}",
            path.display()
        ))
    })?;
    text.parse()
        .map_err(|_| CliError::Usage(format!("the token file {} is empty", path.display())))
}

/// Whether `server`, an `http://` URL, answers HTTP/1.1 (a web server) within 3 s.
/// Asked only after a gRPC connection failed. Not tried for `https://`: there the TLS
/// handshake fails first, with its own message.
pub(crate) async fn answers_http1(server: &ServerUrl) -> bool {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let Some(rest) = server.as_str().strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest).to_owned();
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(authority.as_str()).await?;
        let request = format!("HEAD / HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0_u8; 7];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(&head == b"HTTP/1.")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), probe).await,
        Ok(Ok(true))
    )
}

/// TLS for an https:// server: the system's roots, plus the CA in `ca_cert` if any.
/// The server name checked is the URL's host.
fn tls_config(ca_cert: Option<&Path>) -> Result<ClientTlsConfig, CliError> {
    let config = ClientTlsConfig::new().with_native_roots();
    let Some(path) = ca_cert else {
        return Ok(config);
    };
    let pem = std::fs::read(path).map_err(|err| {
        CliError::Usage(format!(
            "cannot read the CA certificate {}: {err}",
            path.display()
        ))
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(CliError::Usage(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(config.ca_certificate(Certificate::from_pem(pem)))
}

/// An open connection, handing out one client per service.
pub(crate) struct Api {
    server: ServerUrl,
    channel: Channel,
    auth: BearerAuth,
    /// Where the token comes from, named when the server refuses it.
    token_source: &'static str,
}

impl Api {
    /// Opens the connection now, so that an unreachable server is reported
    /// before anything else happens.
    pub(crate) async fn connect(
        server: &ServerUrl,
        ca_cert: Option<&Path>,
        auth: BearerAuth,
        token_source: &'static str,
    ) -> Result<Self, CliError> {
        let mut endpoint = Endpoint::from_shared(server.as_str().to_owned())
            .map_err(|_| CliError::Usage(format!("not a valid server URL: {server}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        if server.as_str().starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls_config(ca_cert)?)
                .map_err(|err| CliError::unreachable(server, &err))?;
        } else if ca_cert.is_some() {
            return Err(CliError::Usage(
                "--ca-cert needs an https:// server URL".to_owned(),
            ));
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|err| CliError::unreachable(server, &err))?;
        Ok(Self {
            server: server.clone(),
            channel,
            auth,
            token_source,
        })
    }

    /// Turns a failed call into the error to report.
    pub(crate) fn fail(&self, status: Status) -> CliError {
        match CliError::from_status(status, &self.server) {
            CliError::Unauthenticated { .. } => CliError::Unauthenticated {
                given_by: self.token_source,
            },
            other => other,
        }
    }

    pub(crate) fn accounts(&self) -> AccountRegistryClient<AuthChannel> {
        AccountRegistryClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub(crate) fn workflow(&self) -> ValidationWorkflowClient<AuthChannel> {
        ValidationWorkflowClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub(crate) fn authorization(&self) -> AuthorizationClient<AuthChannel> {
        AuthorizationClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub(crate) fn clients(&self) -> ClientRegistryClient<AuthChannel> {
        ClientRegistryClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub(crate) fn mailer(&self) -> MailerClient<AuthChannel> {
        MailerClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub(crate) fn keys(&self) -> SigningKeysClient<AuthChannel> {
        SigningKeysClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub(crate) fn broker(&self) -> IdentityBrokerClient<AuthChannel> {
        IdentityBrokerClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interceptor_sends_a_bearer_header() {
        let token: Token = "abc.def".parse().expect("non-empty");
        let mut auth = BearerAuth::new(&token).expect("printable token");
        let request = auth.call(Request::new(())).expect("never refuses");
        let header = request.metadata().get("authorization").expect("header set");
        assert_eq!(header.to_str().expect("ascii"), "Bearer abc.def");
        assert!(!format!("{header:?}").contains("abc.def"));
    }

    #[test]
    fn a_token_with_a_line_break_inside_is_refused() {
        let token: Token = "abc\ndef".parse().expect("non-empty");
        let err = BearerAuth::new(&token).err().expect("refused");
        assert_eq!(err.exit_code(), 2);
        assert!(!err.to_string().contains("abc"));
    }
}
