"""Production mode: three `dge-idp serve` replicas on one PostgreSQL and one Redis.

A `dge-idp dev` run on the same database seeds the demo clients, organisations and
the administrator token first, then stops; the replicas share the database, Redis, the
key-encryption key and one outbox folder, as two pods would.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from authlib.integrations.requests_client import OAuthError

import pages
from dgectl import Dgectl
from grpc_api import IdentityGrpc
from idp_server import clean_env, free_ports, idp_binary, loopback_http, new_idp_server
from oidc import introspect, post_form
from outbox import CONFIRM_SUBJECT, mails_to
from portal import (
    Module,
    new_person,
    open_confirmation_page,
    open_login_page,
    open_signup_page,
    press_confirm,
    submit_login,
    submit_signup,
)

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
RIGHT = "datahub:publish"


@dataclass
class Replica:
    """One `dge-idp serve` process."""

    name: str
    http_addr: str
    grpc_addr: str
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.http_addr}"

    def start(self, config: Path, env: dict[str, str] | None = None) -> None:
        env = clean_env({
            "DGE_SERVER__HTTP_ADDR": self.http_addr,
            "DGE_SERVER__GRPC_ADDR": self.grpc_addr,
            **(env or {}),
        })
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(idp_binary()), "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            )
        http = loopback_http()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"{self.name} exited:\n{self.log_path.read_text()}"
            try:
                if http.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def on(replica: Replica, url: str, public: Replica) -> str:
    """`url` of the public replica, aimed at `replica` instead."""
    return url.replace(public.base_url, replica.base_url, 1)


def aimed_at(response, replica: Replica, public: Replica):
    """The same page, as if `replica` had served it: its forms post there."""
    response.url = on(replica, response.url, public)
    return response


@pytest.fixture
def replicas(tmp_path, backend_database):
    outbox = tmp_path / "outbox"
    # Seed the shared database with the embedded default's demo data and admin token.
    seed = new_idp_server(tmp_path / "seed", tmp_path / "seed.log", {
        "DGE_DEV_DATABASE_URL": backend_database,
        "DGE_KEY_ENCRYPTION_KEY": KEY,
    })
    seed.data_dir.mkdir()
    seed.start()
    seed.stop()

    # Six distinct ports picked at once: one at a time, the kernel may hand one out twice.
    ports = iter(free_ports(6))
    a, b, c = (
        Replica(f"replica-{n}", f"127.0.0.1:{next(ports)}", f"127.0.0.1:{next(ports)}", tmp_path / f"{n}.log")
        for n in "abc"
    )
    config = tmp_path / "dge-idp.toml"
    config.write_text(
        f'[server]\npublic_url = "{a.base_url}"\n'
        f'[database]\nurl = "{backend_database}"\nmax_connections = 8\n'
        # A prefix of the run's own: counters (the login throttle's per-address lock)
        # and sessions are not shared with other runs on the same Redis.
        f'[redis]\nurl = "redis://127.0.0.1:6379"\nprefix = "dge-e2e-{secrets.token_hex(6)}:"\n'
        f'[keys]\nencryption_key = "{KEY}"\n'
        f'[mail]\nfrom = "DataGrandEst <no-reply@datagrandest.fr>"\noutbox_dir = "{outbox}"\n',
        encoding="utf-8",
    )
    check = subprocess.run(
        [str(idp_binary()), "check-config", "--config", str(config)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for replica in (a, b, c):
        replica.start(config)
    yield a, b, c, seed, outbox
    for replica in (a, b, c):
        replica.stop()


@pytest.fixture
def backend_database():
    """A fresh PostgreSQL database of the test's own (the replicas' storage)."""
    import psycopg

    from conftest import postgres_admin_url

    admin_url = postgres_admin_url()
    name = f"dge_replicas_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def admin_on(seed, replica: Replica) -> Dgectl:
    return Dgectl(seed, server_url=f"http://{replica.grpc_addr}")


def test_a_journey_across_replicas(replicas, grpc_pb):
    a, b, c, seed, outbox = replicas
    datahub = Module.datahub(a.base_url)

    # Sign-up on A, confirmation on B.
    person = new_person()
    http = pages.browser()
    answer = submit_signup(http, open_signup_page(http, open_login_page(http, datahub)), person.signup_fields())
    assert answer.status_code == 200, pages.page_text(answer)
    confirmation = open_confirmation_page(http, outbox, person)
    confirmed = press_confirm(http, aimed_at(confirmation, b, a))
    assert confirmed.status_code == 200, pages.page_text(confirmed)
    admin_on(seed, b).ok("accounts", "approve", person.login)

    # A login started on A (authorize, login page) goes on on B (the form, which issues the
    # code into Redis) and completes on C (the code exchange).
    login_page = open_login_page(http, datahub)
    aimed_at(login_page.response, b, a)
    answer = submit_login(http, login_page, person.login, person.password)
    callback = datahub.callback_url(answer)
    on_c = Module(
        {**datahub.discovery, "token_endpoint": on(c, datahub.discovery["token_endpoint"], a)},
        datahub.client_id, datahub.redirect_uri, "datahub-dev-secret",
    )
    token = on_c.exchange(callback, login_page.request)
    claims = datahub.id_token_claims(token["id_token"], login_page.request.nonce)
    assert claims["iss"] == a.base_url

    # A grant made through B is seen by Check on A and on C within a second.
    others = [IdentityGrpc(grpc_pb, r.grpc_addr, seed.admin_token()) for r in (a, c)]
    try:
        for other in others:
            assert not other.check(token["access_token"], RIGHT).allowed
        granted = time.monotonic()
        admin_on(seed, b).ok("rights", "grant", person.login, RIGHT)
        for other, name in zip(others, ("A", "C")):
            while not other.check(token["access_token"], RIGHT).allowed:
                assert time.monotonic() - granted < 1.0, f"the grant was not seen on {name} within 1 s"
                time.sleep(0.02)
    finally:
        for other in others:
            other.close()

    # A revocation on B: Check on B refuses at once, and on A and C, whose caches hold
    # "allowed" for this token, within a second.
    everyone = [IdentityGrpc(grpc_pb, r.grpc_addr, seed.admin_token()) for r in (a, b, c)]
    try:
        # The refresh token (no offline_access) is active while its session is: every
        # replica's gRPC introspection finds the session in Redis.
        for replica in everyone:
            request = grpc_pb.authorization.IntrospectRequest(token=token["refresh_token"])
            assert replica.call(replica.authorization.Introspect, request).active
        for replica in everyone:
            for _ in range(3):
                assert replica.check(token["access_token"], RIGHT).allowed
        revocation = on(b, datahub.discovery["revocation_endpoint"], a)
        answer = post_form(revocation, {"token": token["access_token"]}, ("datahub", "datahub-dev-secret"))
        assert answer.status_code == 200, answer.text
        revoked = time.monotonic()
        assert not everyone[1].check(token["access_token"], RIGHT).allowed, "B still allows"
        for replica, name in ((everyone[0], "A"), (everyone[2], "C")):
            while replica.check(token["access_token"], RIGHT).allowed:
                assert time.monotonic() - revoked < 1.0, f"the revocation was not seen on {name} within 1 s"
                time.sleep(0.02)
    finally:
        for replica in everyone:
            replica.close()

    # The code, taken on C, replayed on A: refused, and what it gave is revoked.
    with pytest.raises(OAuthError) as replayed:
        datahub.exchange(callback, login_page.request)
    assert replayed.value.error == "invalid_grant"
    assert introspect(datahub.discovery, token["access_token"])["active"] is False
    assert introspect(datahub.discovery, token["refresh_token"])["active"] is False


def test_stopping_a_replica_under_load_loses_nothing_it_answered(replicas):
    a, b, c, seed, outbox = replicas
    datahub = Module.datahub(a.base_url)
    answered: list[tuple[str, object]] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = threading.Event()

    def sign_ups(replica: Replica, count: int) -> None:
        for _ in range(count):
            person = new_person()
            http = pages.browser()
            try:
                page = open_signup_page(http, open_login_page(http, datahub))
                answer = submit_signup(http, aimed_at(page, replica, a), person.signup_fields())
            except (OSError, AssertionError) as error:
                # Refused or cut off by the stopping replica: its in-flight requests.
                with lock:
                    errors.append(f"{replica.name}: {type(error).__name__}")
                continue
            if answer.status_code == 200:
                with lock:
                    answered.append((replica.name, person))
                    # Stop A once it has answered some sign-ups itself: B and C alone can
                    # reach six first when A's workers start late.
                    names = [name for name, _ in answered]
                    if len(names) >= 6 and a.name in names:
                        stop_at.set()

    workers = [threading.Thread(target=sign_ups, args=(r, 8)) for r in (a, b, c)]
    for worker in workers:
        worker.start()
    stop_at.wait(timeout=60)
    code = a.stop()
    assert code == 0, f"replica A did not stop cleanly (exit {code}):\n{a.log_path.read_text()[-3000:]}"
    for worker in workers:
        worker.join(timeout=120)
    assert len(answered) >= 6, errors
    assert a.name in {name for name, _ in answered}, "the stopped replica took sign-ups first"

    # Every sign-up that was answered has its confirmation email, exactly once, sent by
    # whichever replica was still running.
    deadline = time.monotonic() + 30
    for _, person in answered:
        while True:
            found = [m for m in mails_to(outbox, person.email) if m.subject == CONFIRM_SUBJECT]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(found) == 1, f"{person.email}: {len(found)} confirmation emails"
    # B and C kept serving throughout.
    for replica in (b, c):
        assert loopback_http().get(f"{replica.base_url}/readyz", timeout=5).status_code == 200
        with grpc.insecure_channel(replica.grpc_addr, options=[("grpc.enable_http_proxy", 0)]) as channel:
            grpc.channel_ready_future(channel).result(timeout=5)


def test_rights_watch_on_one_replica_sees_a_grant_made_on_another(replicas):
    """`dgectl rights watch` on A and on C prints a grant made through B within a second."""
    a, b, c, seed, outbox = replicas
    from device_login import Lines
    from idp_server import dgectl_binary

    datahub = Module.datahub(a.base_url)
    person = new_person()
    http = pages.browser()
    answer = submit_signup(http, open_signup_page(http, open_login_page(http, datahub)), person.signup_fields())
    assert answer.status_code == 200, pages.page_text(answer)
    press_confirm(http, open_confirmation_page(http, outbox, person))
    admin_on(seed, b).ok("accounts", "approve", person.login)

    watchers = [
        subprocess.Popen(
            [str(dgectl_binary()), "--server", f"http://{r.grpc_addr}", "--token-file",
             str(seed.admin_token_path), "--output", "json", "rights", "watch", "--account",
             person.login],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            env=clean_env(),
        )
        for r in (a, c)
    ]
    try:
        streams = [Lines(w.stdout) for w in watchers]
        time.sleep(1)  # both streams are open before the grant
        for w in watchers:
            assert w.poll() is None, w.stderr.read()
        admin_on(seed, b).ok("rights", "grant", person.login, RIGHT)
        granted = time.monotonic()
        for stream, name in zip(streams, ("A", "C")):
            change = json.loads(stream.next(timeout=1.0))
            assert time.monotonic() - granted < 1.0, f"the grant reached {name} late"
            assert (change["right"], change["granted"]) == (RIGHT, True), change
    finally:
        for w in watchers:
            w.terminate()
            w.wait(timeout=10)


# --- sessions shared through Redis ---------------------------------------------------------

RESET_SUBJECT = "Réinitialisation de votre mot de passe – DataGrandEst"


def active_person_on(a: Replica, b: Replica, seed, outbox):
    """A person signed up on A, confirmed and approved through B."""
    datahub = Module.datahub(a.base_url)
    person = new_person()
    http = pages.browser()
    answer = submit_signup(http, open_signup_page(http, open_login_page(http, datahub)), person.signup_fields())
    assert answer.status_code == 200, pages.page_text(answer)
    confirmed = press_confirm(http, aimed_at(open_confirmation_page(http, outbox, person), b, a))
    assert confirmed.status_code == 200, pages.page_text(confirmed)
    admin_on(seed, b).ok("accounts", "approve", person.login)
    return person


def logged_in_on(replica: Replica, public: Replica, person):
    """A browser that logged in through `replica`'s login form."""
    http = pages.browser()
    login_page = open_login_page(http, Module.datahub(public.base_url))
    aimed_at(login_page.response, replica, public)
    answer = submit_login(http, login_page, person.login, person.password)
    assert answer.status_code in (302, 303), pages.page_text(answer)
    return http


