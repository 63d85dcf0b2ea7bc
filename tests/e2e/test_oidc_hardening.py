"""Hostile inputs on the OpenID Connect provider (issue 9): request objects and response
modes it does not support, two client authentications in one request, a pending login
request finished in another browser, and tokens presented to a service they were not
issued to. Each test is a row of docs/security.md's hostile-input table."""

from __future__ import annotations

import pytest

import pages
from grpc_api import IdentityGrpc
from oidc import (
    ec_key,
    follow_to_login,
    introspect,
    log_in_and_exchange,
    post_form,
    register_client,
    service_assertion,
    token_request,
    write_jwks,
)
from portal import DATAHUB_ID, DATAHUB_REDIRECT_URI, DATAHUB_SECRET, Module, submit_login

RIGHT = "datahub:publish"
SERVICE_SCOPES = ("authz:check", "authz:introspect", "authz:revoke")


def assert_oauth_error(answer, error: str, status: int = 400) -> None:
    assert answer.status_code == status, f"answered {answer.status_code}: {answer.text}"
    assert answer.json()["error"] == error, answer.text


def redirected_error(http, url: str) -> dict[str, str]:
    answer = pages.get(http, url)
    assert answer.status_code == 303, f"/authorize answered {answer.status_code}: {answer.text}"
    target = pages.location(answer)
    assert target.startswith(f"{DATAHUB_REDIRECT_URI}?"), target
    return pages.query_of(target)


# --- 2. parameters that are not supported are refused, never ignored ---------------------


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"request": "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9."}, "request_not_supported"),
        ({"request_uri": "https://rp.example/request.jwt"}, "request_uri_not_supported"),
        ({"response_mode": "form_post"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
    ],
)
def test_unsupported_request_parameters_are_sent_back_as_errors(datahub, extra, error):
    request = datahub.authorization_request(**extra)
    params = redirected_error(pages.browser(), request.url)
    assert params["error"] == error, params
    assert params["state"] == request.state
    assert "code" not in params


def test_unsupported_parameters_with_an_unregistered_redirect_get_our_page(datahub):
    request = datahub.authorization_request(request="x.y.z", response_mode="form_post")
    url = request.url.replace("8081%2Fcallback", "8081%2Fcallback%2F")
    assert url != request.url
    answer = pages.get(pages.browser(), url)
    assert answer.status_code == 400, answer.text
    assert "location" not in answer.headers
    assert pages.is_french_page(answer)


