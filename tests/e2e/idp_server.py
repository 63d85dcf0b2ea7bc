"""Starting and stopping the real `dge-idp dev` for the end-to-end tests.

Every server listens on 127.0.0.1 only, on ports the kernel hands out, and keeps its
data in a folder the test created.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECS = 30.0
STOP_TIMEOUT_SECS = 10.0
LOG_TAIL_LINES = 300

# Variables that would steer `dev` or `dgectl` away from what the test passes on the
# command line (for example run-all.sh exports DATABASE_URL for the Rust tests, while
# `dev` must run on its embedded SQLite default).
_STEERING_NAMES = ("DATABASE_URL", "REDIS_URL")
_STEERING_PREFIXES = ("DGE_", "DGECTL_", "OTEL_")


def target_dir() -> Path:
    """Cargo's target folder: CARGO_TARGET_DIR when set, else `<repo>/target`."""
    configured = os.environ.get("CARGO_TARGET_DIR")
    if not configured:
        return REPO_ROOT / "target"
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def binary_path(env_var: str, name: str) -> Path:
    """The binary named by `env_var`, else the debug build in the target folder."""
    override = os.environ.get(env_var)
    return Path(override) if override else target_dir() / "debug" / name


def idp_binary() -> Path:
    return binary_path("DGE_IDP_BIN", "dge-idp")


def dgectl_binary() -> Path:
    return binary_path("DGECTL_BIN", "dgectl")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nobody listens on right now. The sockets stay
    open until all are picked, so the kernel cannot hand the same port out twice."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the variables that steer our binaries."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _STEERING_NAMES and not name.startswith(_STEERING_PREFIXES)
    }
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def loopback_http() -> requests.Session:
    """A plain HTTP client that ignores proxy settings from the environment."""
    http = requests.Session()
    http.trust_env = False
    return http


@dataclass
class IdpServer:
    """One running `dge-idp dev`."""

    data_dir: Path
    http_addr: str
    grpc_addr: str
    log_path: Path
    extra_env: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.http_addr}"

    @property
    def grpc_server_url(self) -> str:
        return f"http://{self.grpc_addr}"

    @property
    def outbox(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    def admin_token(self) -> str:
        return self.admin_token_path.read_text(encoding="utf-8").strip()

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self) -> str:
        return "\n".join(self.log().splitlines()[-LOG_TAIL_LINES:])

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Starts the server and returns once `GET /readyz` answers 200."""
        binary = idp_binary()
        if not binary.is_file():
            raise RuntimeError(
                f"{binary} does not exist: build it first (cargo build -p dge-idp -p dgectl)"
                " or point DGE_IDP_BIN at it"
            )
        command = [
            str(binary),
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--http-addr",
            self.http_addr,
            "--grpc-addr",
            self.grpc_addr,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=clean_env(self.extra_env),
                cwd=self.data_dir.parent,
            )
        try:
            self._wait_until_ready()
        except Exception:
            self.stop()
            raise

    def _wait_until_ready(self) -> None:
        http = loopback_http()
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        last_answer = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dge-idp dev exited with code {self.process.returncode} before it was ready;"
                    f" its output:\n{self.log_tail()}"
                )
            try:
                answer = http.get(f"{self.base_url}/readyz", timeout=2)
                if answer.status_code == 200:
                    return
                last_answer = f"status {answer.status_code}"
            except requests.RequestException as error:
                last_answer = type(error).__name__
            time.sleep(0.1)
        raise RuntimeError(
            f"dge-idp dev was not ready after {READY_TIMEOUT_SECS:.0f} s"
            f" (GET /readyz: {last_answer}); its output:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the server has not exited in time."""
        if not self.is_running():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_SECS)


def new_idp_server(
    data_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> IdpServer:
    """A server description on fresh loopback ports (not started yet)."""
    http_port, grpc_port = free_ports(2)
    return IdpServer(
        data_dir=data_dir,
        http_addr=f"127.0.0.1:{http_port}",
        grpc_addr=f"127.0.0.1:{grpc_port}",
        log_path=log_path,
        # Every person of the suite signs up from 127.0.0.1: the per-address limit (10
        # an hour) is raised unless a test sets its own.
        extra_env={"DGE_SIGNUPS_PER_ADDRESS_MAX": "1000000", **(extra_env or {})},
    )
