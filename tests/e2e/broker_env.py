"""One `dge-idp dev` with upstream providers for the broker tests, and what they share.

Upstreams (each a real `oidc-provider` on 127.0.0.1, see upstreams.py):
- `proconnect`: configured like ProConnect (issuer under /api/v2, ES256, signed userinfo,
  client_secret_post, acr values). Our providers `proconnect`, `pc-restricted` (allow
  rules) and `pc-basic` (wrongly set to client_secret_basic) all point at it.
- `pc-rs256`: the same, signing ID tokens and userinfo with RS256.
- `pc-json`: ProConnect-like, but answering userinfo as plain JSON; ours expects a JWT.
- `region`: a generic OpenID Connect provider (RS256, plain JSON userinfo, configured so).
- `rogue`: a stand-in written for the tests (rogue_upstream.py) whose ID token or
  userinfo is wrong in one chosen way (signature, `alg: none`, issuer, audience,
  expiry, nonce).
Plus `pc-down`, whose issuer is a loopback port where nothing listens, and `pc-slow`, a
loopback socket that accepts connections and never answers.
"""

from __future__ import annotations

import secrets
import socket
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import requests

import pages
from conftest import _servers
from idp_server import IdpServer, free_port
from portal import LoginPage, Module, open_login_page
from rogue_upstream import RogueUpstream
from upstreams import (
    CLIENT_ID,
    OidcUpstream,
    log_in_upstream,
    new_broker_idp,
    upstream_entry,
    write_upstreams_file,
)

ALLOWED_DOMAIN = "grandest.fr"
ALLOWED_SIRET = "20005226700013"
ALLOWED_IDP = "fia-grandest"
ALLOWED_ROLE = "agent_public_territorial"
OPTIONAL_SCOPES = ["phone", "siren", "organizational_unit", "belonging_population", "custom"]
PROCONNECT_SCOPES = [
    "email", "given_name", "usual_name", "uid", "siret", "idp_id", "organization_label", "roles",
]


@dataclass
class SilentServer:
    """Accepts TCP connections on loopback and never answers (a hung upstream)."""

    port: int = field(default_factory=free_port)
    sockets: list = field(default_factory=list)

    def start(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(conn)

    def stop(self) -> None:
        self.listener.close()
        for conn in self.sockets:
            conn.close()


@dataclass
class BrokerEnv:
    idp: IdpServer
    upstreams: dict[str, OidcUpstream]
    silent: SilentServer
    rogue: RogueUpstream

    def stop(self) -> None:
        self.idp.stop()
        for upstream in self.upstreams.values():
            upstream.stop()
        self.silent.stop()
        self.rogue.stop()

    def db(self) -> sqlite3.Connection:
        """The server's SQLite database, read-only."""
        path = self.idp.data_dir / "dge-identity.sqlite3"
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)

    def rows(self, sql: str, *params) -> list[tuple]:
        with self.db() as conn:
            return conn.execute(sql, params).fetchall()

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) FROM {table}")[0][0]

    def account_by_email(self, email: str) -> dict | None:
        with self.db() as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT * FROM accounts WHERE email_key = ?", (email.lower(),)
            ).fetchone()
        return dict(row) if row else None

    def links_of(self, account_id: str) -> list[tuple[str, str]]:
        return self.rows(
            "SELECT provider, subject FROM federated_links WHERE account_id = ? ORDER BY provider,"
            " subject",
            account_id,
        )

    def snapshot(self) -> tuple[int, int, int]:
        """Accounts, links and organisations: what a failed login must not change."""
        return (self.count("accounts"), self.count("federated_links"), self.count("organisations"))


def start_broker_env(work_dir: Path, server: IdpServer) -> BrokerEnv:
    base = server.base_url
    upstreams = {
        "proconnect": OidcUpstream(
            "proconnect", work_dir, base, "proconnect", also_for=["pc-restricted", "pc-basic"]
        ),
        "pc-rs256": OidcUpstream(
            "proconnect", work_dir, base, "pc-rs256",
            settings={"id_token_alg": "RS256", "userinfo_alg": "RS256"},
        ),
        "pc-json": OidcUpstream(
            "proconnect", work_dir, base, "pc-json", settings={"userinfo_alg": "none"}
        ),
        "region": OidcUpstream("region", work_dir, base, "region"),
    }
    silent = SilentServer()
    silent.start()
    rogue = RogueUpstream(CLIENT_ID)
    rogue.start()
    started = []
    try:
        for upstream in upstreams.values():
            upstream.start()
            started.append(upstream)
        pc = upstreams["proconnect"].issuer
        entries = [
            # Optional scopes, as a client allowed them on the partners' space.
            upstream_entry(
                "proconnect", pc, "proconnect",
                scopes=PROCONNECT_SCOPES + OPTIONAL_SCOPES,
            ),
            upstream_entry("region", upstreams["region"].issuer, "generic"),
            upstream_entry(
                "pc-restricted", pc, "proconnect",
                allow={
                    "email_domains": [ALLOWED_DOMAIN],
                    "idp_ids": [ALLOWED_IDP],
                    "roles": [ALLOWED_ROLE],
                    "sirets": [ALLOWED_SIRET],
                },
            ),
            upstream_entry("pc-basic", pc, "proconnect", token_auth="client_secret_basic"),
            upstream_entry("pc-rs256", upstreams["pc-rs256"].issuer, "proconnect"),
            upstream_entry("pc-json", upstreams["pc-json"].issuer, "proconnect"),
            upstream_entry("pc-down", f"http://127.0.0.1:{free_port()}/api/v2", "proconnect"),
            upstream_entry("rogue", rogue.issuer, "proconnect"),
            upstream_entry(
                "pc-slow", f"http://127.0.0.1:{silent.port}/api/v2", "proconnect", timeout_secs=1
            ),
        ]
        server.extra_env["DGE_UPSTREAMS_FILE"] = str(
            write_upstreams_file(work_dir / "upstreams.json", entries)
        )
        server.start()
    except Exception:
        for upstream in started:
            upstream.stop()
        silent.stop()
        rogue.stop()
        raise
    return BrokerEnv(server, upstreams, silent, rogue)


