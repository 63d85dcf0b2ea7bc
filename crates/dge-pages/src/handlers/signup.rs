//! The sign-up page ("Nouveau compte").

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use dge_core::{MaskedEmail, Secret, Violations};
use dge_registry::SignUpForm;
use dge_registry::domain::PasswordContext;
use serde::Deserialize;
use serde_json::{Value, json};

use super::login::ReqQuery;
use super::password::rules_json;
use super::{busy, csrf_refused, internal, see_other};
use crate::client::ClientAddr;
use crate::{Pages, csrf};

/// The sign-up form as posted. Not `Debug`: it carries passwords.
#[derive(Deserialize, Default)]
pub(crate) struct SignUpFields {
    csrf_token: Option<String>,
    #[serde(default)]
    req: String,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    organisation_id: String,
    organisation_missing: Option<String>,
    #[serde(default)]
    proposed_organisation: String,
    #[serde(default)]
    function: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: Secret<String>,
    #[serde(default)]
    password_confirmation: Secret<String>,
}

impl SignUpFields {
    fn missing_ticked(&self) -> bool {
        self.organisation_missing.as_deref() == Some("on")
    }

    /// What the page shows again after an error: everything but the passwords.
    fn kept_values(&self) -> Value {
        json!({
            "given_name": self.given_name,
            "family_name": self.family_name,
            "email": self.email,
            "phone": self.phone,
            "organisation_id": self.organisation_id,
            "organisation_missing": self.missing_ticked(),
            "proposed_organisation": self.proposed_organisation,
            "function": self.function,
            "description": self.description,
            "login": self.login,
        })
    }

    fn to_form(&self) -> SignUpForm {
        let missing = self.missing_ticked();
        SignUpForm {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            email: self.email.clone(),
            phone: self.phone.clone(),
            // The checkbox decides: ticked means "not in the list", whatever the select says.
            organisation_id: if missing {
                String::new()
            } else {
                self.organisation_id.clone()
            },
            proposed_organisation: if missing {
                self.proposed_organisation.clone()
            } else {
                String::new()
            },
            function: self.function.clone(),
            description: self.description.clone(),
            login: self.login.clone(),
            password: self.password.clone(),
            password_confirmation: self.password_confirmation.clone(),
        }
    }
}

/// A posted sign-up form, parsed and checked by the rules that need no database,
/// as [`submit`] does first (the `forms` fuzz target).
pub(crate) fn check_posted(body: &[u8]) {
    if let Ok(fields) = serde_urlencoded::from_bytes::<SignUpFields>(body) {
        let form = fields.to_form();
        let _ = form.validate();
        let _ = fields.kept_values();
    }
}

// The sign-up page is drawn from many places with different parts filled in; a
// struct for them would only rename these arguments.
#[allow(clippy::too_many_arguments)]
async fn page(
    pages: &Pages,
    jar: CookieJar,
    status: StatusCode,
    req: &str,
    values: Value,
    errors: Value,
    password: Option<&str>,
    password_context: PasswordContext,
) -> Response {
    let organisations = match pages.registry.organisations().await {
        Ok(list) => list
            .into_iter()
            .map(|(id, name)| json!({ "id": id, "name": name }))
            .collect::<Vec<_>>(),
        Err(e) => return internal(pages, &e),
    };
    let rules = rules_json(password, &password_context);
    let (jar, token) = csrf::token(jar, pages.secure_cookies);
    let context = json!({
        "csrf_token": token,
        "req": req,
        "values": values,
        "errors": errors,
        "organisations": organisations,
        "password_rules": rules,
    });
    (jar, pages.render.page(status, "signup.html", context)).into_response()
}

/// `GET /signup`.
pub(crate) async fn show(
    State(pages): State<Pages>,
    jar: CookieJar,
    Query(q): Query<ReqQuery>,
) -> Response {
    page(
        &pages,
        jar,
        StatusCode::OK,
        &q.req.unwrap_or_default(),
        json!({}),
        json!({}),
        None,
        PasswordContext::default(),
    )
    .await
}

/// Where a filed sign-up is sent: the page that says to read the mailbox.
pub(crate) const DONE_PATH: &str = "/signup/done";

/// The masked address the last sign-up of this browser was filed with, hex-encoded,
/// for [`DONE_PATH`] to show (scoped to it, short-lived).
const SENT_COOKIE: &str = "dge_signup_sent";

/// `GET /signup/done`: « Votre demande est enregistrée », with the masked address
/// when the browser has it.
pub(crate) async fn done(State(pages): State<Pages>, jar: CookieJar) -> Response {
    let masked = jar
        .get(SENT_COOKIE)
        .map(Cookie::value)
        .filter(|v| v.len() <= 1024)
        .and_then(|v| hex::decode(v).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    pages.render.page(
        StatusCode::OK,
        "signup_done.html",
        json!({ "email_masked": masked }),
    )
}

fn errors_by_field(violations: &Violations) -> Value {
    let mut map = BTreeMap::new();
    for v in violations {
        map.entry(v.field).or_insert_with(|| v.message.clone());
    }
    // The proposed organisation's errors show next to the free-text field, the
    // list's next to the list.
    json!(map)
}

/// `POST /signup`.
pub(crate) async fn submit(
    State(pages): State<Pages>,
    ClientAddr(address): ClientAddr,
    jar: CookieJar,
    Form(fields): Form<SignUpFields>,
) -> Response {
    if !csrf::verify_anonymous_form(&jar, fields.csrf_token.as_deref()) {
        return csrf_refused(&pages);
    }
    let form = fields.to_form();
    match pages.registry.sign_up_from(&form, &address).await {
        // Post/Redirect/Get: a reload of the answer sends nothing again. A repeat of
        // the post itself (the back button) lands here too (see `Registry::sign_up`).
        Ok(()) => {
            let masked = MaskedEmail(form.email.trim()).to_string();
            let cookie = Cookie::build((SENT_COOKIE, hex::encode(masked)))
                .http_only(true)
                .secure(pages.secure_cookies)
                .same_site(SameSite::Lax)
                .path(DONE_PATH)
                .max_age(time::Duration::minutes(10))
                .build();
            (jar.add(cookie), see_other(DONE_PATH)).into_response()
        }
        Err(dge_registry::Error::Invalid(violations)) => {
            let errors = errors_by_field(&violations);
            let password = fields.password.expose().clone();
            page(
                &pages,
                jar,
                StatusCode::BAD_REQUEST,
                &fields.req,
                fields.kept_values(),
                errors,
                Some(&password),
                form.password_context(),
            )
            .await
        }
        Err(dge_registry::Error::TooManySignUps(retry_secs)) => {
            // Whole minutes: « 59 minutes et 12 secondes » reads like a countdown.
            let wait = dge_core::time::duration_fr(
                i64::try_from(retry_secs.div_ceil(60) * 60).unwrap_or(i64::MAX),
            );
            let errors = json!({ "form": format!(
                "Trop de demandes d'inscription ont été envoyées depuis votre connexion. \
                 Réessayez dans {wait} : votre saisie est conservée ci-dessous."
            ) });
            let mut response = page(
                &pages,
                jar,
                StatusCode::TOO_MANY_REQUESTS,
                &fields.req,
                fields.kept_values(),
                errors,
                None,
                form.password_context(),
            )
            .await;
            if let Ok(value) = HeaderValue::from_str(&retry_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(dge_registry::Error::Busy) => busy(&pages),
        Err(e) => internal(&pages, &e),
    }
}
