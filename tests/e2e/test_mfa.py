"""Two-step verification (issue 9): administrators must have it before any session with
administrator power exists, anyone may turn it on from the profile, codes are accepted
once and throttled, recovery codes work once; and the breached-password list.

Runs on the embedded default, and on PostgreSQL + Redis with DGE_E2E_BACKEND=postgres.
"""

from __future__ import annotations

import json
from urllib.parse import urljoin

import grpc
import pytest

import mfa
import pages
from device_login import approve, run_dgectl
from dgectl import EXIT_REFUSED, describe
from grpc_api import IdentityGrpc, bad_request_fields
from idp_server import loopback_http
from outbox import wait_for_subject
from portal import (
    new_person,
    open_login_page,
    open_signup_page,
    register_active_person,
    submit_login,
    submit_signup,
)

ENABLED_SUBJECT = "La vérification en deux étapes est activée sur votre compte DataGrandEst"
DISABLED_SUBJECT = "La vérification en deux étapes est désactivée sur votre compte DataGrandEst"


def list_accounts(grpc_pb, idp, token: str):
    client = IdentityGrpc(grpc_pb, idp.grpc_addr, token)
    try:
        return client.call(client.accounts.ListAccounts,
                           grpc_pb.account_registry.ListAccountsRequest(limit=5))
    finally:
        client.close()


def refused(grpc_pb, idp, token: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        list_accounts(grpc_pb, idp, token)
    return failure.value


def dgectl_token(idp, login: str, password: str) -> str:
    """An access token of `dgectl`, the administration client, through the device grant
    (what `dgectl login` does), approved in a browser."""
    http = loopback_http()
    start = http.post(f"{idp.base_url}/device_authorization",
                      data={"client_id": "dgectl", "scope": "openid"}, timeout=10).json()
    approve(idp, login, password, start["user_code"])
    token = http.post(f"{idp.base_url}/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": start["device_code"], "client_id": "dgectl",
    })
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


def first_step(idp, datahub, login: str, password: str):
    """A new browser through /authorize and the password form; the answer to the form."""
    http = pages.browser()
    login_page = open_login_page(http, datahub)
    answer = submit_login(http, login_page, login, password)
    return http, login_page, answer


def second_step_page(http, answer, path: str):
    assert answer.status_code == 303, pages.page_text(answer)
    target = pages.location(answer)
    assert target.endswith(path), target
    page = pages.get(http, target)
    assert page.status_code == 200, pages.page_text(page)
    # Every page is no-store now, the code page included.
    assert page.headers.get("Cache-Control") == "no-store", page.headers
    return page


def no_session(http, idp) -> None:
    account = pages.get(http, f"{idp.base_url}/account")
    assert account.status_code == 303 and pages.location(account).endswith("/login")


def type_code(http, page, code: str):
    return pages.submit(http, page, pages.form_with_field(page, "code"), {"code": code})


