"""CSRF tokens bound to the session, foreign origins refused, `__Host-` cookies over
HTTPS (break-test finding M1). Each test is a row of docs/security.md."""

from __future__ import annotations

import requests

import pages
from portal import register_active_person


def logged_in(idp, person) -> requests.Session:
    http = pages.browser()
    home = pages.get(http, f"{idp.base_url}/")
    answer = pages.submit(
        http,
        home,
        pages.form_with_field(home, "identifier"),
        {"identifier": person.login, "password": person.password},
    )
    assert answer.status_code in (200, 303), answer.status_code
    return http


def profile_fields(http, idp) -> dict[str, str]:
    page = pages.get(http, f"{idp.base_url}/account")
    assert page.status_code == 200, page.status_code
    return pages.form_values(pages.form_with_field(page, "given_name"))


def post_account(idp, cookies: dict[str, str], fields: dict, **headers: str):
    return requests.post(
        f"{idp.base_url}/account",
        data=fields,
        cookies=cookies,
        headers=headers,
        allow_redirects=False,
        timeout=10,
    )


def test_a_csrf_pair_from_another_visit_does_not_work_with_a_victims_session(
    idp, dgectl, datahub
):
    person = register_active_person(idp, dgectl, datahub)
    victim = logged_in(idp, person)
    fields = profile_fields(victim, idp)
    session = victim.cookies.get("dge_session")
    # The attacker's own anonymous visit: a CSRF cookie and the token of its form.
    attacker = pages.browser()
    login = pages.get(attacker, f"{idp.base_url}/login")
    attacker_token = pages.form_values(pages.form_with_field(login, "csrf_token"))["csrf_token"]
    forged = post_account(
        idp,
        {"dge_session": session, "dge_csrf": attacker.cookies.get("dge_csrf")},
        {**fields, "csrf_token": attacker_token, "given_name": "Pirate"},
    )
    assert forged.status_code == 403, forged.status_code
    assert "Formulaire expiré" in pages.page_text(forged)
    # The victim's own form still works, and nothing was changed by the forged post.
    own = pages.post(victim, f"{idp.base_url}/account", fields)
    assert own.status_code in (200, 303), own.status_code
    assert profile_fields(victim, idp)["given_name"] == fields["given_name"]


def test_a_form_posted_from_another_origin_is_refused(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    victim = logged_in(idp, person)
    fields = profile_fields(victim, idp)
    cookies = victim.cookies.get_dict()
    for origin in ("http://evil.example", "null", f"{idp.base_url}.evil.example"):
        answer = post_account(idp, cookies, {**fields, "given_name": "Pirate"}, Origin=origin)
        assert answer.status_code == 403, f"Origin {origin}: {answer.status_code}"
        assert "Requête refusée" in pages.page_text(answer), origin
        assert pages.is_french_page(answer), origin
    assert profile_fields(victim, idp)["given_name"] == fields["given_name"]
    same = post_account(idp, cookies, fields, Origin=idp.base_url)
    assert same.status_code in (200, 303), same.status_code
    absent = post_account(idp, cookies, fields)
    assert absent.status_code in (200, 303), absent.status_code


def test_over_https_cookies_carry_the_host_prefix_and_plain_ones_are_ignored(start_idp):
    server = start_idp({"DGE_PUBLIC_URL": "https://idp.example.test"})
    http = pages.browser()
    login = pages.get(http, f"{server.base_url}/login")
    set_cookies = login.raw.headers.getlist("Set-Cookie")
    assert any(c.startswith("__Host-dge_csrf=") for c in set_cookies), set_cookies
    assert not any(c.startswith("dge_csrf=") for c in set_cookies), set_cookies
    secret = next(c for c in set_cookies if c.startswith("__Host-dge_csrf=")).split(";")[0]
    secret = secret.split("=", 1)[1]
    token = pages.form_values(pages.form_with_field(login, "csrf_token"))["csrf_token"]
    fields = {"csrf_token": token, "identifier": "personne", "password": "faux-mot-de-passe"}

    def post_login(cookies: dict[str, str]):
        return requests.post(
            f"{server.base_url}/login",
            data=fields,
            cookies=cookies,
            allow_redirects=False,
            timeout=10,
        )

    # A plain `dge_csrf`, which a sibling subdomain could plant, is not believed...
    planted = post_login({"dge_csrf": secret})
    assert planted.status_code == 403, planted.status_code
    assert "Formulaire expiré" in pages.page_text(planted)
    # ...while the prefixed cookie passes the CSRF check (and the login is refused).
    genuine = post_login({"__Host-dge_csrf": secret})
    assert genuine.status_code != 403, genuine.status_code
