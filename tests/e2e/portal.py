"""A portal module (the OpenID Connect relying party) and the person using it.

The module speaks to DGE Identity through authlib, an OIDC client that is not ours.
Its redirect URIs point at localhost ports where nothing listens: the tests read the
Location header and never follow it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt

import pages
from idp_server import loopback_http
from outbox import ACTIVATED_SUBJECT, CONFIRM_SUBJECT, confirmation_link, wait_for_subject

DATAHUB_ID = "datahub"
DATAHUB_SECRET = "datahub-dev-secret"
DATAHUB_REDIRECT_URI = "http://localhost:8081/callback"
SCOPE = "openid profile email"
CLOCK_LEEWAY_SECS = 5


def discover(base_url: str) -> dict:
    """The discovery document, checked to point only at the server under test."""
    answer = loopback_http().get(
        f"{base_url}/.well-known/openid-configuration", timeout=pages.HTTP_TIMEOUT_SECS
    )
    assert answer.status_code == 200, f"discovery answered {answer.status_code}: {answer.text}"
    document = answer.json()
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert document.get(key, "").startswith(f"{base_url}/"), (
            f"{key} is not on the server under test: {document.get(key)!r}"
        )
    return document


@dataclass
class AuthorizationRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


class Module:
    """A portal module logging people in with the authorization code flow and PKCE."""

    def __init__(
        self,
        discovery: dict,
        client_id: str,
        redirect_uri: str,
        client_secret: str | None = None,
        pkce: bool = True,
    ):
        self.discovery = discovery
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.oauth = OAuth2Session(
            client_id=client_id,
            client_secret=client_secret,
            scope=SCOPE,
            redirect_uri=redirect_uri,
            code_challenge_method="S256" if pkce else None,
            token_endpoint_auth_method="client_secret_basic" if client_secret else "none",
        )
        self.oauth.trust_env = False

    @classmethod
    def datahub(cls, base_url: str, pkce: bool = True) -> Module:
        return cls(discover(base_url), DATAHUB_ID, DATAHUB_REDIRECT_URI, DATAHUB_SECRET, pkce)

    def authorization_request(self, **extra: str) -> AuthorizationRequest:
        verifier = generate_token(64)
        nonce = generate_token(24)
        url, state = self.oauth.create_authorization_url(
            self.discovery["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
        )
        return AuthorizationRequest(url, state, nonce, verifier)

    def exchange(
        self, callback_url: str, request: AuthorizationRequest, code_verifier: str | None = None
    ) -> dict:
        """Trades the code in `callback_url` at the token endpoint (raises OAuthError)."""
        return self.oauth.fetch_token(
            self.discovery["token_endpoint"],
            authorization_response=callback_url,
            state=request.state,
            code_verifier=code_verifier or request.code_verifier,
        )

    def id_token_claims(self, id_token: str, nonce: str):
        """Checks the ID token's signature against the published JWKS, then its claims."""
        keys = loopback_http().get(self.discovery["jwks_uri"], timeout=pages.HTTP_TIMEOUT_SECS)
        assert keys.status_code == 200, f"JWKS answered {keys.status_code}: {keys.text}"
        claims = jwt.decode(
            id_token,
            JsonWebKey.import_key_set(keys.json()),
            claims_options={
                "iss": {"essential": True, "value": self.discovery["issuer"]},
                "aud": {"essential": True, "value": self.client_id},
                "nonce": {"essential": True, "value": nonce},
                "sub": {"essential": True},
                "exp": {"essential": True},
                "iat": {"essential": True},
            },
        )
        claims.validate(leeway=CLOCK_LEEWAY_SECS)
        return claims

    def userinfo(self, access_token: str) -> requests.Response:
        return loopback_http().get(
            self.discovery["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=pages.HTTP_TIMEOUT_SECS,
        )

    def callback_url(self, response: requests.Response) -> str:
        """The target of a 303 back to this module's redirect URI (not followed)."""
        assert response.status_code == 303, (
            f"expected 303 to {self.redirect_uri}, got {response.status_code}:\n{response.text[:2000]}"
        )
        target = pages.location(response)
        assert target.startswith(f"{self.redirect_uri}?"), f"redirected to {target}"
        return target


@dataclass
class Person:
    given_name: str
    family_name: str
    email: str
    phone: str
    organisation_id: str
    function: str
    description: str
    login: str
    password: str

    def signup_fields(self) -> dict[str, str]:
        return {
            "given_name": self.given_name,
            "family_name": self.family_name,
            "email": self.email,
            "phone": self.phone,
            "organisation_id": self.organisation_id,
            "function": self.function,
            "description": self.description,
            "login": self.login,
            "password": self.password,
            "password_confirmation": self.password,
        }


def new_person() -> Person:
    """A person nobody registered yet, in an organisation that is not trusted."""
    tag = secrets.token_hex(4)
    return Person(
        given_name="Claire",
        family_name="Martin",
        email=f"claire.martin.{tag}@example.org",
        phone="+33612345678",
        organisation_id="ville-de-nancy",
        function="Chargée de mission données",
        description="Publier les jeux de données de la ville sur DataGrandEst.",
        login=f"cmartin{tag}",
        # The password shares nothing with the login, names or email (a sign-up rule).
        password=f"Mirabelle-de-Lorraine-{secrets.token_hex(3)}-7!",
    )


BROKEN_RULE_FIELDS = ("given_name", "family_name", "email", "password", "password_confirmation")


def every_rule_broken(person: Person) -> dict[str, str]:
    """Sign-up fields with no names, a bad address, a short password, another confirmation."""
    return {
        **person.signup_fields(),
        "given_name": "",
        "family_name": "",
        "email": "claire.martin-chez-example.org",
        "password": "Court1!a",
        "password_confirmation": "Autre-Chose-42!",
    }


@dataclass
class LoginPage:
    request: AuthorizationRequest
    req: str
    response: requests.Response


def open_login_page(http: requests.Session, module: Module, **extra: str) -> LoginPage:
    """The module sends the person to /authorize; with no session, that leads to /login."""
    request = module.authorization_request(**extra)
    answer = pages.get(http, request.url)
    assert answer.status_code == 303, (
        f"/authorize answered {answer.status_code}, expected 303 to /login:\n{answer.text[:2000]}"
    )
    target = pages.location(answer)
    base_url = module.discovery["issuer"]
    assert target.startswith(f"{base_url}/login?"), f"/authorize sent the person to {target}"
    req = pages.query_of(target).get("req")
    assert req, f"no req in {target}"
    page = pages.get(http, target)
    assert page.status_code == 200, f"/login answered {page.status_code}:\n{page.text[:2000]}"
    return LoginPage(request, req, page)


def submit_login(
    http: requests.Session, login_page: LoginPage, identifier: str, password: str
) -> requests.Response:
    form = pages.form_with_field(login_page.response, "identifier")
    return pages.submit(
        http, login_page.response, form, {"identifier": identifier, "password": password}
    )


def open_signup_page(http: requests.Session, login_page: LoginPage) -> requests.Response:
    link = pages.control_leading_to(login_page.response, "/signup", {"req": login_page.req})
    assert link.name == "a", f"the sign-up entry is not a link: {link}"
    page = pages.get(http, urljoin(login_page.response.url, link["href"]))
    assert page.status_code == 200, f"/signup answered {page.status_code}:\n{page.text[:2000]}"
    return page


SIGNUP_DONE_PATH = "/signup/done"


def submit_signup(
    http: requests.Session, signup_page: requests.Response, fields: dict[str, str]
) -> requests.Response:
    """Posts the sign-up form; a filed sign-up answers 303 to the page that says to read
    the mailbox (Post/Redirect/Get), which is followed and returned."""
    form = pages.form_with_field(signup_page, "password_confirmation")
    answer = pages.submit(http, signup_page, form, fields)
    if answer.status_code != 303:
        return answer
    target = pages.location(answer)
    assert urlsplit(target).path == SIGNUP_DONE_PATH, f"a sign-up was sent to {target}"
    return pages.get(http, target)


def sign_up(http: requests.Session, module: Module, person: Person) -> requests.Response:
    """From the module to a filed sign-up; returns the answer to the form."""
    signup_page = open_signup_page(http, open_login_page(http, module))
    answer = submit_signup(http, signup_page, person.signup_fields())
    assert answer.status_code == 200, (
        f"sign-up of {person.login} answered {answer.status_code}:\n{pages.page_text(answer)}"
    )
    return answer


def open_confirmation_page(http: requests.Session, outbox, person: Person) -> requests.Response:
    mail = wait_for_subject(outbox, person.email, CONFIRM_SUBJECT)
    # The email names the login, so that someone who did not choose it does not confirm
    # a sign-up made with their address by someone else.
    assert f"« {person.login} »" in mail.body, mail.body
    link = confirmation_link(mail)
    page = pages.get(http, link)
    assert page.status_code == 200, f"{link} answered {page.status_code}:\n{page.text[:2000]}"
    return page


def press_confirm(http: requests.Session, confirmation_page: requests.Response) -> requests.Response:
    form = pages.form_with_field(confirmation_page, "token")
    return pages.submit(http, confirmation_page, form, {})


def assert_login_refused(answer: requests.Response) -> None:
    """The person stays on DGE Identity's page: an error status, no code for the module."""
    assert 400 <= answer.status_code < 500, f"login answered {answer.status_code}"
    assert "Location" not in answer.headers, f"login redirected to {answer.headers['Location']}"
    assert pages.is_french_page(answer)


def log_in(
    http: requests.Session, module: Module, identifier: str, password: str
) -> tuple[AuthorizationRequest, str]:
    """A full login; returns the authorization request and the module's callback URL."""
    login_page = open_login_page(http, module)
    answer = submit_login(http, login_page, identifier, password)
    return login_page.request, module.callback_url(answer)


def register_pending_person(server, module: Module) -> Person:
    """Sign-up and confirmation through the pages: the account awaits the team."""
    person = new_person()
    http = pages.browser()
    sign_up(http, module, person)
    confirmed = press_confirm(http, open_confirmation_page(http, server.outbox, person))
    assert confirmed.status_code == 200, pages.page_text(confirmed)
    return person


def register_active_person(server, dgectl, module: Module) -> Person:
    """Sign-up, confirmation and approval; returns once the activation email is out."""
    person = register_pending_person(server, module)
    dgectl.ok("accounts", "approve", person.login)
    wait_for_subject(server.outbox, person.email, ACTIVATED_SUBJECT)
    return person
