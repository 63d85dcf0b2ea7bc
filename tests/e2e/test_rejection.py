"""The other branch of step 5: the administrator rejects a pending account."""

from __future__ import annotations

import grpc
import pytest

import pages
from dgectl import EXIT_USAGE
from outbox import wait_for_mail
from portal import (
    assert_login_refused,
    open_login_page,
    register_pending_person,
    submit_login,
)

REASON = "Nous ne trouvons pas votre organisation dans notre annuaire."


def test_rejected_person_is_told_why_and_cannot_log_in(idp, datahub, dgectl):
    person = register_pending_person(idp, datahub)
    dgectl.ok("accounts", "reject", person.login, "--reason", REASON, "--yes")
    wait_for_mail(
        idp.outbox,
        person.email,
        lambda mail: REASON in " ".join(mail.body.split()),
        "rejection email with the reason",
    )
    assert person.login in dgectl.logins_with_status("rejected")
    http = pages.browser()
    assert_login_refused(
        submit_login(http, open_login_page(http, datahub), person.login, person.password)
    )


def test_rejection_without_a_reason_is_refused_and_changes_nothing(
    idp, datahub, dgectl, admin_grpc, grpc_pb
):
    person = register_pending_person(idp, datahub)
    result = dgectl.run("accounts", "reject", person.login, "--reason", "", "--yes")
    assert result.returncode == EXIT_USAGE, result.stderr
    request = grpc_pb.validation_workflow.RejectAccountRequest(account=person.login, reason="")
    with pytest.raises(grpc.RpcError) as refused:
        admin_grpc.call(admin_grpc.workflow.RejectAccount, request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert admin_grpc.status_of(person.login) == "ACCOUNT_STATUS_PENDING"
