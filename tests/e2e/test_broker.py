"""Logging in through upstream providers: ProConnect's rules, the Région, allow rules,
and upstreams that misbehave. The upstreams are the real `oidc-provider` package on
loopback (see broker_env.py); the portal module is authlib."""

from __future__ import annotations

import json
from urllib.parse import urljoin

import pytest

import pages
from broker_env import (
    ALLOWED_DOMAIN,
    ALLOWED_IDP,
    ALLOWED_ROLE,
    ALLOWED_SIRET,
    arrive,
    assert_failed_nicely,
    broker_env_fixture,
    datahub_fixture,
    logged_in,
    new_agent,
    tag,
    proconnect_claims,
    upstream_authorize_url,
)
from idp_server import loopback_http
from portal import open_login_page
from upstreams import follow_upstream, log_in_upstream

env = pytest.fixture(scope="module", name="env")(broker_env_fixture)
module = pytest.fixture(scope="module", name="module")(datahub_fixture)


# --- ProConnect's protocol ----------------------------------------------------------


def test_the_authorization_request_follows_proconnect_rules(env, module):
    http = pages.browser()
    login_page = open_login_page(http, module)
    url = upstream_authorize_url(http, login_page, "proconnect")
    upstream = env.upstreams["proconnect"]
    assert url.startswith(f"{upstream.issuer}/authorize?"), url
    assert upstream.issuer.endswith("/api/v2")
    query = pages.query_of(url)
    assert query["response_type"] == "code"
    assert query["client_id"] == "dge-identity"
    assert query["redirect_uri"] == f"{env.idp.base_url}/broker/proconnect/callback"
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32
    assert query["state"] != query["nonce"]
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    scopes = set(query["scope"].split())
    assert {"openid", "given_name", "usual_name", "email", "uid", "siret", "idp_id"} <= scopes
    assert {"organization_label", "roles"} <= scopes
    assert json.loads(query["claims"]) == {
        "id_token": {"acr": {"essential": True, "values": ["eidas1", "eidas2"]}}
    }
    # A second start gets fresh values.
    again = pages.query_of(upstream_authorize_url(http, open_login_page(http, module), "proconnect"))
    assert again["state"] != query["state"] and again["nonce"] != query["nonce"]


def test_a_proconnect_login_creates_an_active_account_with_no_rights(env, module):
    login, email = new_agent(
        env, siret="13002526500013", organization_label="DREAL Grand Est", siren="130025265",
        organizational_unit="Service connaissance", belonging_population="agent",
        custom={"grade": "attache"},
    )
    before_orgs = env.count("organisations")
    arrival = arrive(pages.browser(), env, module, "proconnect", login)
    info = logged_in(module, arrival)
    assert info["email"] == email
    assert info["given_name"] == "Jeanne Marie"
    assert info["family_name"] == "Dupont"  # usual_name: ProConnect has no family_name
    account = env.account_by_email(email)
    assert account["kind"] == "federated"
    assert account["status"] == "active"
    assert account["password_hash"] is None
    assert account["phone"] == "+33388000000"
    assert env.rows("SELECT COUNT(*) FROM grants WHERE account_id = ?", account["id"])[0][0] == 0
    assert env.links_of(account["id"]) == [("proconnect", login)]
    # What ProConnect vouched for is kept with the link, optional claims included.
    facts = json.loads(
        env.rows("SELECT claims FROM federated_links WHERE subject = ?", login)[0][0]
    )
    assert facts == {
        "uid": "jdupont", "idp_id": ALLOWED_IDP, "siret": "13002526500013", "siren": "130025265",
        "organization_label": "DREAL Grand Est", "organizational_unit": "Service connaissance",
        "belonging_population": "agent", "roles": [ALLOWED_ROLE], "custom": {"grade": "attache"},
        "acr": "eidas1",
    }
    # siret and organization_label come only in the signed userinfo JWT: the unknown
    # SIRET proposes an organisation named after the label.
    org = env.rows(
        "SELECT name, siret, status FROM organisations WHERE id = ?", account["organisation_id"]
    )
    assert org == [("DREAL Grand Est", "13002526500013", "proposed")]
    assert env.count("organisations") == before_orgs + 1


