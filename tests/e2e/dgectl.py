"""Running the real `dgectl` against a test server, as an administrator would."""

from __future__ import annotations

import json
import subprocess

from idp_server import IdpServer, clean_env, dgectl_binary

DGECTL_TIMEOUT_SECS = 30

# Exit codes from the contract.
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_UNAUTHENTICATED = 4


def describe(result: subprocess.CompletedProcess) -> str:
    return (
        f"`{' '.join(result.args)}` exited with {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def items(document: dict, key: str) -> list:
    """The list in a JSON answer such as `{"accounts": [...]}`."""
    assert isinstance(document.get(key), list), f"no list {key!r} in {document}"
    return document[key]


class Dgectl:
    """`dgectl --server <server> --token-file <admin.token> --output json ...`."""

    def __init__(self, server: IdpServer, server_url: str | None = None):
        self.server = server
        self.server_url = server_url or server.grpc_server_url

    def run(
        self, *args: str, output: str = "json", authenticated: bool = True
    ) -> subprocess.CompletedProcess:
        command = [str(dgectl_binary()), "--server", self.server_url]
        if authenticated:
            command += ["--token-file", str(self.server.admin_token_path)]
        command += ["--output", output, *args]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=DGECTL_TIMEOUT_SECS,
            # A login saved by `dgectl login` on this machine must not stand in for the token.
            env=clean_env({"XDG_CONFIG_HOME": str(self.server.data_dir / "no-saved-login")}),
            cwd=self.server.data_dir,
            stdin=subprocess.DEVNULL,
        )

    def ok(self, *args: str, output: str = "json") -> subprocess.CompletedProcess:
        result = self.run(*args, output=output)
        assert result.returncode == EXIT_OK, describe(result)
        return result

    def json(self, *args: str):
        result = self.ok(*args)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as error:
            raise AssertionError(f"not JSON ({error}): {describe(result)}") from error

    def logins_with_status(self, status: str) -> set[str]:
        document = self.json("accounts", "list", "--status", status, "--limit", "1000")
        return {account["login"] for account in items(document, "accounts")}

    def client_ids(self) -> list[str]:
        return [client["id"] for client in items(self.json("clients", "list"), "clients")]
