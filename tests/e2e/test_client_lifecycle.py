"""Clients after registration (`dgectl clients update|rotate-secret|remove`): a leaked
secret replaced, a module's redirect URI moved, a retired module removed, each holding
at once at /authorize, /token, /introspect, /revoke and Check; bad input refused with
its status, and nothing changed."""

from __future__ import annotations

import secrets

import grpc
import pytest

import pages
from dgectl import EXIT_REFUSED, EXIT_USAGE, Dgectl, describe
from grpc_api import bad_request_fields
from oidc import introspect, log_in_and_exchange, post_form, register_client
from portal import Module, register_active_person

RIGHT = "datahub:publish"


def assert_invalid_client(answer) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client", answer.text


def client_credentials(discovery: dict, auth):
    data = {"grant_type": "client_credentials", "scope": "authz:introspect"}
    return post_form(discovery["token_endpoint"], data, auth=auth)


def listed(dgectl: Dgectl, client_id: str) -> dict | None:
    clients = dgectl.json("clients", "list")["clients"]
    return next((c for c in clients if c["id"] == client_id), None)


def authorize_answer(discovery: dict, client_id: str, redirect_uri: str):
    """What /authorize answers a browser without a session."""
    module = Module(discovery, client_id, redirect_uri, "unused")
    return pages.get(pages.browser(), module.authorization_request().url)


def test_a_rotated_secret_refuses_the_old_one_at_once(idp, dgectl, datahub):
    person = register_active_person(idp, dgectl, datahub)
    client = register_client(
        dgectl, "rotation", "--first-party", "--service-scope", "authz:introspect"
    )
    endpoints = datahub.discovery
    old = (client.id, client.secret)
    # Used once with the old secret, so that the server has the client cached.
    first = client_credentials(endpoints, old)
    assert first.status_code == 200, first.text
    module = Module(endpoints, client.id, client.redirect_uri, client.secret)
    done = log_in_and_exchange(module, person)
    # A second code, to exchange after the rotation.
    request = module.authorization_request()
    callback = module.callback_url(pages.get(done.http, request.url))
    code = pages.query_of(callback)["code"]

    rotated = dgectl.run("clients", "rotate-secret", client.id, output="table")
    assert rotated.returncode == 0, describe(rotated)
    secret = next(
        line.split(":", 1)[1].strip()
        for line in rotated.stdout.splitlines()
        if line.startswith("client secret:")
    )
    assert secret != client.secret
    assert "shown only once" in rotated.stdout
    new = (client.id, secret)

    assert_invalid_client(client_credentials(endpoints, old))
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": request.code_verifier,
    }
    assert_invalid_client(post_form(endpoints["token_endpoint"], exchange, auth=old))
    token = {"token": done.tokens["access_token"]}
    assert_invalid_client(post_form(endpoints["introspection_endpoint"], token, auth=old))
    assert_invalid_client(post_form(endpoints["revocation_endpoint"], token, auth=old))

    assert client_credentials(endpoints, new).status_code == 200
    answer = post_form(endpoints["token_endpoint"], exchange, auth=new)
    assert answer.status_code == 200, answer.text
    # The tokens handed out before stay valid: the secret leaked, not them.
    assert introspect(endpoints, done.tokens["access_token"], client=new)["active"] is True


def test_an_updated_redirect_uri_replaces_the_old_one(dgectl, datahub):
    client = register_client(dgectl, "deplace", "--first-party")
    endpoints = datahub.discovery
    base = endpoints["issuer"]
    assert pages.location(authorize_answer(endpoints, client.id, client.redirect_uri)).startswith(
        f"{base}/login?"
    )
    moved = f"http://localhost:{9000 + secrets.randbelow(900)}/nouveau-retour"
    document = dgectl.json("clients", "update", client.id, "--redirect-uri", moved)
    assert document["client"]["redirect_uris"] == [moved]
    # Not given: kept.
    assert document["client"]["first_party"] is True
    assert document["client"]["confidential"] is True

    refused = authorize_answer(endpoints, client.id, client.redirect_uri)
    assert refused.status_code == 400, refused.text[:500]
    assert "Location" not in refused.headers
    accepted = authorize_answer(endpoints, client.id, moved)
    assert pages.location(accepted).startswith(f"{base}/login?")


def introspected(admin_grpc, token: str) -> bool:
    """Whether the token is active, introspected over gRPC by the administrator: the
    removed client can no longer ask /introspect, and another client sees only its own."""
    request = admin_grpc.pb.authorization.IntrospectRequest(token=token)
    return admin_grpc.call(admin_grpc.authorization.Introspect, request).active


