"""`dgectl login` through the OAuth 2.0 device authorization grant (RFC 8628), the
grant's error paths at the token endpoint, the device page, and `dgectl rights watch`.

Runs on the embedded default, and on PostgreSQL + Redis with DGE_E2E_BACKEND=postgres.
"""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
import subprocess
import time

import pytest

import pages
from device_login import (
    Lines,
    approve,
    finish,
    log_in_through_device_page,
    make_admin,
    run_dgectl,
    start_login,
    type_code,
)
from dgectl import EXIT_OK, EXIT_REFUSED, EXIT_UNAUTHENTICATED, EXIT_USAGE, describe
from idp_server import dgectl_binary, loopback_http
from portal import register_active_person, register_pending_person

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="module")
def admin_person(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    make_admin(idp, person.login)
    return person


def test_discovery_advertises_the_device_endpoint(idp):
    doc = loopback_http().get(f"{idp.base_url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["device_authorization_endpoint"] == f"{idp.base_url}/device_authorization"
    assert DEVICE_GRANT in doc["grant_types_supported"]


def test_an_administrator_logs_in_and_uses_the_saved_token(idp, admin_person, tmp_path):
    process, code, lines = start_login(idp, tmp_path)
    approve(idp, admin_person.login, admin_person.password, code)
    stdout, stderr = finish(process, lines)
    assert process.returncode == EXIT_OK, stdout + stderr
    assert "logged in; token saved in" in stdout
    saved = tmp_path / "dgectl" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    document = json.loads(saved.read_text())
    assert document["server"] == idp.grpc_server_url and document["client_id"] == "dgectl"
    assert admin_person.password not in saved.read_text()

    # No --token, no --server: the saved login is used.
    pending = run_dgectl(tmp_path, "--output", "json", "accounts", "pending")
    assert pending.returncode == EXIT_OK, describe(pending)
    assert isinstance(json.loads(pending.stdout)["accounts"], list)
    # Logout revokes the token at the provider and deletes the file.
    token = document["access_token"]
    out = run_dgectl(tmp_path, "logout")
    assert out.returncode == EXIT_OK and "logged out" in out.stdout, describe(out)
    assert not saved.exists()
    after = run_dgectl(tmp_path, "accounts", "pending")
    assert after.returncode == EXIT_UNAUTHENTICATED and "dgectl login" in after.stderr, describe(after)
    revoked = run_dgectl(tmp_path, "--server", idp.grpc_server_url, "--token", token,
                         "accounts", "pending")
    assert revoked.returncode == EXIT_UNAUTHENTICATED, describe(revoked)


def test_a_person_who_is_not_an_administrator_gets_a_clear_refusal(idp, dgectl, datahub, tmp_path):
    person = register_active_person(idp, dgectl, datahub)
    process, code, lines = start_login(idp, tmp_path)
    approve(idp, person.login, person.password, code)
    stdout, stderr = finish(process, lines)
    assert process.returncode == EXIT_OK, stdout + stderr
    refused = run_dgectl(tmp_path, "accounts", "pending")
    assert refused.returncode == EXIT_REFUSED, describe(refused)
    assert refused.stderr.startswith("error: permission_denied"), refused.stderr


def test_an_account_made_administrator_with_dgectl_acts_until_revoked(idp, dgectl, datahub,
                                                                       admin_person, tmp_path):
    person = register_active_person(idp, dgectl, datahub)
    waiting = register_pending_person(idp, datahub)
    granted = dgectl.ok("admins", "grant", person.login, "--reason", "astreinte")
    answer = json.loads(granted.stdout)
    assert answer["granted"] is True and answer["account"]["login"] == person.login
    again = dgectl.ok("admins", "grant", person.login, output="table")
    assert f"{person.login} already was a global administrator" in again.stdout
    listed = dgectl.ok("admins", "list", output="table").stdout
    assert person.login in listed and admin_person.login in listed
    admins = json.loads(dgectl.ok("admins", "list").stdout)["accounts"]
    mine = [a for a in admins if a["login"] == person.login]
    assert len(mine) == 1 and mine[0]["status"] == "active", admins
    events = json.loads(dgectl.ok("audit", "list", "--subject", answer["account"]["id"]).stdout)
    grants = [e for e in events["events"] if e["action"] == "admin.granted"]
    assert [(e["actor"], e["detail"]) for e in grants] == [("token:bootstrap-admin", "astreinte")]

    # The new administrator logs in with the device grant and approves an account.
    process, code, lines = start_login(idp, tmp_path)
    approve(idp, person.login, person.password, code)
    stdout, stderr = finish(process, lines)
    assert process.returncode == EXIT_OK, stdout + stderr
    approved = run_dgectl(tmp_path, "--output", "json", "accounts", "approve", waiting.login)
    assert approved.returncode == EXIT_OK, describe(approved)
    assert json.loads(approved.stdout)["account"]["status"] == "active"
    # Nobody takes their own administration away.
    own = run_dgectl(tmp_path, "admins", "revoke", person.login, "--yes")
    assert own.returncode == EXIT_REFUSED, describe(own)
    assert "account: self: vous ne pouvez pas retirer vos propres droits" in own.stderr, own.stderr

    # Revocation is destructive: without --yes and without a terminal, nothing happens.
    unconfirmed = dgectl.run("admins", "revoke", person.login)
    assert unconfirmed.returncode == EXIT_USAGE and "--yes" in unconfirmed.stderr, describe(unconfirmed)
    assert person.login in dgectl.ok("admins", "list", output="table").stdout
    revoked = json.loads(dgectl.ok("admins", "revoke", person.login, "--yes", "--reason", "fin").stdout)
    assert revoked["revoked"] is True
    assert person.login not in dgectl.ok("admins", "list", output="table").stdout
    # The token issued before the revocation keeps no administrator power.
    refused = run_dgectl(tmp_path, "accounts", "pending")
    assert refused.returncode == EXIT_REFUSED, describe(refused)
    assert refused.stderr.startswith("error: permission_denied"), refused.stderr
    # Nor may they make themselves administrator.
    for verb in (("admins", "grant", person.login), ("admins", "list")):
        refused = run_dgectl(tmp_path, *verb)
        assert refused.returncode == EXIT_REFUSED, describe(refused)
        assert refused.stderr.startswith("error: permission_denied"), refused.stderr


def test_an_unregistered_client_gets_a_hint(idp, tmp_path):
    refused = run_dgectl(tmp_path, "--server", idp.grpc_server_url, "login", "--issuer",
                         idp.base_url, "--client-id", "nobody")
    assert refused.returncode == EXIT_UNAUTHENTICATED, describe(refused)
    assert "invalid_client" in refused.stderr
    assert "dgectl clients add nobody --device --public --first-party" in refused.stderr


def test_a_refusal_in_the_browser_ends_the_login(idp, admin_person, tmp_path):
    process, code, lines = start_login(idp, tmp_path)
    _, done = approve(idp, admin_person.login, admin_person.password, code, decision="deny")
    assert "Demande refusée" in pages.page_text(done)
    stdout, stderr = finish(process, lines)
    assert process.returncode == EXIT_UNAUTHENTICATED, stdout + stderr
    assert "the login was refused in the browser" in stderr
    assert not (tmp_path / "dgectl" / "credentials.json").exists()


# --- The grant at the token endpoint ------------------------------------------------


def start_device(idp, client_id="dgectl", **extra):
    answer = loopback_http().post(
        f"{idp.base_url}/device_authorization", data={"client_id": client_id, **extra}, timeout=10
    )
    return answer.status_code, answer.json()


def poll(idp, device_code, client_id="dgectl"):
    answer = loopback_http().post(
        f"{idp.base_url}/token",
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client_id},
        timeout=10,
    )
    return answer.status_code, answer.json()


def test_the_device_endpoint_answers_rfc_8628(idp):
    status, start = start_device(idp, scope="openid profile")
    assert status == 200, start
    assert set(start) == {"device_code", "user_code", "verification_uri",
                          "verification_uri_complete", "expires_in", "interval"}
    assert len(start["device_code"]) >= 43
    assert re_user_code(start["user_code"])
    assert start["verification_uri"] == f"{idp.base_url}/device"
    assert start["verification_uri_complete"] == f"{idp.base_url}/device?user_code={start['user_code']}"
    assert start["expires_in"] == 600 and start["interval"] == 5
    # A web client (it has redirect URIs) may not; nor an unknown scope, nor a stranger.
    assert start_device(idp, client_id="communautes") == (
        400, {"error": "unauthorized_client",
              "error_description": "only clients registered without redirect URIs may use the device grant"})
    assert start_device(idp, scope="openid admin")[1]["error"] == "invalid_scope"
    assert start_device(idp, client_id="nobody")[0] == 401


def re_user_code(code: str) -> bool:
    return len(code) == 9 and code[4] == "-" and all(c in "BCDFGHJKLMNPQRSTVWXZ" for c in code.replace("-", ""))


def test_pending_slow_down_approval_and_reuse(idp, admin_person):
    _, start = start_device(idp)
    assert poll(idp, start["device_code"]) == (
        400, {"error": "authorization_pending", "error_description": "the person has not answered yet"})
    status, answer = poll(idp, start["device_code"])
    assert (status, answer["error"]) == (400, "slow_down")
    # Another client cannot use this device code.
    assert poll(idp, start["device_code"], client_id="communautes")[1]["error"] == "invalid_grant"
    approve(idp, admin_person.login, admin_person.password, start["user_code"])
    # Eight polls at once: exactly one gets the tokens.
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: poll(idp, start["device_code"]), range(8)))
    winners = [body for status, body in answers if status == 200]
    assert len(winners) == 1, answers
    assert {body["error"] for status, body in answers if status != 200} == {"invalid_grant"}
    tokens = winners[0]
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "openid"
    assert tokens["access_token"] and tokens["id_token"] and tokens["refresh_token"]
    # Single use: the same device code again gets nothing.
    assert poll(idp, start["device_code"])[1]["error"] == "invalid_grant"


