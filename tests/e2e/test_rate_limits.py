"""Rate limits (issue 9): `/authorize` per client address, failed client
authentications at the token endpoints per client id and per address, and the
NAT-friendly address lock of password logins; on the real server, with the
in-process store and with Redis."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import HTTPAdapter

import pages
from dgectl import Dgectl
from grpc_api import IdentityGrpc
from idp_server import loopback_http
from outbox import mails_to, wait_for_mail
from portal import (
    DATAHUB_SECRET,
    SIGNUP_DONE_PATH,
    Module,
    every_rule_broken,
    log_in,
    new_person,
    open_login_page,
    open_signup_page,
    register_active_person,
    submit_login,
    submit_signup,
)

LOCKED = "Trop de tentatives de connexion ont échoué."
WRONG = "Pas-le-bon-mot-de-passe-1"


def store_env(store: str, **limits: str) -> dict[str, str]:
    # A prefix of the test's own, whatever the store: with DGE_E2E_BACKEND=postgres even
    # "local" servers get Redis, and locks or counters on 127.0.0.1 under the default
    # prefix would reach every other server on this machine.
    env = {**limits, "DGE_DEV_REDIS_PREFIX": f"dge-e2e-{secrets.token_hex(6)}:"}
    if store == "redis":
        env["DGE_DEV_REDIS_URL"] = "redis://127.0.0.1:6379"
    return env


class SourceAddress(HTTPAdapter):
    """Connections from a chosen loopback address (127.0.0.0/8 is all ours)."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def from_address(source: str, http: requests.Session | None = None) -> requests.Session:
    http = http or loopback_http()
    http.mount("http://", SourceAddress(source))
    return http


@pytest.mark.parametrize("store", ["local", "redis"])
def test_authorize_is_limited_per_address_with_a_french_429(start_idp, store):
    server = start_idp(
        store_env(store, DGE_AUTHORIZE_MAX_REQUESTS="5", DGE_AUTHORIZE_WINDOW_SECS="60")
    )
    module = Module.datahub(server.base_url)
    first = from_address("127.0.0.1")
    answers = [
        first.get(module.authorization_request().url, allow_redirects=False, timeout=10)
        for _ in range(7)
    ]
    assert [a.status_code for a in answers] == [303] * 5 + [429] * 2, answers
    refused = answers[5]
    assert pages.is_french_page(refused)
    text = pages.page_text(refused)
    assert "Trop de demandes" in text and "Réessayez dans" in text, text
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60, retry_after
    # The security headers are there too.
    assert refused.headers.get("X-Frame-Options") or refused.headers.get(
        "Content-Security-Policy"
    ), refused.headers
    # Another address is not affected.
    other = from_address("127.0.0.2").get(
        module.authorization_request().url, allow_redirects=False, timeout=10
    )
    assert other.status_code == 303, other.text[:500]
    assert "/login?" in pages.location(other)


def token_post(http: requests.Session, server, data: dict, auth=None) -> requests.Response:
    return http.post(f"{server.base_url}/token", data=data, auth=auth, timeout=10)


def introspect(http: requests.Session, server, data: dict, auth=None) -> requests.Response:
    return http.post(
        f"{server.base_url}/introspect", data={"token": "x", **data}, auth=auth, timeout=10
    )


@pytest.mark.parametrize("store", ["local", "redis"])
def test_failed_client_authentications_are_cut_short(start_idp, grpc_pb, store):
    server = start_idp(
        store_env(store, DGE_CLIENT_AUTH_MAX_FAILURES="3", DGE_CLIENT_AUTH_WINDOW_SECS="60")
    )
    attacker = from_address("127.0.0.1")
    elsewhere = from_address("127.0.0.2")
    home = from_address("127.0.0.3")
    good = ("datahub", DATAHUB_SECRET)
    bad = ("datahub", "pas-le-bon-secret")
    grant = {"grant_type": "client_credentials"}

    # datahub's own host authenticated before: it stays known to datahub; and another
    # module runs on the attacker's host (a shared host, or one NAT).
    answer = introspect(home, server, {}, auth=good)
    assert answer.status_code == 200 and answer.json() == {"active": False}, answer.text
    answer = introspect(attacker, server, {"client_id": "communautes"})
    assert answer.status_code == 200, answer.text

    # Three failures are the usual 401; then even the right secret gets a fast 429.
    failures = [token_post(attacker, server, grant, auth=bad) for _ in range(3)]
    assert [f.status_code for f in failures] == [401] * 3, [f.text for f in failures]
    assert all(f.json()["error"] == "invalid_client" for f in failures)
    refused = [token_post(attacker, server, grant, auth=bad) for _ in range(4)]
    refused.append(token_post(attacker, server, grant, auth=good))
    for answer in refused:
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"] == "invalid_client", answer.text
        assert 1 <= int(answer.headers["Retry-After"]) <= 60, answer.headers
        assert answer.headers["Cache-Control"] == "no-store"
    # The address is over its limit, at every endpoint, for any client never served
    # there; the module that was keeps working.
    answer = introspect(attacker, server, {"client_id": "dgectl"})
    assert answer.status_code == 429, answer.text
    answer = introspect(attacker, server, {"client_id": "communautes"})
    assert answer.status_code == 200, answer.text

    # datahub is over its own limit from an address it never authenticated from…
    assert introspect(elsewhere, server, {}, auth=good).status_code == 429
    # …but its known address still gets through, and other clients are unaffected.
    answer = introspect(home, server, {}, auth=good)
    assert answer.status_code == 200, answer.text
    answer = introspect(elsewhere, server, {"client_id": "communautes"})
    assert answer.status_code == 200 and answer.json() == {"active": False}, answer.text

    # One audit row per refused attempt up to the limit, then one summary row.
    admin = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    try:
        request = grpc_pb.validation_workflow.ListAuditEventsRequest(subject="datahub", limit=100)
        events = admin.call(admin.workflow.ListAuditEvents, request).events
    finally:
        admin.close()
    actions = [e.action for e in events]
    assert actions.count("token.refused") == 3, actions
    assert actions.count("token.client_auth_limited") == 1, actions
    summary = next(e for e in events if e.action == "token.client_auth_limited")
    assert "limit=address,client_id" in summary.detail and "failures=3" in summary.detail, summary
    assert DATAHUB_SECRET not in summary.detail


