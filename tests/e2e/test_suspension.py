"""An administrator suspends an active account with dgectl, then reactivates it.

While suspended, the person's session, tokens and refresh token are ended at once,
Check refuses their rights, and the login page says the account is suspended, but only
to someone who typed the right password: a wrong one gets the same page as for any
account. The reactivation gives everything back without a new validation.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from authlib.integrations.base_client.errors import OAuthError

import pages
from dgectl import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, describe
from oidc import (
    BackchannelReceiver,
    log_in_and_exchange,
    register_client,
    token_request,
    verify_jwt,
)
from outbox import wait_for_subject
from portal import (
    Module,
    assert_login_refused,
    log_in,
    open_login_page,
    register_active_person,
    submit_login,
)

RIGHT = "datahub:publish"
REASON = "Comptes partagés entre plusieurs agents, signalé par le DPO."
SUSPENDED_MESSAGE = (
    "Votre compte est suspendu. Pour en savoir plus, écrivez à l'équipe DataGrandEst "
    "à l'adresse contact@datagrandest.fr."
)
SUSPENDED_SUBJECT = "Votre compte DataGrandEst est suspendu"
REACTIVATED_SUBJECT = "Votre compte DataGrandEst est de nouveau actif"
WRONG_PASSWORD = "Pas-du-tout-le-bon-7!"


def flat(text: str) -> str:
    return " ".join(text.split())


def error_of(answer) -> str:
    """The refusal the login page shows (its error summary), on one line."""
    document = pages.parse(answer)
    alert = document.find(attrs={"role": "alert"}) or document.find(id="error-summary")
    assert alert is not None, f"no error on the page:\n{pages.page_text(answer)[:1500]}"
    return flat(pages.text_of(alert))


def logged_in(datahub, person) -> tuple:
    """A browser with a live session at DGE Identity, and the module's tokens."""
    http = pages.browser()
    request, callback = log_in(http, datahub, person.login, person.password)
    return http, datahub.exchange(callback, request)


def session_is_open(http, datahub) -> bool:
    """Whether /authorize goes straight back to the module, without the login page."""
    answer = pages.get(http, datahub.authorization_request().url)
    assert answer.status_code == 303, answer.text[:1000]
    return pages.location(answer).startswith(f"{datahub.redirect_uri}?")


