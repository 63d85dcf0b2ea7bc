"""Federated accounts and links: keyed on (upstream, sub), a new `sub` for the same person,
an email that changes upstream, one address for one person, and links proved by the
account's password or by a code emailed to it."""

from __future__ import annotations

import re
import time

import pytest
import requests

import pages
from broker_env import (
    Arrival,
    arrive,
    broker_env_fixture,
    datahub_fixture,
    logged_in,
    new_agent,
    proconnect_claims,
    request_logout,
)
from dgectl import Dgectl, items
from outbox import wait_for_mail
from portal import new_person, open_login_page, register_active_person, sign_up, submit_login
from upstreams import follow_upstream

env = pytest.fixture(scope="module", name="env")(broker_env_fixture)
module = pytest.fixture(scope="module", name="module")(datahub_fixture)

LINK_TITLE = "Un compte existe déjà avec cette adresse"
CODE_SUBJECT = "Votre code pour lier votre identité ProConnect – DataGrandEst"


@pytest.fixture(scope="module")
def dgectl(env) -> Dgectl:
    return Dgectl(env.idp)


def first_login(env, module, login: str) -> dict:
    """Logs in through ProConnect; returns the module's userinfo."""
    return logged_in(module, arrive(pages.browser(), env, module, "proconnect", login))


def audit(env, account_id: str, action: str) -> list[str]:
    return [
        row[0]
        for row in env.rows(
            "SELECT detail FROM audit_events WHERE subject = ? AND action = ? ORDER BY created_at",
            account_id,
            action,
        )
    ]


def link_offer(env, module, login: str, http=None):
    """Arrives with an identity whose address is taken; returns (browser, arrival)."""
    http = http or pages.browser()
    arrival = arrive(http, env, module, "proconnect", login)
    assert arrival.answer.status_code == 200, pages.page_text(arrival.answer)
    assert LINK_TITLE in pages.page_text(arrival.answer)
    return http, arrival


def press(http, page, path: str, changes: dict | None = None):
    form = pages.control_leading_to(page, path)
    return pages.submit(http, page, form, changes or {})


def emailed_code(env, email: str, after: int) -> str:
    def fresh(mail) -> bool:
        return mail.subject == CODE_SUBJECT and mail.path.stat().st_mtime_ns > after

    mail = wait_for_mail(env.idp.outbox, email, fresh, "link code")
    found = re.findall(r"\b(\d{6})\b", mail.body)
    assert found, mail.body
    return found[0]


def test_later_logins_refresh_the_profile_and_record_what_changed(env, module):
    login, email = new_agent(env)
    first_login(env, module, login)
    account = env.account_by_email(email)
    new_email = f"{login}.nouveau@grandest.fr"
    env.upstreams["proconnect"].set_person(
        login, proconnect_claims(new_email, usual_name="Dupont-Weber", phone_number="+33388111111")
    )
    info = first_login(env, module, login)
    assert info["email"] == new_email and info["family_name"] == "Dupont-Weber"
    again = env.account_by_email(new_email)
    assert again["id"] == account["id"], "the same sub must land on the same account"
    assert env.account_by_email(email) is None
    assert again["phone"] == "+33388111111"
    assert env.links_of(account["id"]) == [("proconnect", login)]
    assert audit(env, account["id"], "account.profile_refreshed") == [
        "changed=family_name,phone,email"
    ]
    # Nothing changed upstream: nothing recorded.
    first_login(env, module, login)
    assert len(audit(env, account["id"], "account.profile_refreshed")) == 1


def test_a_new_sub_for_the_same_person_is_linked_with_an_emailed_code(env, module):
    first_sub, email = new_agent(env)
    first_login(env, module, first_sub)
    account = env.account_by_email(email)
    # ProConnect gives the person a new sub when they come through another provider.
    second_sub = f"{first_sub}-via-autre-fi"
    env.upstreams["proconnect"].set_person(second_sub, proconnect_claims(email))
    before = env.snapshot()
    http, arrival = link_offer(env, module, second_sub)
    page = arrival.answer
    # The account has no password: the page offers the emailed code, not a password.
    assert "password" not in pages.named_controls(pages.parse(page))
    assert env.snapshot() == before
    sent_after = max((p.stat().st_mtime_ns for p in env.idp.outbox.glob("*.eml")), default=0)
    page = press(http, page, "/broker/link/code")
    assert page.status_code == 200, pages.page_text(page)
    code = emailed_code(env, email, sent_after)
    wrong = "000000" if code != "000000" else "111111"
    refused = pages.submit(http, page, pages.form_with_field(page, "code"), {"code": wrong})
    assert refused.status_code == 401 and "Code incorrect" in pages.page_text(refused)
    assert env.snapshot() == before
    answer = pages.submit(http, refused, pages.form_with_field(refused, "code"), {"code": code})
    info = logged_in(module, Arrival(arrival.login_page, arrival.authorize_url, answer))
    assert info["email"] == email
    assert env.links_of(account["id"]) == sorted([("proconnect", first_sub), ("proconnect", second_sub)])
    assert env.count("accounts") == before[0]
    assert audit(env, account["id"], "account.link_added") == ["proof=email_code"]
    # From now on the new sub logs straight in.
    first_login(env, module, second_sub)


