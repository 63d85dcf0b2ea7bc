"""Two-step verification in the e2e tests: the codes an authenticator application
shows (RFC 6238, SHA-1, 6 digits, 30 s steps, computed here with the standard library),
and the login step of the pages that asks them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time
from urllib.parse import urljoin, urlsplit

import pages

STEP_SECS = 30
# The base32 secret of each login that enrolled during the run, and the last time step
# whose code was typed (the server never accepts a step twice).
SECRETS: dict[str, str] = {}
_LAST_STEP: dict[str, int] = {}
SECOND_STEP_PATHS = ("/login/code", "/login/mfa-setup")


def totp(secret_b32: str, step: int) -> str:
    """The code of `secret_b32` at time step `step`."""
    text = secret_b32.replace(" ", "").upper()
    key = base64.b32decode(text + "=" * (-len(text) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def current_step() -> int:
    return int(time.time()) // STEP_SECS


def fresh_code(login: str) -> str:
    """A code of `login` never typed before: the current step's, else the next one's (the
    server accepts one step of skew), else the one after a wait for the next step."""
    step = max(current_step(), _LAST_STEP.get(login, -1) + 1)
    while step > current_step() + 1:
        time.sleep(STEP_SECS - time.time() % STEP_SECS + 0.5)
    _LAST_STEP[login] = step
    return totp(SECRETS[login], step)


def wrong_code(secret_b32: str) -> str:
    """A code wrong at every step the server may accept now (one of skew either side, and
    one more for a step turning meanwhile): a fixed "000000" is right about three times in
    a million."""
    now = current_step()
    right = {totp(secret_b32, step) for step in range(now - 2, now + 3)}
    return next(c for c in ("000000", "111111", "222222", "333333", "444444", "555555") if c not in right)


def needs_second_step(url: str) -> bool:
    return urlsplit(url).path in SECOND_STEP_PATHS


def enrol_on(http, page, login: str):
    """Scans the enrolment page (reads its key), types the first code; returns the
    recovery-codes page."""
    secret = pages.parse(page).find(id="mfa-secret")
    assert secret is not None, pages.page_text(page)
    SECRETS[login] = secret.get_text().replace(" ", "")
    form = pages.form_with_field(page, "code")
    done = pages.submit(http, page, form, {"code": fresh_code(login)})
    assert done.status_code == 200, pages.page_text(done)
    assert "Vos codes de secours" in pages.page_text(done), pages.page_text(done)
    return done


def recovery_codes(page) -> list[str]:
    return [c.get_text() for c in pages.parse(page).select("#recovery-codes code")]


def pass_second_step(http, target: str, login: str) -> str:
    """After the password form sent the browser to `target` (the code page, or the
    enrolment page of an administrator's first login): passes it and returns the URL
    where the login goes on."""
    page = pages.get(http, target)
    assert page.status_code == 200, pages.page_text(page)
    if urlsplit(target).path == "/login/mfa-setup":
        done = enrol_on(http, page, login)
        link = pages.parse(done).select_one(".actions a")
        assert link is not None, pages.page_text(done)
        return urljoin(done.url, link["href"])
    assert login in SECRETS, f"{login} has two-step verification but the test never enrolled it"
    form = pages.form_with_field(page, "code")
    answer = pages.submit(http, page, form, {"code": fresh_code(login)})
    return urljoin(answer.url, pages.location(answer))
