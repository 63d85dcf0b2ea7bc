"""dgectl's messages for common mistakes (issue 9): a refused token names the option or
variable it came from, the web port given for the gRPC one is said as such, and
redirect URIs that look like wildcards or are bad post-logout URIs are refused on
their own field, and so are a client name that would garble the consent page and a URI
not written as a URL parser writes it back."""

from __future__ import annotations

import secrets
import subprocess

import grpc
import pytest

from dgectl import Dgectl
from grpc_api import bad_request_fields
from idp_server import clean_env, dgectl_binary

EXIT_UNREACHABLE = 3
EXIT_UNAUTHENTICATED = 4


def dgectl_raw(server, args: list[str], env: dict[str, str] | None = None):
    return subprocess.run(
        [str(dgectl_binary()), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env({"XDG_CONFIG_HOME": str(server.data_dir / "no-saved-login"), **(env or {})}),
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("source", ["--token", "--token-file", "DGECTL_TOKEN", "DGECTL_TOKEN_FILE"])
def test_a_refused_token_names_where_it_came_from(idp, tmp_path, source):
    wrong = f"pas-le-bon-jeton-{secrets.token_hex(4)}"
    token_file = tmp_path / "token"
    token_file.write_text(wrong + "\n", encoding="utf-8")
    args = ["--server", idp.grpc_server_url]
    env = {}
    if source == "--token":
        args += ["--token", wrong]
    elif source == "--token-file":
        args += ["--token-file", str(token_file)]
    elif source == "DGECTL_TOKEN":
        env["DGECTL_TOKEN"] = wrong
    else:
        env["DGECTL_TOKEN_FILE"] = str(token_file)
    result = dgectl_raw(idp, [*args, "orgs", "list"], env)
    assert result.returncode == EXIT_UNAUTHENTICATED, result.stderr
    assert result.stderr.strip() == (
        f"error: the server refused the token given by {source} (check it, or run dgectl login)"
    ), result.stderr
    assert wrong not in result.stderr


def test_the_web_port_given_for_the_grpc_one_is_said_plainly(idp):
    result = dgectl_raw(
        idp, ["--server", idp.base_url, "--token-file", str(idp.admin_token_path), "orgs", "list"]
    )
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    assert result.stderr.strip() == (
        f"error: {idp.base_url} answers HTTP, not gRPC: it is the web port of DGE Identity; "
        "use its gRPC port instead (server.grpc_addr, 50051 by default)"
    ), result.stderr


def test_a_closed_port_is_still_unreachable(idp):
    # Nothing listens there: the usual message, not the web-port one.
    from idp_server import free_port

    server = f"http://127.0.0.1:{free_port()}"
    result = dgectl_raw(idp, ["--server", server, "--token", "x", "orgs", "list"])
    assert result.returncode == EXIT_UNREACHABLE, result.stderr
    assert "cannot reach the DGE Identity server" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "uri",
    ["https://*.exemple.fr/callback", "https://module.exemple.fr/*", "https://module.exemple.fr/cb*"],
)
def test_wildcard_looking_redirect_uris_are_refused(dgectl: Dgectl, uri):
    client_id = f"joker-{secrets.token_hex(3)}"
    result = dgectl.run("clients", "add", client_id, "--redirect-uri", uri, output="table")
    assert result.returncode == 1, result.stderr
    assert "redirect_uris:" in result.stderr, result.stderr
    assert "pas de joker (*) : les adresses de retour sont comparées à l'identique" in result.stderr, result.stderr
    assert client_id not in dgectl.client_ids()


def test_a_bad_post_logout_uri_is_reported_on_its_own_field(dgectl: Dgectl):
    client_id = f"sortie-{secrets.token_hex(3)}"
    result = dgectl.run(
        "clients",
        "add",
        client_id,
        "--redirect-uri",
        "https://module.exemple.fr/callback",
        "--post-logout-redirect-uri",
        "http://module.exemple.fr/",
        output="table",
    )
    assert result.returncode == 1, result.stderr
    assert "post_logout_redirect_uris: invalid: http://module.exemple.fr/: doit être en https" in result.stderr, (
        result.stderr
    )
    assert "\n  redirect_uris:" not in result.stderr, result.stderr
    assert client_id not in dgectl.client_ids()


def test_every_broken_rule_of_a_new_client_is_named_at_once_and_nothing_is_created(dgectl: Dgectl):
    suffix = secrets.token_hex(3)
    result = dgectl.run(
        "clients",
        "add",
        f"Module-{suffix}",
        "--redirect-uri",
        "https://module.exemple.fr/callback",
        "--service-scope",
        "tout",
        "--backchannel-logout-uri",
        "http://module.exemple.fr/logout",
        output="table",
    )
    assert result.returncode == 1, result.stderr
    for field, words in [
        ("id", "un nom de module canonique"),
        ("service_scopes", "portée de service inconnue : tout"),
        ("backchannel_logout_uri", "http://module.exemple.fr/logout: doit être en https"),
    ]:
        assert f"{field}: invalid: {words}" in result.stderr, result.stderr
    assert not [c for c in dgectl.client_ids() if suffix in c.lower()]


def test_a_hidden_character_in_a_name_and_a_space_in_a_uri_are_refused(dgectl: Dgectl, admin_grpc):
    # U+202E reverses what follows on the consent page; a space is sent %20-encoded by
    # the module's URL library, so the registered URI would never match.
    client_id = f"inverse-{secrets.token_hex(3)}"
    name = "Module \u202elanoitan"
    uri = "https://module.exemple.fr/mon retour"
    result = dgectl.run("clients", "add", client_id, "--name", name, "--redirect-uri", uri, output="table")
    assert result.returncode == 1, result.stderr
    assert "name: control_characters: le nom contient des caractères non autorisés" in result.stderr, result.stderr
    assert (
        f"redirect_uris: invalid: {uri}: pas écrite sous sa forme normalisée"
        in result.stderr
    ), result.stderr
    assert "écrivez https://module.exemple.fr/mon%20retour" in result.stderr, result.stderr
    assert "\u202e" not in result.stderr, result.stderr
    assert client_id not in dgectl.client_ids()

    pb = admin_grpc.pb.client_registry
    request = pb.AddClientRequest(id=client_id, name=name, redirect_uris=[uri, uri], confidential=True)
    with pytest.raises(grpc.RpcError) as refused:
        admin_grpc.call(admin_grpc.clients.AddClient, request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(refused.value) == {"name", "redirect_uris"}
    assert client_id not in dgectl.client_ids()
