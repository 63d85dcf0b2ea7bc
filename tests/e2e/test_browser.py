"""The pages as a person uses them, in headless Chromium (issue 11).

The journey: sign up (by keyboard only), open the confirmation link, log in through the
demo `datahub` module, reset the password, log out; the error cases: each sign-up rule
broken, a wrong password, an expired link. Every page is checked with axe-core and
photographed at 375 px and 1280 px (tests/e2e/.artifacts/screenshots/).
"""

from __future__ import annotations

import html
import re
import secrets
import time
from urllib.parse import parse_qsl

import pytest

from browser import Browser, Tab, chromium_fixture
from dgectl import Dgectl
from outbox import ACTIVATED_SUBJECT, CONFIRM_SUBJECT, confirmation_link, wait_for_subject
from portal import Module, Person, discover, new_person, register_active_person

RESET_SUBJECT = "Réinitialisation de votre mot de passe – DataGrandEst"
_RESET_LINK = re.compile(r"https?://[^\s\"'<>]+/password/reset\?token=[^\s\"'<>]+")
MAX_TABS = 80
# Where the modules of these tests come back to (answered by route interception).
MODULES_ORIGIN = "http://localhost:8081/"
MAPS_ID = "portail-cartes"
MAPS_REDIRECT_URI = "http://localhost:8081/cartes/callback"

