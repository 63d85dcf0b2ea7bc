//! The requests of each scenario, as a client of DGE Identity would send them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dge_proto::v1::authorization_client::AuthorizationClient;
use dge_proto::v1::{CheckRequest, IntrospectRequest};
use rand::Rng;
use reqwest::{Client, StatusCode, header};
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::load::{Call, Outcome};
use crate::raw_http::Prepared;
use crate::seed;

/// The demo portal client of `dge-idp dev`: the password logins go through it.
pub(crate) const PORTAL_ID: &str = "datahub";
pub(crate) const PORTAL_SECRET: &str = "datahub-dev-secret";
pub(crate) const PORTAL_REDIRECT: &str = "http://localhost:8081/callback";

/// What the scenarios share: where the servers are and the credentials set up.
pub(crate) struct Target {
    pub(crate) http: Client,
    pub(crate) base: String,
    /// One gRPC connection per worker, as many services would hold.
    pub(crate) channels: Vec<Channel>,
    /// `Bearer <service token>` (scopes `authz:check authz:introspect`).
    pub(crate) service_bearer: MetadataValue<tonic::metadata::Ascii>,
    /// A person's access token, issued to the portal client.
    pub(crate) user_token: String,
    pub(crate) service_id: String,
    pub(crate) service_secret: String,
    /// How many seeded accounts the logins pick from.
    pub(crate) accounts: u64,
    pub(crate) signups: AtomicU64,
    pub(crate) run_tag: String,
}

/// A scenario's call, boxed for the runner.
pub(crate) type Scenario = Arc<dyn Fn(usize) -> Call + Send + Sync>;

/// An HTTP client that never follows redirects and never goes through a proxy.
///
/// # Errors
/// When TLS initialisation fails.
pub(crate) fn http_client() -> reqwest::Result<Client> {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .build()
}

fn failed(what: &str, e: impl std::fmt::Display) -> Outcome {
    Outcome::Failed(format!("{what}: {e}"))
}

/// `GET url`, expecting 200, from `workers` kept-alive connections.
///
/// # Errors
/// When `url` is not `http://<ip>:<port>/…`.
pub(crate) fn get(url: &str, workers: usize) -> anyhow::Result<Scenario> {
    let request = Arc::new(Prepared::get(url, workers)?);
    Ok(Arc::new(move |worker| {
        let request = request.clone();
        Box::pin(async move {
            match request.send(worker).await {
                Ok((StatusCode::OK, _)) => Outcome::Ok,
                Ok((status, _)) => failed("status", status),
                Err(e) => failed("GET", e),
            }
        })
    }))
}

/// The answer of a prepared request: 200 with `needle` in its body.
async fn prepared_json(request: &Prepared, worker: usize, needle: &str) -> Outcome {
    match request.send(worker).await {
        Ok((StatusCode::OK, body)) => {
            let body = String::from_utf8_lossy(&body);
            if body.contains(needle) {
                Outcome::Ok
            } else {
                failed("unexpected body", truncate(&body))
            }
        }
        Ok((status, body)) => failed(
            &format!("status {status}"),
            truncate(&String::from_utf8_lossy(&body)),
        ),
        Err(e) => failed("POST", e),
    }
}

/// `client_credentials` at `token_url` with HTTP Basic client authentication.
///
/// # Errors
/// When `token_url` is not `http://<ip>:<port>/…`.
pub(crate) fn client_credentials(
    token_url: &str,
    id: &str,
    secret: &str,
    workers: usize,
) -> anyhow::Result<Scenario> {
    let request = Arc::new(Prepared::post_form(
        token_url,
        (id, secret),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "authz:check"),
        ],
        workers,
    )?);
    Ok(Arc::new(move |worker| {
        let request = request.clone();
        Box::pin(async move { prepared_json(&request, worker, "access_token").await })
    }))
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// RFC 7662 introspection of the person's token by the client it was issued to.
///
/// # Errors
/// When the target's URL is not `http://<ip>:<port>`.
pub(crate) fn introspect_http(target: &Target, workers: usize) -> anyhow::Result<Scenario> {
    let request = Arc::new(Prepared::post_form(
        &format!("{}/introspect", target.base),
        (&target.service_id, &target.service_secret),
        &[("token", target.user_token.as_str())],
        workers,
    )?);
    Ok(Arc::new(move |worker| {
        let request = request.clone();
        Box::pin(async move { prepared_json(&request, worker, "\"active\":true").await })
    }))
}

/// `grpc.health.v1.Health/Check` on the same server: a call that reaches the same
/// tonic stack and does nothing, the ceiling of any gRPC method.
pub(crate) fn grpc_empty(target: &Arc<Target>) -> Scenario {
    let target = target.clone();
    Arc::new(move |worker| {
        let channel = target.channels[worker % target.channels.len()].clone();
        Box::pin(async move {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            match answer {
                Ok(r) if r.get_ref().status == 1 => Outcome::Ok,
                Ok(r) => failed("health", r.get_ref().status),
                Err(e) => failed("health", e),
            }
        })
    })
}