@pytest.mark.parametrize("store", ["local", "redis"])
def test_a_locked_address_still_lets_in_accounts_known_there(start_idp, store):
    server = start_idp(
        store_env(
            store,
            DGE_ADDRESS_LOCK_AFTER="3",
            DGE_LOGIN_LOCK_AFTER="10",
            DGE_LOGIN_FREE_FAILURES="10",
        )
    )
    module = Module.datahub(server.base_url)
    dgectl = Dgectl(server)
    regular = register_active_person(server, dgectl, module)
    newcomer = register_active_person(server, dgectl, module)
    # The regular logged in from this shared address before.
    log_in(from_address("127.0.0.1", pages.browser()), module, regular.login, regular.password)

    # Someone behind the same address sprays passwords: the address is locked.
    sprayer = from_address("127.0.0.1", pages.browser())
    for _ in range(3):
        name = f"personne{secrets.token_hex(4)}"
        answer = submit_login(sprayer, open_login_page(sprayer, module), name, WRONG)
        assert answer.status_code == 401, pages.page_text(answer)
    answer = submit_login(sprayer, open_login_page(sprayer, module), newcomer.login, newcomer.password)
    assert answer.status_code == 429 and LOCKED in pages.page_text(answer), pages.page_text(answer)

    # The regular, with the right password, still gets in from there…
    log_in(from_address("127.0.0.1", pages.browser()), module, regular.login, regular.password)
    # …and a wrong password of theirs is still refused as such.
    http = from_address("127.0.0.1", pages.browser())
    answer = submit_login(http, open_login_page(http, module), regular.login, WRONG)
    assert answer.status_code == 401, pages.page_text(answer)
    # Another address is not affected.
    log_in(from_address("127.0.0.2", pages.browser()), module, newcomer.login, newcomer.password)


TOO_MANY_SIGN_UPS = "Trop de demandes d'inscription ont été envoyées depuis votre connexion."


@pytest.mark.parametrize("store", ["local", "redis"])
def test_sign_ups_from_one_address_are_limited_and_the_form_kept(start_idp, store):
    server = start_idp(store_env(store, DGE_SIGNUPS_PER_ADDRESS_MAX="2"))
    module = Module.datahub(server.base_url)

    def signup_page(http):
        return open_signup_page(http, open_login_page(http, module))

    # A form with errors counts nothing; two filed from 127.0.0.1.
    http = from_address("127.0.0.1", pages.browser())
    broken = submit_signup(http, signup_page(http), every_rule_broken(new_person()))
    assert broken.status_code == 400, pages.page_text(broken)
    assert "Veuillez corriger les points suivants" in pages.page_text(broken)
    for _ in range(2):
        filed = submit_signup(http, signup_page(http), new_person().signup_fields())
        assert filed.status_code == 200 and urlsplit(filed.url).path == SIGNUP_DONE_PATH, filed.url

    # The third: a French 429 with Retry-After, what was typed kept, nothing filed.
    refused_person = new_person()
    page = signup_page(http)
    refused = submit_signup(http, page, refused_person.signup_fields())
    assert refused.status_code == 429, pages.page_text(refused)
    assert TOO_MANY_SIGN_UPS in pages.page_text(refused), pages.page_text(refused)
    # Nothing for the person to correct: the summary does not ask them to.
    assert "Veuillez corriger" not in pages.page_text(refused), pages.page_text(refused)
    assert 0 < int(refused.headers["Retry-After"]) <= 3600, refused.headers
    kept = pages.form_values(pages.form_with_field(refused, "password_confirmation"))
    assert kept["email"] == refused_person.email and kept["login"] == refused_person.login, kept
    assert kept["given_name"] == refused_person.given_name, kept

    # Another address files at once; its email comes, the refused one's never does.
    other = from_address("127.0.0.2", pages.browser())
    later = new_person()
    filed = submit_signup(other, signup_page(other), later.signup_fields())
    assert filed.status_code == 200, pages.page_text(filed)
    wait_for_mail(server.outbox, later.email, lambda _: True, "confirmation email")
    assert mails_to(server.outbox, refused_person.email) == []
    # The refused person's login was not taken either: from elsewhere it is filed.
    filed = submit_signup(other, signup_page(other), refused_person.signup_fields())
    assert filed.status_code == 200, pages.page_text(filed)
