"""A misbehaving upstream OpenID Connect provider on 127.0.0.1, for the broker tests.

It answers discovery, JWKS, authorization (straight back with a code, no login form),
token and userinfo like a ProConnect-shaped provider, except that `mode` makes its ID
token or userinfo wrong in one way: signed with another key, `alg: none`, another
issuer or audience, expired, or another nonce. With mode "ok" it behaves, which
shows the failures come from the fault and not from the stand-in.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from authlib.jose import jwt

from oidc import ec_key

BASE_PATH = "/api/v2"
KID = "rogue-es256"
MODES = (
    "ok",
    "bad_signature",
    "alg_none",
    "wrong_iss",
    "wrong_aud",
    "expired",
    "wrong_nonce",
    "userinfo_bad_signature",
)


def b64(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class RogueUpstream:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.port = 0  # chosen by the kernel when start() binds
        self.key = ec_key(KID)
        self.other_key = ec_key(KID)
        self.mode = "ok"
        self.person: dict = {}
        self.nonces: dict[str, str] = {}  # code -> nonce of its authorization request
        self.server: ThreadingHTTPServer | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{BASE_PATH}"

    def start(self) -> None:
        rogue = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                rogue.handle(self, "GET")

            def do_POST(self) -> None:
                rogue.handle(self, "POST")

        # Port 0: bound at once to a port the kernel picks, never one that another
        # process could take between a choice and the bind.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # --- answers ------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        path = parts.path.removeprefix(BASE_PATH)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if method == "GET" and path == "/.well-known/openid-configuration":
            return self.send_json(request, self.discovery())
        if method == "GET" and path == "/jwks":
            return self.send_json(request, {"keys": [self.key.as_dict(is_private=False)]})
        if method == "GET" and path == "/authorize":
            code = secrets.token_urlsafe(16)
            self.nonces[code] = query.get("nonce", "")
            target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
            request.send_response(303)
            request.send_header("Location", target)
            request.end_headers()
            return None
        if method == "POST" and path == "/token":
            length = int(request.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(request.rfile.read(length).decode()).items()}
            nonce = self.nonces.pop(form.get("code", ""), None)
            if nonce is None:
                return self.send_json(request, {"error": "invalid_grant"}, status=400)
            return self.send_json(
                request,
                {
                    "access_token": secrets.token_urlsafe(24),
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "id_token": self.id_token(nonce),
                },
            )
        if method == "GET" and path == "/userinfo":
            return self.send(request, "application/jwt", self.userinfo().encode())
        return self.send(request, "text/plain", b"not found", status=404)

    def send_json(self, request, document: dict, status: int = 200) -> None:
        self.send(request, "application/json", json.dumps(document).encode(), status)

    def send(self, request, content_type: str, body: bytes, status: int = 200) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def discovery(self) -> dict:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "end_session_endpoint": f"{base}/session/end",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "userinfo_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }

    def sign(self, claims: dict, key=None) -> str:
        header = {"alg": "ES256", "kid": KID, "typ": "JWT"}
        return jwt.encode(header, claims, key or self.key).decode()

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": self.person["sub"],
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "acr": "eidas1",
        }
        mode = self.mode
        if mode == "wrong_iss":
            claims["iss"] = "http://127.0.0.1:1/api/v2"
        elif mode == "wrong_aud":
            claims["aud"] = "another-client"
        elif mode == "expired":
            claims["iat"], claims["exp"] = now - 7200, now - 3600
        elif mode == "wrong_nonce":
            claims["nonce"] = secrets.token_urlsafe(32)
        if mode == "alg_none":
            return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
        return self.sign(claims, self.other_key if mode == "bad_signature" else None)

    def userinfo(self) -> str:
        claims = {"iss": self.issuer, "aud": self.client_id, **self.person}
        if self.mode == "userinfo_bad_signature":
            return self.sign(claims, self.other_key)
        return self.sign(claims)
