"""Slow and idle HTTP clients cannot hold the server: head and request timeouts, the
connection cap, and recovery once descriptors run out (break-test finding H1)."""

from __future__ import annotations

import resource
import socket
import time

import requests

from idp_server import loopback_http

HEADER_TIMEOUT = 2
REQUEST_TIMEOUT = 3
MAX_CONNECTIONS = 48

LIMITS = {
    "DGE_HTTP_HEADER_TIMEOUT_SECS": str(HEADER_TIMEOUT),
    "DGE_HTTP_REQUEST_TIMEOUT_SECS": str(REQUEST_TIMEOUT),
    "DGE_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
}


def connect(server) -> socket.socket:
    host, port = server.http_addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def half_sent_head(server) -> socket.socket:
    """A connection that sends a request head without its closing blank line."""
    sock = connect(server)
    sock.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
    return sock


def seconds_until_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Reads until the server closes; returns the time it took and what it sent."""
    sock.settimeout(limit)
    start = time.monotonic()
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return time.monotonic() - start, received
        received += chunk


def healthz(server, timeout: float = 2.0) -> int:
    return loopback_http().get(f"{server.base_url}/healthz", timeout=timeout).status_code


def test_half_sent_head_and_idle_keep_alive_are_closed(start_idp):
    server = start_idp(LIMITS)

    waited, sent = seconds_until_closed(half_sent_head(server), limit=HEADER_TIMEOUT + 8)
    assert HEADER_TIMEOUT - 0.5 <= waited <= HEADER_TIMEOUT + 3, waited
    assert sent == b"" or sent.startswith(b"HTTP/1.1 408"), sent

    idle = connect(server)
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(5)
    answer = idle.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    waited, _ = seconds_until_closed(idle, limit=HEADER_TIMEOUT + 8)
    assert waited <= HEADER_TIMEOUT + 3, waited


def test_slow_body_gets_408(start_idp):
    server = start_idp(LIMITS)
    sock = connect(server)
    sock.sendall(
        b"POST /login HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000\r\n\r\nab"
    )
    waited, sent = seconds_until_closed(sock, limit=REQUEST_TIMEOUT + 8)
    assert sent.startswith(b"HTTP/1.1 408"), sent
    assert b'lang="fr"' in sent and "Délai dépassé".encode() in sent, sent
    assert b"x-frame-options: deny" in sent.lower(), sent
    assert REQUEST_TIMEOUT - 0.5 <= waited <= REQUEST_TIMEOUT + 3, waited


def test_healthz_answers_while_slow_clients_hang(start_idp):
    server = start_idp(LIMITS)
    slow = [half_sent_head(server) for _ in range(MAX_CONNECTIONS // 2)]
    try:
        for _ in range(5):
            assert healthz(server) == 200
    finally:
        for sock in slow:
            sock.close()


def test_recovers_after_connection_cap_and_descriptor_exhaustion(start_idp):
    server = start_idp(LIMITS)
    # Few descriptors, as under a tight `ulimit -n`: the cap (48) keeps some free.
    resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (128, 128))
    slow = []
    try:
        for _ in range(300):
            try:
                slow.append(half_sent_head(server))
            except OSError:
                break  # the backlog is full: the flood is as large as it gets
        assert len(slow) > MAX_CONNECTIONS
        assert serves_again(server, within=HEADER_TIMEOUT + 15), (
            "the server did not recover once the slow clients timed out"
        )
        assert "too many open connections" in server.log()
    finally:
        for sock in slow:
            sock.close()
    # Closing the flood leaves its queued connections in the backlog: the server accepts
    # them one by one and may refuse a newcomer for a moment before they are gone.
    assert serves_again(server, within=10, in_a_row=3), (
        "the server did not recover after the flood closed"
    )


def serves_again(server, within: float, in_a_row: int = 1) -> bool:
    """True once `/healthz` answers 200 `in_a_row` times running before `within` seconds."""
    deadline = time.monotonic() + within
    running = 0
    while time.monotonic() < deadline:
        try:
            running = running + 1 if healthz(server, timeout=1) == 200 else 0
        except requests.RequestException:
            running = 0
        if running >= in_a_row:
            return True
        time.sleep(0.05 if running else 0.2)
    return False
