"""Upstream identity providers on loopback for the broker tests.

- `OidcUpstream`: the real `oidc-provider` package (tests/upstream/server.mjs), configured
  like ProConnect (issuer under /api/v2, its scopes and claims, ES256, signed userinfo,
  client_secret_post, acr values) or like the Région (generic OIDC, RS256, plain JSON
  userinfo, client_secret_basic).
- `BrokerIdp`: a `dge-idp dev` whose upstreams file points at those providers.
- `log_in_upstream`: the person's browser through the upstream's login form and back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

import pages
from idp_server import REPO_ROOT, IdpServer, clean_env, free_port, new_idp_server

UPSTREAM_DIR = REPO_ROOT / "tests" / "upstream"
READY_TIMEOUT_SECS = 60.0
CLIENT_ID = "dge-identity"
CLIENT_SECRET = "upstream-client-secret-for-the-tests-0123456789"

# A SIRET of the seeded directory? The seed has none, so tests use their own.
PROCONNECT_ACR = ["eidas1", "eidas2"]


def node_binary() -> str:
    node = shutil.which("node")
    assert node, "node is not on PATH: the broker tests run the oidc-provider package with Node.js"
    return node


@dataclass
class OidcUpstream:
    """One `oidc-provider` instance on 127.0.0.1."""

    profile: str  # "proconnect" or "region"
    work_dir: Path
    idp_base_url: str
    provider_name: str
    # Other provider names of ours pointing at this same upstream (their callbacks are
    # registered too), and overrides of server.mjs settings (id_token_alg, userinfo_alg).
    also_for: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    accounts: dict = field(default_factory=dict)
    output: list[str] = field(default_factory=list)

    def wait_for_line(self, line: str, since: int, timeout: float = 10.0) -> None:
        """Waits until the upstream printed `line` after its first `since` lines (its
        output is read by a thread, so it may lag behind the HTTP answers)."""
        deadline = time.monotonic() + timeout
        while line not in self.output[since:]:
            assert time.monotonic() < deadline, f"upstream never printed {line!r}: {self.output[since:]}"
            time.sleep(0.05)

    @property
    def base_path(self) -> str:
        return "/api/v2" if self.profile == "proconnect" else ""

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.origin}{self.base_path}"

    @property
    def names(self) -> list[str]:
        return [self.provider_name, *self.also_for]

    @property
    def accounts_file(self) -> Path:
        return self.work_dir / f"{self.provider_name}-accounts.json"

    def set_person(self, login: str, claims: dict, acr: str = "eidas1") -> None:
        """Adds or changes a person; read again by the upstream on every lookup."""
        self.accounts[login] = {"acr": acr, "claims": claims}
        tmp = self.accounts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.accounts), encoding="utf-8")
        tmp.replace(self.accounts_file)

    def start(self) -> None:
        if not (UPSTREAM_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                "tests/upstream/node_modules is missing: run `npm ci --prefix tests/upstream`"
                " (tests/run-all.sh does)"
            )
        self.set_person("nobody", {"email": "nobody@example.org"})
        config = {
            "port": self.port,
            "base_path": self.base_path,
            "profile": self.profile,
            "accounts_file": str(self.accounts_file),
            "client": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [
                    f"{self.idp_base_url}/broker/{name}/callback" for name in self.names
                ],
                "post_logout_redirect_uris": [
                    f"{self.idp_base_url}/broker/{name}/logged-out" for name in self.names
                ],
            },
            **self.settings,
        }
        config_path = self.work_dir / f"{self.provider_name}-upstream.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        # A second try on the same port (the issuer is already in our upstreams file):
        # once in CI, on a machine loaded by a second suite, Node printed its runtime
        # warning and then nothing for 60 s. The error says how the process ended.
        for attempt in (1, 2):
            if self._launch(config_path):
                return
            state = self.process.poll()
            self.stop()
            failure = (
                f"oidc-provider did not start (try {attempt} of 2, "
                f"{'still running' if state is None else f'exit status {state}'} after "
                f"{READY_TIMEOUT_SECS:.0f} s):\n" + "\n".join(self.output)
            )
            print(failure)
            self.output.clear()
        raise RuntimeError(failure)

    def _launch(self, config_path: Path) -> bool:
        """Starts server.mjs; true once it printed its ready line."""
        self.process = subprocess.Popen(
            [node_binary(), str(UPSTREAM_DIR / "server.mjs"), str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(),
            cwd=UPSTREAM_DIR,
        )
        ready = threading.Event()

        def pump():
            for line in self.process.stdout:
                self.output.append(line.rstrip())
                if line.startswith("ready "):
                    ready.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        while not ready.wait(0.2):
            if time.monotonic() > deadline or not reader.is_alive():
                return ready.is_set()
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def upstream_entry(name: str, upstream_issuer: str, kind: str, **extra) -> dict:
    """One entry of the upstreams file."""
    entry = {
        "name": name,
        "label": "ProConnect" if kind == "proconnect" else "La Région Grand Est",
        "kind": kind,
        "issuer": upstream_issuer,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "timeout_secs": 3,
    }
    if kind == "proconnect":
        entry["acr_values"] = PROCONNECT_ACR
    else:
        entry["token_auth"] = "client_secret_basic"
        entry["userinfo_signed"] = False
    entry.update(extra)
    return entry


def write_upstreams_file(path: Path, entries: list[dict]) -> Path:
    path.write_text(json.dumps({"upstreams": entries}, indent=2), encoding="utf-8")
    return path


def new_broker_idp(work_dir: Path) -> IdpServer:
    """A server description (not started) whose ports are known before the upstreams start."""
    data_dir = work_dir / "data"
    data_dir.mkdir()
    return new_idp_server(data_dir, work_dir / "dge-idp.log")


def start_with_upstreams(server: IdpServer, upstreams_file: Path) -> IdpServer:
    server.extra_env["DGE_UPSTREAMS_FILE"] = str(upstreams_file)
    server.start()
    return server


def is_on(url: str, origin: str) -> bool:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" == origin


def follow_upstream(
    http: requests.Session, url: str, upstream_origin: str, limit: int = 10
) -> requests.Response:
    """GETs `url` and follows redirects while they stay on the upstream."""
    answer = pages.get(http, url)
    for _ in range(limit):
        if not answer.is_redirect:
            return answer
        target = pages.location(answer)
        if not is_on(target, upstream_origin):
            return answer
        answer = pages.get(http, target)
    raise AssertionError(f"too many redirects at the upstream, last {answer.url}")


def log_in_upstream(
    http: requests.Session, authorize_url: str, upstream: OidcUpstream, login: str,
    action: str = "login",
) -> str:
    """From the upstream's authorization URL to our callback URL (not followed)."""
    page = follow_upstream(http, authorize_url, upstream.origin)
    assert page.status_code == 200, f"upstream login page: {page.status_code} {page.text[:500]}"
    form = pages.form_with_field(page, "login")
    target = requests.compat.urljoin(page.url, form["action"])
    answer = pages.post(http, target, {"login": login, "action": action})
    for _ in range(10):
        assert answer.is_redirect, f"upstream answered {answer.status_code}: {answer.text[:1000]}"
        target = pages.location(answer)
        if not is_on(target, upstream.origin):
            return target
        answer = pages.get(http, target)
    raise AssertionError("the upstream never sent the browser back")


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met after {timeout:.0f} s")
