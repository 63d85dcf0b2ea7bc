"""The framework's own errors answer French pages with the security headers on the
pages, and OAuth JSON on the OAuth endpoints (break-test finding L1). Each test is a
row of docs/security.md."""

from __future__ import annotations

import json
import re
import socket

import pytest

import pages
from test_hardening import assert_security_headers



def declare_huge_body(server, path: str) -> tuple[str, dict[str, str], str]:
    """Sends only the head of a 3 MB form post (the server answers from Content-Length;
    sending the body too would race with the close that follows the early 413 and can
    lose the answer); returns the status line, the headers and the body."""
    host, port = server.http_addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {server.http_addr}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {3 * 1024 * 1024}\r\n\r\n".encode()
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
            if b"\r\n\r\n" in raw:
                head, _, rest = raw.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length and len(rest) >= int(length.group(1)):
                    break
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, body.decode()


def assert_french_error(answer, status: int, title: str) -> None:
    where = f"{answer.request.method} {answer.url}"
    assert answer.status_code == status, f"{where}: {answer.status_code} {answer.text[:200]}"
    assert pages.is_french_page(answer), f"{where}: {answer.headers.get('Content-Type')}"
    assert title in pages.page_text(answer), f"{where}: {pages.page_text(answer)[:200]}"
    for english in ("length limit", "Failed to", "Expected request", "deserialize"):
        assert english not in answer.text, f"{where}: {english!r} in the answer"
    assert_security_headers(answer, https=False)


def test_a_body_over_the_limit_gets_a_french_413_with_the_headers(idp):
    status, headers, body = declare_huge_body(idp, "/login")
    assert status.startswith("HTTP/1.1 413"), status
    assert headers["content-type"].startswith("text/html"), headers
    assert '<html lang="fr"' in body and "trop volumineux" in body, body[:300]
    # The person is told what to do, and that going back keeps what they typed.
    assert "raccourcissez le texte" in body, body[:600]
    assert "length limit" not in body
    assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), headers
    assert headers.get("x-frame-options") == "DENY", headers
    assert headers.get("x-content-type-options") == "nosniff", headers


@pytest.mark.parametrize(
    "kind", ["json", "multipart"],
)
def test_a_body_that_is_not_a_form_gets_a_french_415(idp, kind):
    http = pages.browser()
    if kind == "json":
        answer = http.post(f"{idp.base_url}/login", json={"identifier": "x"}, timeout=10)
    else:
        answer = http.post(f"{idp.base_url}/login", files={"identifier": ("a", b"x")}, timeout=10)
    assert_french_error(answer, 415, "Format non pris en charge")


def test_a_repeated_field_gets_a_french_422(idp):
    answer = pages.browser().post(
        f"{idp.base_url}/login",
        data="csrf_token=a&csrf_token=b&identifier=x&password=y",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
        timeout=10,
    )
    assert_french_error(answer, 422, "Formulaire invalide")


def test_unknown_paths_and_wrong_methods_get_french_pages(idp):
    http = pages.browser()
    assert_french_error(pages.get(http, f"{idp.base_url}/nulle-part"), 404, "Page introuvable")
    wrong = http.delete(f"{idp.base_url}/login", allow_redirects=False, timeout=10)
    assert_french_error(wrong, 405, "Méthode non autorisée")
    assert "POST" in wrong.headers.get("Allow", ""), wrong.headers


def test_the_consent_page_without_a_request_says_so(idp):
    http = pages.browser()
    answer = pages.get(http, f"{idp.base_url}/consent")
    assert_french_error(answer, 400, "Aucune demande de connexion")
    assert "ouverte ailleurs" not in pages.page_text(answer)


def test_oauth_endpoints_keep_json_errors(idp):
    status, headers, body = declare_huge_body(idp, "/token")
    assert status.startswith("HTTP/1.1 413"), status
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body)["error"] == "invalid_request", body
    # One connection per request: the server closes a connection whose body it did not
    # read, and a reused one could race with that close.
    http = pages.browser()
    http.headers["Connection"] = "close"
    for answer, statuses in (
        (http.post(f"{idp.base_url}/token", json={"grant_type": "x"}, timeout=10), (400, 415)),
        (http.get(f"{idp.base_url}/token", timeout=10), (405,)),
    ):
        where = f"{answer.request.method} /token"
        assert answer.status_code in statuses, f"{where}: {answer.status_code}"
        assert answer.headers["Content-Type"].startswith("application/json"), where
        assert answer.json()["error"] == "invalid_request", where