# Whether the focused element shows where the focus is (outline or box shadow).
FOCUS_VISIBLE_JS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const s = getComputedStyle(el);
    const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    return {id: el.id, tag: el.tagName, visible: outline || s.boxShadow !== 'none'};
}"""


chromium = pytest.fixture(scope="module", name="chromium")(chromium_fixture)


def new_tab(chromium: Browser, server, prefix: str, javascript: bool = True) -> Tab:
    return chromium.tab(server.base_url, MODULES_ORIGIN, prefix=prefix, javascript=javascript)


def status_of(response) -> int:
    assert response is not None, "no navigation happened"
    return response.status


def submit(tab: Tab, button_text: str, expected_status: int = 200) -> None:
    with tab.page.expect_navigation() as navigation:
        tab.page.get_by_role("button", name=button_text).click()
    status = status_of(navigation.value)
    assert status == expected_status, f"{button_text!r} answered {status}: {tab.page.inner_text('main')}"


# --- keyboard -------------------------------------------------------------------------------


def tab_to(tab: Tab, selector: str) -> None:
    """Presses Tab until the element matching `selector` has the focus; each element the
    focus lands on on the way must show it."""
    page = tab.page
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUS_VISIBLE_JS)
        if focused is not None:
            assert focused["visible"], f"no visible focus on {focused} ({page.url})"
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with Tab on {page.url}")


def type_into(tab: Tab, field_id: str, text: str) -> None:
    tab_to(tab, f"#{field_id}")
    tab.page.keyboard.type(text)


def choose_organisation_by_keyboard(tab: Tab, organisation_id: str, search: str) -> None:
    page = tab.page
    type_into(tab, "organisation-search", search)
    page.keyboard.press("Enter")  # moves to the list, does not post the form
    assert page.evaluate("document.activeElement.id") == "organisation_id"
    for _ in range(10):
        if page.input_value("#organisation_id") == organisation_id:
            return
        page.keyboard.press("ArrowDown")
    raise AssertionError(f"{organisation_id} not chosen with the arrow keys")


def sign_up_by_keyboard(tab: Tab, person: Person) -> None:
    for field_id, value in (
        ("given_name", person.given_name),
        ("family_name", person.family_name),
        ("email", person.email),
        ("phone", person.phone),
    ):
        type_into(tab, field_id, value)
    choose_organisation_by_keyboard(tab, person.organisation_id, "nancy")
    for field_id, value in (
        ("function", person.function),
        ("description", person.description),
        ("login", person.login),
        ("password", person.password),
        ("password_confirmation", person.password),
    ):
        type_into(tab, field_id, value)
    tab_to(tab, "form[action='/signup'] button[type=submit]")
    with tab.page.expect_navigation() as navigation:
        tab.page.keyboard.press("Enter")
    assert status_of(navigation.value) == 200, tab.page.inner_text("main")


# --- what the pages must say ----------------------------------------------------------------


def assert_errors_linked(tab: Tab, fields: list[str]) -> None:
    """Errors announced (role=alert summary, focused), each linked to its field: the field
    is aria-invalid and described by its message, the summary links to it."""
    page = tab.page
    summary = page.locator("#error-summary")
    assert summary.get_attribute("role") == "alert"
    if tab.context_js:
        assert page.evaluate("document.activeElement.id") == "error-summary"
    for name in fields:
        control = page.locator(f"#{name}")
        assert control.get_attribute("aria-invalid") == "true", f"{name} is not aria-invalid"
        described = control.get_attribute("aria-describedby") or ""
        message = page.locator(f"#{name}-error")
        assert f"{name}-error" in described.split(), f"{name} is not described by its error"
        # A field's hint stays announced beside its error.
        if page.locator(f"#{name}-hint").count():
            assert f"{name}-hint" in described.split(), f"{name} lost its hint"
        assert message.inner_text().strip(), f"{name}: empty error message"
        assert summary.locator(f"a[href='#{name}']").count() == 1, f"{name} not in the summary"


def rule_states(tab: Tab) -> list[str]:
    return tab.page.eval_on_selector_all(
        "#password-rules li.rule",
        "items => items.map(li => li.classList.contains('rule-met') ? 'met'"
        " : li.classList.contains('rule-unmet') ? 'unmet' : 'none')",
    )


def assert_rules_follow_typing(tab: Tab, good_password: str, login: str | None) -> None:
    """With JavaScript, each rule says met or not while the password is typed. The
    rule on the person's own data is checked live where the page has the login (sign-up);
    the last rule (zxcvbn) only on the server, so it stays neutral."""
    page = tab.page
    assert set(rule_states(tab)) == {"none"}, rule_states(tab)
    page.locator("#password").press_sequentially("a")
    first = rule_states(tab)
    assert first[:5] == ["unmet", "met", "unmet", "unmet", "unmet"], f"after typing 'a': {first}"
    page.fill("#password", "")
    page.locator("#password").press_sequentially(good_password)
    personal = "met" if login else "none"
    expected = ["met"] * 5 + [personal, "none"]
    assert rule_states(tab) == expected, f"after a good password: {rule_states(tab)}"
    spoken = page.locator("#password-rules .rule-state").first.inner_text()
    assert "(respectée)" in spoken, spoken
    if login:
        page.fill("#login", login)
        page.fill("#password", "")
        page.locator("#password").press_sequentially(f"{login.upper()}-Aa1!")
        assert rule_states(tab)[5] == "unmet", f"the login in the password: {rule_states(tab)}"
        page.fill("#login", "")
    page.fill("#password", "")


def assert_organisations_searchable(tab: Tab) -> None:
    page = tab.page
    everyone = page.eval_on_selector_all("#organisation_id option[value]:not([value=''])", "o => o.length")
    page.fill("#organisation-search", "eurométropole")
    visible = page.eval_on_selector_all(
        "#organisation_id option:not([value=''])", "os => os.filter(o => !o.hidden).map(o => o.value)"
    )
    assert visible == ["eurometropole-strasbourg"], visible
    assert "1 organisme correspond" in page.inner_text("#organisation-search-count")
    page.fill("#organisation-search", "")
    shown = page.eval_on_selector_all(
        "#organisation_id option:not([value=''])", "os => os.filter(o => !o.hidden).length"
    )
    assert shown == everyone >= 4


def login_page(tab: Tab, module: Module):
    request = module.authorization_request()
    assert status_of(tab.goto(request.url)) == 200
    assert "/login?" in tab.page.url, tab.page.url
    return request


def log_in(tab: Tab, module: Module, identifier: str, password: str, name: str) -> dict:
    """From the module to its callback; returns the ID token's claims."""
    request = login_page(tab, module)
    tab.check(name)
    tab.page.fill("#identifier", identifier)
    tab.page.fill("#password", password)
    tab.page.get_by_role("button", name="Connexion").click()
    tab.page.wait_for_url(f"{module.redirect_uri}?*")
    callback = tab.callback.urls[-1]
    token = module.exchange(callback, request)
    return module.id_token_claims(token["id_token"], request.nonce)