def test_suspended_person_is_logged_out_refused_then_reactivated(
    idp, datahub, dgectl, admin_grpc
):
    person = register_active_person(idp, dgectl, datahub)
    bystander = register_active_person(idp, dgectl, datahub)
    dgectl.ok("rights", "grant", person.login, RIGHT)
    http, tokens = logged_in(datahub, person)
    assert admin_grpc.check(tokens["access_token"], RIGHT).allowed
    assert session_is_open(http, datahub)

    suspended = dgectl.json("accounts", "suspend", person.login, "--reason", REASON, "--yes")
    assert suspended["account"]["status"] == "suspended", suspended
    assert person.login in dgectl.logins_with_status("suspended")
    assert person.login not in dgectl.logins_with_status("active")
    shown = dgectl.ok("accounts", "show", person.login, output="table").stdout
    assert re.search(r"\bsuspended\b", shown), shown

    # Its rights are kept but count for nothing: dgectl says why the list is empty.
    listed = dgectl.json("rights", "list", person.login)
    assert listed["rights"] == [] and listed["account_status"] == "suspended", listed
    table = dgectl.ok("rights", "list", person.login, output="table").stdout
    assert f"{person.login} is suspended" in table, table

    # Everything the person held ends at once.
    answer = admin_grpc.check(tokens["access_token"], RIGHT)
    assert not answer.allowed and answer.reason == "invalid_token", answer
    assert not session_is_open(http, datahub)
    with pytest.raises(OAuthError) as refused:
        datahub.oauth.refresh_token(
            datahub.discovery["token_endpoint"], refresh_token=tokens["refresh_token"]
        )
    assert refused.value.error == "invalid_grant"
    assert datahub.userinfo(tokens["access_token"]).status_code == 401

    # The right password: told the account is suspended; no code for the module.
    browser = pages.browser()
    answer = submit_login(browser, open_login_page(browser, datahub), person.login, person.password)
    assert_login_refused(answer)
    assert answer.status_code == 403
    assert SUSPENDED_MESSAGE in flat(pages.page_text(answer)), pages.page_text(answer)[:1500]
    by_email = submit_login(browser, open_login_page(browser, datahub), person.email, person.password)
    assert SUSPENDED_MESSAGE in flat(pages.page_text(by_email))

    # A wrong password: exactly what any account, or none, gets.
    wrong = {}
    for name, identifier in (
        ("suspended", person.login),
        ("active", bystander.login),
        ("nobody", f"{person.login}x"),
    ):
        other = pages.browser()
        wrong[name] = submit_login(other, open_login_page(other, datahub), identifier, WRONG_PASSWORD)
    assert {name: a.status_code for name, a in wrong.items()} == {
        "suspended": 401,
        "active": 401,
        "nobody": 401,
    }
    errors = {name: error_of(a) for name, a in wrong.items()}
    assert len(set(errors.values())) == 1, errors
    assert "suspendu" not in errors["suspended"]
    page_of = {
        name: flat(pages.page_text(a)) for name, a in wrong.items()
    }
    assert page_of["suspended"] == page_of["active"] == page_of["nobody"]

    # The person is told, without the administrators' reason.
    mail = wait_for_subject(idp.outbox, person.email, SUSPENDED_SUBJECT)
    assert "suspendu" in mail.body and REASON not in flat(mail.body), mail.body
    # The reason is in the audit log.
    events = dgectl.json("audit", "list", "--subject", suspended["account"]["id"])
    assert any(
        e["action"] == "account.suspended" and e["detail"] == REASON for e in events["events"]
    ), events

    # Reactivated: the same account, its right back, no new validation.
    reactivated = dgectl.json("accounts", "reactivate", person.login)
    assert reactivated["account"]["status"] == "active", reactivated
    assert dgectl.json("rights", "list", person.login) == {
        "account": person.login,
        "rights": [RIGHT],
    }
    wait_for_subject(idp.outbox, person.email, REACTIVATED_SUBJECT)
    http, tokens = logged_in(datahub, person)
    assert admin_grpc.check(tokens["access_token"], RIGHT).allowed


def test_a_suspension_logs_the_person_out_of_modules_on_the_back_channel(idp, datahub, dgectl):
    receiver = BackchannelReceiver()
    try:
        client = register_client(
            dgectl, "bc-suspend", "--first-party", "--backchannel-logout-uri", receiver.url
        )
        module = Module(datahub.discovery, client.id, client.redirect_uri, client.secret)
        person = register_active_person(idp, dgectl, datahub)
        done = log_in_and_exchange(module, person)
        id_claims = module.id_token_claims(done.tokens["id_token"], done.request.nonce)
        # Another person's session with the same module is not touched.
        bystander = register_active_person(idp, dgectl, datahub)
        log_in_and_exchange(module, bystander)

        dgectl.json("accounts", "suspend", person.login, "--reason", REASON, "--yes")
        posts = receiver.wait_for(1)
        time.sleep(0.5)
        assert len(receiver.received) == 1, receiver.received
        # Reactivated, then suspended without a session: nobody to tell.
        dgectl.json("accounts", "reactivate", person.login)
        dgectl.json("accounts", "suspend", person.login, "--reason", REASON, "--yes")
        time.sleep(0.5)
        assert len(receiver.received) == 1, receiver.received
    finally:
        receiver.close()
    claims = verify_jwt(datahub.discovery, posts[0]["logout_token"], client.id)
    assert "http://schemas.openid.net/event/backchannel-logout" in claims["events"]
    assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]