def with_param(url: str, name: str, value: str) -> str:
    """`url` with `name` set to `value` (replaced when present)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != name] + [(name, value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize(
    ("name", "value", "echoed"),
    [
        ("state", "s" * 1025, False),
        ("nonce", "n" * 513, True),
        ("login_hint", "h" * 321, True),
        ("scope", "openid " + "x" * 1024, True),
        ("max_age", "-1", True),
    ],
)
def test_oversized_parameters_are_refused_before_anything_is_stored(idp, datahub, name, value, echoed):
    # A pending request is kept until it expires: 30 kB states would fill the database.
    request = datahub.authorization_request()
    params = redirected_error(pages.browser(), with_param(request.url, name, value))
    assert params["error"] == "invalid_request", params
    assert name in params["error_description"], params
    assert "code" not in params
    # The state comes back unless it is the oversized value itself.
    assert params.get("state") == (request.state if echoed else None), params
    # Just under the limits, the request goes on to the login page.
    fine = {"state": "s" * 1024, "nonce": "n" * 512, "login_hint": "h" * 320, "max_age": "0"}
    if name in fine:
        follow_to_login(pages.browser(), with_param(request.url, name, fine[name]), idp.base_url)


def test_query_response_mode_is_accepted_and_discovery_says_what_is_supported(idp, datahub):
    request = datahub.authorization_request(response_mode="query")
    follow_to_login(pages.browser(), request.url, idp.base_url)
    discovery = datahub.discovery
    assert discovery["request_parameter_supported"] is False
    assert discovery["request_uri_parameter_supported"] is False
    assert discovery["response_modes_supported"] == ["query"]


# --- 3. one client authentication method per request -----------------------------------


@pytest.fixture(scope="module")
def service(dgectl):
    flags = [arg for scope in SERVICE_SCOPES for arg in ("--service-scope", scope)]
    return register_client(dgectl, "svc-auth", *flags)


def test_two_client_authentications_in_one_request_are_invalid_request(
    datahub, service, dgectl, tmp_path
):
    endpoints = datahub.discovery
    grant = {"grant_type": "client_credentials"}
    basic = (service.id, service.secret)
    in_body = {"client_id": service.id, "client_secret": service.secret}
    assert token_request(endpoints, grant, auth=basic).status_code == 200
    assert token_request(endpoints, {**grant, **in_body}).status_code == 200
    # Basic header and the secret in the body, even when both are right.
    assert_oauth_error(token_request(endpoints, {**grant, **in_body}, auth=basic), "invalid_request")
    secret_only = {"client_secret": service.secret}
    assert_oauth_error(token_request(endpoints, {**grant, **secret_only}, auth=basic), "invalid_request")
    for endpoint in ("introspection_endpoint", "revocation_endpoint"):
        answer = post_form(endpoints[endpoint], {"token": "x", **in_body}, auth=basic)
        assert_oauth_error(answer, "invalid_request")

    # A signed assertion and a secret.
    key = ec_key()
    signed = register_client(
        dgectl,
        "svc-jwt",
        "--service-scope",
        "authz:check",
        "--jwks-file",
        str(write_jwks(tmp_path / "jwks.json", key)),
    )
    assertion = {
        **grant,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": service_assertion(endpoints, signed.id, key),
    }
    assert_oauth_error(
        token_request(endpoints, {**assertion, "client_secret": "whatever"}), "invalid_request"
    )
    assert_oauth_error(token_request(endpoints, assertion, auth=basic), "invalid_request")
    # Refused before it was looked at: the same assertion still works alone, once.
    assert token_request(endpoints, assertion).status_code == 200


def test_an_unreadable_token_request_says_why(datahub, service):
    from oidc import loopback_http

    http = loopback_http()
    url = datahub.discovery["token_endpoint"]
    basic = (service.id, service.secret)
    twice = http.post(
        url,
        data="grant_type=client_credentials&grant_type=client_credentials",
        headers={"content-type": "application/x-www-form-urlencoded"},
        auth=basic,
        timeout=10,
    )
    assert_oauth_error(twice, "invalid_request")
    assert "more than once" in twice.json()["error_description"], twice.text
    as_json = http.post(url, json={"grant_type": "client_credentials"}, auth=basic, timeout=10)
    assert_oauth_error(as_json, "invalid_request")
    assert "x-www-form-urlencoded" in as_json.json()["error_description"], as_json.text
    missing = post_form(
        datahub.discovery["introspection_endpoint"], {"token_type_hint": "access_token"}, auth=basic
    )
    assert_oauth_error(missing, "invalid_request")
    assert missing.json()["error_description"] == "token is required", missing.text


# --- 4. a pending login request belongs to the browser that started it -----------------


def assert_foreign_request_page(answer) -> None:
    assert answer.status_code == 403, f"answered {answer.status_code}: {answer.text[:500]}"
    assert "location" not in answer.headers
    assert pages.is_french_page(answer)
    assert "ouverte dans ce navigateur" in pages.page_text(answer)


def test_a_login_request_from_another_browser_is_refused(idp, datahub, active_person):
    attacker = pages.browser()
    request = datahub.authorization_request()
    planted = follow_to_login(attacker, request.url, idp.base_url)

    victim = pages.browser()
    assert_foreign_request_page(pages.get(victim, f"{idp.base_url}/login?req={planted.req}"))
    # The victim's own login form, posted with the attacker's req.
    own_form = pages.get(victim, f"{idp.base_url}/login")
    form = pages.form_with_field(own_form, "identifier")
    values = pages.form_values(form)
    values.update(
        {"req": planted.req, "identifier": active_person.login, "password": active_person.password}
    )
    assert_foreign_request_page(pages.post(victim, f"{idp.base_url}/login", values))
    assert_foreign_request_page(
        pages.get(victim, f"{idp.base_url}/broker/proconnect/start?req={planted.req}")
    )
    assert_foreign_request_page(pages.get(victim, f"{idp.base_url}/consent?req={planted.req}"))
    consent = {"csrf_token": values["csrf_token"], "req": planted.req, "decision": "allow"}
    assert_foreign_request_page(pages.post(victim, f"{idp.base_url}/consent", consent))

    # Nothing was consumed: the browser that started the request finishes it.
    answer = submit_login(attacker, planted, active_person.login, active_person.password)
    tokens = datahub.exchange(datahub.callback_url(answer), request)
    assert tokens["access_token"]


def test_the_login_page_of_a_finished_request_says_it_is_over(idp, datahub, active_person):
    http = pages.browser()
    request = datahub.authorization_request()
    login_page = follow_to_login(http, request.url, idp.base_url)
    answer = submit_login(http, login_page, active_person.login, active_person.password)
    assert datahub.exchange(datahub.callback_url(answer), request)["access_token"]
    # The back button: the same login page again, for a request now finished.
    again = pages.get(http, login_page.response.url)
    assert again.status_code == 400, pages.page_text(again)
    assert pages.is_french_page(again)
    assert "Demande de connexion expirée" in pages.page_text(again)
    assert 'name="password"' not in again.text, "a form that could only fail"


def test_several_tabs_of_one_browser_each_finish_their_login(idp, datahub, active_person):
    http = pages.browser()
    first = datahub.authorization_request()
    second = datahub.authorization_request()
    first_page = follow_to_login(http, first.url, idp.base_url)
    second_page = follow_to_login(http, second.url, idp.base_url)
    answer = submit_login(http, first_page, active_person.login, active_person.password)
    datahub.exchange(datahub.callback_url(answer), first)
    answer = submit_login(http, second_page, active_person.login, active_person.password)
    datahub.exchange(datahub.callback_url(answer), second)


# --- 5. a service sees only the tokens issued to its own client -------------------------


@pytest.fixture(scope="module")
def module_with_backend(dgectl, datahub):
    """A first-party module whose backend calls gRPC with its own client credentials."""
    flags = [arg for scope in SERVICE_SCOPES for arg in ("--service-scope", scope)]
    client = register_client(dgectl, "mod", "--first-party", *flags)
    module = Module(datahub.discovery, client.id, client.redirect_uri, client.secret)
    answer = token_request(
        datahub.discovery, {"grant_type": "client_credentials"}, auth=(client.id, client.secret)
    )
    assert answer.status_code == 200, answer.text
    return client, module, answer.json()["access_token"]


def test_grpc_check_introspect_and_revoke_see_only_the_callers_tokens(
    idp, grpc_pb, admin_grpc, datahub, active_person, module_with_backend
):
    client, module, service_token = module_with_backend
    own = log_in_and_exchange(module, active_person).tokens
    foreign = log_in_and_exchange(datahub, active_person).tokens
    backend = IdentityGrpc(grpc_pb, idp.grpc_addr, service_token)
    pb = grpc_pb.authorization
    try:
        mine = backend.check(own["access_token"], RIGHT)
        assert mine.reason in {"missing_right", ""} and mine.subject, mine
        theirs = backend.check(foreign["access_token"], RIGHT)
        assert theirs.allowed is False and theirs.reason == "wrong_audience", theirs
        assert not theirs.subject

        def inspect(token: str):
            return backend.call(backend.authorization.Introspect, pb.IntrospectRequest(token=token))

        assert inspect(own["access_token"]).active
        assert inspect(own["access_token"]).client_id == client.id
        seen = inspect(foreign["access_token"])
        assert not seen.active and not seen.client_id and not seen.subject
        assert not inspect(foreign["refresh_token"]).active
        revoke = pb.RevokeRequest(token=foreign["refresh_token"])
        assert not backend.call(backend.authorization.Revoke, revoke).revoked
    finally:
        backend.close()
    # Left alone: datahub's tokens still work, and an administrator still sees them.
    assert introspect(datahub.discovery, foreign["access_token"])["active"] is True
    assert admin_grpc.check(foreign["access_token"], RIGHT).reason != "wrong_audience"


def test_http_introspection_sees_only_the_callers_tokens(datahub, active_person, module_with_backend):
    client, module, _ = module_with_backend
    own = log_in_and_exchange(module, active_person).tokens
    foreign = log_in_and_exchange(datahub, active_person).tokens
    mine = (client.id, client.secret)
    assert introspect(datahub.discovery, own["access_token"], client=mine)["active"] is True
    # authz:introspect does not widen the audience over HTTP either.
    assert introspect(datahub.discovery, foreign["access_token"], client=mine) == {"active": False}
    datahub_auth = (DATAHUB_ID, DATAHUB_SECRET)
    assert introspect(datahub.discovery, own["access_token"], client=datahub_auth) == {
        "active": False
    }
