"""Helpers of the OpenID Connect provider tests: logged-in browsers, token endpoint
calls by hand, extra clients registered with dgectl, the openid-client relying party."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from authlib.jose import JsonWebKey, jwt

import pages
from dgectl import Dgectl
from idp_server import REPO_ROOT, clean_env, loopback_http
from portal import DATAHUB_SECRET, AuthorizationRequest, LoginPage, Module, submit_login

RP_NODE = REPO_ROOT / "tests" / "rp-node"
RP_TIMEOUT_SECS = 60


@dataclass
class LoggedIn:
    """A browser with a session, and the module's tokens from its first login."""

    http: requests.Session
    request: AuthorizationRequest
    callback: str
    tokens: dict


def follow_to_login(http: requests.Session, url: str, base_url: str) -> LoginPage:
    """From an authorization URL to the login page it leads to."""
    answer = pages.get(http, url)
    target = pages.location(answer)
    assert target.startswith(f"{base_url}/login?"), f"/authorize sent the person to {target}"
    page = pages.get(http, target)
    assert page.status_code == 200, f"/login answered {page.status_code}:\n{page.text[:2000]}"
    return LoginPage(None, pages.query_of(target)["req"], page)


def log_in_and_exchange(module: Module, person, **extra: str) -> LoggedIn:
    http = pages.browser()
    request = module.authorization_request(**extra)
    login_page = follow_to_login(http, request.url, module.discovery["issuer"])
    answer = submit_login(http, login_page, person.login, person.password)
    callback = module.callback_url(answer)
    return LoggedIn(http, request, callback, module.exchange(callback, request))


def post_form(url: str, data: dict, auth: tuple[str, str] | None = None) -> requests.Response:
    return loopback_http().post(url, data=data, auth=auth, timeout=pages.HTTP_TIMEOUT_SECS)


def introspect(discovery: dict, token: str, client=("datahub", DATAHUB_SECRET)) -> dict:
    answer = post_form(discovery["introspection_endpoint"], {"token": token}, auth=client)
    assert answer.status_code == 200, f"introspection answered {answer.status_code}: {answer.text}"
    return answer.json()


def token_request(discovery: dict, data: dict, auth=None) -> requests.Response:
    return post_form(discovery["token_endpoint"], data, auth=auth)


def jwt_header(token: str) -> dict:
    head = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwks(discovery: dict) -> dict:
    answer = loopback_http().get(discovery["jwks_uri"], timeout=pages.HTTP_TIMEOUT_SECS)
    assert answer.status_code == 200, answer.text
    return answer.json()


def kids(discovery: dict) -> set[str]:
    return {key["kid"] for key in jwks(discovery)["keys"]}


def verify_jwt(discovery: dict, token: str, audience: str):
    """Signature against the published JWKS, then iss and aud, by authlib's rules."""
    claims = jwt.decode(
        token,
        JsonWebKey.import_key_set(jwks(discovery)),
        claims_options={
            "iss": {"essential": True, "value": discovery["issuer"]},
            "aud": {"essential": True, "value": audience},
            "sub": {"essential": True},
        },
    )
    claims.validate(leeway=5)
    return claims


@dataclass
class Registered:
    id: str
    secret: str | None
    redirect_uri: str
    document: dict


def register_client(dgectl: Dgectl, prefix: str, *flags: str) -> Registered:
    """Registers a client with a fresh id through `dgectl clients add`."""
    client_id = f"{prefix}-{secrets.token_hex(3)}"
    redirect_uri = f"http://localhost:{9000 + secrets.randbelow(900)}/callback"
    document = dgectl.json("clients", "add", client_id, "--redirect-uri", redirect_uri, *flags)
    return Registered(client_id, document.get("client_secret"), redirect_uri, document)


def service_assertion(discovery: dict, client_id: str, key, **overrides) -> str:
    """A private_key_jwt client assertion (RFC 7523) signed with `key`."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": discovery["token_endpoint"],
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
        **overrides,
    }
    header = {"alg": "ES256", "kid": key.as_dict()["kid"]}
    return jwt.encode(header, claims, key).decode()


class NodeRelyingParty:
    """tests/rp-node/rp.js: a module written with openid-client, driven line by line."""

    def __init__(self, config: dict):
        script = RP_NODE / "rp.js"
        if not (RP_NODE / "node_modules" / "openid-client").is_dir():
            raise AssertionError(
                "openid-client is not installed: run `npm ci --prefix tests/rp-node`"
                " (tests/run-all.sh does)"
            )
        self.process = subprocess.Popen(
            ["node", str(script), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=RP_NODE,
        )

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=RP_TIMEOUT_SECS)
            raise AssertionError(f"rp.js ended early; stderr:\n{self.process.stderr.read()}")
        message = json.loads(line)
        assert "failure" not in message, f"openid-client refused: {message['failure']}"
        return message

    def send(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=RP_TIMEOUT_SECS)


def ec_key(kid: str = "k1"):
    """A P-256 key whose public JWK has full-length coordinates (RFC 7518 §6.2.1.2).

    authlib writes a coordinate without its leading zero bytes (one key in ~128):
    verifiers that follow the RFC refuse such a key, so the tests that need a plain key
    draw again (`test_private_key_jwt_with_an_authlib_key_missing_leading_zeros` uses
    a short one on purpose).
    """
    while True:
        key = JsonWebKey.generate_key("EC", "P-256", is_private=True, options={"kid": kid})
        public = key.as_dict(is_private=False)
        if all(len(base64.urlsafe_b64decode(public[c] + "==")) == 32 for c in ("x", "y")):
            return key


def write_jwks(path: Path, key) -> Path:
    path.write_text(json.dumps({"keys": [key.as_dict(is_private=False)]}), encoding="utf-8")
    return path


class BackchannelReceiver:
    """A module's back-channel logout endpoint on a loopback port: records each POST."""

    def __init__(self):
        import http.server
        import threading
        from urllib.parse import parse_qs

        received: list[dict] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the standard library's name)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                received.append({k: v[0] for k, v in parse_qs(body).items()})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.received = received
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel-logout"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
