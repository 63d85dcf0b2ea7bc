"""The real `dge-idp dev` sending through a real SMTP server (aiosmtpd) on loopback.

The server is started with `DGE_SMTP_URL` instead of writing `.eml` files, and with a
one-second first retry so that an outage of a few seconds is survived within the test.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

import pages
from dgectl import EXIT_REFUSED, Dgectl, describe, items
from grpc_api import IdentityGrpc, bad_request_fields
from idp_server import free_port
from outbox import CONFIRM_SUBJECT
from portal import Module, new_person, press_confirm, sign_up
from smtp_sink import SmtpSink

DEADLINE_SECS = 40.0
CONFIRM_LINK = re.compile(r"https?://\S+/confirm\?token=\S+")


def smtp_server_env(port: int) -> dict[str, str]:
    return {
        "DGE_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "DGE_MAIL_RETRY_BASE_SECS": "1",
        "DGE_MAIL_MAX_ATTEMPTS": "20",
    }


def wait_until(what: str, probe, deadline_secs: float = DEADLINE_SECS):
    """Polls `probe` until it returns something truthy; fails after the deadline."""
    deadline = time.monotonic() + deadline_secs
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


def messages(dgectl: Dgectl, status: str | None = None) -> list[dict]:
    args = ["mail", "list"] + (["--status", status] if status else [])
    return items(dgectl.json(*args), "messages")


def sink(tmp_path: Path, port: int, refuse: set[str] | None = None) -> SmtpSink:
    server = SmtpSink(port, tmp_path / f"smtp-{port}.jsonl", refuse)
    server.start()
    return server


def test_an_smtp_outage_loses_nothing_and_sends_each_email_once(start_idp, tmp_path):
    port = free_port()
    idp = start_idp(smtp_server_env(port))
    dgectl = Dgectl(idp)
    module = Module.datahub(idp.base_url)
    people = [new_person() for _ in range(3)]
    for person in people:
        sign_up(pages.browser(), module, person)

    # Nothing listens on the port yet: every email is tried, kept, and waits.
    wait_until(
        "a failed attempt on every email",
        lambda: len([m for m in messages(dgectl, "queued") if m["attempts"] >= 1 and m["last_error"]])
        == len(people),
    )
    assert messages(dgectl, "sent") == []

    smtp = sink(tmp_path, port)
    try:
        wait_until("every email sent", lambda: len(messages(dgectl, "sent")) == len(people))
        # A dispatcher pass runs every second: two more passes would show a duplicate.
        time.sleep(2.5)
        received = smtp.messages()
    finally:
        smtp.stop()

    recipients = Counter(rcpt for m in received for rcpt in m["rcpt_tos"])
    assert recipients == Counter(p.email for p in people), "each email exactly once"
    assert len({m["message_id"] for m in received}) == len(people)
    for mail in received:
        assert mail["subject"] == CONFIRM_SUBJECT
        assert mail["defects"] == []
        assert mail["raw_is_ascii"], "non-ASCII subject and body are encoded"
        # No greeting by name to an address nobody has confirmed yet.
        assert mail["text"].startswith("Bonjour,") and "Claire" not in mail["text"], mail["text"]
        assert "Confirmer mon adresse" in mail["html"]
    sent = messages(dgectl, "sent")
    assert all(m["attempts"] >= 2 and m["sent_at"] for m in sent), sent
    assert {m["message_id"] for m in sent} == {m["message_id"] for m in received}

    # The email read from the SMTP server works: its link confirms the account.
    first = next(m for m in received if m["rcpt_tos"] == [people[0].email])
    http = pages.browser()
    page = pages.get(http, CONFIRM_LINK.search(first["text"]).group(0))
    assert page.status_code == 200
    assert press_confirm(http, page).status_code == 200
    assert people[0].login in dgectl.logins_with_status("pending")


def test_a_refused_recipient_is_failed_with_the_reason_then_retried_or_cancelled(
    start_idp, tmp_path
):
    port = free_port()
    person = new_person()
    smtp = sink(tmp_path, port, refuse={person.email})
    try:
        idp = start_idp(smtp_server_env(port))
        dgectl = Dgectl(idp)
        sign_up(pages.browser(), Module.datahub(idp.base_url), person)
        [failed] = wait_until("the email marked failed", lambda: messages(dgectl, "failed"))
        assert failed["attempts"] == 1, "a 5xx answer is not retried"
        assert "550" in failed["last_error"]
        assert "Recipient address rejected" in failed["last_error"]
        assert failed["kind"] == "confirm_email"
        assert failed["recipient"] != person.email and failed["recipient"].endswith("@example.org")

        table = dgectl.ok("mail", "list", "--status", "failed", output="table").stdout
        assert "LAST ERROR" in table and failed["id"] in table and "failed" in table

        # An administrator retries: the server refuses again, the reason is fresh.
        assert dgectl.json("mail", "retry", failed["id"]) == {"id": failed["id"]}
        wait_until(
            "the retried email failed again",
            lambda: [m for m in messages(dgectl, "failed") if m["id"] == failed["id"]],
        )
        # Then cancels it: it is never tried again.
        assert dgectl.json("mail", "cancel", failed["id"])["status"] == "cancelled"
        [cancelled] = messages(dgectl, "cancelled")
        assert cancelled["id"] == failed["id"]
        again = dgectl.run("mail", "cancel", failed["id"])
        assert again.returncode == EXIT_REFUSED, describe(again)
        assert "failed_precondition" in again.stderr or "cancelled" in again.stderr, describe(again)
        unknown = dgectl.run("mail", "retry", "no-such-message")
        assert unknown.returncode == EXIT_REFUSED, describe(unknown)
        assert smtp.messages() == [], "nothing was delivered to the refused address"
    finally:
        smtp.stop()


def test_the_mailer_grpc_service_checks_its_input_and_its_callers(idp, datahub, grpc_pb):
    # At least one email in the shared server's outbox.
    sign_up(pages.browser(), datahub, new_person())
    pb = grpc_pb.mailer
    admin = IdentityGrpc(grpc_pb, idp.grpc_addr, idp.admin_token())
    anonymous = IdentityGrpc(grpc_pb, idp.grpc_addr, None)
    try:
        stub = grpc_pb.mailer_grpc.MailerStub(admin.channel)

        def sent():
            request = pb.ListMessagesRequest(status=pb.MESSAGE_STATUS_SENT, limit=5)
            return admin.call(stub.ListMessages, request).messages

        listed = wait_until("a sent email", sent)
        assert len(listed) <= 5
        assert all(m.message_id == f"<{m.id}@datagrandest.fr>" and m.sent_at for m in listed)
        assert all("***@" in m.recipient for m in listed), "recipients are masked"

        for method, request, field in (
            (stub.RetryMessage, pb.RetryMessageRequest(id=""), "id"),
            (stub.CancelMessage, pb.CancelMessageRequest(id=" "), "id"),
            (stub.ListMessages, pb.ListMessagesRequest(status=42), "status"),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                admin.call(method, request)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert bad_request_fields(refused.value) == {field}

        with pytest.raises(grpc.RpcError) as missing:
            admin.call(stub.CancelMessage, pb.CancelMessageRequest(id="no-such-message"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as already_sent:
            admin.call(stub.RetryMessage, pb.RetryMessageRequest(id=listed[0].id))
        assert already_sent.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        anonymous_stub = grpc_pb.mailer_grpc.MailerStub(anonymous.channel)
        with pytest.raises(grpc.RpcError) as unauthenticated:
            anonymous.call(anonymous_stub.ListMessages, pb.ListMessagesRequest())
        assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        admin.close()
        anonymous.close()
