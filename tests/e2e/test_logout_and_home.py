"""The person's own session on the pages: the connected home page, the « Se
déconnecter » button of the account pages, a logout form sent twice, and a login
that an account page asked for coming back to that page (and only to such a page).
"""

from __future__ import annotations

import pages
from portal import log_in

ACCOUNT_PAGES = ["/account", "/account/password", "/account/email", "/account/mfa", "/account/delete"]


def signed_in(idp, datahub, person):
    http = pages.browser()
    log_in(http, datahub, person.login, person.password)
    return http


def logout_form(page):
    form = pages.control_leading_to(page, "/logout")
    assert form.name == "form" and (form.get("method") or "").lower() == "post", form
    assert "Se déconnecter" in pages.button_labels(form), form
    assert pages.form_values(form).get("csrf_token"), "the logout form carries no csrf_token"
    return form


def assert_logged_out(answer) -> None:
    assert answer.status_code == 200, f"logout answered {answer.status_code}:\n{pages.page_text(answer)}"
    assert "Vous êtes déconnecté(e)" in pages.page_text(answer)


def test_home_shows_the_connected_state_and_logs_out_twice_calmly(idp, datahub, active_person):
    anonymous = pages.get(pages.browser(), f"{idp.base_url}/")
    assert "Veuillez vous identifier" in pages.page_text(anonymous)

    http = signed_in(idp, datahub, active_person)
    home = pages.get(http, f"{idp.base_url}/")
    text = pages.page_text(home)
    assert home.status_code == 200
    assert "Vous êtes connecté(e)" in text and "Veuillez vous identifier" not in text, text
    assert active_person.given_name in text, text
    assert pages.text_of(pages.control_leading_to(home, "/account")) == "Mon compte"
    form = logout_form(home)

    assert_logged_out(pages.submit(http, home, form, {}))
    assert pages.location(pages.get(http, f"{idp.base_url}/account")).endswith("/login")
    # The same form again (a double click, or the back button): nothing left to end.
    assert_logged_out(pages.submit(http, home, form, {}))
    assert "Veuillez vous identifier" in pages.page_text(pages.get(http, f"{idp.base_url}/"))


def test_a_stale_logout_form_does_not_end_a_newer_session(idp, datahub, active_person):
    http = signed_in(idp, datahub, active_person)
    home = pages.get(http, f"{idp.base_url}/")
    form = logout_form(home)
    assert_logged_out(pages.submit(http, home, form, {}))
    log_in(http, datahub, active_person.login, active_person.password)
    stale = pages.submit(http, home, form, {})
    assert stale.status_code == 403, pages.page_text(stale)
    assert pages.get(http, f"{idp.base_url}/account").status_code == 200, "the new session ended"


def test_every_account_page_has_a_logout_button(idp, datahub, active_person):
    http = signed_in(idp, datahub, active_person)
    for path in ACCOUNT_PAGES:
        page = pages.get(http, f"{idp.base_url}{path}")
        assert page.status_code == 200, f"{path} answered {page.status_code}"
        logout_form(page)
    page = pages.get(http, f"{idp.base_url}/account/email")
    assert_logged_out(pages.submit(http, page, logout_form(page), {}))
    assert pages.get(http, f"{idp.base_url}/account").status_code == 303


def test_a_logout_typed_by_the_person_is_not_put_on_a_service(idp, datahub, active_person):
    http = signed_in(idp, datahub, active_person)
    own = pages.page_text(pages.get(http, f"{idp.base_url}/logout"))
    assert "Un service demande" not in own, own
    assert "Vous allez mettre fin à votre session" in own, own
    asked = pages.page_text(pages.get(http, f"{idp.base_url}/logout?client_id=datahub"))
    assert "Un service demande la fin de votre session" in asked, asked


def test_a_login_asked_by_an_account_page_comes_back_to_it(idp, active_person):
    for path in ("/account", "/account/email"):
        http = pages.browser()
        sent = pages.get(http, f"{idp.base_url}{path}")
        login_url = pages.location(sent)
        assert login_url.endswith("/login"), login_url
        page = pages.get(http, login_url)
        form = pages.form_with_field(page, "identifier")
        answer = pages.submit(
            http, page, form, {"identifier": active_person.login, "password": active_person.password}
        )
        assert pages.location(answer) == f"{idp.base_url}{path}", f"after {path}"
        assert pages.get(http, pages.location(answer)).status_code == 200


def test_no_other_place_is_returned_to_after_a_login(idp, active_person):
    for planted in ("https://evil.example/", "//evil.example/", "/logout", "/account/../logout"):
        http = pages.browser()
        http.cookies.set("dge_next", planted)
        page = pages.get(http, f"{idp.base_url}/login")
        form = pages.form_with_field(page, "identifier")
        answer = pages.submit(
            http, page, form, {"identifier": active_person.login, "password": active_person.password}
        )
        assert answer.status_code == 200, f"{planted!r}: answered {answer.status_code}"
        assert "Vous êtes connecté(e)" in pages.page_text(answer)
