"""Fixtures of the end-to-end tests: real `dge-idp dev` servers, `dgectl`, gRPC stubs.

The binaries are built by tests/run-all.sh before pytest runs; DGE_IDP_BIN and
DGECTL_BIN point elsewhere when set.
"""

from __future__ import annotations

import os
import secrets
import warnings

import authlib.deprecate
import pytest

# authlib 1.x announces that authlib.jose moves to joserfc, and forces that warning on at
# import; the tests use authlib.jose on purpose.
warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)

pytest.register_assert_rewrite("dgectl", "grpc_api", "outbox", "pages", "portal")

from dgectl import Dgectl  # noqa: E402
from grpc_api import IdentityGrpc, generate_stubs  # noqa: E402
from idp_server import REPO_ROOT, IdpServer, dgectl_binary, idp_binary, new_idp_server  # noqa: E402
from portal import Module, register_active_person  # noqa: E402

ARTIFACTS = REPO_ROOT / "tests" / "e2e" / ".artifacts"
SHARED = "shared"

# Every server started in this session, with the test that owns it (or SHARED).
_servers: list[tuple[str, IdpServer]] = []

# The servers run on plain HTTP over loopback.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, shows the output of the servers the test used."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    owners = {item.nodeid}
    if "idp" in item.fixturenames:
        owners.add(SHARED)
    for owner, server in _servers:
        if owner in owners:
            report.sections.append(
                (f"dge-idp output ({server.data_dir}, {server.log_path})", server.log_tail())
            )


def _require_binaries() -> None:
    for binary in (idp_binary(), dgectl_binary()):
        if not binary.is_file():
            pytest.fail(
                f"{binary} is missing: run `cargo build -p dge-idp -p dgectl` first"
                " (tests/run-all.sh does), or set DGE_IDP_BIN / DGECTL_BIN",
                pytrace=False,
            )


# `DGE_E2E_BACKEND=postgres` puts every server these fixtures start on a fresh
# PostgreSQL database and on Redis (tests/run-all.sh runs the suite that way too).
PRODUCTION_BACKEND = os.environ.get("DGE_E2E_BACKEND", "sqlite") == "postgres"
_databases: list[str] = []


def _production_env() -> dict[str, str]:
    import psycopg

    admin_url = postgres_admin_url()
    name = f"dge_e2e_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _databases.append(name)
    return {
        "DGE_DEV_DATABASE_URL": f"{admin_url.rsplit('/', 1)[0]}/{name}",
        "DGE_DEV_REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        # A prefix of this server's own: with the default one, every run on the shared
        # Redis (other checkouts, earlier runs) shares the per-address login counters,
        # and the failures of one lock 127.0.0.1 out for another.
        "DGE_DEV_REDIS_PREFIX": f"{name}:",
    }


def pytest_sessionfinish(session, exitstatus):
    """Drops the databases the production backend created."""
    if not _databases:
        return
    import psycopg

    with psycopg.connect(postgres_admin_url(), autocommit=True) as conn:
        for name in _databases:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _start(tmp_path_factory, owner: str, extra_env: dict[str, str] | None) -> IdpServer:
    _require_binaries()
    if PRODUCTION_BACKEND and "DGE_DEV_DATABASE_URL" not in (extra_env or {}):
        extra_env = {**_production_env(), **(extra_env or {})}
    data_dir = tmp_path_factory.mktemp("idp") / "data"
    data_dir.mkdir()
    server = new_idp_server(data_dir, data_dir.parent / "dge-idp.log", extra_env)
    _servers.append((owner, server))
    server.start()
    if PRODUCTION_BACKEND:
        sqlite_file = data_dir / "dge-identity.sqlite3"
        assert not sqlite_file.exists(), "the production pass must not run on SQLite"
    return server


def postgres_admin_url() -> str:
    """The loopback PostgreSQL that tests/run-all.sh checked (DATABASE_URL)."""
    return os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    """The environment that puts `dge-idp dev` on SQLite (its default) or on a fresh
    PostgreSQL database of the test's own, dropped afterwards. A PostgreSQL that does
    not answer fails the test: it is never skipped."""
    if request.param == "sqlite":
        yield {}
        return
    import psycopg

    admin_url = postgres_admin_url()
    name = f"dge_e2e_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    yield {"DGE_DEV_DATABASE_URL": f"{base}/{name}"}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def grpc_pb():
    """Python modules generated from proto/ with grpcio-tools for this session."""
    return generate_stubs(ARTIFACTS / "grpc")


@pytest.fixture
def start_idp(request, tmp_path_factory):
    """Starts servers of the test's own, each on a fresh data dir; stops them after."""
    started: list[IdpServer] = []

    def start(extra_env: dict[str, str] | None = None) -> IdpServer:
        server = _start(tmp_path_factory, request.node.nodeid, extra_env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def idp(tmp_path_factory):
    """One server shared by the tests that only add accounts of their own."""
    server = _start(tmp_path_factory, SHARED, None)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dgectl(idp) -> Dgectl:
    return Dgectl(idp)


@pytest.fixture(scope="session")
def admin_grpc(idp, grpc_pb):
    client = IdentityGrpc(grpc_pb, idp.grpc_addr, idp.admin_token())
    yield client
    client.close()


@pytest.fixture(scope="session")
def datahub(idp) -> Module:
    return Module.datahub(idp.base_url)


@pytest.fixture(scope="session")
def active_person(idp, dgectl, datahub):
    """A person who signed up, confirmed and was approved on the shared server."""
    return register_active_person(idp, dgectl, datahub)
