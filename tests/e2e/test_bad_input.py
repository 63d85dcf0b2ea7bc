"""Bad input anywhere gets a clear error and changes nothing."""

from __future__ import annotations

import stat
import time
from urllib.parse import urlencode, urlsplit, urlunsplit

import grpc
import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuthError

import pages
from dgectl import EXIT_REFUSED, EXIT_UNAUTHENTICATED, Dgectl, items
from grpc_api import IdentityGrpc, bad_request_fields
from idp_server import loopback_http
from outbox import confirmation_links, mails_to, wait_for_mail
from portal import (
    BROKEN_RULE_FIELDS,
    DATAHUB_REDIRECT_URI,
    Module,
    every_rule_broken,
    log_in,
    new_person,
    open_confirmation_page,
    open_login_page,
    open_signup_page,
    press_confirm,
    register_active_person,
    sign_up,
    submit_login,
    submit_signup,
)

CONFIRMATION_LINK_INVALID = "Ce lien de confirmation n'est pas valide ou a expiré."
WRONG_CREDENTIALS = "Identifiant ou mot de passe incorrect."
RIGHT = "datahub:publish"


def with_params(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {**pages.query_of(url), **changes}
    return urlunsplit(parts._replace(query=urlencode(query)))


def assert_french_error_page_without_redirect(answer, status: int) -> None:
    assert answer.status_code == status, f"answered {answer.status_code}:\n{answer.text[:2000]}"
    assert "Location" not in answer.headers, f"redirected to {answer.headers['Location']}"
    assert pages.is_french_page(answer), "the error page is not an HTML page in French"


def assert_grpc_refused(code: grpc.StatusCode, method, request, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        method(request, metadata=metadata, timeout=10)
    assert refused.value.code() == code, f"{refused.value.code()}: {refused.value.details()}"
    return refused.value


# --- /authorize -------------------------------------------------------------------------


def test_unknown_client_gets_a_french_error_page_and_no_redirect(datahub):
    url = with_params(datahub.authorization_request().url, client_id="module-inconnu")
    assert_french_error_page_without_redirect(pages.get(pages.browser(), url), 400)


def test_redirect_uri_differing_by_a_trailing_slash_gets_no_redirect(datahub):
    url = with_params(datahub.authorization_request().url, redirect_uri=f"{DATAHUB_REDIRECT_URI}/")
    assert_french_error_page_without_redirect(pages.get(pages.browser(), url), 400)


def test_missing_code_challenge_is_sent_back_to_the_module_as_invalid_request(idp):
    module = Module.datahub(idp.base_url, pkce=False)
    request = module.authorization_request()
    assert "code_challenge" not in pages.query_of(request.url)
    target = pages.location(pages.get(pages.browser(), request.url))
    assert target.startswith(f"{DATAHUB_REDIRECT_URI}?"), target
    assert pages.query_of(target)["error"] == "invalid_request"
    assert pages.query_of(target)["state"] == request.state


# --- /token -----------------------------------------------------------------------------


def test_reused_code_is_refused_as_invalid_grant(datahub, active_person):
    request, callback = log_in(pages.browser(), datahub, active_person.login, active_person.password)
    assert datahub.exchange(callback, request)["access_token"]
    with pytest.raises(OAuthError) as refused:
        datahub.exchange(callback, request)
    assert refused.value.error == "invalid_grant"


def test_wrong_code_verifier_is_refused_as_invalid_grant(datahub, active_person):
    request, callback = log_in(pages.browser(), datahub, active_person.login, active_person.password)
    with pytest.raises(OAuthError) as refused:
        datahub.exchange(callback, request, code_verifier=generate_token(64))
    assert refused.value.error == "invalid_grant"


# --- /login -----------------------------------------------------------------------------


def test_wrong_password_is_refused_in_french_without_a_code(datahub, active_person):
    http = pages.browser()
    answer = submit_login(http, open_login_page(http, datahub), active_person.email, "Mauvais-Mot-2-Passe!")
    assert_french_error_page_without_redirect(answer, 401)
    assert WRONG_CREDENTIALS in pages.page_text(answer)


def test_login_post_without_csrf_token_is_forbidden(datahub, active_person):
    http = pages.browser()
    login_page = open_login_page(http, datahub)
    form = pages.form_with_field(login_page.response, "identifier")
    data = pages.form_values(form)
    data.pop("csrf_token")
    data.update(identifier=active_person.login, password=active_person.password)
    answer = pages.post(http, f"{datahub.discovery['issuer']}/login", data)
    assert_french_error_page_without_redirect(answer, 403)


# --- /signup ----------------------------------------------------------------------------


def test_signup_with_a_taken_login_in_another_case_is_refused_next_to_the_login(
    idp, datahub, active_person, admin_grpc
):
    newcomer = new_person()
    newcomer.login = active_person.login.upper()
    http = pages.browser()
    signup_page = open_signup_page(http, open_login_page(http, datahub))
    answer = submit_signup(http, signup_page, newcomer.signup_fields())
    assert answer.status_code == 400, pages.page_text(answer)
    blank = pages.form_with_field(signup_page, "login")
    form = pages.form_with_field(answer, "login")
    assert pages.message_next_to(form, blank, "login"), pages.field_group(form, "login")
    emails = {account.email.lower() for account in admin_grpc.all_accounts()}
    assert newcomer.email not in emails
    assert mails_to(idp.outbox, newcomer.email) == []


def test_signup_with_a_taken_email_in_another_case_creates_no_second_account(
    idp, datahub, active_person, admin_grpc
):
    newcomer = new_person()
    newcomer.email = active_person.email.upper()
    already_sent = {mail.path for mail in mails_to(idp.outbox, active_person.email)}
    sign_up(pages.browser(), datahub, newcomer)
    assert newcomer.login not in admin_grpc.logins()
    notice = wait_for_mail(
        idp.outbox,
        active_person.email,
        lambda mail: mail.path not in already_sent,
        "notice of a sign-up with a known address",
    )
    assert confirmation_links(notice) == [], "the owner was sent a confirmation link"


# --- /confirm ---------------------------------------------------------------------------


def test_expired_confirmation_link_is_refused_and_confirms_nothing(start_idp, grpc_pb):
    server = start_idp({"DGE_CONFIRMATION_TTL_SECS": "1"})
    person = new_person()
    http = pages.browser()
    sign_up(http, Module.datahub(server.base_url), person)
    mail = wait_for_mail(server.outbox, person.email, lambda m: confirmation_links(m), "confirmation")
    time.sleep(2)  # the link lives 1 s
    # Said at the GET already: no button that could only fail.
    answer = pages.get(http, confirmation_links(mail)[0])
    assert answer.status_code == 400, pages.page_text(answer)
    assert CONFIRMATION_LINK_INVALID in pages.page_text(answer)
    assert "token" not in {c.get("name") for c in pages.parse(answer).find_all("input")}
    admin = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    assert admin.status_of(person.login) == "ACCOUNT_STATUS_UNCONFIRMED"
    admin.close()


def test_used_confirmation_link_says_so_and_changes_nothing(idp, datahub, admin_grpc):
    person = new_person()
    http = pages.browser()
    sign_up(http, datahub, person)
    confirmation_page = open_confirmation_page(http, idp.outbox, person)
    assert press_confirm(http, confirmation_page).status_code == 200
    again = press_confirm(http, confirmation_page)
    assert again.status_code == 200, pages.page_text(again)
    assert "Adresse déjà confirmée" in pages.page_text(again)
    assert CONFIRMATION_LINK_INVALID not in pages.page_text(again)
    assert admin_grpc.status_of(person.login) == "ACCOUNT_STATUS_PENDING"


# --- gRPC and dgectl --------------------------------------------------------------------


def test_grpc_approve_without_an_account_is_invalid_argument(admin_grpc, grpc_pb):
    before = admin_grpc.statuses()
    request = grpc_pb.validation_workflow.ApproveAccountRequest(account="")
    assert_grpc_refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        admin_grpc.workflow.ApproveAccount,
        request,
        admin_grpc.metadata,
    )
    assert admin_grpc.statuses() == before


def test_grpc_signup_with_broken_rules_names_each_field_and_creates_nothing(
    idp, admin_grpc, grpc_pb
):
    person = new_person()
    request = grpc_pb.account_registry.SignUpRequest(**every_rule_broken(person))
    refused = assert_grpc_refused(
        grpc.StatusCode.INVALID_ARGUMENT,
        admin_grpc.accounts.SignUp,
        request,
        admin_grpc.metadata,
    )
    assert set(BROKEN_RULE_FIELDS) <= bad_request_fields(refused)
    assert person.login not in admin_grpc.logins()


def test_grpc_without_a_valid_token_is_unauthenticated(idp, admin_grpc, grpc_pb):
    request = grpc_pb.account_registry.ListAccountsRequest()
    for metadata in ([], [("authorization", "Bearer pas-un-jeton")]):
        assert_grpc_refused(
            grpc.StatusCode.UNAUTHENTICATED, admin_grpc.accounts.ListAccounts, request, metadata
        )
    check = grpc_pb.authorization.CheckRequest(access_token="pas-un-jeton", right=RIGHT)
    assert_grpc_refused(grpc.StatusCode.UNAUTHENTICATED, admin_grpc.authorization.Check, check, [])


def test_check_of_a_forged_access_token_is_not_allowed(admin_grpc):
    answer = admin_grpc.check("pas-un-jeton", RIGHT)
    assert answer.allowed is False
    assert answer.reason == "invalid_token"


def test_dgectl_without_a_token_exits_not_authenticated(dgectl):
    result = dgectl.run("accounts", "list", authenticated=False)
    assert result.returncode == EXIT_UNAUTHENTICATED, result.stderr


def test_dgectl_approve_of_an_unconfirmed_account_is_refused(idp, datahub, dgectl, admin_grpc):
    person = new_person()
    sign_up(pages.browser(), datahub, person)
    result = dgectl.run("accounts", "approve", person.login)
    assert result.returncode == EXIT_REFUSED, result.stderr
    assert admin_grpc.status_of(person.login) == "ACCOUNT_STATUS_UNCONFIRMED"


# --- second start -----------------------------------------------------------------------


def test_second_start_reuses_token_keys_accounts_and_seeds(start_idp, grpc_pb):
    server = start_idp()
    admin = Dgectl(server)
    datahub = Module.datahub(server.base_url)
    person = register_active_person(server, admin, datahub)
    request, callback = log_in(pages.browser(), datahub, person.login, person.password)
    access_token = datahub.exchange(callback, request)["access_token"]
    admin_token = server.admin_token()
    keys = loopback_http().get(datahub.discovery["jwks_uri"], timeout=10).json()

    server.stop()
    server.start()

    assert server.admin_token() == admin_token
    assert stat.S_IMODE(server.admin_token_path.stat().st_mode) == 0o600
    # stderr is a file here, not a terminal: the token is never printed, only kept in the file.
    assert admin_token not in server.log(), "the admin token reached the log"
    assert loopback_http().get(datahub.discovery["jwks_uri"], timeout=10).json() == keys
    client_ids = admin.client_ids()
    assert client_ids.count("datahub") == 1 and client_ids.count("communautes") == 1
    organisations = [org["id"] for org in items(admin.json("orgs", "list"), "organisations")]
    assert len(organisations) == len(set(organisations))
    grpc_client = IdentityGrpc(grpc_pb, server.grpc_addr, admin_token)
    assert grpc_client.status_of(person.login) == "ACCOUNT_STATUS_ACTIVE"
    assert grpc_client.check(access_token, RIGHT).reason == "missing_right"
    grpc_client.close()
    log_in(pages.browser(), datahub, person.email, person.password)


# --- administrative calls with implausible values (issue 9) -----------------------------


def refused_fields(call) -> set[str]:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    return bad_request_fields(refused.value)


def test_a_grant_to_an_unconfirmed_account_a_past_end_or_a_huge_reason_is_refused(
    idp, datahub, dgectl, admin_grpc
):
    pb = admin_grpc.pb.validation_workflow
    unconfirmed = new_person()
    sign_up(pages.browser(), datahub, unconfirmed)
    pending = new_person()
    sign_up(pages.browser(), datahub, pending)
    http = pages.browser()
    press_confirm(http, open_confirmation_page(http, idp.outbox, pending))

    def grant(account: str, **fields):
        request = pb.GrantRightRequest(account=account, right=RIGHT, **fields)
        return lambda: admin_grpc.call(admin_grpc.workflow.GrantRight, request)

    assert refused_fields(grant(unconfirmed.login)) == {"account"}
    assert refused_fields(grant(pending.login, expires_at=-5)) == {"expires_at"}
    assert refused_fields(grant(pending.login, expires_at=1_000_000)) == {"expires_at"}
    assert refused_fields(grant(pending.login, reason="x" * 100_000)) == {"reason"}
    result = dgectl.run("rights", "grant", unconfirmed.login, RIGHT)
    assert result.returncode == EXIT_REFUSED
    assert "account" in result.stderr and "confirmé son adresse" in result.stderr, result.stderr
    result = dgectl.run("rights", "grant", pending.login, RIGHT, "--reason", "r" * 1001)
    assert result.returncode == EXIT_REFUSED
    assert "reason" in result.stderr and "1000 caractères" in result.stderr, result.stderr
    rights = admin_grpc.call(
        admin_grpc.workflow.ListGrants, pb.ListGrantsRequest(account=pending.login)
    )
    assert not rights.grants, "nothing was granted"
    # A confirmed, pending account may be granted while it waits (issue 4).
    dgectl.ok("rights", "grant", pending.login, RIGHT, "--reason", "r" * 1000)


def test_a_client_id_in_another_case_than_lower_case_is_refused(idp, dgectl, admin_grpc):
    pb = admin_grpc.pb.client_registry
    for client_id in ("DATAHUB", "DataHub", "Datahub-2"):
        request = pb.AddClientRequest(
            id=client_id, redirect_uris=["http://localhost:8099/callback"], confidential=True
        )
        call = lambda r=request: admin_grpc.call(admin_grpc.clients.AddClient, r)  # noqa: E731
        assert refused_fields(call) == {"id"}, client_id
    result = dgectl.run("clients", "add", "DATAHUB", "--redirect-uri", "http://localhost:8099/cb")
    assert result.returncode == EXIT_REFUSED and "lettres minuscules" in result.stderr, result.stderr
    assert "DATAHUB" not in dgectl.client_ids()


def test_a_key_rotation_activating_too_soon_or_too_late_is_refused(idp, dgectl, admin_grpc):
    before = dgectl.json("keys", "list")["keys"]
    for delay in ("0", "299", "-1", "2592001", "99999999999"):
        result = dgectl.run("keys", "rotate", f"--activate-after={delay}")
        assert result.returncode == EXIT_REFUSED, (delay, result.stderr)
        assert "activate_after_secs" in result.stderr and "300" in result.stderr, result.stderr
    keys = admin_grpc.pb.signing_keys
    stub = admin_grpc.pb.signing_keys_grpc.SigningKeysStub(admin_grpc.channel)
    call = lambda: admin_grpc.call(  # noqa: E731
        stub.RotateKey, keys.RotateKeyRequest(alg="ES256", activate_after_secs=0)
    )
    assert refused_fields(call) == {"activate_after_secs"}
    assert dgectl.json("keys", "list")["keys"] == before, "no key was created"