def test_dgectl_refuses_bad_suspensions_with_clear_messages(idp, datahub, dgectl):
    person = register_active_person(idp, dgectl, datahub)

    missing = dgectl.run("accounts", "suspend", person.login, "--yes")
    assert missing.returncode == EXIT_USAGE, describe(missing)
    empty = dgectl.run("accounts", "suspend", person.login, "--reason", "", "--yes")
    assert empty.returncode == EXIT_USAGE, describe(empty)
    # Destructive: without a terminal, only with --yes.
    unconfirmed = dgectl.run("accounts", "suspend", person.login, "--reason", REASON)
    assert unconfirmed.returncode != 0, describe(unconfirmed)
    assert person.login in dgectl.logins_with_status("active")

    unknown = dgectl.run("accounts", "suspend", f"{person.login}x", "--reason", REASON, "--yes")
    assert unknown.returncode == EXIT_REFUSED, describe(unknown)
    assert "not_found" in unknown.stderr, describe(unknown)

    never = dgectl.run("accounts", "reactivate", person.login)
    assert never.returncode == EXIT_REFUSED, describe(never)
    assert "not suspended" in never.stderr, describe(never)

    done = dgectl.ok(
        "accounts", "suspend", person.login, "--reason", REASON, "--yes", output="table"
    )
    # API tokens belong to no account: the administrator is told to revoke them apart.
    assert "API tokens" in done.stdout and "not tied to accounts" in done.stdout, describe(done)
    twice = dgectl.run("accounts", "suspend", person.login, "--reason", REASON, "--yes")
    assert twice.returncode == EXIT_REFUSED, describe(twice)
    assert "not active" in twice.stderr, describe(twice)
    dgectl.ok("accounts", "reactivate", person.login)


def test_a_service_that_may_list_rights_still_gets_an_empty_list(idp, datahub, dgectl):
    """`authz:rights` lets a service list rights, not read accounts: the status that
    explains an empty list is left out, and the list is not an error."""
    person = register_active_person(idp, dgectl, datahub)
    client = register_client(dgectl, "rights-reader", "--service-scope", "authz:rights")
    answer = token_request(
        datahub.discovery,
        {"grant_type": "client_credentials", "scope": "authz:rights"},
        auth=(client.id, client.secret),
    )
    assert answer.status_code == 200, answer.text
    token_file = idp.data_dir / f"{client.id}.token"
    token_file.write_text(answer.json()["access_token"])
    token_file.chmod(0o600)
    listed = dgectl.run(
        "--token-file", str(token_file), "rights", "list", person.login, authenticated=False
    )
    assert listed.returncode == EXIT_OK, describe(listed)
    assert json.loads(listed.stdout) == {"account": person.login, "rights": []}


def test_a_suspension_with_an_end_date_is_shown_and_told_and_bad_dates_are_refused(idp, datahub, dgectl):
    from datetime import datetime, timedelta, timezone

    from dgectl import EXIT_REFUSED as REFUSED

    person = register_active_person(idp, dgectl, datahub)
    past = dgectl.run("accounts", "suspend", person.login, "--reason", REASON, "--until", "2020-01-01", "--yes")
    assert past.returncode == EXIT_USAGE and "already past" in past.stderr, describe(past)
    far = dgectl.run("accounts", "suspend", person.login, "--reason", REASON, "--until", "2200-01-01", "--yes")
    assert far.returncode == REFUSED, describe(far)
    assert "until" in far.stderr and "cinq ans" in far.stderr, describe(far)
    assert person.login in dgectl.logins_with_status("active"), "a refused suspension changed the account"

    suspended = dgectl.json("accounts", "suspend", person.login, "--reason", REASON, "--until", "30d", "--yes")
    until = suspended["account"]["suspended_until"]
    expected = datetime.now(timezone.utc) + timedelta(days=30)
    assert abs(until - expected.timestamp()) < 120, suspended
    shown = dgectl.ok("accounts", "show", person.login, output="table").stdout
    assert "SUSPENDED UNTIL" in shown and expected.strftime("%Y-%m-%d") in shown, shown
    # The person is told when it ends, in French, still without the reason.
    mail = wait_for_subject(idp.outbox, person.email, SUSPENDED_SUBJECT)
    day = datetime.fromtimestamp(until, timezone.utc).strftime("%d/%m/%Y")
    assert f"prend fin le {day}" in flat(mail.body) and REASON not in flat(mail.body), mail.body
    events = dgectl.json("audit", "list", "--subject", suspended["account"]["id"])
    assert any(
        e["action"] == "account.suspended" and e["detail"].startswith(f"{REASON} (jusqu'au {day}")
        for e in events["events"]
    ), events

    # Reactivated by hand before the date: the date goes with the suspension.
    back = dgectl.json("accounts", "reactivate", person.login)
    assert back["account"]["status"] == "active" and back["account"]["suspended_until"] is None, back