def test_a_siret_of_a_trusted_organisation_takes_the_trusted_path(env, module):
    # The seeded Région Grand Est (trusted) and Ville de Nancy (not trusted).
    trusted_login, trusted_email = new_agent(env, siret="20005226700016")
    plain_login, plain_email = new_agent(env, siret="21540395700016")
    before_orgs = env.count("organisations")
    for login in (trusted_login, plain_login):
        logged_in(module, arrive(pages.browser(), env, module, "proconnect", login))
    assert env.count("organisations") == before_orgs, "known SIRETs propose nothing"
    trusted = env.account_by_email(trusted_email)
    plain = env.account_by_email(plain_email)
    assert trusted["organisation_id"] == "region-grand-est"
    assert plain["organisation_id"] == "ville-de-nancy"
    rights = "SELECT right_name FROM grants WHERE account_id = ?"
    assert [r[0] for r in env.rows(rights, trusted["id"])] == ["communautes:member"]
    assert env.rows(rights, plain["id"]) == []
    assert plain["status"] == trusted["status"] == "active"


def test_the_trusted_path_needs_the_siret_of_a_trusted_organisation(env, module):
    """Issue 4: the trusted path is not taken with a SIRET of an organisation that is not
    trusted, nor with a SIRET that matches no organisation, even when the address is at
    a trusted organisation's domain (grandest.fr, the Région's), nor with a lookalike
    of that domain."""
    cases = {
        # Ville de Nancy: in the directory, not trusted.
        "untrusted": new_agent(env, siret="21540395700016"),
        # A valid SIRET that no organisation has.
        "unknown": new_agent(env, siret="13002526500013"),
        # An unknown SIRET and an address that only looks like the Région's domain.
        "lookalike": new_agent(env, siret="13002526500013", domain="grandest.fr.example.org"),
    }
    for login, _ in cases.values():
        logged_in(module, arrive(pages.browser(), env, module, "proconnect", login))
    rights = "SELECT right_name FROM grants WHERE account_id = ?"
    trusted_path = "SELECT COUNT(*) FROM audit_events WHERE subject = ? AND actor = 'trusted-path'"
    for kind, (_, email) in cases.items():
        account = env.account_by_email(email)
        assert account["organisation_id"] != "region-grand-est", kind
        assert env.rows(rights, account["id"]) == [], f"{kind}: {env.rows(rights, account['id'])}"
        assert env.rows(trusted_path, account["id"]) == [(0,)], kind
    assert env.account_by_email(cases["untrusted"][1])["organisation_id"] == "ville-de-nancy"


def test_id_tokens_and_userinfo_signed_rs256_are_accepted(env, module):
    login, email = new_agent(env, upstream="pc-rs256")
    info = logged_in(module, arrive(pages.browser(), env, module, "pc-rs256", login))
    assert info["email"] == email and info["family_name"] == "Dupont"


def test_the_region_logs_in_with_family_name_and_plain_json_userinfo(env, module):
    login = f"region-{tag()}"
    email = f"{login}@grandest.fr"
    env.upstreams["region"].set_person(
        login,
        {"given_name": "Luc", "family_name": "Meyer", "email": email, "email_verified": True,
         "usual_name": "not-used"},
        acr="",
    )
    info = logged_in(module, arrive(pages.browser(), env, module, "region", login))
    assert (info["given_name"], info["family_name"], info["email"]) == ("Luc", "Meyer", email)
    account = env.account_by_email(email)
    assert account["kind"] == "federated" and account["status"] == "active"
    assert account["organisation_id"] is None
    assert env.links_of(account["id"]) == [("region", login)]


def test_an_address_the_region_has_not_verified_is_not_used(env, module):
    login = f"region-{tag()}"
    email = f"{login}@grandest.fr"
    env.upstreams["region"].set_person(
        login,
        {"given_name": "Luc", "family_name": "Meyer", "email": email, "email_verified": False},
        acr="",
    )
    before = env.snapshot()
    arrival = arrive(pages.browser(), env, module, "region", login)
    assert_failed_nicely(env, arrival.answer, before, "pas encore vérifiée")
    assert env.account_by_email(email) is None


def test_client_secret_post_is_what_proconnect_accepts(env, module):
    """The same upstream refuses our client when it is set to client_secret_basic."""
    login, email = new_agent(env)
    upstream = env.upstreams["proconnect"]
    since = len(upstream.output)
    logged_in(module, arrive(pages.browser(), env, module, "proconnect", login))
    upstream.wait_for_line("token-auth client_secret_post", since)
    login, email = new_agent(env)
    before = env.snapshot()
    since = len(upstream.output)
    arrival = arrive(pages.browser(), env, module, "pc-basic", login, upstream="proconnect")
    upstream.wait_for_line("token-auth client_secret_basic", since)
    assert_failed_nicely(env, arrival.answer, before, "n'a pas répondu correctement")
    assert env.account_by_email(email) is None
    assert "token exchange failed" in env.idp.log()


