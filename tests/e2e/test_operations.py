"""Operations: probes, request ids, Prometheus metrics and the configuration checker."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import uuid

import grpc
import pytest

from idp_server import clean_env, free_port, idp_binary, loopback_http
import pages
from portal import Module, open_login_page, register_pending_person, submit_login


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name{labels...}` in a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"([a-z_]+)(\{.*\})? ([0-9.e+-]+|NaN)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_probes_request_ids_and_metrics(start_idp, grpc_pb):
    metrics_addr = f"127.0.0.1:{free_port()}"
    server = start_idp({"DGE_METRICS_ADDR": metrics_addr})
    http = loopback_http()

    assert http.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    assert http.get(f"{server.base_url}/readyz", timeout=5).status_code == 200

    # Every answer carries a request id; a plausible one from a proxy is kept.
    generated = http.get(f"{server.base_url}/.well-known/openid-configuration", timeout=5)
    assert uuid.UUID(generated.headers["x-request-id"])
    mine = "proxy-7f3a9c"
    kept = http.get(f"{server.base_url}/jwks", headers={"x-request-id": mine}, timeout=5)
    assert kept.headers["x-request-id"] == mine

    # Metrics stay off the public port.
    assert http.get(f"{server.base_url}/metrics", timeout=5).status_code == 404

    # Some traffic: a pending sign-up, a wrong password, a gRPC call that fails.
    datahub = Module.datahub(server.base_url)
    person = register_pending_person(server, datahub)
    browser = pages.browser()
    refused = submit_login(browser, open_login_page(browser, datahub), person.login, "Pas-le-bon-1!xyz")
    assert refused.status_code == 401
    channel = grpc.insecure_channel(server.grpc_addr, options=[("grpc.enable_http_proxy", 0)])
    stub = grpc_pb.authorization_grpc.AuthorizationStub(channel)
    with pytest.raises(grpc.RpcError) as refused_call:
        stub.Check(grpc_pb.authorization.CheckRequest(access_token="x", right="datahub:publish"), timeout=5)
    assert refused_call.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)
    # gRPC answers carry one too (sent as a never-indexed HTTP/2 header), fresh each
    # time or the caller's own; a refusal's headers come with its status, as trailers.
    def answered_id(error: grpc.RpcError) -> str:
        return dict([*error.initial_metadata(), *error.trailing_metadata()])["x-request-id"]

    grpc_ids = []
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as again:
            stub.Check(grpc_pb.authorization.CheckRequest(access_token="x", right="datahub:publish"), timeout=5)
        grpc_ids.append(answered_id(again.value))
    assert len({str(uuid.UUID(i)) for i in grpc_ids}) == 3, grpc_ids
    with pytest.raises(grpc.RpcError) as traced:
        stub.Check(
            grpc_pb.authorization.CheckRequest(access_token="x", right="datahub:publish"),
            metadata=[("x-request-id", mine)],
            timeout=5,
        )
    assert answered_id(traced.value) == mine
    channel.close()

    # The gauges are read from the database at each scrape.
    page = http.get(f"http://{metrics_addr}/metrics", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text
    assert metric_value(
        text, "dge_http_requests_total", route="/.well-known/openid-configuration", method="GET", status="200"
    ) >= 1, text
    assert metric_value(text, "dge_http_request_duration_seconds_count", route="/jwks", method="GET") >= 1
    assert metric_value(text, "dge_grpc_requests_total", method="/dge.identity.v1.Authorization/Check") >= 1
    assert metric_value(text, "dge_accounts", status="pending") >= 1, text
    assert metric_value(text, "dge_logins_total", method="password", outcome="bad_credentials") >= 1, text
    assert metric_value(text, "dge_outbox_emails", status="queued") is not None
    # Raw paths never become labels.
    http.get(f"{server.base_url}/no-such-page-{uuid.uuid4().hex}", timeout=5)
    text = http.get(f"http://{metrics_addr}/metrics", timeout=5).text
    assert "no-such-page" not in text


def test_worker_threads_are_set_by_option_and_checked(start_idp, monkeypatch):
    # NO_COLOR would hide colour codes whatever the server does with a file.
    monkeypatch.delenv("NO_COLOR", raising=False)
    server = start_idp({"DGE_WORKER_THREADS": "3"})
    # Written to a file, the log holds no terminal colour codes.
    assert "\x1b[" not in server.log()
    assert re.search(r"dge-idp ready.*worker_threads=3", server.log()), server.log_tail()
    for bad in ("0", "1025", "deux"):
        result = subprocess.run(
            [str(idp_binary()), "--worker-threads", bad, "config-example"],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, result
        assert f"invalid value '{bad}' for '--worker-threads" in result.stderr, result.stderr
        assert result.stdout == ""


def test_check_config_names_each_bad_key_and_never_a_secret(tmp_path):
    config = tmp_path / "dge-idp.toml"
    config.write_text(
        '[server]\npublic_url = "http://portal.example.fr"\n'
        '[keys]\nencryption_key = "tooshort"\n'
        '[database]\nurl = "mysql://root:hunter2@db/x"\nmax_conections = 4\n'
        '[mail]\nfrom = "x"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [str(idp_binary()), "check-config", "--config", str(config)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "database.max_conections: unknown key" in output, output
    assert "hunter2" not in output and "tooshort" not in output, output

    config.write_text(
        '[server]\npublic_url = "http://portal.example.fr"\n'
        '[keys]\nencryption_key = "tooshort"\n'
        '[database]\nurl = "mysql://root:hunter2@db/x"\n'
        '[mail]\nfrom = "x"\n',
        encoding="utf-8",
    )
    result = subprocess.run(
        [str(idp_binary()), "check-config", "--config", str(config)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for key in ("server.public_url", "keys.encryption_key", "database.url", "mail.from"):
        assert key in output, output
    assert "hunter2" not in output and "tooshort" not in output, output

    example = subprocess.run(
        [str(idp_binary()), "config-example"], capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert example.returncode == 0
    config.write_text(
        example.stdout.replace("REPLACE-WITH-openssl-rand-base64-32", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        encoding="utf-8",
    )
    result = subprocess.run(
        [str(idp_binary()), "check-config", "--config", str(config)],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration is valid" in result.stdout


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(start_idp):
    server = start_idp()
    host, port = server.http_addr.rsplit(":", 1)
    body = b"grant_type=authorization_code&code=nothing-of-ours&redirect_uri=http%3A%2F%2Flocalhost%2F"
    # A request in flight: headers sent, half of the body still to come.
    slow = socket.create_connection((host, int(port)), timeout=10)
    slow.sendall(
        b"POST /token HTTP/1.1\r\nHost: " + server.http_addr.encode()
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n"
        + body[:20]
    )
    time.sleep(0.3)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    # Still draining, and the listener is closed: no new connection is accepted.
    assert server.process.poll() is None, server.log_tail()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()
    # The request in flight completes with its answer, then the server exits cleanly.
    slow.sendall(body[20:])
    answer = b""
    while chunk := slow.recv(65536):
        answer += chunk
    slow.close()
    status = answer.split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 4"), answer[:300]
    assert b"invalid_" in answer, answer[:300]
    assert server.process.wait(timeout=30) == 0, server.log_tail()


def test_every_section_can_be_overridden_from_the_environment(tmp_path):
    config = tmp_path / "dge-idp.toml"
    config.write_text(
        '[server]\npublic_url = "http://127.0.0.1:8080"\n'
        '[keys]\nencryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="\n'
        f'[database]\nurl = "sqlite://{tmp_path / "x.sqlite3"}"\n'
        '[redis]\nurl = "http://not-redis"\n'
        '[mail]\nfrom = "DataGrandEst <no-reply@datagrandest.fr>"\noutbox_dir = "/tmp/x"\n',
        encoding="utf-8",
    )

    def check(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(idp_binary()), "check-config", "--config", str(config)],
            capture_output=True, text=True, env=clean_env(env), timeout=30,
        )

    assert "redis.url" in check({}).stderr
    fixed = check({"DGE_REDIS__URL": "redis://127.0.0.1:6379"})
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    for variable, value, key in (
        ("DGE_SECURITY__LOGIN_LOCK_AFTER", "0", "security.login_lock_after"),
        ("DGE_TELEMETRY__SAMPLING_RATIO", "7", "telemetry.sampling_ratio"),
    ):
        refused = check({"DGE_REDIS__URL": "redis://127.0.0.1:6379", variable: value})
        assert refused.returncode != 0 and key in refused.stdout + refused.stderr, refused.stderr


TEST_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def test_admin_api_tokens_are_created_listed_and_revoked_from_the_command_line(idp, dgectl, tmp_path):
    import hashlib
    import json
    from datetime import datetime, timedelta, timezone

    from dgectl import EXIT_OK, EXIT_REFUSED, EXIT_UNAUTHENTICATED, EXIT_USAGE, describe
    from idp_server import dgectl_binary

    # The command-line tools reach the running server's database through a
    # configuration, as an operator's would.
    url = idp.extra_env.get("DGE_DEV_DATABASE_URL") or f"sqlite://{idp.data_dir / 'dge-identity.sqlite3'}"
    config = tmp_path / "dge-idp.toml"
    config.write_text(
        f'[server]\npublic_url = "{idp.base_url}"\n'
        f'[database]\nurl = "{url}"\n'
        f'[keys]\nencryption_key = "{TEST_KEY}"\n'
        f'[mail]\nfrom = "DataGrandEst <no-reply@datagrandest.fr>"\noutbox_dir = "{tmp_path / "outbox"}"\n',
        encoding="utf-8",
    )

    def idp_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(idp_binary()), *args], capture_output=True, text=True, env=clean_env(), timeout=60
        )

    def as_token(token: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(dgectl_binary()), "--server", idp.grpc_server_url, "--output", "json", *args],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
            env=clean_env({"DGECTL_TOKEN": token, "XDG_CONFIG_HOME": str(tmp_path / "no-login")}),
        )

    name = f"ops-{uuid.uuid4().hex[:8]}"
    created = idp_cli("create-admin-token", "--config", str(config), "--name", name, "--expires-in-days", "30")
    assert created.returncode == 0, describe(created)
    token = created.stdout.strip()
    assert token.startswith("dgeat_"), "the token is not printed alone"
    assert token not in created.stderr, "the token is logged"
    assert as_token(token, "clients", "list").returncode == EXIT_OK

    listed = idp_cli("list-admin-tokens", "--config", str(config))
    assert listed.returncode == 0, describe(listed)
    lines = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()[1:]}
    assert lines["bootstrap-admin"][3] == "never", listed.stdout
    expected = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%d")
    assert lines[name][1] == "admin" and lines[name][3].startswith(expected), listed.stdout
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert token not in listed.stdout and digest not in listed.stdout.lower()

    revoked = idp_cli("revoke-admin-token", "--config", str(config), "--name", name)
    assert revoked.returncode == 0, describe(revoked)
    # Refused at its very next use: API tokens are read at each call, never cached.
    refused = as_token(token, "clients", "list")
    assert refused.returncode == EXIT_UNAUTHENTICATED, describe(refused)
    assert name not in idp_cli("list-admin-tokens", "--config", str(config)).stdout

    again = idp_cli("revoke-admin-token", "--config", str(config), "--name", name)
    assert again.returncode != 0 and "no API token is named" in again.stderr, describe(again)
    for bad in ("0", "3651", "soon"):
        wrong = idp_cli("create-admin-token", "--config", str(config), "--name", f"{name}-x", "--expires-in-days", bad)
        assert wrong.returncode == EXIT_USAGE and "--expires-in-days" in wrong.stderr, describe(wrong)
    blank = idp_cli("create-admin-token", "--config", str(config), "--name", "  ")
    assert blank.returncode == EXIT_REFUSED and "--name" in blank.stderr, describe(blank)

    # Both ends are in the audit log, with the command and who ran it.
    events = json.loads(dgectl.ok("audit", "list", "--subject", name).stdout)["events"]
    actions = {e["action"]: e for e in events}
    assert actions["api_token.created"]["actor"].startswith("dge-idp create-admin-token"), events
    assert "expires_at=" in actions["api_token.created"]["detail"], events
    assert actions["api_token.revoked"]["actor"].startswith("dge-idp revoke-admin-token"), events
    assert token not in json.dumps(events)