def test_an_administrator_has_no_power_until_enrolled_and_then_logs_in_with_codes(
    idp, dgectl, datahub, grpc_pb, tmp_path
):
    person = register_active_person(idp, dgectl, datahub)
    # Logged in before being made administrator: no second step, a token for datahub
    # and one for dgectl.
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    old_token = datahub.exchange(datahub.callback_url(answer), login_page.request)["access_token"]
    old_cli = dgectl_token(idp, person.login, person.password)
    account_id = dgectl.json("admins", "grant", person.login, "--reason", "e2e")["account"]["id"]
    # A module's token never administers, whoever it belongs to.
    error = refused(grpc_pb, idp, old_token)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    assert bad_request_fields(error) == set(), error
    # The dgectl token is refused admin calls, with a field saying why.
    error = refused(grpc_pb, idp, old_cli)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    assert bad_request_fields(error) == {"mfa"}
    assert "two-step verification" in error.details()
    told = run_dgectl(tmp_path, "--server", idp.grpc_server_url, "--token", old_cli,
                      "accounts", "pending")
    assert told.returncode == EXIT_REFUSED, describe(told)
    assert "\n  mfa: mfa_enrollment_required: activez la vérification en deux étapes" in told.stderr

    # The next login goes to the enrolment; no session exists meanwhile.
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    setup = second_step_page(http, answer, "/login/mfa-setup")
    no_session(http, idp)
    # The code page is not a way around the enrolment.
    detour = pages.get(http, f"{idp.base_url}/login/code")
    assert detour.status_code == 303 and pages.location(detour).endswith("/login/mfa-setup")
    csrf = pages.form_values(pages.form_with_field(setup, "code"))["csrf_token"]
    detour = pages.post(http, f"{idp.base_url}/login/code", {"csrf_token": csrf, "code": "000000"})
    assert detour.status_code == 303 and pages.location(detour).endswith("/login/mfa-setup")
    text = pages.page_text(setup)
    assert "Votre compte est administrateur" in text and "obligatoire" in text, text
    assert pages.parse(setup).select_one(".qr-code svg") is not None
    shown = pages.parse(setup).find(id="mfa-secret").get_text().replace(" ", "")
    wrong = type_code(http, setup, mfa.wrong_code(shown))
    assert wrong.status_code == 400 and "Code incorrect ou expiré" in pages.page_text(wrong)
    assert pages.is_french_page(wrong)
    codes_page = mfa.enrol_on(http, wrong, person.login)
    codes = mfa.recovery_codes(codes_page)
    assert len(codes) == 10 and len(set(codes)) == 10, codes
    link = pages.parse(codes_page).select_one(".actions a")["href"]
    callback = urljoin(codes_page.url, link)
    assert callback.startswith(f"{datahub.redirect_uri}?"), callback
    new_token = datahub.exchange(callback, login_page.request)["access_token"]
    assert refused(grpc_pb, idp, new_token).code() == grpc.StatusCode.PERMISSION_DENIED
    # Enrolment ended the earlier tokens; the owner is told by email.
    assert refused(grpc_pb, idp, old_token).code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused(grpc_pb, idp, old_cli).code() == grpc.StatusCode.UNAUTHENTICATED
    # Through dgectl, with a code at the login now, the administrator acts.
    cli = dgectl_token(idp, person.login, person.password)
    assert len(list_accounts(grpc_pb, idp, cli).accounts) >= 1
    wait_for_subject(idp.outbox, person.email, ENABLED_SUBJECT)

    # From now on every login asks a code, in French, before any session.
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    page = second_step_page(http, answer, "/login/code")
    no_session(http, idp)
    assert "Code de vérification" in pages.page_text(page)
    # The field takes recovery codes too: a phone must offer letters, not digits only.
    field = pages.parse(page).find("input", attrs={"name": "code"})
    assert field.get("inputmode") != "numeric", field
    # A code posted to the enrolment form goes back to the code page, not to an error.
    csrf = pages.form_values(pages.form_with_field(page, "code"))["csrf_token"]
    detour = pages.post(http, f"{idp.base_url}/login/mfa-setup",
                        {"csrf_token": csrf, "code": "123456"})
    assert detour.status_code == 303 and pages.location(detour).endswith("/login/code"), (
        detour.status_code, pages.page_text(detour))
    wrong = type_code(http, page, "12345x")
    assert wrong.status_code == 401 and "Code incorrect ou expiré" in pages.page_text(wrong)
    code = mfa.fresh_code(person.login)
    done = type_code(http, wrong, code)
    datahub.exchange(datahub.callback_url(done), login_page.request)
    # The same code is never accepted twice.
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    page = second_step_page(http, answer, "/login/code")
    replay = type_code(http, page, code)
    assert replay.status_code == 401, pages.page_text(replay)
    # A recovery code works, once.
    done = type_code(http, replay, codes[0])
    datahub.callback_url(done)
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    page = second_step_page(http, answer, "/login/code")
    again = type_code(http, page, codes[0])
    assert again.status_code == 401, pages.page_text(again)

    # An administrator cannot turn it off.
    done = type_code(http, again, mfa.fresh_code(person.login))
    datahub.callback_url(done)
    profile = pages.get(http, f"{idp.base_url}/account/mfa")
    assert "obligatoire et ne peut pas être désactivée" in pages.page_text(profile)
    assert pages.parse(profile).find("form", action="/account/mfa/disable") is None

    events = json.loads(dgectl.ok("audit", "list", "--subject", account_id).stdout)["events"]
    actions = {e["action"] for e in events}
    assert {"mfa.enrolled", "mfa.failed", "mfa.recovery_code_used"} <= actions, actions