def test_plain_json_userinfo_is_refused_unless_configured(env, module):
    login, email = new_agent(env, upstream="pc-json")
    before = env.snapshot()
    arrival = arrive(pages.browser(), env, module, "pc-json", login)
    assert_failed_nicely(env, arrival.answer, before, "n'a pas répondu correctement")
    assert env.account_by_email(email) is None
    assert "expected a signed JWT" in env.idp.log()


def test_an_insufficient_assurance_level_is_refused(env, module):
    login, email = new_agent(env)
    env.upstreams["proconnect"].set_person(login, proconnect_claims(email), acr="eidas0")
    before = env.snapshot()
    http = pages.browser()
    login_page = open_login_page(http, module)
    authorize_url = upstream_authorize_url(http, login_page, "proconnect")
    callback = log_in_upstream(http, authorize_url, env.upstreams["proconnect"], login)
    answer = pages.get(http, callback)
    assert_failed_nicely(env, answer, before, "niveau de sécurité")
    assert env.account_by_email(email) is None


def test_hints_from_the_module_reach_proconnect(env, module):
    """login_hint, siret_hint and idp_hint given at /authorize reach the upstream."""
    http = pages.browser()
    login_page = open_login_page(
        http, module, login_hint="jeanne@grandest.fr", siret_hint=ALLOWED_SIRET,
        idp_hint=ALLOWED_IDP,
    )
    url = upstream_authorize_url(http, login_page, "proconnect")
    query = pages.query_of(url)
    assert query["login_hint"] == "jeanne@grandest.fr"
    assert query["siret_hint"] == ALLOWED_SIRET
    assert query["idp_hint"] == ALLOWED_IDP
    # The upstream received them (its login page echoes them).
    page = follow_upstream(http, url, env.upstreams["proconnect"].origin)
    document = pages.parse(page)
    assert document.find(id="login_hint").get_text() == "jeanne%40grandest.fr"
    assert document.find(id="siret_hint").get_text() == ALLOWED_SIRET
    assert document.find(id="idp_hint").get_text() == ALLOWED_IDP
    # Malformed hints are dropped rather than passed on.
    bad_page = open_login_page(http, module, siret_hint="12", idp_hint="a b<")
    bad = pages.query_of(upstream_authorize_url(http, bad_page, "proconnect"))
    assert "siret_hint" not in bad and "idp_hint" not in bad
    # Without hints, none are sent.
    plain = pages.query_of(upstream_authorize_url(http, open_login_page(http, module), "proconnect"))
    assert not {"login_hint", "siret_hint", "idp_hint"} & set(plain)


# --- Allow rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"domain": "example.org"},
        {"idp_id": "another-provider"},
        {"roles": ["agent_public_etat"]},
        {"siret": "13002526500013"},
    ],
    ids=["email-domain", "idp_id", "roles", "siret"],
)
def test_allow_rules_refuse_with_an_explanation(env, module, changes):
    changes = dict(changes)
    domain = changes.pop("domain", ALLOWED_DOMAIN)
    login, email = new_agent(env, domain=domain, **changes)
    before = env.snapshot()
    arrival = arrive(pages.browser(), env, module, "pc-restricted", login, upstream="proconnect")
    assert_failed_nicely(env, arrival.answer, before, "réservé à certaines organisations")
    assert env.account_by_email(email) is None


def test_allow_rules_let_the_right_people_in(env, module):
    login, email = new_agent(env)
    info = logged_in(
        module, arrive(pages.browser(), env, module, "pc-restricted", login, upstream="proconnect")
    )
    assert info["email"] == email
    assert ALLOWED_ROLE in proconnect_claims(email)["roles"]


# --- Misbehaving upstreams -----------------------------------------------------------


