//! `dgectl login` and `dgectl logout`: the OAuth 2.0 device authorization grant
//! (RFC 8628). The administrator approves in a browser where they are (or get)
//! signed in; no password goes through dgectl. The access token is kept by
//! [`crate::credentials`] for later commands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cli::{ConnectionOpts, LoginArgs};
use crate::credentials::{self, Saved};
use crate::error::CliError;
use crate::output::{self, OutputFormat};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long one HTTP call to the provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn unreachable(issuer: &str, err: &reqwest::Error) -> CliError {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    CliError::Unreachable {
        server: issuer.to_owned(),
        cause: cause.to_string(),
    }
}

/// Posts a form and reads the JSON answer, whatever its status.
async fn post(
    http: &reqwest::Client,
    issuer: &str,
    path: &str,
    form: &[(&str, &str)],
) -> Result<(u16, Value), CliError> {
    let resp = http
        .post(format!("{issuer}{path}"))
        .form(form)
        .send()
        .await
        .map_err(|e| unreachable(issuer, &e))?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.map_err(|_| {
        CliError::Usage(format!(
            "{issuer}{path} did not answer with JSON (HTTP {status}): is {issuer} the DGE Identity issuer URL?"
        ))
    })?;
    Ok((status, body))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// `dgectl login`.
pub(crate) async fn login(
    connection: &ConnectionOpts,
    out: OutputFormat,
    args: LoginArgs,
) -> Result<(), CliError> {
    let issuer = args.issuer.trim_end_matches('/').to_owned();
    let http = http_client()?;
    let (status, start) = post(
        &http,
        &issuer,
        "/device_authorization",
        &[("client_id", &args.client_id), ("scope", "openid")],
    )
    .await?;
    if status != 200 {
        let hint = match text(&start, "error") {
            "invalid_client" | "unauthorized_client" => format!(
                "; an operator registers the client with `dgectl clients add {} --device \
                 --public --first-party`",
                args.client_id
            ),
            _ => String::new(),
        };
        return Err(CliError::Login(format!(
            "the provider refused to start a login: {} ({}){hint}",
            text(&start, "error"),
            text(&start, "error_description")
        )));
    }
    eprintln!(
        "To log in, open {} in a browser and enter the code {}\n(or open {})\nWaiting for approval…",
        text(&start, "verification_uri"),
        text(&start, "user_code"),
        text(&start, "verification_uri_complete"),
    );
    let token = poll(&http, &issuer, &args.client_id, &start).await?;
    let saved = Saved {
        issuer,
        client_id: args.client_id,
        server: connection.server.to_string(),
        token: text(&token, "access_token")
            .parse()
            .map_err(|_| CliError::Login("the provider sent no access token".into()))?,
        expires_at: now() + token.get("expires_in").and_then(Value::as_i64).unwrap_or(0),
    };
    let path = credentials::save(&saved)?;
    match out {
        OutputFormat::Table => output::print_line(&format!(
            "logged in; token saved in {} until {} UTC",
            path.display(),
            output::utc_minutes(saved.expires_at)
        ))?,
        OutputFormat::Json => output::print_json(&json!({
            "token_file": path.display().to_string(),
            "server": saved.server,
            "expires_at": saved.expires_at,
        }))?,
    }
    Ok(())
}

/// Polls the token endpoint until the person answers or the code expires.
async fn poll(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    start: &Value,
) -> Result<Value, CliError> {
    let device_code = text(start, "device_code");
    let mut interval = start
        .get("interval")
        .and_then(Value::as_u64)
        .unwrap_or(5)
        .max(1);
    let expires_in = start
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(600);
    let deadline = now() + expires_in;
    loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let form = [
            ("grant_type", DEVICE_GRANT),
            ("device_code", device_code),
            ("client_id", client_id),
        ];
        let (status, answer) = post(http, issuer, "/token", &form).await?;
        if status == 200 {
            return Ok(answer);
        }
        match text(&answer, "error") {
            "authorization_pending" if now() < deadline => {}
            // RFC 8628 §3.5: wait 5 seconds more from now on.
            "slow_down" => interval += 5,
            "access_denied" => {
                return Err(CliError::Login(
                    "the login was refused in the browser".into(),
                ));
            }
            "expired_token" | "authorization_pending" => {
                return Err(CliError::Login(
                    "the code expired before it was approved: run dgectl login again".into(),
                ));
            }
            other => {
                return Err(CliError::Login(format!(
                    "the provider refused the login: {other} ({})",
                    text(&answer, "error_description")
                )));
            }
        }
    }
}

/// `dgectl logout`: revokes the saved token at the provider (when it answers) and
/// deletes it.
pub(crate) async fn logout(out: OutputFormat) -> Result<(), CliError> {
    let path = credentials::path()?;
    // A saved file that cannot be read is deleted all the same.
    if let Ok(Some(saved)) = credentials::load() {
        let revoked = match http_client() {
            Ok(http) => http
                .post(format!("{}/revoke", saved.issuer))
                .form(&[
                    ("token", saved.token.expose()),
                    ("client_id", &saved.client_id),
                ])
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Err(_) => false,
        };
        if !revoked {
            eprintln!(
                "warning: the provider could not be told; the token stays valid until it expires"
            );
        }
    }
    let deleted = credentials::delete()?;
    match out {
        OutputFormat::Table if deleted => {
            output::print_line(&format!("logged out; {} deleted", path.display()))?;
        }
        OutputFormat::Table => output::print_line("not logged in; nothing to delete")?,
        OutputFormat::Json => output::print_json(&json!({ "deleted": deleted }))?,
    }
    Ok(())
}

fn http_client() -> Result<reqwest::Client, CliError> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start an HTTP client: {e}")))
}