def test_a_local_account_is_linked_only_after_its_password(env, module, dgectl):
    person = register_active_person(env.idp, dgectl, module)
    login, _ = new_agent(env)
    env.upstreams["proconnect"].set_person(login, proconnect_claims(person.email))
    before = env.snapshot()
    http, arrival = link_offer(env, module, login)
    text = pages.page_text(arrival.answer)
    assert person.email not in text, "the address is shown masked"
    form = pages.form_with_field(arrival.answer, "password")
    refused = pages.submit(http, arrival.answer, form, {"password": "Pas-le-bon-mot-de-passe-1!"})
    assert refused.status_code == 401 and "Mot de passe incorrect" in pages.page_text(refused)
    assert env.snapshot() == before
    # A wrong password here is a failed login of the account: the throttle, its lock
    # and the owner's lock email count it as they count the login form's.
    account_id = env.account_by_email(person.email)["id"]
    deadline = time.monotonic() + 5
    while not audit(env, account_id, "login.failed"):
        assert time.monotonic() < deadline, "the wrong link password was not a failed login"
        time.sleep(0.1)
    form = pages.form_with_field(refused, "password")
    answer = pages.submit(http, refused, form, {"password": person.password})
    info = logged_in(module, Arrival(arrival.login_page, arrival.authorize_url, answer))
    assert info["email"] == person.email
    account = env.account_by_email(person.email)
    assert account["kind"] == "local" and account["login"] == person.login
    links = items(dgectl.json("links", "list", person.login), "links")
    assert [(link["provider"], link["subject"]) for link in links] == [("proconnect", login)]
    assert env.count("accounts") == before[0]
    # The owner is told of the new way into the account, with a way out if it was not them.
    notice = wait_for_mail(
        env.idp.outbox, person.email,
        lambda mail: mail.subject.startswith("Nouvelle connexion liée à votre compte"), "link notice",
    )
    assert "ProConnect" in notice.body and "/password/forgot" in notice.body
    # Next time, straight in; the local password still works too.
    assert first_login(env, module, login)["email"] == person.email
    http = pages.browser()
    answer = submit_login(http, open_login_page(http, module), person.login, person.password)
    assert answer.status_code == 303


def test_an_address_of_an_unconfirmed_sign_up_says_what_comes_next(env, module):
    person = new_person()
    sign_up(pages.browser(), module, person)
    login, _ = new_agent(env)
    env.upstreams["proconnect"].set_person(login, proconnect_claims(person.email))
    before = env.snapshot()
    arrival = arrive(pages.browser(), env, module, "proconnect", login)
    text = pages.page_text(arrival.answer)
    assert arrival.answer.status_code == 403, text
    assert "attend la confirmation" in text and "courriel de confirmation" in text, text
    assert LINK_TITLE not in text, "no link offer for an account that cannot be linked"
    assert env.snapshot() == before


def test_cancelling_a_link_offer_links_and_creates_nothing(env, module, dgectl):
    person = register_active_person(env.idp, dgectl, module)
    login, _ = new_agent(env)
    env.upstreams["proconnect"].set_person(login, proconnect_claims(person.email))
    before = env.snapshot()
    http, arrival = link_offer(env, module, login)
    offer_page = arrival.answer
    answer = press(http, offer_page, "/broker/link/cancel")
    assert answer.status_code == 200
    assert "Aucun compte n'a été lié ni créé" in pages.page_text(answer)
    pages.control_leading_to(answer, "/login", {"req": arrival.login_page.req})
    assert env.snapshot() == before
    # The offer is gone: the old page's form no longer links anything.
    late = pages.submit(
        http, offer_page, pages.form_with_field(offer_page, "password"), {"password": person.password}
    )
    assert late.status_code == 400 and pages.is_french_page(late)
    assert env.snapshot() == before


def test_a_local_sign_up_with_a_proconnect_address_points_the_owner_at_the_button(env, module):
    login, email = new_agent(env)
    first_login(env, module, login)
    accounts = env.count("accounts")
    person = new_person()
    person.email = email
    answer = sign_up(pages.browser(), module, person)
    assert answer.status_code == 200  # the same answer as any sign-up: no enumeration
    assert env.count("accounts") == accounts
    mail = wait_for_mail(
        env.idp.outbox, email, lambda m: m.subject.startswith("Tentative d'inscription"), "notice"
    )
    assert "bouton « ProConnect »" in mail.body, mail.body


def test_a_local_login_with_a_proconnect_address_says_which_button_to_use(env, module):
    login, email = new_agent(env)
    first_login(env, module, login)
    http = pages.browser()
    page = open_login_page(http, module)
    answer = submit_login(http, page, email, "Un-mot-de-passe-quelconque-1!")
    assert answer.status_code == 401
    text = pages.page_text(answer)
    assert "pas de mot de passe DataGrandEst" in text and "bouton « ProConnect »" in text, text
    pages.control_leading_to(answer, "/broker/proconnect/start", {"req": page.req})