def test_a_removed_client_tokens_are_refused_at_once(idp, dgectl, datahub, admin_grpc):
    person = register_active_person(idp, dgectl, datahub)
    dgectl.ok("rights", "grant", person.login, RIGHT, "--reason", "e2e")
    client = register_client(dgectl, "retraite", "--first-party")
    module = Module(datahub.discovery, client.id, client.redirect_uri, client.secret)
    tokens = log_in_and_exchange(module, person).tokens
    endpoints = datahub.discovery
    own = (client.id, client.secret)
    # Introspected by another caller than the client, and checked over gRPC.
    assert introspected(admin_grpc, tokens["access_token"])
    assert introspected(admin_grpc, tokens["refresh_token"])
    assert introspect(endpoints, tokens["access_token"], client=own)["active"] is True
    assert admin_grpc.check(tokens["access_token"], RIGHT).allowed

    refused = dgectl.run("clients", "remove", client.id)
    assert refused.returncode == EXIT_USAGE, describe(refused)
    assert f"remove the client {client.id}" in refused.stderr, refused.stderr
    assert "access tokens are revoked" in refused.stderr, refused.stderr
    assert listed(dgectl, client.id) is not None

    removed = dgectl.json("clients", "remove", client.id, "--yes")
    assert removed["access_tokens_revoked"] >= 1, removed
    assert removed["refresh_tokens_deleted"] >= 1, removed
    assert listed(dgectl, client.id) is None
    assert not introspected(admin_grpc, tokens["access_token"])
    assert not introspected(admin_grpc, tokens["refresh_token"])
    token = {"token": tokens["access_token"]}
    assert_invalid_client(post_form(endpoints["introspection_endpoint"], token, auth=own))
    answer = admin_grpc.check(tokens["access_token"], RIGHT)
    assert not answer.allowed and answer.reason == "invalid_token", answer

    # Registered again under the same id: nothing comes back.
    again = dgectl.json(
        "clients", "add", client.id, "--redirect-uri", client.redirect_uri, "--first-party"
    )
    assert not introspected(admin_grpc, tokens["access_token"])
    assert not introspected(admin_grpc, tokens["refresh_token"])
    again_auth = (client.id, again["client_secret"])
    assert introspect(endpoints, tokens["access_token"], client=again_auth) == {"active": False}
    assert not admin_grpc.check(tokens["access_token"], RIGHT).allowed
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    answer = post_form(endpoints["token_endpoint"], refresh, auth=again_auth)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text


def refused_status(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    return refused.value


def test_bad_changes_get_their_status_and_change_nothing(dgectl, admin_grpc, datahub):
    pb = admin_grpc.pb.client_registry
    clients = admin_grpc.clients
    client = register_client(dgectl, "intact", "--first-party")
    before = listed(dgectl, client.id)

    def update(**fields):
        request = pb.UpdateClientRequest(**fields)
        return lambda: admin_grpc.call(clients.UpdateClient, request)

    error = refused_status(
        update(
            id=client.id,
            redirect_uris=pb.StringList(values=["http://module.exemple.fr/retour"]),
            backchannel_logout_uri="ftp://module.exemple.fr/bc",
            id_token_alg="HS256",
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(error) == {
        "redirect_uris",
        "backchannel_logout_uri",
        "id_token_alg",
    }
    assert listed(dgectl, client.id) == before

    error = refused_status(update(id="absent-" + secrets.token_hex(3), first_party=False))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    for method, request in [
        (clients.RotateClientSecret, pb.RotateClientSecretRequest(id="absent")),
        (clients.RemoveClient, pb.RemoveClientRequest(id="absent")),
    ]:
        error = refused_status(lambda m=method, r=request: admin_grpc.call(m, r))
        assert error.code() == grpc.StatusCode.NOT_FOUND
    # An empty id is a field error, not an unknown client.
    for method, request in [
        (clients.RotateClientSecret, pb.RotateClientSecretRequest(id=" ")),
        (clients.RemoveClient, pb.RemoveClientRequest(id="")),
    ]:
        error = refused_status(lambda m=method, r=request: admin_grpc.call(m, r))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad_request_fields(error) == {"id"}

    public = register_client(dgectl, "public", "--public")
    error = refused_status(
        lambda: admin_grpc.call(
            clients.RotateClientSecret, pb.RotateClientSecretRequest(id=public.id)
        )
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert listed(dgectl, public.id)["confidential"] is False

    # The same through dgectl: a refusal, in French, on the field.
    result = dgectl.run("clients", "update", client.id, "--redirect-uri", "pas-une-adresse")
    assert result.returncode == EXIT_REFUSED, describe(result)
    assert "redirect_uris" in result.stderr and "pas une adresse absolue" in result.stderr
    result = dgectl.run("clients", "update", "absent", "--name", "x")
    assert result.returncode == EXIT_REFUSED, describe(result)
    assert "not_found" in result.stderr, result.stderr
    result = dgectl.run("clients", "rotate-secret", public.id)
    assert result.returncode == EXIT_REFUSED, describe(result)
    assert "failed_precondition" in result.stderr, result.stderr
    assert listed(dgectl, client.id) == before

    # Still works as before.
    answer = authorize_answer(datahub.discovery, client.id, client.redirect_uri)
    assert pages.location(answer).startswith(f"{datahub.discovery['issuer']}/login?")
