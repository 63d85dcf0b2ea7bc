"""The account-linking page in headless Chromium (issue 11): a ProConnect identity
arrives with the address of an existing local account; the person proves the account is
theirs with its password and lands in the module.

The upstream part (oidc-provider's own login form, on another loopback port) is driven
over HTTP, as in the broker tests: the browser is kept on our server only. Its cookies are
handed to Chromium before it opens our callback, as if the same browser had come back.
"""

from __future__ import annotations

import pytest

import pages
from broker_env import (
    broker_env_fixture,
    datahub_fixture,
    new_agent,
    proconnect_claims,
    upstream_authorize_url,
)
from browser import chromium_fixture
from dgectl import Dgectl
from portal import open_login_page, register_active_person
from upstreams import log_in_upstream

env = pytest.fixture(scope="module", name="env")(broker_env_fixture)
module = pytest.fixture(scope="module", name="module")(datahub_fixture)
MODULES_ORIGIN = "http://localhost:8081/"


chromium = pytest.fixture(scope="module", name="chromium")(chromium_fixture)


def test_the_link_page_in_a_real_browser(env, module, chromium):
    person = register_active_person(env.idp, Dgectl(env.idp), module)
    agent, _ = new_agent(env)
    env.upstreams["proconnect"].set_person(agent, proconnect_claims(person.email))

    http = pages.browser()
    login_page = open_login_page(http, module)
    authorize_url = upstream_authorize_url(http, login_page, "proconnect")
    callback = log_in_upstream(http, authorize_url, env.upstreams["proconnect"], agent)

    tab = chromium.tab(env.idp.base_url, MODULES_ORIGIN, prefix="link")
    tab.context.add_cookies([
        {"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": c.path or "/"}
        for c in http.cookies
    ])
    answer = tab.goto(callback)
    assert answer.status == 200, tab.page.inner_text("main")
    main = tab.page.inner_text("main")
    assert "Un compte existe déjà avec cette adresse" in main
    assert person.email not in main, "the address is shown masked"
    tab.check("broker-link")

    # A wrong password: the error is announced and tied to the field.
    tab.page.fill("#password", "Pas-le-bon-mot-de-passe-1!")
    with tab.page.expect_navigation() as navigation:
        tab.page.get_by_role("button", name="Lier mon identité ProConnect").click()
    assert navigation.value.status == 401
    assert tab.page.get_attribute("#password", "aria-invalid") == "true"
    assert tab.page.get_attribute("#password", "aria-describedby") == "link-error"
    assert tab.page.get_attribute("#link-error", "role") == "alert"
    assert "Mot de passe incorrect" in tab.page.inner_text("#link-error")
    tab.check("broker-link-wrong-password")

    # The right one links the identity and sends the person on to the module.
    tab.page.fill("#password", person.password)
    tab.page.get_by_role("button", name="Lier mon identité ProConnect").click()
    tab.page.wait_for_url(f"{module.redirect_uri}?*")
    token = module.exchange(tab.callback.urls[-1], login_page.request)
    claims = module.id_token_claims(token["id_token"], login_page.request.nonce)
    info = module.userinfo(token["access_token"]).json()
    assert info["email"] == person.email and claims["sub"] == info["sub"]
    tab.context.close()
