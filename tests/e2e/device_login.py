"""`dgectl login` as an administrator runs it: the real binary in a terminal-less
process, and the browser side (login form, device page) done with HTTP requests."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from pathlib import Path
from urllib.parse import urljoin

import mfa
import pages
from dgectl import Dgectl
from idp_server import IdpServer, clean_env, dgectl_binary

CODE_LINE = re.compile(r"enter the code ([A-Z]{4}-[A-Z]{4})")


def make_admin(server: IdpServer, login: str) -> None:
    """Makes `login` a global administrator the way an operator does: `dgectl admins grant`
    with the bootstrap admin token."""
    Dgectl(server).ok("admins", "grant", login, "--reason", "e2e")


class Lines:
    """The lines a process writes to a pipe, readable with a timeout."""

    def __init__(self, stream):
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def rest(self, timeout: float = 10) -> str:
        """Everything until the stream ends."""
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                return "".join(self.seen)
            self.seen.append(line)

    def next(self, timeout: float) -> str:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout} s; so far: {self.seen}") from None
        assert line is not None, f"the stream ended; so far: {self.seen}"
        self.seen.append(line)
        return line


def dgectl_env(config_home: Path) -> dict[str, str]:
    return clean_env({"XDG_CONFIG_HOME": str(config_home)})


def run_dgectl(config_home: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """`dgectl` with only the saved login to go on: no --token, no --server."""
    return subprocess.run(
        [str(dgectl_binary()), *args],
        capture_output=True, text=True, timeout=timeout, env=dgectl_env(config_home),
        stdin=subprocess.DEVNULL,
    )


def start_login(server: IdpServer, config_home: Path) -> tuple[subprocess.Popen, str, Lines]:
    """Starts `dgectl login` and returns once it printed the user code."""
    process = subprocess.Popen(
        [str(dgectl_binary()), "--server", server.grpc_server_url, "login",
         "--issuer", server.base_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env=dgectl_env(config_home),
    )
    lines = Lines(process.stderr)
    while True:
        match = CODE_LINE.search(lines.next(timeout=15))
        if match:
            return process, match.group(1), lines


def finish(process: subprocess.Popen, lines: Lines) -> tuple[str, str]:
    """Waits for `dgectl login` to end; its standard output and error (read by `lines`)."""
    process.wait(timeout=30)
    return process.stdout.read(), lines.rest()


def log_in_through_device_page(server: IdpServer, login: str, password: str, user_code: str):
    """The person opens the verification link, logs in, and lands on the device page."""
    http = pages.browser()
    answer = pages.get(http, f"{server.base_url}/device?user_code={user_code}")
    assert answer.status_code == 303 and pages.location(answer).endswith("/login"), answer.text
    login_page = pages.get(http, urljoin(answer.url, pages.location(answer)))
    form = pages.form_with_field(login_page, "identifier")
    answer = pages.submit(http, login_page, form, {"identifier": login, "password": password})
    assert answer.status_code == 303, pages.page_text(answer)
    target = urljoin(answer.url, pages.location(answer))
    # An administrator passes two-step verification (enrols at the first login).
    if mfa.needs_second_step(target):
        target = mfa.pass_second_step(http, target, login)
    assert target == f"{server.base_url}/device?user_code={user_code}", target
    page = pages.get(http, target)
    assert page.status_code == 200, page.text
    return http, page


def type_code(http, page, user_code: str):
    """Submits the code form; returns the confirmation page."""
    form = pages.form_with_field(page, "user_code")
    return pages.submit(http, page, form, {"user_code": user_code})


def answer(http, confirm_page, decision: str):
    form = pages.form_with_field(confirm_page, "user_code")
    return pages.submit(http, confirm_page, form, {"decision": decision})


def approve(server: IdpServer, login: str, password: str, user_code: str, decision="allow"):
    http, page = log_in_through_device_page(server, login, password, user_code)
    assert pages.value_of(pages.control_named(pages.form_with_field(page, "user_code"),
                                              "user_code")) == user_code
    confirm = type_code(http, page, user_code)
    assert confirm.status_code == 200, pages.page_text(confirm)
    text = pages.page_text(confirm)
    assert "dgectl (outil d'administration) demande l'accès à votre compte" in text, text
    assert user_code in text and "votre identifiant sur le portail" in text, text
    done = answer(http, confirm, decision)
    assert done.status_code == 200, pages.page_text(done)
    return http, done
