"""Issue 3, end to end: local accounts in full, through the pages and through gRPC.

Sign-up rules (the same on both faces), confirmation and its resend, the purge of
expired sign-ups, password reset (same answer, timing measured), the profile pages
and their gRPC mirror. Emails are read from the outbox. The clocked limits (resend
interval, reset link lifetime) are checked in crates/dge-registry/tests/it, where the
clock can be moved.
"""

from __future__ import annotations

import json
import re
import secrets
import statistics
import time
from urllib.parse import urljoin

import grpc
import pytest

import pages
from conftest import ARTIFACTS
from grpc_api import IdentityGrpc, bad_request_fields
from outbox import CONFIRM_SUBJECT, mails_to, wait_for_mail, wait_for_subject
from portal import (
    Module,
    assert_login_refused,
    log_in,
    new_person,
    open_confirmation_page,
    open_login_page,
    open_signup_page,
    press_confirm,
    register_active_person,
    register_pending_person,
    sign_up,
    submit_login,
    submit_signup,
)

RESET_SUBJECT = "Réinitialisation de votre mot de passe – DataGrandEst"
CHANGED_SUBJECT = "Votre mot de passe DataGrandEst a été modifié"
EXISTING_SUBJECT = "Tentative d'inscription avec votre adresse – DataGrandEst"
UNCONFIRMED_SUBJECT = "Inscription non confirmée avec votre adresse – DataGrandEst"
EMAIL_CONFIRM_SUBJECT = "Confirmez votre nouvelle adresse électronique – DataGrandEst"
EMAIL_REQUESTED_SUBJECT = "Changement d'adresse électronique demandé – DataGrandEst"
EMAIL_CHANGED_SUBJECT = "Votre adresse électronique DataGrandEst a été modifiée"
DELETED_SUBJECT = "Votre compte DataGrandEst a été supprimé"
RIGHT = "datahub:publish"

_LINK = r"https?://[^\s\"'<>]+{path}\?token=[^\s\"'<>]+"


def link_in(mail, path: str) -> str:
    links = re.findall(_LINK.format(path=re.escape(path)), mail.body)
    assert links, f"no {path}?token= link in {mail.subject!r}:\n{mail.body}"
    return links[0]


def token_of(link: str) -> str:
    return pages.query_of(link)["token"]


def new_password() -> str:
    return f"Quetsche-du-Sundgau-{secrets.token_hex(3)}-9?"


def summary_fields(answer) -> set[str]:
    """The fields the error summary at the top of a refused form points to."""
    summary = pages.parse(answer).find(id="error-summary")
    assert summary is not None, f"no error summary:\n{pages.page_text(answer)[:1500]}"
    return {a["href"][1:] for a in summary.find_all("a", href=True) if a["href"].startswith("#")}


def signed_in_browser(idp, datahub, identifier: str, password: str):
    """A browser with a live session, and the access token the module got."""
    http = pages.browser()
    request, callback = log_in(http, datahub, identifier, password)
    token = datahub.exchange(callback, request)
    return http, token["access_token"]


def account_page(http, idp, path: str = "/account"):
    return pages.get(http, f"{idp.base_url}{path}")


def submit_form_on(http, idp, path: str, field: str, changes: dict[str, str]):
    page = account_page(http, idp, path)
    assert page.status_code == 200, f"{path} answered {page.status_code}"
    form = pages.form_with_field(page, field)
    return pages.submit(http, page, form, changes)


def assert_sent_to_login(answer) -> None:
    assert answer.status_code == 303, f"answered {answer.status_code}, expected 303 to /login"
    assert pages.location(answer).endswith("/login")


def grpc_code(call) -> tuple[grpc.StatusCode, set[str]]:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), bad_request_fields(failure.value)


# --- sign-up rules --------------------------------------------------------------------