def test_a_person_turns_two_step_verification_on_and_off_from_the_profile(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    datahub.callback_url(answer)
    account = pages.get(http, f"{idp.base_url}/account")
    assert pages.parse(account).find("a", href="/account/mfa") is not None
    profile = pages.get(http, f"{idp.base_url}/account/mfa")
    assert "n'est pas activée" in pages.page_text(profile)
    setup = pages.submit(http, profile, pages.parse(profile).find("form", action="/account/mfa/start"), {})
    assert setup.status_code == 200 and setup.headers.get("Cache-Control") == "no-store"
    codes_page = mfa.enrol_on(http, setup, person.login)
    # The enrolment ended the old session and gave this browser a new one.
    profile = pages.get(http, f"{idp.base_url}/account/mfa")
    assert profile.status_code == 200, profile.status_code
    assert "est activée" in pages.page_text(profile) and "restants : 10" in pages.page_text(profile)
    wait_for_subject(idp.outbox, person.email, ENABLED_SUBJECT)
    assert len(mfa.recovery_codes(codes_page)) == 10

    form = pages.parse(profile).find("form", action="/account/mfa/disable")
    wrong = pages.submit(
        http, profile, form,
        {"current_password": person.password, "code": mfa.wrong_code(mfa.SECRETS[person.login])},
    )
    assert wrong.status_code == 400 and "Code incorrect ou expiré" in pages.page_text(wrong)
    form = pages.parse(wrong).find("form", action="/account/mfa/disable")
    done = pages.submit(http, wrong, form, {"current_password": person.password,
                                            "code": mfa.fresh_code(person.login)})
    assert done.status_code == 200 and "désactivée" in pages.page_text(done), pages.page_text(done)
    wait_for_subject(idp.outbox, person.email, DISABLED_SUBJECT)
    # The password alone is enough again.
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    datahub.callback_url(answer)


def test_a_breached_password_is_refused_with_a_clear_french_message(idp, datahub):
    person = new_person()
    http = pages.browser()
    signup_page = open_signup_page(http, open_login_page(http, datahub))
    fields = {**person.signup_fields(), "password": "Qwerty123456!",
              "password_confirmation": "Qwerty123456!"}
    answer = submit_signup(http, signup_page, fields)
    assert answer.status_code == 400
    assert "figure dans des listes de mots de passe divulgués" in pages.page_text(answer)


def test_the_two_step_forms_refuse_a_post_without_their_csrf_token(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    datahub.callback_url(answer)
    for path in ("/login/code", "/login/mfa-setup", "/account/mfa/start", "/account/mfa/confirm",
                 "/account/mfa/disable"):
        for token in (None, "jeton-forge"):
            fields = {"code": "123456", "current_password": person.password}
            if token:
                fields["csrf_token"] = token
            refused_post = pages.post(http, f"{idp.base_url}{path}", fields)
            assert refused_post.status_code == 403, f"{path}: {refused_post.status_code}"
            assert "Formulaire expiré" in pages.page_text(refused_post), path
    # Nothing changed.
    profile = pages.get(http, f"{idp.base_url}/account/mfa")
    assert "n'est pas activée" in pages.page_text(profile)


def test_a_login_waiting_at_the_code_step_ends_if_the_account_is_suspended_meanwhile(
    idp, dgectl, datahub
):
    person = register_active_person(idp, dgectl, datahub)
    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    datahub.callback_url(answer)
    profile = pages.get(http, f"{idp.base_url}/account/mfa")
    setup = pages.submit(http, profile, pages.parse(profile).find("form", action="/account/mfa/start"), {})
    mfa.enrol_on(http, setup, person.login)

    http, login_page, answer = first_step(idp, datahub, person.login, person.password)
    page = second_step_page(http, answer, "/login/code")
    dgectl.ok("accounts", "suspend", person.login, "--reason", "Départ", "--yes")
    answer = type_code(http, page, mfa.fresh_code(person.login))
    assert answer.status_code == 403, pages.page_text(answer)
    assert "Location" not in answer.headers
    assert "Votre compte est suspendu." in pages.page_text(answer)
    no_session(http, idp)
    # The refusal is audited, as one at the password form is.
    account_id = dgectl.json("accounts", "show", person.login)["account"]["id"]
    events = dgectl.json("audit", "list", "--subject", account_id)["events"]
    assert any(
        e["action"] == "login.refused_inactive" and e["detail"] == "via=password status=suspended"
        for e in events
    ), events
    dgectl.ok("accounts", "reactivate", person.login)
