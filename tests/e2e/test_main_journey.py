"""The main journey of issue 2, from a first start to a right checked over gRPC.

One test, against the real binaries: `dge-idp dev` on its embedded defaults, `dgectl`
as the administrator, authlib as the portal module, the outbox as the mailbox and a
gRPC client generated from proto/.
"""

from __future__ import annotations

import stat

import pages
from dgectl import Dgectl, items
from grpc_api import IdentityGrpc
from outbox import ACTIVATED_SUBJECT, CONFIRM_SUBJECT, confirmation_link, wait_for_subject
from portal import (
    BROKEN_RULE_FIELDS,
    Module,
    Person,
    assert_login_refused,
    discover,
    every_rule_broken,
    log_in,
    new_person,
    open_login_page,
    open_signup_page,
    press_confirm,
    submit_login,
    submit_signup,
)

SEEDED_CLIENTS = {"datahub", "communautes"}
SEEDED_ORGANISATIONS = {
    "region-grand-est",
    "eurometropole-strasbourg",
    "ville-de-nancy",
    "atmo-grand-est",
}
SEEDED_RIGHTS = {
    "datahub": {"datahub:publish", "datahub:dashboards"},
    "communautes": {"communautes:member", "communautes:space:general"},
}
NEW_CLIENT_ID = "portail-cartes"
NEW_CLIENT_REDIRECT_URI = "http://localhost:8082/cartes/callback"
RIGHT = "datahub:publish"


# --- 1. first start -------------------------------------------------------------------


def assert_first_start_seeded(server, admin: Dgectl, backend: dict[str, str]) -> None:
    sqlite_file = (server.data_dir / "dge-identity.sqlite3").is_file()
    # The embedded default keeps its SQLite file in the data dir; on PostgreSQL there is none.
    assert sqlite_file == (not backend), f"SQLite file in the data dir: {sqlite_file}"
    token_mode = stat.S_IMODE(server.admin_token_path.stat().st_mode)
    assert token_mode == 0o600, f"admin.token has mode {oct(token_mode)}"
    assert server.admin_token(), "admin.token is empty"
    # Printed only on a terminal: a redirected stderr (a log collector) never gets it.
    assert server.admin_token() not in server.log(), "the admin token reached the log"
    assert SEEDED_CLIENTS <= set(admin.client_ids())
    organisations = {org["id"] for org in items(admin.json("orgs", "list"), "organisations")}
    assert SEEDED_ORGANISATIONS <= organisations
    modules = {module["name"]: module for module in items(admin.json("modules", "list"), "modules")}
    for name, rights in SEEDED_RIGHTS.items():
        assert name in modules, f"module {name} not seeded: {sorted(modules)}"
        assert rights <= {right["name"] for right in modules[name]["rights"]}


# --- 2. the login page ------------------------------------------------------------------


def assert_login_page_offers_every_way_in(login_page) -> None:
    page, req = login_page.response, login_page.req
    assert pages.is_french_page(page), "the login page is not an HTML page in French"
    proconnect = pages.control_leading_to(page, "/broker/proconnect/start", {"req": req})
    assert "ProConnect" in pages.text_of(proconnect)
    region = pages.control_leading_to(page, "/broker/region/start", {"req": req})
    assert "Région Grand Est" in pages.text_of(region)
    forgot = pages.control_leading_to(page, "/password/forgot")
    assert pages.text_of(forgot) == "Mot de passe oublié ?"
    signup = pages.control_leading_to(page, "/signup", {"req": req})
    assert "Vous n'avez pas de compte ? S'enregistrer" in pages.text_of(signup.parent)
    form = pages.form_with_field(page, "identifier")
    assert pages.control_named(form, "password").get("type") == "password"
    assert pages.form_values(form).get("req") == req
    assert pages.form_values(form).get("csrf_token"), "the login form carries no csrf_token"


# --- 3. sign-up rules -------------------------------------------------------------------


def assert_each_rule_reported_next_to_its_field(
    blank_page, answer, typed: dict[str, str]
) -> None:
    assert answer.status_code == 400, f"broken sign-up answered {answer.status_code}"
    assert pages.is_french_page(answer)
    blank = pages.form_with_field(blank_page, "password_confirmation")
    form = pages.form_with_field(answer, "password_confirmation")
    for field in BROKEN_RULE_FIELDS:
        message = pages.message_next_to(form, blank, field)
        assert message, f"no message next to {field!r}:\n{pages.field_group(form, field)}"
    for field in ("email", "phone", "organisation_id", "function", "description", "login"):
        kept = pages.value_of(pages.control_named(form, field)).strip()
        assert kept == typed[field], f"{field!r} not kept: {kept!r} instead of {typed[field]!r}"


def assert_passwords_not_echoed(answer, *passwords: str) -> None:
    form = pages.form_with_field(answer, "password_confirmation")
    for control in form.find_all("input", attrs={"type": "password"}):
        assert not control.get("value"), f"password field re-filled: {control}"
    for password in passwords:
        assert password not in answer.text, "a typed password appears in the page"


# --- 4. confirmation --------------------------------------------------------------------


def assert_confirmation_page_waits_for_a_click(page) -> None:
    form = pages.form_with_field(page, "token")
    assert (form.get("method") or "").lower() == "post", f"the confirmation form is not a POST: {form}"
    assert "Confirmer mon adresse" in pages.button_labels(form)


# --- 7. gRPC Check ----------------------------------------------------------------------


def assert_check(grpc_client: IdentityGrpc, access_token: str, allowed: bool, subject: str):
    answer = grpc_client.check(access_token, RIGHT)
    assert answer.allowed is allowed, f"Check({RIGHT}) = {answer}"
    assert answer.subject == subject
    return answer