# One broken rule per case: the field and what is typed in it.
BROKEN_ONE_AT_A_TIME = [
    ("given_name", "Claire\r\nBcc: victime@example.org"),
    ("family_name", "M" * 101),
    ("function", "Cheffe\x07de projet"),
    # Invisible format characters (Unicode Cf): zero-width space, soft hyphen, joiner.
    ("given_name", "Cla\u200bire"),
    ("family_name", "Mar\u00adtin"),
    ("function", "Cheffe\u2060de projet"),
    ("proposed_organisation", "Région\u200b Grand Est"),
    ("phone", "12"),
    ("phone", "06 12 34"),
    ("email", "claire@"),
    ("email", "claire@exa mple.org"),
    ("login", "admin"),
    ("login", "admin."),
    ("login", "No-Reply_"),
    ("phone", "06 12 34 56 78 ext 5"),
    ("login", "jé"),
    ("login", "-x"),
    ("password", "Azerty123456!"),
    ("password", "Password1234!"),
    ("password", "court-A1!"),
    ("password", "Mirabelle-" + "é" * 250 + "-A1!"),
]


def test_each_sign_up_rule_is_refused_the_same_on_pages_and_grpc(idp, datahub, admin_grpc):
    pb = admin_grpc.pb
    for field, typed in BROKEN_ONE_AT_A_TIME:
        person = new_person()
        fields = {**person.signup_fields(), field: typed}
        if field == "password":
            fields["password_confirmation"] = typed
        grpc_fields = dict(fields)
        if field == "proposed_organisation":
            fields["organisation_id"] = grpc_fields["organisation_id"] = ""
            fields["organisation_missing"] = "on"  # the page's "not in the list" box
        http = pages.browser()
        answer = submit_signup(http, open_signup_page(http, open_login_page(http, datahub)), fields)
        assert answer.status_code == 400, f"{field}={typed!r}: pages answered {answer.status_code}"
        on_pages = summary_fields(answer)
        code, on_grpc = grpc_code(
            lambda f=grpc_fields: admin_grpc.call(
                admin_grpc.accounts.SignUp, pb.account_registry.SignUpRequest(**f)
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert on_pages == on_grpc == {field}, f"{field}={typed!r}: pages {on_pages}, gRPC {on_grpc}"
        assert person.login not in admin_grpc.logins()


def test_sign_up_normalises_phone_email_and_accepts_long_passwords(idp, admin_grpc):
    pb = admin_grpc.pb
    person = new_person()
    long_password = "Le vélo rouge de Mirabelle traverse Nancy " * 4 + "A1!"
    assert len(long_password) >= 128
    fields = {
        **person.signup_fields(),
        "given_name": "  Cle\u0301mence ",
        "phone": "06 12 34 56 78",
        "email": f"Claire.{person.login}@EXÄMPLE.org",
        "password": long_password,
        "password_confirmation": long_password,
    }
    answer = admin_grpc.call(admin_grpc.accounts.SignUp, pb.account_registry.SignUpRequest(**fields))
    assert answer.message
    account = admin_grpc.call(
        admin_grpc.accounts.GetAccount, pb.account_registry.GetAccountRequest(key=person.login)
    ).account
    assert account.phone == "+33612345678"
    assert account.email == f"Claire.{person.login}@xn--exmple-cua.org"
    assert account.given_name == "Cl\u00e9mence"
    # International form of the same French number: accepted too.
    other = new_person()
    admin_grpc.call(
        admin_grpc.accounts.SignUp,
        pb.account_registry.SignUpRequest(**{**other.signup_fields(), "phone": "+33 6 12 34 56 78"}),
    )
    wait_for_subject(idp.outbox, other.email, CONFIRM_SUBJECT)


def test_a_used_address_answers_like_a_new_one_and_tells_its_owner(idp, datahub, admin_grpc):
    owner = register_pending_person(idp, datahub)
    first = sign_up(pages.browser(), datahub, new_person())
    intruder = new_person()
    intruder.email = owner.email.upper()
    second = sign_up(pages.browser(), datahub, intruder)
    def without_address(answer) -> str:
        return re.sub(r"\S*\*\*\*@\S*", "", pages.page_text(answer))

    assert without_address(second) == without_address(first), "the answers differ"
    mail = wait_for_subject(idp.outbox, owner.email, EXISTING_SUBJECT)
    assert "/password/forgot" in mail.body
    assert intruder.login not in admin_grpc.logins(), "a second account was filed"


def test_a_sign_up_over_an_unconfirmed_one_tells_the_truth_without_its_name(idp, datahub):
    """Eve signs up with the victim's address; the victim's own sign-up then must not
    greet them as Eve nor say an account exists: an unconfirmed sign-up does, to be
    confirmed if theirs, or left to its purge date."""
    victim = new_person()
    eve = new_person()
    eve.given_name = "Eve"
    eve.email = victim.email
    first = sign_up(pages.browser(), datahub, eve)
    second = sign_up(pages.browser(), datahub, victim)

    def without_address(answer) -> str:
        return re.sub(r"\S*\*\*\*@\S*", "", pages.page_text(answer))

    assert without_address(second) == without_address(first), "the answers differ"
    mail = wait_for_subject(idp.outbox, victim.email, UNCONFIRMED_SUBJECT)
    body = mail.body
    assert "Eve" not in body and eve.login not in body, body
    assert body.startswith("Bonjour,"), body
    assert "n'a pas encore été confirmée" in body and "Un compte existe déjà" not in body
    assert f"{idp.base_url}/signup/resend" in body
    assert re.search(r"supprimée automatiquement le \d\d/\d\d/\d{4} \d\d:\d\d UTC", body), body
    assert not [m for m in mails_to(idp.outbox, victim.email) if m.subject == EXISTING_SUBJECT]


def refused_fields(datahub, fields: dict[str, str]):
    """Submits a sign-up form; returns (status, fields named by the error summary, text)."""
    http = pages.browser()
    answer = submit_signup(http, open_signup_page(http, open_login_page(http, datahub)), fields)
    if answer.status_code == 200:
        return 200, set(), pages.page_text(answer)
    return answer.status_code, summary_fields(answer), pages.page_text(answer)


def test_reusing_a_login_answers_the_same_whether_its_address_had_an_account(idp, datahub):
    owner = new_person()
    sign_up(pages.browser(), datahub, owner)
    # One sign-up with the owner's address, one with a fresh address, each with its own
    # new login; both are accepted alike.
    with_used = {**new_person().signup_fields(), "email": owner.email}
    with_fresh = new_person().signup_fields()
    assert refused_fields(datahub, with_used)[0] == 200
    assert refused_fields(datahub, with_fresh)[0] == 200
    # Reusing either login, with another fresh address: the same refusal.
    again_used = refused_fields(datahub, {**new_person().signup_fields(), "login": with_used["login"]})
    again_fresh = refused_fields(datahub, {**new_person().signup_fields(), "login": with_fresh["login"]})
    assert again_used[:2] == again_fresh[:2] == (400, {"login"}), (again_used, again_fresh)
    assert again_used[2].replace(with_used["login"], "L") == again_fresh[2].replace(
        with_fresh["login"], "L"
    ), "the pages differ"
    # The other order: a fresh sign-up first, then its login with the owner's address.
    first = new_person()
    sign_up(pages.browser(), datahub, first)
    then_used = refused_fields(datahub, {**new_person().signup_fields(), "login": first.login, "email": owner.email})
    assert then_used[:2] == (400, {"login"})


def test_sign_up_notices_to_an_address_in_use_are_limited_and_the_answer_unchanged(start_idp, grpc_pb):
    server = start_idp()
    module = Module.datahub(server.base_url)
    admin = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    try:
        owner = register_pending_person(server, module)
        first = sign_up(pages.browser(), module, new_person())
        texts = set()
        for _ in range(12):
            intruder = new_person()
            intruder.email = owner.email
            answer = sign_up(pages.browser(), module, intruder)
            texts.add(re.sub(r"\S*\*\*\*@\S*", "", pages.page_text(answer)))
        assert texts == {re.sub(r"\S*\*\*\*@\S*", "", pages.page_text(first))}
        wait_for_subject(server.outbox, owner.email, EXISTING_SUBJECT)
        deadline = time.monotonic() + 15
        pb = admin.pb.mailer
        mailer = admin.pb.mailer_grpc.MailerStub(admin.channel)
        queued = pb.ListMessagesRequest(status=pb.MESSAGE_STATUS_QUEUED)
        while admin.call(mailer.ListMessages, queued).messages:
            assert time.monotonic() < deadline, "the outbox never emptied"
            time.sleep(0.2)
        notices = [m for m in mails_to(server.outbox, owner.email) if m.subject == EXISTING_SUBJECT]
        assert len(notices) == 1, f"12 attempts sent {len(notices)} notices"
    finally:
        admin.close()


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_a_sign_up_sent_twice_answers_the_same_and_files_it_once(idp, datahub, admin_grpc):
    """Post/Redirect/Get, and the back button then « Envoyer » again (or a double
    click): one account, one email, and a second answer that guides the person who
    filed it without confirming anything to someone guessing (« login taken », alike
    when the address already had an account, and alike with another address)."""
    owner = register_pending_person(idp, datahub)
    person = new_person()
    intruder = new_person()
    intruder.email = owner.email
    answers = []
    for someone in (person, intruder):
        http = pages.browser()
        page = open_signup_page(http, open_login_page(http, datahub))
        form = pages.form_with_field(page, "password_confirmation")
        posted = pages.submit(http, page, form, someone.signup_fields())
        assert posted.status_code == 303, f"{posted.status_code}:\n{pages.page_text(posted)}"
        done = pages.get(http, pages.location(posted))
        assert done.status_code == 200
        assert "Votre demande est enregistrée" in pages.page_text(done)
        # A reload of the answer is a GET: it sends nothing.
        assert pages.get(http, done.url).status_code == 200
        again = pages.submit(http, page, form, someone.signup_fields())
        assert again.status_code == 400, f"{again.status_code}:\n{pages.page_text(again)}"
        text = pages.page_text(again)
        assert "Ce login est déjà utilisé" in text and "consultez votre messagerie" in text
        answers.append(text.replace(someone.login, "").replace(someone.email, ""))
    wait_for_subject(idp.outbox, person.email, CONFIRM_SUBJECT)
    time.sleep(1.5)
    confirmations = [m for m in mails_to(idp.outbox, person.email) if m.subject == CONFIRM_SUBJECT]
    assert len(confirmations) == 1, "a second confirmation email was sent"
    assert person.login in admin_grpc.logins() and intruder.login not in admin_grpc.logins()
    # The login with another address is still taken.
    other = new_person()
    other.login = person.login
    http = pages.browser()
    taken = submit_signup(http, open_signup_page(http, open_login_page(http, datahub)), other.signup_fields())
    assert taken.status_code == 400 and "Ce login est déjà utilisé" in pages.page_text(taken)
    answers.append(pages.page_text(taken).replace(other.login, "").replace(other.email, ""))
    assert len(set(answers)) == 1, "the answers differ"


def test_a_member_of_a_trusted_organisation_is_told_the_account_is_active(idp, datahub):
    # The seeded Région Grand Est is trusted, with the domain grandest.fr.
    person = new_person()
    person.organisation_id = "region-grand-est"
    person.email = f"claire.{secrets.token_hex(4)}@grandest.fr"
    http = pages.browser()
    sign_up(http, datahub, person)
    text = pages.page_text(press_confirm(http, open_confirmation_page(http, idp.outbox, person)))
    assert "Votre compte est actif" in text, text
    assert "en attente de validation" not in text, text


def test_logging_in_before_confirming_links_to_a_new_confirmation_email(idp, datahub):
    person = new_person()
    http = pages.browser()
    sign_up(http, datahub, person)
    refused = submit_login(http, open_login_page(http, datahub), person.login, person.password)
    assert refused.status_code == 403, refused.status_code
    assert "pas encore confirmée" in pages.page_text(refused)
    link = pages.control_leading_to(refused, "/signup/resend", {})
    assert link.name == "a" and "Renvoyer le courriel de confirmation" in link.get_text(), link
    resend = pages.get(http, urljoin(refused.url, link["href"]))
    assert resend.status_code == 200, resend.status_code


def test_a_used_or_dead_confirmation_link_says_so_at_once(idp, datahub):
    person = new_person()
    http = pages.browser()
    sign_up(http, datahub, person)
    page = open_confirmation_page(http, idp.outbox, person)
    assert "Votre adresse est confirmée" in pages.page_text(press_confirm(http, page))
    for again in (press_confirm(http, page), pages.get(http, page.url)):
        text = pages.page_text(again)
        assert again.status_code == 200, text
        assert "Adresse déjà confirmée" in text and "invalide" not in text, text
        assert "token" not in {c.get("name") for c in pages.parse(again).find_all("input")}
    for dead in ("inconnu", "x" * 64):
        answer = pages.get(http, f"{idp.base_url}/confirm?token={dead}")
        assert answer.status_code == 400
        assert "Lien de confirmation invalide" in pages.page_text(answer)
        assert "Confirmer mon adresse" not in pages.page_text(answer)
        pages.control_leading_to(answer, "/signup/resend")


def test_a_fullwidth_address_is_folded_to_its_plain_form(idp, datahub, admin_grpc):
    person = new_person()
    local, domain = person.email.split("@")
    plain = person.email
    person.email = f"{fullwidth(local)}@{domain}"
    sign_up(pages.browser(), datahub, person)
    account = admin_grpc.call(
        admin_grpc.accounts.GetAccount,
        admin_grpc.pb.account_registry.GetAccountRequest(key=person.login),
    ).account
    assert account.email == plain
    wait_for_subject(idp.outbox, plain, CONFIRM_SUBJECT)


# --- confirmation, resend, purge --------------------------------------------------------


def test_the_link_only_shows_a_button_and_resend_answers_the_same(idp, datahub, admin_grpc):
    person = new_person()
    http = pages.browser()
    done = sign_up(http, datahub, person)
    resend_link = pages.control_leading_to(done, "/signup/resend")
    assert resend_link.name == "a"
    for _ in range(2):
        page = open_confirmation_page(http, idp.outbox, person)
    assert admin_grpc.status_of(person.login) == "ACCOUNT_STATUS_UNCONFIRMED", "a GET confirmed"
    answers = []
    for address in (person.email, f"inconnu.{secrets.token_hex(4)}@example.org"):
        form_page = pages.get(http, f"{idp.base_url}/signup/resend")
        assert form_page.status_code == 200
        answer = pages.submit(
            http, form_page, pages.form_with_field(form_page, "email"), {"email": address}
        )
        assert answer.status_code == 200
        answers.append(pages.page_text(answer))
    assert answers[0] == answers[1], "resend tells known and unknown addresses apart"
    bad = pages.submit(
        http, form_page, pages.form_with_field(form_page, "email"), {"email": "pas-une-adresse"}
    )
    assert bad.status_code == 400 and "email" in summary_fields(bad)
    assert press_confirm(http, page).status_code == 200
    assert admin_grpc.status_of(person.login) == "ACCOUNT_STATUS_PENDING"


def test_unconfirmed_sign_ups_expire_and_free_login_and_address(start_idp, grpc_pb):
    server = start_idp({"DGE_UNCONFIRMED_TTL_SECS": "3"})
    module = Module.datahub(server.base_url)
    admin = IdentityGrpc(grpc_pb, server.grpc_addr, server.admin_token())
    try:
        person = new_person()
        sign_up(pages.browser(), module, person)
        wait_for_subject(server.outbox, person.email, CONFIRM_SUBJECT)
        deadline = time.monotonic() + 15
        while person.login in admin.logins():
            assert time.monotonic() < deadline, "the unconfirmed sign-up was never purged"
            time.sleep(0.5)
        # Same login, same address: a fresh sign-up, with its own confirmation email.
        sign_up(pages.browser(), module, person)
        wait_for_mail(
            server.outbox,
            person.email,
            lambda m: m.subject == CONFIRM_SUBJECT
            and len([x for x in mails_to(server.outbox, person.email) if x.subject == CONFIRM_SUBJECT]) == 2,
            "second confirmation email",
        )
        assert not [m for m in mails_to(server.outbox, person.email) if m.subject == EXISTING_SUBJECT]
    finally:
        admin.close()


# --- password reset ----------------------------------------------------------------------


def forgot(http, idp, address: str):
    page = pages.get(http, f"{idp.base_url}/password/forgot")
    form = pages.form_with_field(page, "email")
    return pages.submit(http, page, form, {"email": address})


def test_password_reset_revokes_everything_and_tells_the_person(idp, dgectl, datahub, grpc_pb):
    person = register_active_person(idp, dgectl, datahub)
    session, access_token = signed_in_browser(idp, datahub, person.login, person.password)
    assert account_page(session, idp).status_code == 200
    http = pages.browser()
    known = forgot(http, idp, person.email)
    unknown = forgot(http, idp, f"inconnu.{secrets.token_hex(4)}@example.org")
    assert known.status_code == unknown.status_code == 200
    assert pages.page_text(known) == pages.page_text(unknown)
    first = link_in(wait_for_subject(idp.outbox, person.email, RESET_SUBJECT), "/password/reset")
    forgot(http, idp, person.email)
    second = link_in(
        wait_for_mail(
            idp.outbox,
            person.email,
            lambda m: m.subject == RESET_SUBJECT and first not in m.body,
            "second reset email",
        ),
        "/password/reset",
    )
    assert pages.get(http, first).status_code == 400, "an older link still works"
    form_page = pages.get(http, second)
    assert form_page.status_code == 200
    form = pages.form_with_field(form_page, "password_confirmation")
    weak = pages.submit(http, form_page, form, {"password": "azerty", "password_confirmation": "azerty"})
    assert weak.status_code == 400 and "password" in summary_fields(weak)
    assert "rule-unmet" in weak.text, "the page does not say which rules are unmet"
    password = new_password()
    done = pages.submit(
        http, form_page, form, {"password": password, "password_confirmation": password}
    )
    assert done.status_code == 200, pages.page_text(done)
    wait_for_subject(idp.outbox, person.email, CHANGED_SUBJECT)
    assert_sent_to_login(account_page(session, idp))
    as_person = IdentityGrpc(grpc_pb, idp.grpc_addr, access_token)
    try:
        code, _ = grpc_code(
            lambda: as_person.call(as_person.accounts.GetProfile, grpc_pb.account_registry.GetProfileRequest())
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED, "the access token outlived the reset"
    finally:
        as_person.close()
    assert pages.get(http, second).status_code == 400, "the link works twice"
    assert_login_refused(submit_login(pages.browser(), open_login_page(pages.browser(), datahub), person.login, person.password))
    log_in(pages.browser(), datahub, person.login, password)


def test_reset_answer_time_for_known_and_unknown_addresses(idp, dgectl, datahub, capsys):
    """Measures, never asserts on time: the figures go to the output and docs/."""
    person = register_active_person(idp, dgectl, datahub)
    http = pages.browser()
    page = pages.get(http, f"{idp.base_url}/password/forgot")
    form = pages.form_with_field(page, "email")
    rounds = 30
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for i in range(rounds):
        for kind in ("known", "unknown") if i % 2 else ("unknown", "known"):
            address = person.email if kind == "known" else f"x{secrets.token_hex(4)}@example.org"
            start = time.perf_counter()
            answer = pages.submit(http, page, form, {"email": address})
            timings[kind].append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200
    lines = [f"password reset answer time over {rounds} requests each (ms):"]
    for kind, values in timings.items():
        values.sort()
        lines.append(
            f"  {kind:7} median {statistics.median(values):6.2f}  mean {statistics.mean(values):6.2f}"
            f"  p90 {values[int(rounds * 0.9) - 1]:6.2f}  max {values[-1]:6.2f}"
        )
    report = "\n".join(lines)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "reset-timing.txt").write_text(report + "\n", encoding="utf-8")
    with capsys.disabled():
        print("\n" + report)


# --- profile pages ---------------------------------------------------------------------


def test_profile_pages_cover_the_whole_account(idp, dgectl, datahub, admin_grpc):
    pb = admin_grpc.pb
    person = register_active_person(idp, dgectl, datahub)
    dgectl.ok("rights", "grant", person.login, RIGHT)
    anonymous = pages.browser()
    for path in ("/account", "/account/password", "/account/email", "/account/export", "/account/delete"):
        assert_sent_to_login(account_page(anonymous, idp, path))
    http, _ = signed_in_browser(idp, datahub, person.login, person.password)

    # See and edit the profile.
    page = account_page(http, idp)
    assert page.status_code == 200 and pages.is_french_page(page)
    assert person.login in pages.page_text(page) and person.email in pages.page_text(page)
    bad = submit_form_on(http, idp, "/account", "phone", {"phone": "12", "given_name": "A\x07"})
    assert bad.status_code == 400 and summary_fields(bad) == {"phone", "given_name"}
    saved = submit_form_on(http, idp, "/account", "phone", {"phone": "06 98 76 54 32", "function": "Géomaticienne"})
    assert saved.status_code == 200
    account = admin_grpc.call(
        admin_grpc.accounts.GetAccount, pb.account_registry.GetAccountRequest(key=person.login)
    ).account
    assert (account.phone, account.function) == ("+33698765432", "Géomaticienne")

    # Change the email address: confirmed by the new address, the old one told.
    new_email = f"nouvelle.{secrets.token_hex(4)}@example.org"
    wrong = submit_form_on(
        http, idp, "/account/email", "new_email", {"new_email": new_email, "current_password": "Faux-Mot-de-passe-1!"}
    )
    assert wrong.status_code == 400 and summary_fields(wrong) == {"current_password"}
    asked = submit_form_on(
        http, idp, "/account/email", "new_email", {"new_email": new_email, "current_password": person.password}
    )
    assert asked.status_code == 200
    wait_for_subject(idp.outbox, person.email, EMAIL_REQUESTED_SUBJECT)
    link = link_in(wait_for_subject(idp.outbox, new_email, EMAIL_CONFIRM_SUBJECT), "/account/email/confirm")
    # Opened in another browser (a phone's mail app): the token is the proof, no session needed.
    mail_app = pages.browser()
    button_page = pages.get(mail_app, link)
    assert button_page.status_code == 200
    form = pages.form_with_field(button_page, "token")
    assert (form.get("method") or "").lower() == "post"
    still = admin_grpc.call(
        admin_grpc.accounts.GetAccount, pb.account_registry.GetAccountRequest(key=person.login)
    ).account
    assert still.email == person.email, "the address changed before confirmation"
    confirmed = pages.submit(mail_app, button_page, form, {})
    assert confirmed.status_code == 200
    wait_for_subject(idp.outbox, person.email, EMAIL_CHANGED_SUBJECT)
    old_email, person.email = person.email, new_email
    # Opened again, or made up: the page says so at once, with no button to press.
    for dead in (link, link.split("token=")[0] + "token=" + "A" * 43):
        again = pages.get(mail_app, dead)
        assert again.status_code == 400, again.status_code
        assert "Lien de confirmation invalide" in pages.page_text(again)
        assert not pages.parse(again).find("input", attrs={"name": "token"})

    # Export everything.
    export = account_page(http, idp, "/account/export")
    assert export.status_code == 200
    assert export.headers["Content-Type"].startswith("application/json")
    data = json.loads(export.text)
    assert data["account"]["email"] == new_email and data["account"]["login"] == person.login
    assert RIGHT in {r["right_name"] for r in data["rights"]}
    assert "argon2" not in export.text

    # Change the password: the current one is required, then every session ends.
    wrong = submit_form_on(
        http, idp, "/account/password", "current_password",
        {"current_password": "Faux-Mot-de-passe-1!", "password": new_password(), "password_confirmation": "x"},
    )
    assert wrong.status_code == 400 and "current_password" in summary_fields(wrong)
    password = new_password()
    changed = submit_form_on(
        http, idp, "/account/password", "current_password",
        {"current_password": person.password, "password": password, "password_confirmation": password},
    )
    assert changed.status_code == 200
    wait_for_subject(idp.outbox, new_email, CHANGED_SUBJECT)
    assert_sent_to_login(account_page(http, idp))
    person.password = password

    # Delete the account, with a confirmation.
    http, _ = signed_in_browser(idp, datahub, new_email, password)
    unconfirmed = submit_form_on(http, idp, "/account/delete", "current_password", {"current_password": password})
    assert unconfirmed.status_code == 400 and summary_fields(unconfirmed) == {"confirm"}
    deleted = submit_form_on(
        http, idp, "/account/delete", "current_password", {"current_password": password, "confirm": "on"}
    )
    assert deleted.status_code == 200
    wait_for_subject(idp.outbox, new_email, DELETED_SUBJECT)
    code, _ = grpc_code(
        lambda: admin_grpc.call(
            admin_grpc.accounts.GetAccount, pb.account_registry.GetAccountRequest(key=person.login)
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert_login_refused(submit_login(pages.browser(), open_login_page(pages.browser(), datahub), new_email, password))
    assert old_email


# --- the gRPC mirror --------------------------------------------------------------------


def test_grpc_mirrors_the_profile_and_reset(idp, dgectl, datahub, admin_grpc, grpc_pb):
    ar = grpc_pb.account_registry
    person = register_active_person(idp, dgectl, datahub)
    _, access_token = signed_in_browser(idp, datahub, person.login, person.password)
    me = IdentityGrpc(grpc_pb, idp.grpc_addr, access_token)
    try:
        code, _ = grpc_code(lambda: admin_grpc.call(admin_grpc.accounts.GetProfile, ar.GetProfileRequest()))
        assert code == grpc.StatusCode.PERMISSION_DENIED, "an API token has no profile"
        profile = me.call(me.accounts.GetProfile, ar.GetProfileRequest()).account
        assert (profile.login, profile.email) == (person.login, person.email)
        code, fields = grpc_code(
            lambda: me.call(
                me.accounts.UpdateProfile,
                ar.UpdateProfileRequest(given_name="", family_name="Martin", phone="12"),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"given_name", "phone"})
        updated = me.call(
            me.accounts.UpdateProfile,
            ar.UpdateProfileRequest(given_name="Claire", family_name="Martin", phone="0698765432", function="DSI"),
        ).account
        assert updated.phone == "+33698765432"
        code, fields = grpc_code(
            lambda: me.call(
                me.accounts.ChangePassword,
                ar.ChangePasswordRequest(current_password="Faux-1!aaaaaaa", password="x", password_confirmation="x"),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"current_password"})
        code, fields = grpc_code(
            lambda: me.call(
                me.accounts.RequestEmailChange,
                ar.RequestEmailChangeRequest(new_email="pas-une-adresse", current_password=person.password),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"new_email"})
        data = json.loads(me.call(me.accounts.ExportPersonalData, ar.ExportPersonalDataRequest()).json)
        assert data["account"]["email"] == person.email

        # Reset through gRPC: the same answer for anyone, then every token revoked.
        answers = {
            me.call(me.accounts.RequestPasswordReset, ar.RequestPasswordResetRequest(email=address)).message
            for address in (person.email, f"inconnu.{secrets.token_hex(4)}@example.org")
        }
        assert len(answers) == 1
        token = token_of(link_in(wait_for_subject(idp.outbox, person.email, RESET_SUBJECT), "/password/reset"))
        code, fields = grpc_code(
            lambda: me.call(
                me.accounts.ResetPassword,
                ar.ResetPasswordRequest(token=token, password="azerty", password_confirmation="azerty"),
            )
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"password"})
        password = new_password()
        admin_grpc.call(
            admin_grpc.accounts.ResetPassword,
            ar.ResetPasswordRequest(token=token, password=password, password_confirmation=password),
        )
        code, _ = grpc_code(lambda: me.call(me.accounts.GetProfile, ar.GetProfileRequest()))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        me.close()

    _, access_token = signed_in_browser(idp, datahub, person.login, password)
    me = IdentityGrpc(grpc_pb, idp.grpc_addr, access_token)
    try:
        new_email = f"grpc.{secrets.token_hex(4)}@example.org"
        me.call(
            me.accounts.RequestEmailChange,
            ar.RequestEmailChangeRequest(new_email=new_email, current_password=password),
        )
        token = token_of(link_in(wait_for_subject(idp.outbox, new_email, EMAIL_CONFIRM_SUBJECT), "/account/email/confirm"))
        me.call(me.accounts.ConfirmEmailChange, ar.ConfirmEmailChangeRequest(token=token))
        assert me.call(me.accounts.GetProfile, ar.GetProfileRequest()).account.email == new_email
        wait_for_subject(idp.outbox, person.email, EMAIL_CHANGED_SUBJECT)
        code, fields = grpc_code(
            lambda: me.call(me.accounts.DeleteAccount, ar.DeleteAccountRequest(current_password=password))
        )
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"confirm"})
        me.call(me.accounts.DeleteAccount, ar.DeleteAccountRequest(current_password=password, confirm=True))
        wait_for_subject(idp.outbox, new_email, DELETED_SUBJECT)
        assert person.login not in admin_grpc.logins()
    finally:
        me.close()


def test_resend_through_grpc_answers_the_same(idp, admin_grpc):
    ar = admin_grpc.pb.account_registry
    answers = {
        admin_grpc.call(admin_grpc.accounts.ResendConfirmation, ar.ResendConfirmationRequest(email=a)).message
        for a in (f"x{secrets.token_hex(4)}@example.org", f"y{secrets.token_hex(4)}@example.org")
    }
    assert len(answers) == 1
    code, fields = grpc_code(
        lambda: admin_grpc.call(admin_grpc.accounts.ResendConfirmation, ar.ResendConfirmationRequest(email="nope"))
    )
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, {"email"})

