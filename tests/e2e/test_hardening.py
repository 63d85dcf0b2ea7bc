"""Security hardening (issue 9): headers and cookies on every page, CSRF on every form,
request-size limits. Each test here is a row of docs/security.md."""

from __future__ import annotations

import re
import time
from urllib.parse import urljoin, urlsplit

import pytest

import pages
from dgectl import Dgectl
from outbox import wait_for_mail
from portal import (
    Module,
    new_person,
    open_confirmation_page,
    open_login_page,
    register_active_person,
    sign_up,
    submit_login,
)

PUBLIC_PAGES = [
    "/",
    "/login",
    "/signup",
    "/signup/resend",
    "/password/forgot",
    "/password/reset?token=faux",
    "/confirm?token=faux",
    "/account",
    "/logout",
    "/page-qui-n-existe-pas",
    "/.well-known/openid-configuration",
    "/jwks",
]
ACCOUNT_PAGES = ["/account/mfa", "/account", "/account/password", "/account/email", "/account/delete"]
_RESET_LINK = re.compile(r"https?://\S+/password/reset\?token=[A-Za-z0-9_-]+")


def assert_security_headers(answer, https: bool) -> None:
    where = f"{answer.request.method} {answer.url} ({answer.status_code})"
    csp = answer.headers.get("Content-Security-Policy", "")
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in csp, f"{where}: CSP {csp!r} lacks {directive}"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, f"{where}: {csp}"
    assert answer.headers.get("X-Content-Type-Options") == "nosniff", where
    assert answer.headers.get("X-Frame-Options") == "DENY", where
    assert answer.headers.get("Referrer-Policy") == "same-origin", where
    # Pages hold names, addresses and form tokens: never kept by a browser or a proxy.
    # Discovery and the keys say how long they may be cached.
    cache = answer.headers.get("Cache-Control")
    if urlsplit(answer.url).path in ("/.well-known/openid-configuration", "/jwks"):
        assert cache == "public, max-age=300", f"{where}: Cache-Control {cache!r}"
    else:
        assert cache == "no-store", f"{where}: Cache-Control {cache!r}"
    hsts = answer.headers.get("Strict-Transport-Security")
    if https:
        assert hsts and "max-age=31536000" in hsts, f"{where}: HSTS {hsts!r}"
    else:
        assert hsts is None, f"{where}: HSTS over plain HTTP: {hsts}"


def raw_cookies(answer) -> list[str]:
    return answer.raw.headers.getlist("Set-Cookie")


def assert_cookie_flags(cookie: str, secure: bool) -> None:
    flags = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert "httponly" in flags, f"cookie without HttpOnly: {cookie}"
    assert any(f.startswith("samesite=") for f in flags), f"cookie without SameSite: {cookie}"
    assert ("secure" in flags) == secure, f"cookie Secure should be {secure}: {cookie}"


def test_every_page_carries_the_security_headers(idp):
    http = pages.browser()
    for path in PUBLIC_PAGES:
        assert_security_headers(pages.get(http, f"{idp.base_url}{path}"), https=False)
    # Error answers too: a refused form and an oversized body.
    assert_security_headers(pages.post(http, f"{idp.base_url}/login", {"x": "1"}), https=False)


def test_over_https_pages_send_hsts_and_every_cookie_is_secure(start_idp):
    # The public URL says https (a TLS proxy in front); the test talks to the listener.
    server = start_idp({"DGE_PUBLIC_URL": "https://idp.example.test"})
    http = pages.browser()
    answer = pages.get(http, f"{server.base_url}/login")
    assert_security_headers(answer, https=True)
    cookies = raw_cookies(answer)
    assert cookies, "the login page sets its CSRF cookie"
    for cookie in cookies:
        assert_cookie_flags(cookie, secure=True)


