"""The benchmark (tests/bench/run.sh, issue 10) cannot rot unseen: its load generator runs
every scenario for about a second against the debug binaries, on the embedded default
and on PostgreSQL + Redis, and each row of its table must show successes and no
unexpected error. The figures of a debug build mean nothing and are not checked.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from idp_server import REPO_ROOT, binary_path, clean_env, idp_binary

SCENARIOS = (
    "grpc_empty (health)",
    "grpc_check",
    "grpc_introspect",
    "introspect_http",
    "ref: oidc-provider client_credentials",
    "client_credentials",
    "ref: oidc-provider jwks",
    "jwks",
    "ref: oidc-provider discovery",
    "discovery",
    "ref: argon2id verify, all cores",
    "ref: argon2id verify, all cores, memory reused",
    "password_login",
    "password_login x2",
    "signup",
)
ROW = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<conc>\d+) \| (?P<ok>\d+) \| (?P<refused>\d+) \| (?P<errors>\d+) \|")
TIMEOUT_SECS = 120


def rows(table: str) -> dict[str, dict[str, int]]:
    found = {}
    for line in table.splitlines():
        match = ROW.match(line)
        if match:
            found[match["name"]] = {k: int(match[k]) for k in ("conc", "ok", "refused", "errors")}
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_every_scenario_runs_and_succeeds(backend):
    command = [
        str(binary_path("DGE_BENCH_BIN", "dge-bench")),
        "--idp-bin",
        str(idp_binary()),
        "--reference-script",
        str(REPO_ROOT / "tests" / "bench" / "oidc-provider-ref.mjs"),
        "--backend",
        backend,
        "--accounts",
        "200",
        "--duration",
        "1",
        "--concurrency",
        "4",
        "--overload-factor",
        "2",
        "--load-threads",
        "1",
        "--server-workers",
        "2",
    ]
    link = REPO_ROOT / "tests" / "bench" / "node_modules"
    if not link.exists():
        link.symlink_to("../upstream/node_modules")
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECS,
    )
    report = f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, report
    table = rows(result.stdout)
    assert set(table) == set(SCENARIOS), report
    for name, row in table.items():
        assert row["ok"] > 0, f"{name} had no success\n{report}"
        assert row["errors"] == 0, f"{name} had errors\n{report}"
    assert f"backend {backend}, 200 accounts" in result.stdout
    assert "load generator on 1 thread(s), server on 2 worker thread(s)" in result.stdout, report
    for grpc_row in ("grpc_empty (health)", "grpc_check", "grpc_introspect"):
        assert re.search(rf"^latency of {re.escape(grpc_row)}: p90 [0-9.]+ ms, .* p99\.9 [0-9.]+ ms", result.stdout, re.M), report
    for target in ("client_credentials >=", "grpc_check >=", "password_login >=", "memory:", "start to ready"):
        assert target in result.stdout, report