def signed_in_on(http, replica: Replica) -> bool:
    """The account page of `replica`: shown with a live session, else a redirect to /login."""
    answer = pages.get(http, f"{replica.base_url}/account")
    assert answer.status_code in (200, 303), answer.status_code
    return answer.status_code == 200


def test_sessions_are_shared_by_replicas_and_end_everywhere_at_once(replicas, backend_database):
    a, b, c, seed, outbox = replicas
    import psycopg
    from oidc import BackchannelReceiver, register_client, verify_jwt

    person = active_person_on(a, b, seed, outbox)
    receiver = BackchannelReceiver()
    try:
        client = register_client(
            admin_on(seed, a), "bc-replicas", "--first-party", "--backchannel-logout-uri", receiver.url
        )
        datahub = Module.datahub(a.base_url)
        module = Module(datahub.discovery, client.id, client.redirect_uri, client.secret)

        # The session opened on A holds on B and C; the module logs in through A.
        http = logged_in_on(a, a, person)
        assert all(signed_in_on(http, r) for r in (a, b, c))
        request = module.authorization_request()
        callback = module.callback_url(pages.get(http, request.url))
        tokens = module.exchange(callback, request)
        sid = module.id_token_claims(tokens["id_token"], request.nonce)["sid"]
        # The session and its modules are in Redis, not in PostgreSQL.
        with psycopg.connect(backend_database) as conn:
            for table in ("sessions", "session_clients"):
                assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (0,), table

        # Logout on B tells the module, though the session and its modules were
        # recorded on A; the session is over on every replica.
        asked = pages.get(http, on(b, datahub.discovery["end_session_endpoint"], a))
        assert asked.status_code == 200, pages.page_text(asked)
        answer = pages.submit(http, asked, pages.form_with_field(asked, "confirm"), {})
        assert answer.status_code == 200, pages.page_text(answer)
        posts = receiver.wait_for(1)
        assert len(posts) == 1, posts
        claims = verify_jwt(datahub.discovery, posts[0]["logout_token"], client.id)
        assert claims["sid"] == sid
        assert not any(signed_in_on(http, r) for r in (a, b, c))

        # Two sessions, opened on A and on B, each used by the module; a password
        # reset through C ends both and tells the module of each on the back channel.
        on_a = logged_in_on(a, a, person)
        on_b = logged_in_on(b, a, person)
        assert signed_in_on(on_a, b) and signed_in_on(on_b, a)
        sids = set()
        for browser in (on_a, on_b):
            request = module.authorization_request()
            callback = module.callback_url(pages.get(browser, request.url))
            tokens = module.exchange(callback, request)
            sids.add(module.id_token_claims(tokens["id_token"], request.nonce)["sid"])
        assert len(sids) == 2, sids
        reset_through_c(a, c, person, outbox)
        posts = receiver.wait_for(3)[1:]
        time.sleep(0.5)
        assert len(receiver.received) == 3, receiver.received
        # Each went through the queue in PostgreSQL, posted once by one replica.
        with psycopg.connect(backend_database) as conn:
            queued = conn.execute(
                "SELECT status, attempts FROM backchannel_logouts WHERE client_id = %s",
                (client.id,),
            ).fetchall()
        assert queued == [("sent", 1)] * 3, queued
        told = [verify_jwt(datahub.discovery, p["logout_token"], client.id) for p in posts]
        assert {t["sid"] for t in told} == sids, told
        assert all(t["sub"] == claims["sub"] for t in told), told
    finally:
        receiver.close()
    for browser, name in ((on_a, "A"), (on_b, "B")):
        for replica in (a, b, c):
            assert not signed_in_on(browser, replica), f"the session opened on {name} outlived the reset"
    assert signed_in_on(logged_in_on(c, a, person), a), "the new password opens a session"