def test_a_denied_code_says_access_denied_once(idp, admin_person):
    _, start = start_device(idp)
    approve(idp, admin_person.login, admin_person.password, start["user_code"], decision="deny")
    assert poll(idp, start["device_code"])[1]["error"] == "access_denied"
    assert poll(idp, start["device_code"])[1]["error"] == "invalid_grant"


def test_a_code_expires(start_idp, dgectl_for):
    server = start_idp({"DGE_DEVICE_CODE_TTL_SECS": "5"})
    _, start = start_device(server)
    assert start["expires_in"] == 5
    time.sleep(5.5)
    assert poll(server, start["device_code"])[1]["error"] == "expired_token"
    # The user code is gone too.
    person = dgectl_for(server)
    http, page = log_in_through_device_page(server, person.login, person.password, start["user_code"])
    refused = type_code(http, page, start["user_code"])
    assert refused.status_code == 400
    assert "inconnu, a expiré ou a déjà servi" in pages.page_text(refused)


@pytest.fixture
def dgectl_for():
    from dgectl import Dgectl
    from portal import Module

    def make(server):
        return register_active_person(server, Dgectl(server), Module.datahub(server.base_url))

    return make


# --- The device page ------------------------------------------------------------------


def test_the_device_page_refuses_forged_posts_and_throttles_guesses(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    _, start = start_device(idp)
    http, page = log_in_through_device_page(idp, person.login, person.password, start["user_code"])
    # No CSRF token: refused, and nothing decided.
    forged = pages.post(http, f"{idp.base_url}/device",
                        {"user_code": start["user_code"], "decision": "allow"})
    assert forged.status_code == 403
    assert poll(idp, start["device_code"])[1]["error"] == "authorization_pending"
    # Typed in lower case with a space: the same code.
    shown = type_code(http, page, start["user_code"].lower().replace("-", " "))
    assert shown.status_code == 200 and start["user_code"] in pages.page_text(shown)
    # Ten wrong codes, then even the right one waits.
    for _ in range(10):
        wrong = type_code(http, page, "BBBB-BBBB")
        assert wrong.status_code == 400, pages.page_text(wrong)
    throttled = type_code(http, page, start["user_code"])
    assert throttled.status_code == 429
    assert "Trop de codes erronés" in pages.page_text(throttled)


# --- dgectl rights watch --------------------------------------------------------------


def test_rights_watch_prints_grants_and_revocations(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    account_id = dgectl.json("accounts", "show", person.login)["account"]["id"]

    def watch(output: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(dgectl_binary()), "--server", idp.grpc_server_url, "--token-file",
             str(idp.admin_token_path), "--output", output, "rights", "watch", "--account",
             person.login],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )

    as_json, as_table = watch("json"), watch("table")
    try:
        json_lines, table_lines = Lines(as_json.stdout), Lines(as_table.stdout)
        assert table_lines.next(timeout=5).split() == ["WHEN", "(UTC)", "CHANGE", "ACCOUNT", "RIGHT"]
        time.sleep(1)  # both streams are open before the grant
        for process in (as_json, as_table):
            assert process.poll() is None, process.stderr.read()
        dgectl.ok("rights", "grant", person.login, "datahub:publish")
        change = json.loads(json_lines.next(timeout=5))
        assert change["account_id"] == account_id and change["right"] == "datahub:publish"
        assert change["granted"] is True and change["at"] > 0
        assert table_lines.next(timeout=5).split()[2:] == ["granted", account_id, "datahub:publish"]
        dgectl.ok("rights", "revoke", person.login, "datahub:publish", "--yes")
        change = json.loads(json_lines.next(timeout=5))
        assert (change["right"], change["granted"]) == ("datahub:publish", False)
        assert table_lines.next(timeout=5).split()[2:] == ["revoked", account_id, "datahub:publish"]
    finally:
        for process in (as_json, as_table):
            process.terminate()
            process.wait(timeout=10)