/// `Authorization.Check` of the person's token for the seeded right.
pub(crate) fn grpc_check(target: &Arc<Target>) -> Scenario {
    let target = target.clone();
    Arc::new(move |worker| {
        let target = target.clone();
        Box::pin(async move {
            let channel = target.channels[worker % target.channels.len()].clone();
            let mut request = tonic::Request::new(CheckRequest {
                access_token: target.user_token.clone(),
                right: seed::RIGHT.to_owned(),
            });
            request
                .metadata_mut()
                .insert("authorization", target.service_bearer.clone());
            match AuthorizationClient::new(channel).check(request).await {
                Ok(r) if r.get_ref().allowed => Outcome::Ok,
                Ok(r) => failed("denied", &r.get_ref().reason),
                Err(e) => failed("Check", e),
            }
        })
    })
}

/// `Authorization.Introspect` of the person's token.
pub(crate) fn grpc_introspect(target: &Arc<Target>) -> Scenario {
    let target = target.clone();
    Arc::new(move |worker| {
        let target = target.clone();
        Box::pin(async move {
            let channel = target.channels[worker % target.channels.len()].clone();
            let mut request = tonic::Request::new(IntrospectRequest {
                token: target.user_token.clone(),
            });
            request
                .metadata_mut()
                .insert("authorization", target.service_bearer.clone());
            match AuthorizationClient::new(channel).introspect(request).await {
                Ok(r) if r.get_ref().active => Outcome::Ok,
                Ok(_) => failed("Introspect", "inactive"),
                Err(e) => failed("Introspect", e),
            }
        })
    })
}

/// The whole password login of a random seeded account: authorization request,
/// login page, login form POST (CSRF), code exchange.
pub(crate) fn password_login(target: &Arc<Target>) -> Scenario {
    let target = target.clone();
    Arc::new(move |_| {
        let target = target.clone();
        Box::pin(async move {
            let i = rand::thread_rng().gen_range(1..=target.accounts);
            match login(&target.http, &target.base, &seed::login(i)).await {
                Ok(_) => Outcome::Ok,
                Err(o) => o,
            }
        })
    })
}

fn random_text(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The value of `<input ... name="NAME" value="...">` in a page.
fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// The CSRF cookie set by a page, as a `Cookie` header value.
fn csrf_cookie(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("dge_csrf="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Every cookie a response sets, as one `Cookie` header value (empty when none).
fn cookies_set(r: &reqwest::Response) -> String {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A form page: its CSRF cookie and token, and its `req`.
async fn form_page(http: &Client, url: &str) -> Result<(String, String, String), Outcome> {
    form_page_with(http, url, "").await
}

/// A form page opened with `cookies` (those `/authorize` set, which bind its `req` to
/// this client): its CSRF cookie and token, and its `req`.
async fn form_page_with(
    http: &Client,
    url: &str,
    cookies: &str,
) -> Result<(String, String, String), Outcome> {
    let mut get = http.get(url);
    if !cookies.is_empty() {
        get = get.header(header::COOKIE, cookies);
    }
    let page = get.send().await.map_err(|e| failed("GET form", e))?;
    if page.status() != StatusCode::OK {
        return Err(failed("form page status", page.status()));
    }
    // A page opened with its CSRF cookie already set does not set it again.
    let cookie = csrf_cookie(&page)
        .or_else(|| (!cookies.is_empty()).then(|| cookies.to_owned()))
        .ok_or_else(|| failed("form page", "no CSRF cookie"))?;
    let html = page.text().await.map_err(|e| failed("form page body", e))?;
    let token =
        hidden_field(&html, "csrf_token").ok_or_else(|| failed("form page", "no csrf_token"))?;
    let req = hidden_field(&html, "req").unwrap_or_default();
    Ok((cookie, token, req))
}

fn refused_or(r: &reqwest::Response, took: Duration, what: &str) -> Outcome {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        Outcome::Refused {
            retry_after: r.headers().contains_key(header::RETRY_AFTER),
            took,
        }
    } else {
        failed(what, r.status())
    }
}

/// A relying party a person logs in through.
pub(crate) struct Rp<'a> {
    pub(crate) id: &'a str,
    pub(crate) secret: &'a str,
    pub(crate) redirect_uri: &'a str,
}

/// The demo portal client.
pub(crate) const PORTAL: Rp<'static> = Rp {
    id: PORTAL_ID,
    secret: PORTAL_SECRET,
    redirect_uri: PORTAL_REDIRECT,
};

/// Logs `identifier` in through the portal client; returns the access token.
///
/// # Errors
/// The outcome to count: a refusal (503) or a failure.
pub(crate) async fn login(http: &Client, base: &str, identifier: &str) -> Result<String, Outcome> {
    login_through(http, base, &PORTAL, identifier).await
}

/// Logs `identifier` in through `rp`; returns the access token.
///
/// # Errors
/// The outcome to count: a refusal (503) or a failure.
pub(crate) async fn login_through(
    http: &Client,
    base: &str,
    rp: &Rp<'_>,
    identifier: &str,
) -> Result<String, Outcome> {
    let verifier = random_text(64);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", rp.id),
        ("redirect_uri", rp.redirect_uri),
        ("scope", "openid"),
        ("state", &random_text(24)),
        ("nonce", &random_text(24)),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ])
    .map_err(|e| failed("query", e))?;
    let authorize = http
        .get(format!("{base}/authorize?{query}"))
        .send()
        .await
        .map_err(|e| failed("GET /authorize", e))?;
    let login_url = match (authorize.status(), location(&authorize)) {
        (StatusCode::SEE_OTHER, Some(l)) => absolute(base, &l),
        (status, _) => return Err(failed("/authorize status", status)),
    };
    // The request is bound to the browser that opened it: /authorize sets the CSRF
    // cookie and the binding cookie, which the login page and its POST need.
    let bound = cookies_set(&authorize);
    let (_, csrf_token, req) = form_page_with(http, &login_url, &bound).await?;
    let post_started = Instant::now();
    let posted = http
        .post(format!("{base}/login"))
        .header(header::COOKIE, bound)
        .form(&[
            ("csrf_token", csrf_token.as_str()),
            ("req", req.as_str()),
            ("identifier", identifier),
            ("password", seed::PASSWORD),
        ])
        .send()
        .await
        .map_err(|e| failed("POST /login", e))?;
    let callback = match (posted.status(), location(&posted)) {
        (StatusCode::SEE_OTHER, Some(l)) if l.starts_with(rp.redirect_uri) => l,
        _ => {
            return Err(refused_or(
                &posted,
                post_started.elapsed(),
                "POST /login status",
            ));
        }
    };
    let code = callback
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("code="))
        .ok_or_else(|| failed("callback", "no code"))?;
    let code = code.to_owned();
    let tokens = http
        .post(format!("{base}/token"))
        .basic_auth(rp.id, Some(rp.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", rp.redirect_uri),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| failed("POST /token", e))?;
    if tokens.status() != StatusCode::OK {
        return Err(failed("/token status", tokens.status()));
    }
    let body: serde_json::Value = tokens.json().await.map_err(|e| failed("/token body", e))?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| failed("/token", "no access_token"))
}