def reset_through_c(a, c, person, outbox) -> None:
    """Resets `person`'s password with the forms and link of replica C (the link names
    the public URL, A); `person.password` becomes the new one."""
    http = pages.browser()
    page = pages.get(http, f"{c.base_url}/password/forgot")
    answer = pages.submit(http, page, pages.form_with_field(page, "email"), {"email": person.email})
    assert answer.status_code == 200, pages.page_text(answer)
    mail = None
    deadline = time.monotonic() + 30
    while mail is None and time.monotonic() < deadline:
        mail = next((m for m in mails_to(outbox, person.email) if m.subject == RESET_SUBJECT), None)
        time.sleep(0.1)
    assert mail is not None, "no reset email"
    link = re.findall(r"https?://[^\s\"'<>]+/password/reset\?token=[^\s\"'<>]+", mail.body)[0]
    form_page = pages.get(http, on(c, link, a))
    assert form_page.status_code == 200, pages.page_text(form_page)
    password = f"Mirabelle-de-Metz-{secrets.token_hex(3)}-7!"
    done = pages.submit(
        http, form_page, pages.form_with_field(form_page, "password_confirmation"),
        {"password": password, "password_confirmation": password},
    )
    assert done.status_code == 200, pages.page_text(done)
    person.password = password


def test_a_rotated_client_secret_is_refused_on_every_replica(replicas):
    """The replicas cache clients for a second; a rotation on A drops them on B and C at
    once (the notice through Redis, well within half of that second), and a removal too."""
    a, b, c, seed, _ = replicas
    client_id = f"svc-{secrets.token_hex(3)}"
    added = admin_on(seed, a).json(
        "clients", "add", client_id, "--device", "--service-scope", "authz:introspect"
    )
    old = (client_id, added["client_secret"])
    data = {"grant_type": "client_credentials", "scope": "authz:introspect"}

    def token_on(replica: Replica, auth) -> int:
        return post_form(f"{replica.base_url}/token", data, auth).status_code

    # Each replica answers once with the old secret, and so has the client cached.
    for replica in (a, b, c):
        assert token_on(replica, old) == 200, replica.name
    rotated = admin_on(seed, a).json("clients", "rotate-secret", client_id)
    changed = time.monotonic()
    new = (client_id, rotated["client_secret"])
    assert token_on(a, old) == 401, "A still takes the old secret"
    for replica in (b, c):
        while token_on(replica, old) != 401:
            assert time.monotonic() - changed < 0.5, f"{replica.name} took the old secret after 0.5 s"
            time.sleep(0.02)
        assert token_on(replica, new) == 200, replica.name

    for replica in (a, b, c):
        assert token_on(replica, new) == 200, replica.name
    admin_on(seed, a).json("clients", "remove", client_id, "--yes")
    removed = time.monotonic()
    for replica in (a, b, c):
        while token_on(replica, new) != 401:
            assert time.monotonic() - removed < 0.5, f"{replica.name} took the removed client after 0.5 s"
            time.sleep(0.02)
