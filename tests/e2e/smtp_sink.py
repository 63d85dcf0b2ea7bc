"""A real SMTP server on loopback (aiosmtpd) that records what it receives.

Used by the mail tests, from pytest (`SmtpSink`) and from the Rust tests of
dge-mailer (run as a script). Each message is parsed with Python's `email` package,
as a mail reader would, and written as one JSON line: the envelope, the decoded
headers, the text and HTML bodies, and the parser's defects.

    python smtp_sink.py serve --port P --log FILE [--refuse ADDRESS]...
        [--tls starttls|implicit --cert PEM --key PEM] [--auth USER:PASSWORD]
    python smtp_sink.py certs DIR     # a CA and a server certificate for 127.0.0.1

`serve` prints `ready <port>` once it accepts connections and runs until stdin
closes or it is terminated.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

HOST = "127.0.0.1"

# What a real server answers for a mailbox that does not exist.
REFUSAL = "550 5.1.1 <{address}>: Recipient address rejected: User unknown in local recipient table"


def parse(raw: bytes) -> dict:
    """The message as a reader sees it."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    defects = [type(d).__name__ for d in message.defects]
    for part in message.walk():
        defects += [type(d).__name__ for d in part.defects]
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "message_id": str(message.get("Message-ID", "")),
        "subject": str(message.get("Subject", "")),
        "raw_subject": raw.split(b"\r\nSubject: ", 1)[-1].split(b"\r\n", 1)[0].decode("ascii", "replace")
        if b"\r\nSubject: " in raw
        else "",
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "date": str(message.get("Date", "")),
        "header_names": [name for name, _ in message.items()],
        "content_type": message.get_content_type(),
        "text": text.get_content() if text is not None else None,
        "text_charset": text.get_content_charset() if text is not None else None,
        "html": html.get_content() if html is not None else None,
        "html_charset": html.get_content_charset() if html is not None else None,
        "defects": defects,
        "raw_is_ascii": all(b < 128 for b in raw),
    }


class Recorder:
    """The aiosmtpd handler: refuses some recipients, records the rest."""

    def __init__(self, log: Path, refuse: set[str]):
        self.log = log
        self.refuse = {address.lower() for address in refuse}
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return REFUSAL.format(address=address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "auth_user": getattr(session, "auth_data", None),
            **parse(envelope.original_content or envelope.content),
        }
        with self.lock, self.log.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return "250 Message accepted for delivery"


def authenticator(user: str, password: str):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            getattr(auth_data, "login", None) == user.encode()
            and getattr(auth_data, "password", None) == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    return check


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class SmtpSink:
    """An aiosmtpd server in this process, for pytest."""

    def __init__(self, port: int, log: Path, refuse: set[str] | None = None):
        self.port = port
        self.log = log
        self.log.touch()
        self.controller = Controller(Recorder(log, refuse or set()), hostname=HOST, port=port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def messages(self) -> list[dict]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def make_certs(folder: Path) -> None:
    """ca.pem, and server.pem / server.key for 127.0.0.1 signed by it (openssl)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=DGE test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (folder / "server.ext").write_text(
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")


def serve(args: argparse.Namespace) -> None:
    handler = Recorder(Path(args.log), set(args.refuse))
    Path(args.log).touch()
    options: dict = {"hostname": HOST, "port": args.port}
    if args.tls:
        context = tls_context(Path(args.cert), Path(args.key))
        if args.tls == "implicit":
            options["ssl_context"] = context
        else:
            options["server_kwargs"] = {"tls_context": context, "require_starttls": True}
    if args.no_smtputf8:
        # aiosmtpd's Controller offers SMTPUTF8 unless told not to; many servers do not.
        options.setdefault("server_kwargs", {})["enable_SMTPUTF8"] = False
    if args.auth:
        user, password = args.auth.split(":", 1)
        kwargs = options.setdefault("server_kwargs", {})
        kwargs["authenticator"] = authenticator(user, password)
        kwargs["auth_required"] = True
    controller = Controller(handler, **options)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"ready {args.port}", flush=True)
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--log", required=True)
    run.add_argument("--refuse", action="append", default=[])
    run.add_argument("--tls", choices=["starttls", "implicit"])
    run.add_argument("--cert")
    run.add_argument("--key")
    run.add_argument("--auth")
    run.add_argument("--no-smtputf8", action="store_true")
    certs = commands.add_parser("certs")
    certs.add_argument("folder")
    args = parser.parse_args()
    if args.command == "certs":
        make_certs(Path(args.folder))
    else:
        serve(args)


if __name__ == "__main__":
    main()