def one_rule_broken(person: Person) -> list[tuple[str, dict[str, str], list[str]]]:
    return [
        ("prenom", {"given_name": ""}, ["given_name"]),
        ("nom", {"family_name": ""}, ["family_name"]),
        ("courriel", {"email": "claire.martin-chez-example.org"}, ["email"]),
        ("telephone", {"phone": "pas un numéro"}, ["phone"]),
        ("organisme", {"organisation_id": ""}, ["organisation_id"]),
        ("login", {"login": ""}, ["login"]),
        ("mot-de-passe-court", {"password": "Court1!a", "password_confirmation": "Court1!a"}, ["password"]),
        ("mot-de-passe-login", {"password": f"{person.login}-Aa1!xyz", "password_confirmation": f"{person.login}-Aa1!xyz"}, ["password"]),
        ("confirmation", {"password_confirmation": "Autre-Chose-42!"}, ["password_confirmation"]),
    ]


def fill_signup(tab: Tab, fields: dict[str, str]) -> None:
    page = tab.page
    for name, value in fields.items():
        if name == "organisation_id":
            page.select_option("#organisation_id", value)
        else:
            page.fill(f"#{name}", value)


# --- the tests ------------------------------------------------------------------------------


def test_journey_in_a_real_browser(start_idp, chromium):
    started = time.monotonic()
    server = start_idp()
    admin = Dgectl(server)
    datahub = Module.datahub(server.base_url)
    tab = new_tab(chromium, server, "journey")
    person = new_person()

    # Login page, then the sign-up page it links to.
    login_page(tab, datahub)
    tab.check("login")
    # The portal's colour comes from /static/portal.css (the embedded default: #000091);
    # ProConnect's button keeps its own colour whatever the portal's.
    colour = "el => getComputedStyle(el).backgroundColor"
    assert tab.page.eval_on_selector("button.btn-primary", colour) == "rgb(0, 0, 145)"
    assert tab.page.eval_on_selector(".proconnect-button", colour) == "rgb(0, 0, 145)"
    with tab.page.expect_navigation():
        tab.page.get_by_role("link", name="Vous n'avez pas de compte ? S'enregistrer").click()
    assert "/signup" in tab.page.url
    signup_url = tab.page.url
    tab.check("signup")
    assert_rules_follow_typing(tab, person.password, person.login)
    assert_organisations_searchable(tab)

    # Every rule broken at once, then each rule alone: each error linked to its field.
    fill_signup(tab, {**person.signup_fields(), "given_name": "", "family_name": "",
                      "email": "claire.martin-chez-example.org", "password": "Court1!a",
                      "password_confirmation": "Autre-Chose-42!"})
    submit(tab, "Envoyer", 400)
    assert_errors_linked(tab, ["given_name", "family_name", "email", "password", "password_confirmation"])
    assert tab.page.input_value("#password") == "", "the password is typed back into the page"
    tab.check("signup-errors")
    for name, broken, fields in one_rule_broken(person):
        tab.goto(signup_url)
        fill_signup(tab, {**person.signup_fields(), **broken})
        submit(tab, "Envoyer", 400)
        assert_errors_linked(tab, fields)
        tab.check(f"signup-error-{name}")

    # The sign-up itself, by keyboard only.
    tab.goto(signup_url)
    sign_up_by_keyboard(tab, person)
    tab.check("signup-done")

    # The confirmation link: a page with a button, then the confirmed page.
    link = confirmation_link(wait_for_subject(server.outbox, person.email, CONFIRM_SUBJECT))
    assert status_of(tab.goto(link)) == 200
    tab.check("confirm")
    submit(tab, "Confirmer mon adresse")
    tab.check("confirmed")
    admin.ok("accounts", "approve", person.login)
    wait_for_subject(server.outbox, person.email, ACTIVATED_SUBJECT)

    # A wrong password: refused on the page, the error announced and tied to the fields.
    login_page(tab, datahub)
    tab.page.fill("#identifier", person.login)
    tab.page.fill("#password", "Pas-le-bon-mot-de-passe-1!")
    with tab.page.expect_navigation() as navigation:
        tab.page.get_by_role("button", name="Connexion").click()
    assert 400 <= status_of(navigation.value) < 500, "a wrong password was not refused"
    assert tab.page.get_attribute("#login-error", "role") == "alert"
    assert tab.page.get_attribute("#password", "aria-describedby") == "login-error"
    assert not tab.callback.urls
    tab.check("login-wrong-password")

    # Login through the module: code, token, signed ID token.
    claims = log_in(tab, datahub, person.login, person.password, "login-before-login")
    assert claims["email"] == person.email
    for path, name in (
        ("/account", "account"),
        ("/account/password", "account-password"),
        ("/account/email", "account-email"),
        ("/account/delete", "account-delete"),
    ):
        assert status_of(tab.goto(f"{server.base_url}{path}")) == 200, path
        tab.check(name)

    # A module that is not first-party asks for the person's consent first.
    admin.ok("clients", "add", MAPS_ID, "--redirect-uri", MAPS_REDIRECT_URI,
             "--name", "Portail cartographique", "--public")
    # The person has a session already: /authorize leads straight to the consent page.
    maps = Module(discover(server.base_url), MAPS_ID, MAPS_REDIRECT_URI)
    request = maps.authorization_request()
    assert status_of(tab.goto(request.url)) == 200
    assert "/consent?" in tab.page.url, tab.page.url
    assert "Portail cartographique" in tab.page.inner_text("main")
    tab.check("consent")
    tab.page.get_by_role("button", name="Autoriser").click()
    tab.page.wait_for_url(f"{MAPS_REDIRECT_URI}?*")
    token = maps.exchange(tab.callback.urls[-1], request)
    assert maps.id_token_claims(token["id_token"], request.nonce)["email"] == person.email

    # Password reset from the "forgotten" link.
    assert status_of(tab.goto(f"{server.base_url}/password/forgot")) == 200
    tab.check("password-forgot")
    tab.page.fill("#email", person.email)
    submit(tab, "Recevoir un lien")
    tab.check("password-forgot-sent")
    mail = wait_for_subject(server.outbox, person.email, RESET_SUBJECT)
    reset_link = _RESET_LINK.findall(mail.body)[0]
    assert status_of(tab.goto(reset_link)) == 200
    tab.check("password-reset")
    new_password = f"Quetsche-du-Sundgau-{secrets.token_hex(3)}-9?"
    assert_rules_follow_typing(tab, new_password, None)
    tab.page.fill("#password", new_password)
    tab.page.fill("#password_confirmation", new_password)
    submit(tab, "Enregistrer le mot de passe")
    tab.check("password-reset-done")

    # The old password no longer works; the new one does.
    claims = log_in(tab, datahub, person.email, new_password, "login-after-reset")
    assert claims["email"] == person.email

    # The home page shows the connected state; /logout typed by hand asks first.
    assert status_of(tab.goto(f"{server.base_url}/")) == 200
    assert "Vous êtes connecté(e)" in tab.page.inner_text("main")
    tab.check("home-signed-in")
    assert status_of(tab.goto(f"{server.base_url}/logout")) == 200
    assert "Un service demande" not in tab.page.inner_text("main")
    tab.check("logout-confirm")
    # Logout from the account page's button, then the logged-out page; the profile
    # needs a login again, which comes back to the profile.
    assert status_of(tab.goto(f"{server.base_url}/account")) == 200
    submit(tab, "Se déconnecter")
    assert "déconnecté" in tab.page.inner_text("main")
    tab.check("logged-out")
    tab.goto(f"{server.base_url}/account")
    assert "/login" in tab.page.url, f"the profile is still open after logout: {tab.page.url}"
    tab.page.fill("#identifier", person.email)
    tab.page.fill("#password", new_password)
    submit(tab, "Connexion")
    assert tab.page.url == f"{server.base_url}/account", tab.page.url
    tab.context.close()
    print(f"\nbrowser journey: {time.monotonic() - started:.1f} s")


