"""A Redis that goes silent (a network fault: connections stay open, nothing comes
back) costs the requests that need it a quick French 503 with Retry-After, never a
hang, and the server works again as soon as Redis answers. The silence is a proxy
on loopback in front of the machine's Redis that stops passing bytes on."""

from __future__ import annotations

import secrets
import socket
import threading
import time

import pages
from idp_server import loopback_http
from portal import Module

REDIS = ("127.0.0.1", 6379)


class FreezingProxy:
    """Passes bytes both ways between its clients and Redis, except while frozen."""

    def __init__(self) -> None:
        self.thawed = threading.Event()
        self.thawed.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(REDIS, timeout=5)
            server.settimeout(None)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pass_on, args=(a, b), daemon=True).start()

    def _pass_on(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(16384):
                self.thawed.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.thaw()
        self.listener.close()


def wrong_secret(http, server):
    return http.post(
        f"{server.base_url}/token",
        data={"grant_type": "client_credentials"},
        auth=("datahub", "pas-le-bon-secret"),
        timeout=30,
    )


def test_a_silent_redis_gets_a_quick_french_503_then_service_resumes(start_idp):
    proxy = FreezingProxy()
    try:
        server = start_idp(
            {
                "DGE_DEV_REDIS_URL": f"redis://127.0.0.1:{proxy.port}",
                "DGE_DEV_REDIS_PREFIX": f"dge-e2e-{secrets.token_hex(6)}:",
            }
        )
        module = Module.datahub(server.base_url)
        http = loopback_http()
        # /authorize counts requests per address in Redis.
        answer = http.get(module.authorization_request().url, allow_redirects=False, timeout=10)
        assert answer.status_code == 303, answer.text[:500]

        proxy.freeze()
        started = time.monotonic()
        answer = http.get(module.authorization_request().url, allow_redirects=False, timeout=30)
        waited = time.monotonic() - started
        assert answer.status_code == 503, answer.text[:500]
        assert answer.headers["Retry-After"] == "5"
        assert pages.is_french_page(answer)
        text = pages.page_text(answer)
        assert "Service momentanément indisponible" in text, text
        assert "Réessayez dans quelques secondes" in text, text
        # The call's deadline is 2 s by default; the guard above is 30 s.
        assert waited < 10, f"answered after {waited:.1f} s"
        # A failed client authentication is counted in Redis too: the token endpoint
        # answers at once, with an error clients do not retry by themselves (a code
        # or refresh token may be spent by a call that timed out).
        started = time.monotonic()
        answer = wrong_secret(http, server)
        assert time.monotonic() - started < 10
        assert answer.status_code == 500, answer.text
        assert answer.json()["error"] == "server_error", answer.text

        proxy.thaw()
        deadline = time.monotonic() + 15
        while True:
            answer = http.get(
                module.authorization_request().url, allow_redirects=False, timeout=10
            )
            if answer.status_code == 303 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert answer.status_code == 303, answer.text[:500]
        # The token endpoint counts again: a wrong secret is its usual 401.
        answer = wrong_secret(http, server)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "invalid_client", answer.text
        assert server.is_running()
        assert "panicked" not in server.log()
    finally:
        proxy.close()