def assert_new_public_client_logs_in(server, admin: Dgectl, person: Person, sub: str) -> None:
    admin.ok(
        "clients",
        "add",
        NEW_CLIENT_ID,
        "--redirect-uri",
        NEW_CLIENT_REDIRECT_URI,
        "--name",
        "Portail cartographique",
        "--public",
        "--first-party",
    )
    assert NEW_CLIENT_ID in admin.client_ids()
    module = Module(discover(server.base_url), NEW_CLIENT_ID, NEW_CLIENT_REDIRECT_URI)
    request, callback = log_in(pages.browser(), module, person.login, person.password)
    token = module.exchange(callback, request)
    assert module.id_token_claims(token["id_token"], request.nonce)["sub"] == sub


def test_main_journey(start_idp, grpc_pb, backend):
    # 1. First start: the database (SQLite by default, or PostgreSQL), outbox and admin
    # token under the data dir, demo data seeded.
    server = start_idp(backend)
    admin = Dgectl(server)
    assert_first_start_seeded(server, admin, backend)
    datahub = Module.datahub(server.base_url)
    assert datahub.discovery["issuer"] == server.base_url

    # 2. The module sends the person to /authorize; the login page offers every way in.
    http = pages.browser()
    login_page = open_login_page(http, datahub)
    assert_login_page_offers_every_way_in(login_page)

    # 3. Sign-up: first with every rule broken, then right.
    person = new_person()
    signup_page = open_signup_page(http, login_page)
    assert pages.is_french_page(signup_page)
    broken = every_rule_broken(person)
    answer = submit_signup(http, signup_page, broken)
    assert_each_rule_reported_next_to_its_field(signup_page, answer, broken)
    assert_passwords_not_echoed(answer, broken["password"], broken["password_confirmation"])
    assert person.login not in admin.logins_with_status("unconfirmed")

    answer = submit_signup(http, answer, person.signup_fields())
    assert answer.status_code == 200, pages.page_text(answer)
    assert person.password not in answer.text, "the password appears on the sign-up answer"

    # 4. The confirmation email; a GET of its link confirms nothing, the button does.
    mail = wait_for_subject(server.outbox, person.email, CONFIRM_SUBJECT)
    # The link's lifetime as configured (48 h by default), in words.
    assert "Ce lien est valable 48 heures." in mail.body, mail.body
    link = confirmation_link(mail)
    assert link.startswith(f"{server.base_url}/confirm?token="), link
    confirmation_page = pages.get(http, link)
    assert confirmation_page.status_code == 200
    assert_confirmation_page_waits_for_a_click(confirmation_page)
    assert person.login in admin.logins_with_status("unconfirmed")
    confirmed = press_confirm(http, confirmation_page)
    assert confirmed.status_code == 200, pages.page_text(confirmed)
    assert person.login in admin.logins_with_status("pending")
    assert person.login not in admin.logins_with_status("unconfirmed")
    # The button pressed again (or the page reloaded) says the address is confirmed,
    # rather than "invalid link" and an invitation to ask for a new one.
    used = press_confirm(http, confirmation_page)
    assert used.status_code == 200, pages.page_text(used)
    assert "Adresse déjà confirmée" in pages.page_text(used)
    assert "invalide" not in pages.page_text(used)
    assert person.login in admin.logins_with_status("pending")
    # A link that never was one says so at once, and offers a fresh one rather than a
    # new sign-up (which would find the login and address taken).
    bogus = pages.get(http, f"{server.base_url}/confirm?token=inconnu")
    assert bogus.status_code == 400, pages.page_text(bogus)
    assert "Lien de confirmation invalide" in pages.page_text(bogus)
    resend = pages.control_leading_to(bogus, "/signup/resend")
    assert resend.get_text(strip=True) == "Renvoyer le courriel de confirmation", resend

    # A pending account cannot log in yet.
    assert_login_refused(
        submit_login(http, open_login_page(http, datahub), person.login, person.password)
    )

    # 5. The administrator approves; the person is told.
    admin.ok("accounts", "approve", person.login)
    wait_for_subject(server.outbox, person.email, ACTIVATED_SUBJECT)
    assert person.login in admin.logins_with_status("active")

    # 6. Login with the email address; code, token exchange, signed ID token.
    request, callback = log_in(http, datahub, person.email, person.password)
    params = pages.query_of(callback)
    assert params["state"] == request.state
    assert params["iss"] == server.base_url
    assert params["code"]
    token = datahub.exchange(callback, request)
    claims = datahub.id_token_claims(token["id_token"], request.nonce)
    assert token["access_token"]
    assert token["token_type"].lower() == "bearer"

    # 7. Rights over gRPC, checked with the administrator's token as the caller's.
    grpc_client = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    account = grpc_client.call(
        grpc_client.accounts.GetAccount,
        grpc_pb.account_registry.GetAccountRequest(key=person.login),
    ).account
    assert account.id == claims["sub"]
    assert account.email_verified
    denied = assert_check(grpc_client, token["access_token"], False, claims["sub"])
    assert denied.reason == "missing_right"
    admin.ok("rights", "grant", person.login, RIGHT)
    assert_check(grpc_client, token["access_token"], True, claims["sub"])
    grpc_client.close()

    # Another module registered by the administrator logs the same person in.
    assert_new_public_client_logs_in(server, admin, person, claims["sub"])

    # The module reads who logged in.
    userinfo = datahub.userinfo(token["access_token"])
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["email"] == person.email
    assert userinfo.json()["sub"] == claims["sub"]
