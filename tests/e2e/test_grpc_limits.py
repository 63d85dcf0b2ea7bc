"""The gRPC port under idle and malformed clients (issue 9): a connection cap, a
deadline for the HTTP/2 handshake, and INVALID_ARGUMENT for a body that is not the
method's protobuf message."""

from __future__ import annotations

import socket
import time

import grpc
import pytest

from grpc_api import bearer

HANDSHAKE_TIMEOUT = 2
MAX_CONNECTIONS = 16
LIMITS = {
    "DGE_GRPC_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "DGE_GRPC_HANDSHAKE_TIMEOUT_SECS": str(HANDSHAKE_TIMEOUT),
}
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# grpc.health.v1.HealthCheckResponse{status: SERVING}
SERVING = b"\x08\x01"


def raw_call(server, method: str, body: bytes, token: str | None = None, timeout: float = 5.0):
    """One unary call sending `body` as the message bytes, on a fresh channel."""
    channel = grpc.insecure_channel(server.grpc_addr, options=[("grpc.enable_http_proxy", 0)])
    try:
        call = channel.unary_unary(method)
        metadata = bearer(token) if token else None
        return call(body, metadata=metadata, timeout=timeout)
    finally:
        channel.close()


def health(server, timeout: float = 2.0) -> bytes:
    return raw_call(server, "/grpc.health.v1.Health/Check", b"", timeout=timeout)


def idle_sockets(server, count: int) -> list[socket.socket]:
    host, port = server.grpc_addr.rsplit(":", 1)
    return [socket.create_connection((host, int(port)), timeout=5) for _ in range(count)]


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    sock.settimeout(limit)
    start = time.monotonic()
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def test_idle_connections_below_the_cap_do_not_delay_others(start_idp):
    server = start_idp(LIMITS)
    idle = idle_sockets(server, MAX_CONNECTIONS // 2)
    started = time.monotonic()
    assert health(server) == SERVING
    assert time.monotonic() - started < 1.5
    # Each is closed once the handshake deadline has passed.
    for sock in idle:
        assert seconds_until_closed(sock, HANDSHAKE_TIMEOUT + 5) <= HANDSHAKE_TIMEOUT + 2
        sock.close()


def test_many_idle_connections_are_shed_and_health_still_answers(start_idp):
    server = start_idp(LIMITS)
    idle = idle_sockets(server, 200)
    # Beyond the cap, connections are closed at once; the others when their handshake
    # deadline passes: nothing is held for ever.
    closed_after = [seconds_until_closed(sock, HANDSHAKE_TIMEOUT + 8) for sock in idle]
    for sock in idle:
        sock.close()
    assert max(closed_after) <= HANDSHAKE_TIMEOUT + 3, max(closed_after)
    # A half-done handshake (the preface, no SETTINGS) does not hold either.
    (half,) = idle_sockets(server, 1)
    half.sendall(PREFACE)
    assert seconds_until_closed(half, HANDSHAKE_TIMEOUT + 8) <= HANDSHAKE_TIMEOUT + 2
    half.close()

    # While 200 more idle sockets come and go, the health check keeps answering
    # within a couple of handshake deadlines.
    idle = idle_sockets(server, 200)
    deadline = time.monotonic() + 3 * HANDSHAKE_TIMEOUT + 5
    answered = None
    while answered is None and time.monotonic() < deadline:
        try:
            answered = health(server, timeout=HANDSHAKE_TIMEOUT + 1)
        except grpc.RpcError:
            time.sleep(0.2)
    for sock in idle:
        sock.close()
    assert answered == SERVING
    # And once they are gone, at once.
    assert health(server) == SERVING
    assert "gRPC connection refused: too many open connections" in server.log()


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff",  # wire type 7 does not exist
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # a length that overflows
        b"\x0a\x05ab",  # a string field cut short
        b"\x0a\x02\xc3\x28",  # a string field that is not UTF-8
    ],
    ids=["wire-type", "varint", "truncated", "utf8"],
)
def test_garbage_protobuf_is_invalid_argument(idp, body):
    with pytest.raises(grpc.RpcError) as refused:
        raw_call(
            idp,
            "/dge.identity.v1.AccountRegistry/GetAccount",
            body,
            token=idp.admin_token(),
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
    assert "decode" in refused.value.details(), refused.value.details()
    # A well-formed call on the same method still reaches the service.
    with pytest.raises(grpc.RpcError) as missing:
        raw_call(
            idp,
            "/dge.identity.v1.AccountRegistry/GetAccount",
            b"\x0a\x07nobody1",
            token=idp.admin_token(),
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND, missing.value