def test_cookies_are_httponly_and_samesite_and_the_session_too(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    http = pages.browser()
    # /authorize sets the CSRF cookie and the one binding the request to this browser.
    request = datahub.authorization_request()
    authorize = pages.get(http, request.url)
    cookies = raw_cookies(authorize)
    login_page = pages.get(http, pages.location(authorize))
    cookies += raw_cookies(login_page)
    form = pages.form_with_field(login_page, "identifier")
    answer = pages.submit(
        http, login_page, form, {"identifier": person.login, "password": person.password}
    )
    cookies += raw_cookies(answer)
    names = {cookie.split("=", 1)[0] for cookie in cookies}
    assert {"dge_csrf", "dge_authreq", "dge_session"} <= names, names
    for cookie in cookies:
        # Plain HTTP on loopback (the embedded default): not Secure, the rest still set.
        assert_cookie_flags(cookie, secure=False)


def post_forms(http, page) -> list[tuple[str, dict]]:
    """(target, fields) of every POST form of `page`."""
    found = []
    for form in pages.parse(page).find_all("form"):
        if (form.get("method") or "get").lower() != "post":
            continue
        target = urljoin(page.url, form.get("action") or page.url)
        found.append((target, pages.form_values(form)))
    return found


def test_every_form_of_every_page_refuses_a_post_without_its_csrf_token(start_idp):
    server = start_idp()
    module = Module.datahub(server.base_url)
    dgectl = Dgectl(server)
    person = register_active_person(server, dgectl, module)
    http = pages.browser()
    visited = []
    # Public pages, the login page of an authorization request, a confirmation page.
    for path in ["/", "/signup", "/signup/resend", "/password/forgot"]:
        visited.append(pages.get(http, f"{server.base_url}{path}"))
    visited.append(open_login_page(http, module).response)
    newcomer = new_person()
    sign_up(pages.browser(), module, newcomer)
    visited.append(open_confirmation_page(http, server.outbox, newcomer))
    # A password-reset page, from a real reset email.
    forgot = pages.get(http, f"{server.base_url}/password/forgot")
    form = pages.form_with_field(forgot, "email")
    pages.submit(http, forgot, form, {"email": person.email})
    mail = wait_for_mail(
        server.outbox, person.email, lambda m: "/password/reset?token=" in m.body, "reset email"
    )
    visited.append(pages.get(http, _RESET_LINK.search(mail.body).group(0)))
    # Logged in: the account pages and the consent page.
    home = pages.get(http, f"{server.base_url}/")
    pages.submit(
        http,
        home,
        pages.form_with_field(home, "identifier"),
        {"identifier": person.login, "password": person.password},
    )
    for path in ACCOUNT_PAGES:
        page = pages.get(http, f"{server.base_url}{path}")
        assert page.status_code == 200, f"{path}: {page.status_code}"
        visited.append(page)

    forms = [f for page in visited for f in post_forms(http, page)]
    assert len(forms) >= 10, f"only {len(forms)} forms found"
    for target, fields in forms:
        assert "csrf_token" in fields, f"the form posting to {target} has no csrf_token"
        for forged in ({k: v for k, v in fields.items() if k != "csrf_token"},
                       {**fields, "csrf_token": "jeton-forge"}):
            answer = pages.post(http, target, forged)
            assert answer.status_code == 403, f"{target} without its token: {answer.status_code}"
            assert "Formulaire expiré" in pages.page_text(answer), target
    # Nothing was changed by the forged posts: the person still logs in as before.
    again = pages.browser()
    answer = submit_login(again, open_login_page(again, module), person.login, person.password)
    module.callback_url(answer)


@pytest.mark.parametrize("path", ["/login", "/signup", "/password/forgot", "/token"])
def test_a_huge_body_gets_a_fast_413(idp, path):
    http = pages.browser()
    started = time.monotonic()
    answer = http.post(
        f"{idp.base_url}{path}",
        data=b"identifier=" + b"a" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 413, f"{path}: {answer.status_code}"
    assert time.monotonic() - started < 2, "the refusal was not fast"


@pytest.mark.parametrize("path", ["/login", "/signup", "/password/forgot"])
def test_a_flood_of_fields_is_refused_fast_without_effect(idp, path):
    http = pages.browser()
    page = pages.get(http, f"{idp.base_url}{path}")
    fields = pages.form_values(pages.parse(page).find("form", method="post"))
    body = "&".join([f"f{i}=x" for i in range(12_000)])
    body += "&" + "&".join(f"{k}={v}" for k, v in fields.items())
    started = time.monotonic()
    answer = http.post(
        f"{idp.base_url}{path}",
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert answer.status_code in (400, 413), f"{path}: {answer.status_code} for {len(body)} bytes"
    assert elapsed < 2, f"{path}: {elapsed:.2f} s"


# --- request ids ------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
IMPLAUSIBLE_REQUEST_IDS = ["x" * 65, "a" * 5000, "id avec espace", "id\tavec-tab", "<script>", "é"]


def test_a_plausible_request_id_is_echoed_and_any_other_is_replaced_on_http(idp):
    http = pages.browser()
    kept = http.get(f"{idp.base_url}/healthz", headers={"x-request-id": "proxy-42.a_b"})
    assert kept.headers["x-request-id"] == "proxy-42.a_b"
    for raw in IMPLAUSIBLE_REQUEST_IDS:
        answer = http.get(f"{idp.base_url}/login", headers={"x-request-id": raw.encode("utf-8")})
        echoed = answer.headers.get("x-request-id", "")
        assert _UUID.match(echoed), f"{raw[:20]!r} came back as {echoed[:80]!r}"
    fresh = http.get(f"{idp.base_url}/healthz")
    assert _UUID.match(fresh.headers["x-request-id"])


def test_a_plausible_request_id_is_echoed_and_any_other_is_replaced_on_grpc(admin_grpc):
    pb = admin_grpc.pb.client_registry

    def echoed(value: str | None) -> str:
        metadata = list(admin_grpc.metadata)
        if value is not None:
            metadata.append(("x-request-id", value))
        _, call = admin_grpc.clients.ListClients.with_call(
            pb.ListClientsRequest(), metadata=metadata, timeout=10
        )
        return dict(call.initial_metadata()).get("x-request-id", "")

    assert echoed("proxy-42.a_b") == "proxy-42.a_b"
    assert _UUID.match(echoed(None))
    for raw in ["x" * 65, "a" * 5000, "id avec espace", "<script>"]:
        assert _UUID.match(echoed(raw)), f"{raw[:20]!r}"


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_data_dir_outbox_database_and_emails_are_private_on_dev(start_idp):
    """With umask 022 the database (hashes, personal data) and the `.eml` files (live
    links) were readable by every local user: folders 0700, files 0600."""
    server = start_idp()
    person = new_person()
    sign_up(pages.browser(), Module.datahub(server.base_url), person)
    mail = wait_for_mail(server.outbox, person.email, lambda m: True, "the confirmation email")
    assert _mode(server.data_dir) == 0o700, oct(_mode(server.data_dir))
    assert _mode(server.outbox) == 0o700
    assert _mode(mail.path) == 0o600
    sqlite = [p for p in server.data_dir.glob("dge-identity.sqlite3*")]
    for path in sqlite:
        assert _mode(path) == 0o600, (path, oct(_mode(path)))


def _serve(config, env, log_path):
    """`dge-idp serve` started and ready; stop it with SIGTERM."""
    import subprocess

    from idp_server import idp_binary, loopback_http

    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(idp_binary()), "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
        )
    ready = f"http://{env['DGE_SERVER__HTTP_ADDR']}/readyz"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            if loopback_http().get(ready, timeout=2).status_code == 200:
                return process
        except OSError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)


def test_serve_makes_its_sqlite_file_and_outbox_private_and_tightens_loose_ones(tmp_path):
    import os
    import signal

    from idp_server import clean_env, free_ports
    from test_portal_branding import write_config

    outbox = tmp_path / "outbox"
    outbox.mkdir()
    os.chmod(outbox, 0o755)
    http_port, grpc_port = free_ports(2)
    config = write_config(tmp_path, "", http_port)
    env = clean_env({
        "DGE_SERVER__HTTP_ADDR": f"127.0.0.1:{http_port}",
        "DGE_SERVER__GRPC_ADDR": f"127.0.0.1:{grpc_port}",
    })
    log_path = tmp_path / "serve.log"
    database = tmp_path / "idp.db"
    process = _serve(config, env, log_path)
    try:
        assert _mode(database) == 0o600, oct(_mode(database))
        for side in tmp_path.glob("idp.db-*"):
            assert _mode(side) == 0o600, (side, oct(_mode(side)))
        assert _mode(outbox) == 0o700
        assert "tightening permissions" in log_path.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    # A second start finds the database loosened by hand and tightens it.
    os.chmod(database, 0o644)
    process = _serve(config, env, log_path)
    try:
        assert _mode(database) == 0o600, oct(_mode(database))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
