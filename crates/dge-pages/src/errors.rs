//! French answers for the errors the framework produces on its own: unknown paths
//! (404), a wrong method (405), a request too slow (408), a body over the limit (413), a body that is not a form
//! (415), a form that does not deserialize (400, 422). Those come as English text or
//! an empty body; handlers' own pages (HTML) and JSON errors pass untouched. The OAuth
//! endpoints, called by programs, get an OAuth JSON error (`invalid_request`) instead.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::render::Renderer;

/// The title and text of the page for a form over the size limit, whoever stops it.
pub(crate) const TOO_LARGE: (&str, &str) = (
    "Formulaire trop volumineux",
    "Le formulaire envoyé est trop volumineux : un champ contient beaucoup plus de texte \
     qu'il n'en admet (la description, par exemple, 2 000 caractères au plus). Revenez \
     à la page précédente avec votre navigateur, raccourcissez le texte et envoyez de \
     nouveau le formulaire.",
);

/// Endpoints answered in JSON (OAuth 2.0 and OpenID Connect).
pub const API_PATHS: [&str; 7] = [
    "/token",
    "/introspect",
    "/revoke",
    "/device_authorization",
    "/userinfo",
    "/jwks",
    "/.well-known/openid-configuration",
];

/// Title and message of the French page for a framework error; `None` for others.
#[must_use]
pub fn explain(status: StatusCode) -> Option<(&'static str, &'static str)> {
    Some(match status {
        StatusCode::BAD_REQUEST => (
            "Requête invalide",
            "La requête envoyée est mal formée. Rechargez la page et recommencez.",
        ),
        StatusCode::NOT_FOUND => (
            "Page introuvable",
            "Cette adresse ne correspond à aucune page du portail.",
        ),
        StatusCode::METHOD_NOT_ALLOWED => (
            "Méthode non autorisée",
            "Cette page ne peut pas être appelée de cette façon.",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "Délai dépassé",
            "La requête a mis trop de temps à arriver. Rechargez la page et recommencez.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => TOO_LARGE,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "Format non pris en charge",
            "Seuls les formulaires envoyés par le navigateur sont acceptés ici.",
        ),
        StatusCode::UNPROCESSABLE_ENTITY => (
            "Formulaire invalide",
            "Le formulaire envoyé est mal formé (un champ manque, est répété ou n'est pas \
             valide). Rechargez la page et recommencez.",
        ),
        _ => return None,
    })
}

/// Whether a handler wrote this answer itself (a page or a JSON error).
fn written_by_a_handler(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html") || v.starts_with("application/json"))
}

/// The middleware, over every HTTP route and the fallback.
pub async fn framework_errors(
    State(render): State<Arc<Renderer>>,
    request: Request,
    next: Next,
) -> Response {
    let api = API_PATHS.contains(&request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let Some((title, message)) = explain(status) else {
        return response;
    };
    if written_by_a_handler(&response) {
        return response;
    }
    let mut replacement = if api {
        let body =
            json!({ "error": "invalid_request", "error_description": status.canonical_reason() });
        (status, Json(body)).into_response()
    } else {
        render.error(status, title, message, None)
    };
    if let Some(allow) = response.headers().get(header::ALLOW) {
        replacement
            .headers_mut()
            .insert(header::ALLOW, allow.clone());
    }
    replacement
}
