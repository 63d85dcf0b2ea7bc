"""Security hardening (issue 9): brute-force throttling of password logins on the
real server, with the in-process store and with Redis."""

from __future__ import annotations

import secrets
import statistics
import time

import pytest
from authlib.integrations.requests_client import OAuthError

import pages
from dgectl import Dgectl
from grpc_api import IdentityGrpc
from outbox import mails_to, wait_for_subject
from portal import Module, open_login_page, register_active_person, submit_login

LOCK_SECS = 3
LOCKED = "Trop de tentatives de connexion ont échoué."
WRONG_CREDENTIALS = "Identifiant ou mot de passe incorrect."
LOCKED_SUBJECT = "Votre compte DataGrandEst est temporairement bloqué"
# Registered for the datahub module in the embedded default (see test_oidc_provider).
DATAHUB_LOGOUT_URI = "http://localhost:8081/"


def throttled_env(store: str) -> dict[str, str]:
    env = {
        "DGE_LOGIN_LOCK_AFTER": "3",
        "DGE_LOGIN_LOCK_SECS": str(LOCK_SECS),
        "DGE_LOGIN_FREE_FAILURES": "1",
        "DGE_LOGIN_DELAY_BASE_MS": "50",
    }
    if store == "redis":
        env["DGE_DEV_REDIS_URL"] = "redis://127.0.0.1:6379"
        # A prefix of the test's own: counters never leak between runs.
        env["DGE_DEV_REDIS_PREFIX"] = f"dge-e2e-{secrets.token_hex(6)}:"
    return env


def attempts(http, module, identifier: str, password: str, count: int) -> list:
    """`count` logins, each from a fresh login page; returns (status, page text)."""
    answers = []
    for _ in range(count):
        answer = submit_login(http, open_login_page(http, module), identifier, password)
        answers.append((answer.status_code, pages.page_text(answer)))
    return answers


@pytest.mark.parametrize("store", ["local", "redis"])
def test_repeated_failures_lock_for_a_while_and_an_administrator_can_unlock(
    start_idp, grpc_pb, store
):
    server = start_idp(throttled_env(store))
    module = Module.datahub(server.base_url)
    dgectl = Dgectl(server)
    person = register_active_person(server, dgectl, module)
    http = pages.browser()

    # Two failures are told as such, the third locks; then even the right password is
    # refused, with the lock message.
    answers = attempts(http, module, person.login, "Pas-le-bon-mot-de-passe-1", 3)
    answers += attempts(http, module, person.email, person.password, 1)
    assert [status for status, _ in answers] == [401, 401, 429, 429], answers
    assert WRONG_CREDENTIALS in answers[0][1] and WRONG_CREDENTIALS in answers[1][1]
    assert LOCKED in answers[2][1] and LOCKED in answers[3][1]
    # The owner is emailed, once, in French.
    mail = wait_for_subject(server.outbox, person.email, LOCKED_SUBJECT)
    assert "/password/forgot" in mail.body
    assert len([m for m in mails_to(server.outbox, person.email) if m.subject == LOCKED_SUBJECT]) == 1

    # An identifier that names no account gets the very same answers (no enumeration).
    nobody = f"personne{secrets.token_hex(4)}"
    unknown = attempts(http, module, nobody, "Pas-le-bon-mot-de-passe-1", 4)
    assert [s for s, _ in unknown] == [401, 401, 429, 429], unknown
    assert [LOCKED in text for _, text in unknown] == [False, False, True, True]
    # The lock expires by itself.
    time.sleep(LOCK_SECS + 0.5)
    after = attempts(http, module, nobody, "Pas-le-bon-mot-de-passe-1", 1)
    assert after[0][0] == 401, after

    # An administrator lifts the person's lock; the right password then works.
    result = dgectl.ok("accounts", "unlock", person.login)
    assert person.login in result.stdout
    answer = submit_login(http, open_login_page(http, module), person.login, person.password)
    module.callback_url(answer)

    # Every outcome is in the audit log, queryable over gRPC.
    admin = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    try:
        pb = grpc_pb.account_registry.GetAccountRequest(key=person.login)
        account_id = admin.call(admin.accounts.GetAccount, pb).account.id
        request = grpc_pb.validation_workflow.ListAuditEventsRequest(subject=account_id, limit=100)
        events = admin.call(admin.workflow.ListAuditEvents, request).events
    finally:
        admin.close()
    actions = [e.action for e in events]
    for action in ("login.failed", "login.locked", "login.refused_locked", "account.unlocked", "login.succeeded"):
        assert action in actions, actions
    assert all(person.email not in e.detail and person.password not in e.detail for e in events)