def test_the_other_pages_pass_axe(start_idp, chromium):
    server = start_idp()
    tab = new_tab(chromium, server, "other")
    assert status_of(tab.goto(f"{server.base_url}/signup/resend")) == 200
    tab.check("signup-resend")
    assert status_of(tab.goto(f"{server.base_url}/confirm?token=")) == 400
    tab.check("error-bad-link")
    assert status_of(tab.goto(f"{server.base_url}/authorize?client_id=inconnu")) == 400
    tab.check("error-bad-authorize")
    tab.context.close()


def test_an_expired_confirmation_link_says_so(start_idp, chromium):
    server = start_idp({"DGE_CONFIRMATION_TTL_SECS": "1"})
    tab = new_tab(chromium, server, "expired")
    person = new_person()
    assert status_of(tab.goto(f"{server.base_url}/signup")) == 200
    fill_signup(tab, person.signup_fields())
    submit(tab, "Envoyer")
    link = confirmation_link(wait_for_subject(server.outbox, person.email, CONFIRM_SUBJECT))
    time.sleep(2.5)
    # Said at once, without a button that could only fail.
    assert status_of(tab.goto(link)) == 400
    assert "a expiré" in tab.page.inner_text("main")
    assert tab.page.get_by_role("button", name="Confirmer mon adresse").count() == 0
    tab.check("confirm-expired")
    tab.context.close()