/// A sign-up through the page, each with a new login and address.
pub(crate) fn signup(target: &Arc<Target>) -> Scenario {
    let target = target.clone();
    Arc::new(move |_| {
        let target = target.clone();
        Box::pin(async move {
            let n = target.signups.fetch_add(1, Ordering::Relaxed);
            let login = format!("su{}x{n}", target.run_tag);
            let email = format!("{login}@inscription.example.org");
            let url = format!("{}/signup", target.base);
            let (cookie, csrf_token, _) = match form_page(&target.http, &url).await {
                Ok(f) => f,
                Err(o) => return o,
            };
            let post_started = Instant::now();
            let answer = target
                .http
                .post(&url)
                .header(header::COOKIE, cookie)
                .form(&[
                    ("csrf_token", csrf_token.as_str()),
                    ("given_name", "Camille"),
                    ("family_name", "Durand"),
                    ("email", email.as_str()),
                    ("phone", "+33612345678"),
                    ("organisation_id", "ville-de-nancy"),
                    ("function", "Chargée d'études"),
                    ("description", "Mesure de performance."),
                    ("login", login.as_str()),
                    ("password", "Quiche-Lorraine-Vosges-88!"),
                    ("password_confirmation", "Quiche-Lorraine-Vosges-88!"),
                ])
                .send()
                .await;
            match answer {
                // Filed: a 303 to the page that says to check the mailbox (whose GET
                // a browser would make, a static page, is not part of the measure).
                Ok(r)
                    if r.status() == StatusCode::SEE_OTHER
                        && r.headers()
                            .get(header::LOCATION)
                            .is_some_and(|l| l == "/signup/done") =>
                {
                    Outcome::Ok
                }
                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    refused_or(&r, post_started.elapsed(), "")
                }
                Ok(r) => {
                    let status = r.status();
                    failed(
                        &format!("sign-up status {status}"),
                        truncate(&r.text().await.unwrap_or_default()),
                    )
                }
                Err(e) => failed("POST /signup", e),
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hidden_fields() {
        let html = r#"<input type="hidden" name="csrf_token" value="abc"><input type="hidden" name="req" value="r1">"#;
        assert_eq!(hidden_field(html, "csrf_token").as_deref(), Some("abc"));
        assert_eq!(hidden_field(html, "req").as_deref(), Some("r1"));
        assert_eq!(hidden_field(html, "missing"), None);
    }

    #[test]
    fn resolves_relative_locations() {
        assert_eq!(
            absolute("http://h:1", "/login?req=x"),
            "http://h:1/login?req=x"
        );
        assert_eq!(absolute("http://h:1", "http://o/cb"), "http://o/cb");
    }
}