def test_tokens_issued_and_refused_and_logout_are_audited(start_idp, grpc_pb):
    server = start_idp()
    module = Module.datahub(server.base_url)
    dgectl = Dgectl(server)
    person = register_active_person(server, dgectl, module)
    http = pages.browser()
    login_page = open_login_page(http, module)
    answer = submit_login(http, login_page, person.login, person.password)
    callback = module.callback_url(answer)
    tokens = module.exchange(callback, login_page.request)
    # The same code again is refused.
    with pytest.raises(OAuthError) as reused:
        module.exchange(callback, login_page.request)
    assert reused.value.error == "invalid_grant"
    logout = pages.get(
        http,
        f"{module.discovery['end_session_endpoint']}?id_token_hint={tokens['id_token']}"
        f"&post_logout_redirect_uri={DATAHUB_LOGOUT_URI}&state=fin",
    )
    assert pages.location(logout) == f"{DATAHUB_LOGOUT_URI}?state=fin"

    admin = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    try:
        account_id = admin.call(
            admin.accounts.GetAccount, grpc_pb.account_registry.GetAccountRequest(key=person.login)
        ).account.id
        list_request = grpc_pb.validation_workflow.ListAuditEventsRequest
        mine = admin.call(
            admin.workflow.ListAuditEvents, list_request(subject=account_id, limit=100)
        ).events
        client = admin.call(
            admin.workflow.ListAuditEvents, list_request(subject=module.client_id, limit=100)
        ).events
    finally:
        admin.close()
    assert {"login.succeeded", "logout"} <= {e.action for e in mine}, [e.action for e in mine]
    pairs = [(e.action, e.detail) for e in client]
    assert ("token.issued", "grant=authorization_code") in pairs, pairs
    assert ("token.refused", "grant=authorization_code error=invalid_grant") in pairs, pairs


def test_login_wording_and_time_do_not_tell_whether_an_account_exists(start_idp, capsys):
    # No delays or locks here: only the password check itself is measured.
    server = start_idp({"DGE_LOGIN_FREE_FAILURES": "1000", "DGE_LOGIN_LOCK_AFTER": "1000"})
    module = Module.datahub(server.base_url)
    person = register_active_person(server, Dgectl(server), module)
    http = pages.browser()
    login_page = open_login_page(http, module)
    rounds = 10
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    texts: dict[str, set[tuple[int, str]]] = {"known": set(), "unknown": set()}
    for i in range(rounds):
        for kind in ("known", "unknown") if i % 2 else ("unknown", "known"):
            identifier = person.login if kind == "known" else f"inconnu{secrets.token_hex(4)}"
            started = time.perf_counter()
            answer = submit_login(http, login_page, identifier, "Pas-le-bon-mot-de-passe-1")
            timings[kind].append((time.perf_counter() - started) * 1000)
            text = pages.page_text(answer).replace(identifier, "<identifiant>")
            texts[kind].add((answer.status_code, text))
    assert len(texts["known"]) == 1 and texts["known"] == texts["unknown"], texts
    known = statistics.median(timings["known"])
    unknown = statistics.median(timings["unknown"])
    with capsys.disabled():
        print(f"\nlogin refusal median over {rounds} each: known {known:.1f} ms, unknown {unknown:.1f} ms")
    # An unknown identifier still costs a password hash (a missing one would answer in
    # about a millisecond against tens for a hash).
    assert unknown > known / 2, (known, unknown)
