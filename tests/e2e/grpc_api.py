"""Python gRPC client generated from proto/ at test time, and a thin wrapper over it."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from idp_server import REPO_ROOT

PROTO_ROOT = REPO_ROOT / "proto"
PROTO_PACKAGE = "dge.identity.v1"
CALL_TIMEOUT_SECS = 10


def generate_stubs(out_dir: Path) -> SimpleNamespace:
    """Runs grpcio-tools' protoc over proto/dge/identity/v1 and imports the result.

    The namespace holds one attribute per proto file (`account_registry`,
    `authorization`, ...) for messages and one with a `_grpc` suffix for stubs.
    """
    out_dir = out_dir.resolve()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    protos = sorted((PROTO_ROOT / "dge" / "identity" / "v1").glob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(proto.relative_to(PROTO_ROOT)) for proto in protos],
    ]
    result = subprocess.run(command, cwd=PROTO_ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({result.returncode}):\n{result.stderr}")
    sys.path.insert(0, str(out_dir))
    modules = {}
    for proto in protos:
        name = proto.stem
        modules[name] = importlib.import_module(f"{PROTO_PACKAGE}.{name}_pb2")
        modules[f"{name}_grpc"] = importlib.import_module(f"{PROTO_PACKAGE}.{name}_pb2_grpc")
    return SimpleNamespace(**modules)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def bad_request_fields(error: grpc.RpcError) -> set[str]:
    """Fields named by the google.rpc.BadRequest details of a failed call."""
    status = rpc_status.from_call(error)
    fields = set()
    if status is None:
        return fields
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.update(violation.field for violation in bad_request.field_violations)
    return fields


class IdentityGrpc:
    """DGE Identity's gRPC services on one server, called with one bearer token."""

    def __init__(self, pb: SimpleNamespace, target: str, token: str | None):
        self.pb = pb
        self.channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
        self.metadata = bearer(token) if token else []
        self.accounts = pb.account_registry_grpc.AccountRegistryStub(self.channel)
        self.authorization = pb.authorization_grpc.AuthorizationStub(self.channel)
        self.workflow = pb.validation_workflow_grpc.ValidationWorkflowStub(self.channel)
        self.clients = pb.client_registry_grpc.ClientRegistryStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, method, request):
        return method(request, metadata=self.metadata, timeout=CALL_TIMEOUT_SECS)

    def check(self, access_token: str, right: str):
        request = self.pb.authorization.CheckRequest(access_token=access_token, right=right)
        return self.call(self.authorization.Check, request)

    def all_accounts(self) -> list:
        request = self.pb.account_registry.ListAccountsRequest(limit=1000)
        return list(self.call(self.accounts.ListAccounts, request).accounts)

    def logins(self) -> set[str]:
        return {account.login for account in self.all_accounts()}

    def status_of(self, login: str) -> str:
        """The account's status name (`ACCOUNT_STATUS_PENDING`, ...)."""
        request = self.pb.account_registry.GetAccountRequest(key=login)
        account = self.call(self.accounts.GetAccount, request).account
        return self.pb.common.AccountStatus.Name(account.status)

    def statuses(self) -> dict[str, int]:
        """Every account's status, by account id: a snapshot to compare."""
        return {account.id: account.status for account in self.all_accounts()}