@dataclass
class Arrival:
    """The person back from the upstream: our callback's answer."""

    login_page: LoginPage
    authorize_url: str
    answer: requests.Response


def upstream_authorize_url(
    http: requests.Session, login_page: LoginPage, provider: str, **hints: str
) -> str:
    """Presses the provider's button on the login page; returns where it sends the browser."""
    button = pages.control_leading_to(
        login_page.response, f"/broker/{provider}/start", {"req": login_page.req}
    )
    url = requests.compat.urljoin(login_page.response.url, button["href"])
    if hints:
        url += "&" + requests.compat.urlencode(hints)
    answer = pages.get(http, url)
    return pages.location(answer)


def arrive(
    http: requests.Session,
    env: BrokerEnv,
    module: Module,
    provider: str,
    login: str,
    upstream: str | None = None,
    action: str = "login",
    **hints: str,
) -> Arrival:
    """From the module, through the provider's button and the upstream's login form, to
    our callback; returns our answer to the callback."""
    login_page = open_login_page(http, module)
    authorize_url = upstream_authorize_url(http, login_page, provider, **hints)
    callback = log_in_upstream(
        http, authorize_url, env.upstreams[upstream or provider], login, action=action
    )
    assert callback.startswith(f"{env.idp.base_url}/broker/{provider}/callback?"), callback
    return Arrival(login_page, authorize_url, pages.get(http, callback))


def proconnect_claims(email: str, **changes) -> dict:
    """What ProConnect says about an agent of the Région."""
    claims = {
        "given_name": "Jeanne Marie",
        "usual_name": "Dupont",
        "email": email,
        "uid": "jdupont",
        "siret": ALLOWED_SIRET,
        "idp_id": ALLOWED_IDP,
        "organization_label": "Région Grand Est (test)",
        "roles": [ALLOWED_ROLE],
        "phone_number": "+33388000000",
    }
    claims.update(changes)
    return claims


def tag() -> str:
    return secrets.token_hex(4)


def new_agent(env, upstream: str = "proconnect", domain: str = ALLOWED_DOMAIN, **changes):
    """A person known at the upstream; returns (login at the upstream = sub, email)."""
    login = f"agent-{tag()}"
    email = f"{login}@{domain}"
    env.upstreams[upstream].set_person(login, proconnect_claims(email, **changes))
    return login, email


def request_logout(http, url: str):
    """GET /logout without id_token_hint: the provider asks the person first (RP-initiated
    logout), and the person presses "Se déconnecter"; returns the answer to that."""
    asked = pages.get(http, url)
    assert asked.status_code == 200, f"expected the confirmation page, got {asked.status_code}"
    form = pages.form_with_field(asked, "confirm")
    return pages.submit(http, asked, form, {})


def logged_in(module: Module, arrival: Arrival) -> dict:
    """The module's side: the code exchanged, the ID token checked, userinfo read."""
    callback = module.callback_url(arrival.answer)
    token = module.exchange(callback, arrival.login_page.request)
    module.id_token_claims(token["id_token"], arrival.login_page.request.nonce)
    info = module.userinfo(token["access_token"])
    assert info.status_code == 200, info.text
    return info.json()


def broker_env_fixture(tmp_path_factory, request):
    """A broker environment per test module (see this module's docstring). Test
    modules make it a fixture: `env = pytest.fixture(scope="module", name="env")(...)`."""
    work_dir = tmp_path_factory.mktemp("broker")
    server = new_broker_idp(work_dir)
    _servers.append((request.node.nodeid, server))
    environment = start_broker_env(work_dir, server)
    yield environment
    environment.stop()


def datahub_fixture(env) -> Module:
    return Module.datahub(env.idp.base_url)


def assert_failed_nicely(env, arrival_answer, before, *phrases: str) -> None:
    """A French error page with a way back, and nothing created."""
    assert arrival_answer.status_code >= 400, arrival_answer.status_code
    assert pages.is_french_page(arrival_answer), arrival_answer.text[:500]
    text = pages.page_text(arrival_answer)
    for phrase in phrases:
        assert phrase in text, text
    pages.control_leading_to(arrival_answer, "/login")
    assert env.snapshot() == before