def test_an_unreachable_upstream_ends_on_a_french_page(env, module):
    http = pages.browser()
    login_page = open_login_page(http, module)
    before = env.snapshot()
    for provider in ("pc-down", "pc-slow"):
        button = pages.control_leading_to(
            login_page.response, f"/broker/{provider}/start", {"req": login_page.req}
        )
        answer = pages.get(http, urljoin(login_page.response.url, button["href"]))
        assert_failed_nicely(env, answer, before, "n'a pas répondu correctement")
    assert "discovery failed" in env.idp.log()


def test_a_refusal_at_the_upstream_creates_nothing(env, module):
    login, email = new_agent(env)
    before = env.snapshot()
    arrival = arrive(pages.browser(), env, module, "proconnect", login, action="cancel")
    assert pages.query_of(arrival.answer.url).get("error") == "access_denied"
    assert_failed_nicely(env, arrival.answer, before, "annulée ou refusée")


def test_a_replayed_callback_is_refused(env, module):
    login, email = new_agent(env)
    http = pages.browser()
    login_page = open_login_page(http, module)
    authorize_url = upstream_authorize_url(http, login_page, "proconnect")
    callback = log_in_upstream(http, authorize_url, env.upstreams["proconnect"], login)
    first = pages.get(http, callback)
    module.callback_url(first)
    before = env.snapshot()
    # The same browser, and another one holding a stolen callback URL.
    for browser in (http, pages.browser()):
        again = pages.get(browser, callback)
        assert_failed_nicely(env, again, before, "expiré ou a déjà été utilisée")


def test_a_state_from_another_browser_is_refused(env, module):
    """Login CSRF: a callback only completes in the browser that started the login."""
    login, email = new_agent(env)
    victim, attacker = pages.browser(), pages.browser()
    authorize_url = upstream_authorize_url(attacker, open_login_page(attacker, module), "proconnect")
    callback = log_in_upstream(attacker, authorize_url, env.upstreams["proconnect"], login)
    upstream_authorize_url(victim, open_login_page(victim, module), "proconnect")
    before = env.snapshot()
    answer = pages.get(victim, callback)
    assert_failed_nicely(env, answer, before, "expiré ou a déjà été utilisée")
    assert env.account_by_email(email) is None


def test_discovery_is_read_under_api_v2(env):
    answer = loopback_http().get(
        f"{env.upstreams['proconnect'].issuer}/.well-known/openid-configuration", timeout=5
    )
    document = answer.json()
    assert document["issuer"] == env.upstreams["proconnect"].issuer
    assert "ES256" in document["id_token_signing_alg_values_supported"]
    assert document["end_session_endpoint"].endswith("/api/v2/session/end")


def rogue_callback(env, module, mode: str, email: str):
    """A login at the rogue upstream in `mode`; returns our answer to its callback."""
    env.rogue.mode = mode
    env.rogue.person = {"sub": f"rogue-{tag()}", **proconnect_claims(email)}
    http = pages.browser()
    authorize = upstream_authorize_url(http, open_login_page(http, module), "rogue")
    callback = pages.location(pages.get(http, authorize))
    assert callback.startswith(f"{env.idp.base_url}/broker/rogue/callback?"), callback
    return pages.get(http, callback)


def test_the_rogue_stand_in_behaves_when_asked(env, module):
    email = f"rogue-ok-{tag()}@{ALLOWED_DOMAIN}"
    answer = rogue_callback(env, module, "ok", email)
    module.callback_url(answer)
    assert env.account_by_email(email)["status"] == "active"


@pytest.mark.parametrize(
    "mode, logged",
    [
        ("bad_signature", "upstream ID token rejected: Signature verification failed"),
        ("alg_none", "upstream ID token rejected: Signature verification failed"),
        ("wrong_iss", "upstream ID token rejected: Invalid issuer"),
        ("wrong_aud", "upstream ID token rejected: Invalid audiences"),
        ("expired", "upstream ID token rejected: Expired"),
        ("wrong_nonce", "upstream ID token rejected: Invalid nonce"),
        ("userinfo_bad_signature", "upstream userinfo rejected: InvalidSignature"),
    ],
)
def test_a_forged_or_stale_token_is_refused(env, module, mode, logged):
    email = f"rogue-{mode.replace('_', '-')}-{tag()}@{ALLOWED_DOMAIN}"
    before = env.snapshot()
    log_before = len(env.idp.log())
    answer = rogue_callback(env, module, mode, email)
    assert_failed_nicely(env, answer, before, "n'a pas répondu correctement")
    assert env.account_by_email(email) is None
    assert logged in env.idp.log()[log_before:]
