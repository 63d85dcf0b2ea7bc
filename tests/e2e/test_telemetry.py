"""OpenTelemetry: spans exported over OTLP/HTTP to a collector, only when configured.

The collector is a loopback HTTP server of the test's own that decodes each
`POST /v1/traces` with the OTLP protobuf definitions (opentelemetry-proto).
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from idp_server import free_ports, loopback_http
from test_replicas import KEY, Replica


class Collector:
    """Records the spans posted to `/v1/traces` as (service name, span name, attributes)."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, dict[str, str]]] = []
        self.posts = 0
        lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    collector.posts += 1
                    for resource_spans in request.resource_spans:
                        service = next(
                            (a.value.string_value for a in resource_spans.resource.attributes
                             if a.key == "service.name"),
                            "",
                        )
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                attributes = {a.key: a.value.string_value for a in span.attributes}
                                collector.spans.append((service, span.name, attributes))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def write_config(tmp_path: Path, public_url: str, telemetry: str = "") -> Path:
    config = tmp_path / "dge-idp.toml"
    config.write_text(
        f'[server]\npublic_url = "{public_url}"\n'
        f'[database]\nurl = "sqlite://{tmp_path / "idp.sqlite3"}?mode=rwc"\n'
        f'[keys]\nencryption_key = "{KEY}"\n'
        f'[mail]\nfrom = "DataGrandEst <no-reply@datagrandest.fr>"\noutbox_dir = "{tmp_path / "outbox"}"\n'
        + telemetry,
        encoding="utf-8",
    )
    return config


def new_replica(tmp_path: Path, name: str) -> Replica:
    http_port, grpc_port = free_ports(2)
    return Replica(name, f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", tmp_path / f"{name}.log")


def test_spans_reach_the_configured_collector(tmp_path, collector):
    server = new_replica(tmp_path, "traced")
    service = f"dge-idp-test-{secrets.token_hex(4)}"
    # The endpoint comes from the environment, overriding the file like every setting.
    config = write_config(tmp_path, server.base_url, '[telemetry]\notlp_endpoint = "http://127.0.0.1:1"\n')
    server.start(config, {
        "DGE_TELEMETRY__OTLP_ENDPOINT": collector.endpoint,
        "DGE_TELEMETRY__SERVICE_NAME": service,
    })
    try:
        request_id = f"otel-{secrets.token_hex(6)}"
        answer = loopback_http().get(f"{server.base_url}/jwks", headers={"x-request-id": request_id}, timeout=5)
        assert answer.status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(
                s == service and a.get("route") == "/jwks" and a.get("request_id") == request_id
                for s, _, a in list(collector.spans)
            ):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no /jwks span from {service}: {collector.spans[:20]}\n{server.log_path.read_text()[-2000:]}")
        assert all(s == service for s, _, _ in collector.spans)
    finally:
        assert server.stop() == 0


def test_nothing_is_sent_when_telemetry_is_not_configured(tmp_path, collector):
    server = new_replica(tmp_path, "untraced")
    # Even the SDK's standard variables do not turn export on: only [telemetry] does.
    server.start(write_config(tmp_path, server.base_url), {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "should-not-appear",
    })
    try:
        for path in ("/jwks", "/.well-known/openid-configuration", "/healthz"):
            assert loopback_http().get(f"{server.base_url}{path}", timeout=5).status_code == 200
    finally:
        # Stopping flushes whatever an exporter would have queued.
        assert server.stop() == 0
    time.sleep(1)
    assert collector.posts == 0, collector.spans


def test_a_collector_that_is_down_never_holds_requests(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    # Nothing listens on `closed` any more: every export is refused.
    server = new_replica(tmp_path, "collector-down")
    server.start(write_config(
        tmp_path, server.base_url, f'[telemetry]\notlp_endpoint = "http://127.0.0.1:{closed}"\n',
    ))
    http = loopback_http()
    slowest = 0.0
    # Several export rounds (one every 2 s) fail while requests keep coming.
    until = time.monotonic() + 6
    while time.monotonic() < until:
        started = time.monotonic()
        assert http.get(f"{server.base_url}/jwks", timeout=5).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    assert slowest < 1.0, f"a request took {slowest:.2f} s"
    assert http.get(f"{server.base_url}/readyz", timeout=5).status_code == 200
    started = time.monotonic()
    assert server.stop() == 0, server.log_path.read_text()[-2000:]
    assert time.monotonic() - started < 10