def test_dgectl_lists_providers_and_removes_links(env, module, dgectl):
    providers = {p["name"]: p for p in items(dgectl.json("providers", "list"), "providers")}
    assert providers["proconnect"]["configured"] is True
    assert providers["proconnect"]["issuer"] == env.upstreams["proconnect"].issuer
    assert providers["region"]["label"] == "La Région Grand Est"
    login, email = new_agent(env)
    first_login(env, module, login)
    account = env.account_by_email(email)
    links = items(dgectl.json("links", "list", email), "links")
    assert [(link["provider"], link["subject"]) for link in links] == [("proconnect", login)]
    dgectl.ok("links", "remove", account["id"], "proconnect", login, "--yes")
    assert env.links_of(account["id"]) == []
    assert audit(env, account["id"], "account.link_removed") == ["provider=proconnect"]
    # Unlinked, the identity no longer logs in silently: its address is taken, so the
    # person is offered to prove the account again.
    link_offer(env, module, login)


def test_logging_out_ends_the_proconnect_session_too(env, module):
    login, email = new_agent(env)
    upstream = env.upstreams["proconnect"]
    http = pages.browser()
    logged_in(module, arrive(http, env, module, "proconnect", login))
    start = f"{env.idp.base_url}/broker/proconnect/start"
    # Single sign-on at the upstream: a second click comes straight back, no login form.
    silent = follow_upstream(http, pages.location(pages.get(http, start)), upstream.origin)
    assert silent.is_redirect and pages.location(silent).startswith(
        f"{env.idp.base_url}/broker/proconnect/callback?"
    ), silent.status_code
    answer = request_logout(
        http,
        f"{env.idp.base_url}/logout?client_id=datahub"
        "&post_logout_redirect_uri=http://localhost:8081/&state=retour-123",
    )
    end_session = pages.location(answer)
    assert end_session.startswith(f"{upstream.issuer}/session/end?"), end_session
    query = pages.query_of(end_session)
    assert query["post_logout_redirect_uri"] == f"{env.idp.base_url}/broker/proconnect/logged-out"
    assert len(query["state"]) >= 32 and query["id_token_hint"].count(".") == 2
    confirm = pages.get(http, end_session)
    form = pages.parse(confirm).find("form", id="op.logoutForm")
    xsrf = form.find("input", attrs={"name": "xsrf"})["value"]
    back = pages.post(http, requests.compat.urljoin(confirm.url, form["action"]),
                      {"xsrf": xsrf, "logout": "yes"})
    back_url = pages.location(back)
    assert back_url.startswith(f"{env.idp.base_url}/broker/proconnect/logged-out?"), back_url
    assert pages.location(pages.get(http, back_url)) == "http://localhost:8081/?state=retour-123"
    # The upstream session is over: the next click shows its login form.
    again = follow_upstream(http, pages.location(pages.get(http, start)), upstream.origin)
    assert again.status_code == 200 and "login" in pages.named_controls(pages.parse(again))
    # And ours too: the module's next request leads to the login page.
    open_login_page(http, module)
    # The return state is single use.
    replay = pages.get(http, back_url)
    assert replay.status_code == 200 and "déconnecté" in pages.page_text(replay)


def test_logout_refuses_an_unregistered_return_address(env, module):
    login, _ = new_agent(env)
    http = pages.browser()
    logged_in(module, arrive(http, env, module, "proconnect", login))
    answer = pages.get(
        http,
        f"{env.idp.base_url}/logout?client_id=datahub&post_logout_redirect_uri=https://evil.example/",
    )
    assert answer.status_code == 400 and pages.is_french_page(answer)
    assert "n'est pas enregistrée" in pages.page_text(answer)


def test_logging_out_of_a_local_session_returns_straight_to_the_module(env, module, dgectl):
    person = register_active_person(env.idp, dgectl, module)
    http = pages.browser()
    answer = submit_login(http, open_login_page(http, module), person.login, person.password)
    module.callback_url(answer)
    answer = request_logout(
        http,
        f"{env.idp.base_url}/logout?client_id=datahub"
        "&post_logout_redirect_uri=http://localhost:8081/&state=s1",
    )
    assert pages.location(answer) == "http://localhost:8081/?state=s1"
    open_login_page(http, module)  # the session is over: the module's request leads to /login


def test_a_suspended_account_is_refused_through_proconnect_until_reactivated(
    env, module, dgectl
):
    login, email = new_agent(env)
    first_login(env, module, login)
    account = env.account_by_email(email)
    dgectl.ok("accounts", "suspend", email, "--reason", "Compte compromis", "--yes")
    arrival = arrive(pages.browser(), env, module, "proconnect", login)
    assert arrival.answer.status_code == 403, pages.page_text(arrival.answer)
    assert "Location" not in arrival.answer.headers
    assert pages.is_french_page(arrival.answer)
    assert (
        "Votre compte est suspendu. Pour en savoir plus, écrivez à l'équipe DataGrandEst "
        "à l'adresse contact@datagrandest.fr." in pages.page_text(arrival.answer)
    )
    assert env.account_by_email(email)["status"] == "suspended"
    dgectl.ok("accounts", "reactivate", account["id"])
    assert first_login(env, module, login)["email"] == email
