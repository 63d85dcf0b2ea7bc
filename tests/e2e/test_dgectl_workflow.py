"""The validation workflow through the real `dgectl` against the real `dge-idp dev`:
the pending queue, bulk decisions, organisations, CSV import, modules, rights, roles,
grants and the audit log (issue 4)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pages
from dgectl import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Dgectl, describe, items
from idp_server import clean_env, dgectl_binary
from outbox import ACTIVATED_SUBJECT, wait_for_subject
from portal import (
    Module,
    Person,
    new_person,
    open_confirmation_page,
    open_login_page,
    open_signup_page,
    press_confirm,
    register_pending_person,
    sign_up,
    submit_signup,
)


def luhn_siret(prefix: str) -> str:
    """A 14-digit SIRET starting with `prefix` (13 digits) and a valid Luhn key."""
    assert len(prefix) == 13 and prefix.isdigit()
    for last in "0123456789":
        number = prefix + last
        total = 0
        for i, ch in enumerate(reversed(number)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return number
    raise AssertionError("no Luhn key")


def random_siret() -> str:
    # Not 356 000 000 (La Poste, which has its own rule).
    return luhn_siret("4" + "".join(secrets.choice("0123456789") for _ in range(12)))


def confirmed(server, module: Module, person: Person, **fields: str) -> Person:
    """Sign-up (with `fields` overriding the person's) and email confirmation."""
    http = pages.browser()
    if fields:
        signup_page = open_signup_page(http, open_login_page(http, module))
        answer = submit_signup(http, signup_page, {**person.signup_fields(), **fields})
        assert answer.status_code == 200, pages.page_text(answer)
    else:
        sign_up(http, module, person)
    done = press_confirm(http, open_confirmation_page(http, server.outbox, person))
    assert done.status_code == 200, pages.page_text(done)
    return person


def account(dgectl: Dgectl, login: str) -> dict:
    return dgectl.json("accounts", "show", login)["account"]


def pending_logins(dgectl: Dgectl, *filters: str) -> list[str]:
    document = dgectl.json("accounts", "pending", "--all", *filters)
    return [a["login"] for a in items(document, "accounts")]


def audit_actions(dgectl: Dgectl, subject: str) -> list[str]:
    events = items(dgectl.json("audit", "list", "--subject", subject), "events")
    return [e["action"] for e in events]


def test_pending_queue_filters_pages_and_shows_the_request(start_idp):
    server = start_idp()
    dgectl = Dgectl(server)
    datahub = Module.datahub(server.base_url)
    first = register_pending_person(server, datahub)
    second = register_pending_person(server, datahub)
    # A member of a trusted organisation whose address only looks like one of its domains.
    lookalike = new_person()
    lookalike.email = f"agent.{secrets.token_hex(3)}@grandest.fr.example.org"
    confirmed(server, datahub, lookalike, organisation_id="region-grand-est")

    # Oldest first, with the person's request.
    queue = items(dgectl.json("accounts", "pending"), "accounts")
    assert [a["login"] for a in queue] == [first.login, second.login, lookalike.login]
    assert queue[0]["description"] == first.description
    table = dgectl.ok("accounts", "pending", output="table").stdout
    assert table.splitlines()[0].split() == [
        "LOGIN", "NAME", "EMAIL", "ORGANISATION", "CREATED", "REQUEST"
    ]
    assert "Publier les jeux de données" in table
    shown = dgectl.ok("accounts", "show", first.login, output="table").stdout
    assert f"REQUEST          {first.description}" in shown

    # Filters: organisation, trusted or not, text, age.
    assert pending_logins(dgectl, "--org", "ville-de-nancy") == [first.login, second.login]
    assert pending_logins(dgectl, "--trusted") == [lookalike.login]
    assert pending_logins(dgectl, "--untrusted") == [first.login, second.login]
    assert pending_logins(dgectl, "--text", second.login.upper()) == [second.login]
    assert pending_logins(dgectl, "--older-than", "1d") == []
    assert len(pending_logins(dgectl, "--older-than", "0s")) == 3

    # Pages of one, followed by hand and with --all.
    page = dgectl.json("accounts", "pending", "--page-size", "1")
    assert [a["login"] for a in page["accounts"]] == [first.login]
    token = page["next_page_token"]
    assert token
    page = dgectl.json("accounts", "pending", "--page-size", "1", "--page-token", token)
    assert [a["login"] for a in page["accounts"]] == [second.login]
    everything = dgectl.json("accounts", "pending", "--page-size", "1", "--all")
    assert len(everything["accounts"]) == 3 and everything["next_page_token"] == ""
    more = dgectl.ok("accounts", "pending", "--page-size", "2", output="table").stdout
    assert "more: --page-token" in more

    # Bad filters are usage errors, before anything is sent.
    assert dgectl.run("accounts", "pending", "--older-than", "3y").returncode == EXIT_USAGE
    assert dgectl.run("accounts", "pending", "--trusted", "--untrusted").returncode == EXIT_USAGE


def test_the_trusted_path_is_not_taken_with_a_lookalike_domain(start_idp):
    """The person of a trusted organisation with one of its domains is active at once;
    a lookalike or prefixed domain waits for an administrator."""
    server = start_idp()
    dgectl = Dgectl(server)
    datahub = Module.datahub(server.base_url)
    tag = secrets.token_hex(3)
    emails = {
        "agent": f"agent.{tag}@grandest.fr",
        "lookalike": f"agent.{tag}@grandest.fr.example.org",
        "prefix": f"agent.{tag}@evilgrandest.fr",
    }
    people = {}
    for kind, email in emails.items():
        person = new_person()
        person.email = email
        people[kind] = confirmed(server, datahub, person, organisation_id="region-grand-est")
    assert account(dgectl, people["agent"].login)["status"] == "active"
    rights = dgectl.json("rights", "list", people["agent"].login)["rights"]
    assert "communautes:member" in rights and "datahub:publish" not in rights
    for kind in ("lookalike", "prefix"):
        assert account(dgectl, people[kind].login)["status"] == "pending", kind
        assert dgectl.json("rights", "list", people[kind].login)["rights"] == [], kind


def test_bulk_approve_with_a_grant_and_bulk_reject(idp, dgectl, datahub):
    a, b, c, d = (register_pending_person(idp, datahub) for _ in range(4))

    # One account: the single call, the account printed, the right granted with it.
    single = dgectl.json("accounts", "approve", d.login, "--grant", "communautes:space:general")
    assert single["account"]["login"] == d.login and single["account"]["status"] == "active"
    assert dgectl.json("rights", "list", d.login)["rights"] == ["communautes:space:general"]
    unknown_right = dgectl.run("accounts", "approve", c.login, "--grant", "datahub:nothing")
    assert unknown_right.returncode == EXIT_REFUSED, describe(unknown_right)
    assert account(dgectl, c.login)["status"] == "pending"

    # The person asked for publishing: granted while approving, both at once.
    document = dgectl.json("accounts", "approve", a.login, b.login, "--grant", "datahub:publish")
    assert [(r["account"], r["ok"]) for r in document["results"]] == [
        (a.login, True),
        (b.login, True),
    ]
    for person in (a, b):
        assert account(dgectl, person.login)["status"] == "active"
        assert "datahub:publish" in dgectl.json("rights", "list", person.login)["rights"]
        wait_for_subject(idp.outbox, person.email, ACTIVATED_SUBJECT)

    # A bulk reject needs --yes without a terminal; nothing changes without it.
    refused = dgectl.run("accounts", "reject", c.login, "ghost-login", "--reason", "Doublon")
    assert refused.returncode == EXIT_USAGE, describe(refused)
    assert "--yes" in refused.stderr
    assert account(dgectl, c.login)["status"] == "pending"

    # Each account is decided on its own: the unknown one is reported, exit 1.
    result = dgectl.run(
        "accounts", "reject", c.login, "ghost-login", a.login, "--reason", "Doublon", "--yes"
    )
    assert result.returncode == EXIT_REFUSED, describe(result)
    outcome = {r["account"]: (r["ok"], r["error"]) for r in json.loads(result.stdout)["results"]}
    assert outcome == {
        c.login: (True, ""),
        "ghost-login": (False, "not_found"),
        a.login: (False, "not_pending"),
    }
    rejected = account(dgectl, c.login)
    assert rejected["status"] == "rejected" and rejected["rejection_reason"] == "Doublon"

    # Bulk approve without grants goes through the bulk call; already decided: exit 1.
    again = dgectl.run("accounts", "approve", a.login, c.login, output="table")
    assert again.returncode == EXIT_REFUSED, describe(again)
    assert "not approved: not_pending" in again.stdout


def test_organisations_create_update_accept_merge_and_admins(idp, dgectl, datahub):
    siret = random_siret()
    name = f"Syndicat des eaux {secrets.token_hex(3)}"
    created = dgectl.json(
        "orgs", "create", name, "--siret", siret, "--domain", "eaux.example", "--trusted"
    )["organisation"]
    assert (created["name"], created["siret"], created["trusted"], created["status"]) == (
        name,
        siret,
        True,
        "active",
    )
    assert created["email_domains"] == ["eaux.example"]
    bad = dgectl.run("orgs", "create", "Mauvais SIRET", "--siret", siret[:-1] + str((int(siret[-1]) + 1) % 10))
    assert bad.returncode == EXIT_REFUSED and "siret" in bad.stderr, describe(bad)

    updated = dgectl.json(
        "orgs", "update", created["id"], "--trusted", "no", "--domain", "a.example", "b.example"
    )["organisation"]
    assert updated["trusted"] is False and updated["email_domains"] == ["a.example", "b.example"]
    cleared = dgectl.json("orgs", "update", created["id"], "--no-domains")["organisation"]
    assert cleared["email_domains"] == [] and cleared["name"] == name
    # The same values again: dgectl says nothing changed, and nothing was written.
    again = dgectl.ok("orgs", "update", created["id"], "--trusted", "no", output="table")
    assert f"organisation {created['id']} unchanged" in again.stdout, describe(again)

    # Two sign-ups propose organisations: one is accepted renamed, one merged.
    proposals = []
    for _ in range(2):
        person = new_person()
        proposed = f"Commune proposée {secrets.token_hex(3)}"
        confirmed(
            idp,
            datahub,
            person,
            organisation_id="",
            organisation_missing="on",
            proposed_organisation=proposed,
        )
        orgs = items(dgectl.json("orgs", "list"), "organisations")
        (org,) = [o for o in orgs if o["name"] == proposed]
        assert org["status"] == "proposed"
        proposals.append((person, org))
    (kept_person, kept), (moved_person, moved) = proposals

    accepted = dgectl.json("orgs", "accept", kept["id"], "--name", "Commune de Sélestat")
    assert accepted["organisation"]["status"] == "active"
    assert accepted["organisation"]["name"] == "Commune de Sélestat"

    refused = dgectl.run("orgs", "merge", moved["id"], "--into", "ville-de-nancy")
    assert refused.returncode == EXIT_USAGE, describe(refused)
    merged = dgectl.json("orgs", "merge", moved["id"], "--into", "ville-de-nancy", "--yes")
    assert merged["moved_accounts"] == 1
    assert account(dgectl, moved_person.login)["organisation_id"] == "ville-de-nancy"
    assert moved["id"] not in {o["id"] for o in items(dgectl.json("orgs", "list"), "organisations")}

    # A delegated administrator of the accepted organisation.
    dgectl.ok("accounts", "approve", kept_person.login)
    assert dgectl.json("orgs", "admins", "add", kept_person.login)["organisation_admin"] is True
    kept_id = account(dgectl, kept_person.login)["id"]
    assert "organisation.admin_added" in audit_actions(dgectl, kept_id)
    for subject, action in (
        (created["id"], "organisation.created"),
        (created["id"], "organisation.updated"),
        (kept["id"], "organisation.accepted"),
    ):
        assert action in audit_actions(dgectl, subject), (subject, action)


def test_csv_import_is_all_or_nothing_and_reports_rejected_lines(idp, dgectl, tmp_path):
    tag = secrets.token_hex(3)
    good = [(f"Commune A {tag}", random_siret()), (f"Commune B {tag}", random_siret())]
    csv_file = tmp_path / "organisations.csv"
    csv_file.write_text(
        "name,siret,trusted,email_domains\n"
        f'"{good[0][0]}",{good[0][1]},oui,a-{tag}.example\n'
        f"{good[1][0]},{good[1][1]},non,\n"
        f"Commune fautive {tag},12345678901234,non,\n"
        f"Commune douteuse {tag},,peut-être,\n",
        encoding="utf-8",
    )

    def names() -> set[str]:
        return {o["name"] for o in items(dgectl.json("orgs", "list"), "organisations")}

    # By default one bad line cancels everything.
    lines = csv_file.read_text(encoding="utf-8").splitlines(keepends=True)
    bad_siret = tmp_path / "bad-siret.csv"
    bad_siret.write_text("".join(lines[:4]), encoding="utf-8")
    strict = dgectl.run("orgs", "import", str(bad_siret))
    assert strict.returncode == EXIT_REFUSED, describe(strict)
    report = json.loads(strict.stdout)
    assert report["committed"] is False and report["imported"] == 0
    assert [r["line"] for r in report["rejected"]] == [4]
    assert not any(tag in n for n in names())
    table = dgectl.run("orgs", "import", str(bad_siret), output="table")
    assert table.returncode == EXIT_REFUSED
    assert "nothing imported" in table.stdout
    assert table.stdout.splitlines()[1].split() == ["LINE", "REASON"]
    # A line the tool cannot read stops the import before anything is sent.
    unreadable = dgectl.run("orgs", "import", str(csv_file))
    assert unreadable.returncode == EXIT_REFUSED, describe(unreadable)
    report = json.loads(unreadable.stdout)
    assert report["committed"] is False and [r["line"] for r in report["rejected"]] == [5]
    assert not any(tag in n for n in names())

    # With --skip-invalid the valid lines go in, in one transaction; the report remains.
    partial = dgectl.run("orgs", "import", str(csv_file), "--skip-invalid")
    assert partial.returncode == EXIT_REFUSED, describe(partial)
    report = json.loads(partial.stdout)
    assert report["committed"] is True and report["imported"] == 2
    assert [r["line"] for r in report["rejected"]] == [4, 5]
    assert {n for n in names() if tag in n} == {good[0][0], good[1][0]}
    orgs = {o["name"]: o for o in items(dgectl.json("orgs", "list"), "organisations")}
    assert orgs[good[0][0]]["trusted"] is True
    assert orgs[good[0][0]]["email_domains"] == [f"a-{tag}.example"]

    # Importing the same valid lines again changes nothing.
    clean = tmp_path / "again.csv"
    clean.write_text(
        "name,siret\n" + "".join(f"{n},{s}\n" for n, s in good), encoding="utf-8"
    )
    report = dgectl.json("orgs", "import", str(clean))
    assert (report["imported"], report["unchanged"], report["rejected"]) == (0, 2, [])

    # A file without a name column is a usage error.
    headless = tmp_path / "headless.csv"
    headless.write_text("siret\n12345678901234\n", encoding="utf-8")
    assert dgectl.run("orgs", "import", str(headless)).returncode == EXIT_USAGE


def test_modules_rights_roles_grants_and_audit(idp, dgectl, active_person):
    tag = secrets.token_hex(3)
    module = f"geo{tag}"
    dgectl.ok("modules", "declare", module, "--label", "Géoservices")
    dgectl.ok("rights", "declare", f"{module}:edit", "--label", "Modifier les couches")
    dgectl.ok("rights", "declare", f"communautes:space:mobilite{tag}", "--label", "Mobilité")
    modules = {m["name"]: m for m in items(dgectl.json("modules", "list"), "modules")}
    assert [r["name"] for r in modules[module]["rights"]] == [f"{module}:edit"]
    undeclared = dgectl.run("rights", "declare", f"absent{tag}:x")
    assert undeclared.returncode == EXIT_REFUSED, describe(undeclared)

    role = f"editeur{tag}"
    defined = dgectl.json("roles", "define", role, f"{module}:edit", "datahub:dashboards", "--label", "Éditeur")
    assert defined["created"] is True, defined
    login = active_person.login
    granted = dgectl.json("roles", "grant", login, role, "--reason", "Demande du 3 décembre")
    assert sorted(granted["granted"]) == sorted([f"{module}:edit", "datahub:dashboards"])
    assert dgectl.json("roles", "grant", login, role)["granted"] == []
    # Redefined without a right: dgectl says so, and that the grants made stay.
    redefined = dgectl.ok("roles", "define", role, f"{module}:edit", output="table")
    assert f"role {role} redefined: {module}:edit" in redefined.stdout, describe(redefined)
    assert "removed: datahub:dashboards" in redefined.stdout, describe(redefined)
    assert "keep the rights they hold" in redefined.stdout, describe(redefined)

    before = int(time.time())
    expiring = dgectl.json(
        "rights", "grant", login, f"communautes:space:mobilite{tag}", "--expires", "30d",
        "--reason", "Projet mobilité",
    )
    assert expiring["granted"] is True
    assert dgectl.run("rights", "grant", login, "datahub:publish", "--expires", "2001-01-01").returncode == EXIT_USAGE
    # Granting it again moves its end (here to 60 days), said as such; more than five years is refused.
    moved = dgectl.ok(
        "rights", "grant", login, f"communautes:space:mobilite{tag}", "--expires", "60d", output="table"
    ).stdout
    assert f"{login} holds communautes:space:mobilite{tag} until " in moved and moved.strip().endswith("now"), moved
    far = dgectl.run("rights", "grant", login, f"communautes:space:mobilite{tag}", "--expires", "3000d")
    assert far.returncode == EXIT_REFUSED and "cinq ans" in far.stderr, describe(far)
    moved_back = dgectl.json(
        "rights", "grant", login, f"communautes:space:mobilite{tag}", "--expires", "30d",
    )
    assert (moved_back["granted"], moved_back["end_changed"]) == (False, True)

    grants = {g["right"]: g for g in items(dgectl.json("grants", "list", login), "grants")}
    space = grants[f"communautes:space:mobilite{tag}"]
    assert abs(space["expires_at"] - (before + 30 * 86_400)) < 120
    assert space["reason"] == "Projet mobilité" and space["granted_by"]
    assert grants[f"{module}:edit"]["reason"] == f"role {role}: Demande du 3 décembre"
    assert grants[f"{module}:edit"]["expires_at"] == 0
    table = dgectl.ok("grants", "list", login, output="table").stdout
    assert table.splitlines()[0].split() == ["RIGHT", "GRANTED", "BY", "GRANTED", "EXPIRES", "REASON"]

    dgectl.ok("rights", "revoke", login, f"{module}:edit", "--yes")
    account_id = account(dgectl, login)["id"]
    actions = audit_actions(dgectl, account_id)
    assert actions.count("right.granted") >= 3 and "right.revoked" in actions
    assert "account.approved" in actions
    # By period: nothing before the epoch's first day, everything since a day ago.
    assert audit_actions_between(dgectl, account_id, "1970-01-01", "1970-01-02") == []
    assert "right.revoked" in audit_actions_between(dgectl, account_id, "1d", "2999-01-01")
    audit_table = dgectl.ok("audit", "list", "--subject", account_id, output="table").stdout
    assert audit_table.splitlines()[0].split() == ["AT", "ACTOR", "ACTION", "SUBJECT", "DETAIL"]


def audit_actions_between(dgectl: Dgectl, subject: str, since: str, until: str) -> list[str]:
    document = dgectl.json("audit", "list", "--subject", subject, "--since", since, "--until", until)
    return [e["action"] for e in items(document, "events")]


def dgectl_process(server, *args: str) -> subprocess.Popen:
    command = [
        str(dgectl_binary()),
        "--server",
        server.grpc_server_url,
        "--token-file",
        str(server.admin_token_path),
        "--output",
        "json",
        *args,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        text=True,
    )


def test_concurrent_approve_and_reject_end_in_exactly_one_outcome(start_idp, backend):
    server = start_idp(backend)
    dgectl = Dgectl(server)
    datahub = Module.datahub(server.base_url)
    people = [register_pending_person(server, datahub) for _ in range(4)]

    def race(person: Person) -> tuple[int, int]:
        approve = dgectl_process(server, "accounts", "approve", person.login)
        reject = dgectl_process(
            server, "accounts", "reject", person.login, "--reason", "Organisme inconnu", "--yes"
        )
        approve.communicate(timeout=30)
        reject.communicate(timeout=30)
        return approve.returncode, reject.returncode

    with ThreadPoolExecutor(max_workers=len(people)) as pool:
        outcomes = list(pool.map(race, people))
    for person, (approved, rejected) in zip(people, outcomes):
        assert sorted((approved, rejected)) == [EXIT_OK, EXIT_REFUSED], (person.login, approved, rejected)
        status = account(dgectl, person.login)["status"]
        assert status == ("active" if approved == EXIT_OK else "rejected"), person.login
        decisions = [
            a
            for a in audit_actions(dgectl, account(dgectl, person.login)["id"])
            if a in ("account.approved", "account.rejected")
        ]
        assert len(decisions) == 1, (person.login, decisions)