def test_sign_up_works_without_javascript(start_idp, chromium):
    server = start_idp()
    tab = new_tab(chromium, server, "nojs", javascript=False)
    person = new_person()
    assert status_of(tab.goto(f"{server.base_url}/signup")) == 200
    assert tab.page.locator("#organisation-search").count() == 0
    fill_signup(tab, {**person.signup_fields(), "email": "pas-une-adresse"})
    submit(tab, "Envoyer", 400)
    assert_errors_linked(tab, ["email"])
    tab.check("signup-errors")
    fill_signup(tab, person.signup_fields())
    submit(tab, "Envoyer")
    tab.check("signup-done")
    link = confirmation_link(wait_for_subject(server.outbox, person.email, CONFIRM_SUBJECT))
    tab.goto(link)
    submit(tab, "Confirmer mon adresse")
    tab.check("confirmed")
    tab.context.close()


def module_form_page(request) -> str:
    """The module's page that posts the authorization request to us as a form (OIDC Core
    §3.1.2.1), as an auto-submitting page of another site would."""
    endpoint, query = request.url.split("?", 1)
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in parse_qsl(query)
    )
    return (
        '<!doctype html><html lang="fr"><head><title>Module</title></head><body><main>'
        f'<form method="post" action="{html.escape(endpoint)}">{fields}'
        "<button>Se connecter</button></form></main></body></html>"
    )


def post_from_module(tab: Tab, module: Module, request) -> None:
    """Opens the module's form page (on the module's own origin) and submits it."""
    page_url = f"{MODULES_ORIGIN}formulaire-{secrets.token_hex(4)}"
    body = module_form_page(request)
    tab.context.route(
        page_url,
        lambda route: route.fulfill(status=200, content_type="text/html; charset=utf-8", body=body),
    )
    assert status_of(tab.goto(page_url)) == 200
    tab.page.get_by_role("button", name="Se connecter").click()


def test_an_authorization_request_posted_from_the_modules_site(idp, dgectl, chromium):
    """A module's form posted to /authorize from its own site: the browser sends none of
    our SameSite=Lax cookies with that POST, yet the person logs in once and a later
    posted prompt=none finds the session, as a GET does."""
    datahub = Module.datahub(idp.base_url)
    person = register_active_person(idp, dgectl, datahub)
    tab = new_tab(chromium, idp, "post-authorize")
    request = datahub.authorization_request()
    post_from_module(tab, datahub, request)
    tab.page.wait_for_url(f"{idp.base_url}/login?*")
    tab.page.fill("#identifier", person.login)
    tab.page.fill("#password", person.password)
    tab.page.get_by_role("button", name="Connexion").click()
    tab.page.wait_for_url(f"{datahub.redirect_uri}?*")
    tokens = datahub.exchange(tab.callback.urls[-1], request)
    first = datahub.id_token_claims(tokens["id_token"], request.nonce)
    again = datahub.authorization_request(prompt="none")
    post_from_module(tab, datahub, again)
    tab.page.wait_for_url(f"{datahub.redirect_uri}?*code=*")
    tokens = datahub.exchange(tab.callback.urls[-1], again)
    assert datahub.id_token_claims(tokens["id_token"], again.nonce)["sub"] == first["sub"]
    tab.context.close()
